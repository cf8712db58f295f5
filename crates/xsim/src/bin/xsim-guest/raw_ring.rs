//! The guest's ring driven by hand, below the client library: for checks
//! that need to misbehave (a partial packet, a reconnection, corrupt
//! indices).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use xen_platform::hosted::{Host, HostedEventChannels};
use xen_platform::{EventChannels, MappedPages, Notifier};
use xenstore_ring::{Field, MappedGuest, CONNECTED};
use xenstore_wire::{Decoder, Header, Op, Packet};

/// Signals xenstored through the store port.
#[derive(Debug)]
pub struct Signal(Notifier);

impl xenstore_ring::Notify for Signal {
    fn notify(&mut self) {
        let _ = self.0.notify();
    }
}

/// The domain's ring and event channel, held directly.
#[derive(Debug)]
pub struct RawRing {
    pub ring: MappedGuest<MappedPages, Signal>,
    events: HostedEventChannels,
    decoder: Decoder,
    /// Bytes read from the ring and not yet decoded.
    unread: Vec<u8>,
    pub domid: u16,
    store_port: xen_platform::Port,
    next_req: u32,
    notifier: Notifier,
}

impl RawRing {
    /// Takes over the domain's ring (instead of the client library).
    pub fn open() -> Result<RawRing> {
        let (host, start) = Host::from_guest_env().context("not a hosted guest")?;
        let mut events = host.event_channels()?;
        events.claim(start.store_port)?;
        let notifier = events.notifier(start.store_port)?;
        let ring = MappedGuest::new(start.store_page, Signal(notifier.clone()));
        Ok(RawRing {
            ring,
            events,
            decoder: Decoder::new(),
            unread: Vec::new(),
            domid: start.domid,
            store_port: start.store_port,
            next_req: 1,
            notifier,
        })
    }

    /// The descriptor the platform gives this guest to poll its store
    /// port with, for checks that abuse it.
    pub fn port_descriptor(&mut self) -> Result<std::os::fd::OwnedFd> {
        let port = self.store_port;
        self.events.poll_directly(port)?.context("no descriptor of its own for the store port")
    }

    /// Waits for a notification (or `timeout`), consuming it.
    pub fn wait(&mut self, timeout: Duration) -> Result<()> {
        self.events.wait(Some(timeout))?;
        let mut pending = Vec::new();
        self.events.take_pending(&mut pending)?;
        Ok(())
    }

    /// Writes all of `bytes` into the request queue.
    pub fn send_bytes(&mut self, mut bytes: &[u8]) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !bytes.is_empty() {
            let n = self.ring.write(bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
            bytes = &bytes[n..];
            if n == 0 {
                if Instant::now() > deadline {
                    bail!("the request queue stayed full");
                }
                self.wait(Duration::from_millis(50))?;
            }
        }
        Ok(())
    }

    /// Sends one request; returns its request id.
    pub fn send(&mut self, op: Op, payload: &[u8]) -> Result<u32> {
        let req_id = self.next_req;
        self.next_req += 1;
        let header = Header { op: op as u32, req_id, tx_id: 0, len: u32::try_from(payload.len())? };
        let mut bytes = header.encode().to_vec();
        bytes.extend_from_slice(payload);
        self.send_bytes(&bytes)?;
        Ok(req_id)
    }

    /// The next packet from xenstored, or `None` after `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> Result<Option<Packet>> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 1024];
        loop {
            let mut input = &self.unread[..];
            let decoded = self.decoder.decode(&mut input)?;
            let used = self.unread.len() - input.len();
            self.unread.drain(..used);
            if let Some(packet) = decoded {
                return Ok(Some(packet));
            }
            let n = self.ring.read(&mut buf).map_err(|e| anyhow::anyhow!("{e}"))?;
            self.unread.extend_from_slice(&buf[..n]);
            if n == 0 {
                let now = Instant::now();
                if now >= deadline {
                    return Ok(None);
                }
                self.wait(deadline - now)?;
            }
        }
    }

    /// The reply to `req_id` (skipping watch events), within 5 s.
    pub fn reply(&mut self, req_id: u32) -> Result<Packet> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left)? {
                Some(p) if p.header.op == Op::WatchEvent as u32 => continue,
                Some(p) if p.header.req_id == req_id => return Ok(p),
                Some(p) => bail!("unexpected packet {:?}", p.header),
                None => bail!("no reply to request {req_id}"),
            }
        }
    }

    /// Asks for a reconnection and waits until xenstored completes it.
    pub fn reconnect(&mut self) -> Result<()> {
        self.ring.request_reconnect();
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.ring.connection_state() != CONNECTED {
            if Instant::now() > deadline {
                bail!("xenstored did not complete the reconnection");
            }
            self.wait(Duration::from_millis(50))?;
        }
        self.decoder = Decoder::new();
        self.unread.clear();
        Ok(())
    }

    /// Signals xenstored without touching the ring.
    pub fn kick(&self) -> Result<()> {
        Ok(self.notifier.notify()?)
    }

    /// Reads a raw field of the page.
    pub fn field(&self, field: Field) -> u32 {
        self.ring.raw_field(field)
    }
}
