//! A fake xenstored serving one ring: a tiny store (WRITE keeps values,
//! READ returns them or a made-up value; transactions are accepted but
//! their requests act at once), WATCH answered with OK and then
//! one event, and READ of `/poison` making it set the ring's error
//! indicator and stop serving until the guest reconnects (if the
//! reconnection feature is advertised).

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use xen_platform::MappedPages;
use xenstore::Op;
use xenstore_ring::{Incoming, MappedServer, Notify, OutputQueue, PageMemory, ERROR_PROTO};
use xenstore_wire::{Header, Packet};

use super::EventFd;

/// The path whose READ makes the server set `ERROR_PROTO`.
pub const POISON: &str = "/poison";

/// How the server starts.
#[derive(Debug, Clone, Default)]
pub struct ServerConfig {
    /// Feature bits to advertise.
    pub features: u32,
    /// Bytes to put in the response queue before serving (debris of an
    /// earlier connection).
    pub debris: Vec<u8>,
    /// Stop reading requests while this many bytes of replies wait for
    /// room in the ring, as xenstored stops reading a guest that leaves
    /// its replies unread (0: never stop).
    pub max_unread: usize,
}

/// The running server; stopped and joined on drop.
#[derive(Debug)]
pub struct FakeServer {
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
    reconnects: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    /// Serves `page`: woken through `inbound`, waking the guest through
    /// `outbound`. Returns once the features are advertised.
    pub fn start(page: MappedPages, inbound: EventFd, outbound: EventFd, config: ServerConfig) -> FakeServer {
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let reconnects = Arc::new(AtomicUsize::new(0));
        let (ready_tx, ready) = mpsc::channel();
        let state = Serving {
            stop: Arc::clone(&stop),
            requests: Arc::clone(&requests),
            reconnects: Arc::clone(&reconnects),
            store: HashMap::new(),
            failed: false,
            output: OutputQueue::new(),
            max_unread: config.max_unread,
        };
        let thread = std::thread::spawn(move || {
            let mut server = MappedServer::new(page, move || {
                let _ = outbound.signal();
            });
            server.set_features(config.features);
            if !config.debris.is_empty() {
                server.write(&config.debris).unwrap();
            }
            let _ = ready_tx.send(());
            state.run(&mut server, &inbound);
        });
        ready.recv().unwrap();
        FakeServer { stop, requests, reconnects, thread: Some(thread) }
    }

    /// Requests answered (or acted on) so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Reconnections completed so far.
    pub fn reconnects(&self) -> usize {
        self.reconnects.load(Ordering::SeqCst)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Serving {
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
    reconnects: Arc<AtomicUsize>,
    store: HashMap<String, Vec<u8>>,
    /// The error indicator is set: answer nothing more.
    failed: bool,
    /// Replies and events waiting for room in the ring.
    output: OutputQueue,
    /// See [`ServerConfig::max_unread`].
    max_unread: usize,
}

impl Serving {
    fn run<M: PageMemory, N: Notify>(mut self, server: &mut MappedServer<M, N>, inbound: &EventFd) {
        while !self.stop.load(Ordering::SeqCst) {
            // Lower the level before looking at the ring, so a request
            // written after the look raises it again.
            let _ = xen_platform::wait_readable(inbound.as_fd(), Some(Duration::from_millis(20)));
            inbound.clear().unwrap();
            if self.failed {
                // Stopped, as xenstored is after setting the indicator,
                // until the guest asks for a reconnection (which `poll`
                // then completes, clearing the indicator).
                if !server.reconnect_requested() {
                    continue;
                }
                self.failed = false;
            }
            loop {
                if self.max_unread > 0 && self.output.pending() >= self.max_unread {
                    break;
                }
                match server.poll() {
                    Ok(Some(Incoming::Packet(packet))) => {
                        self.requests.fetch_add(1, Ordering::SeqCst);
                        if !self.handle(server, packet) {
                            self.failed = true;
                            break;
                        }
                    }
                    Ok(Some(Incoming::Reconnected)) => {
                        self.reconnects.fetch_add(1, Ordering::SeqCst);
                        self.output.clear();
                    }
                    Ok(None) => break,
                    Err(err) => panic!("the fake server's ring failed: {err}"),
                }
            }
            if !self.failed {
                self.output.flush_with(|b| server.write(b)).unwrap();
            }
        }
    }

    /// Answers one request; `false` if it was the poison.
    fn handle<M: PageMemory, N: Notify>(&mut self, server: &mut MappedServer<M, N>, packet: Packet) -> bool {
        let header = packet.header;
        let mut fields = packet.payload.split(|&b| b == 0);
        let path = String::from_utf8(fields.next().unwrap_or_default().to_vec()).unwrap();
        let reply = |output: &mut OutputQueue, op: Op, payload: &[u8]| {
            output.push(message(op, header.req_id, header.tx_id, payload));
        };
        match Op::from_u32(header.op) {
            Some(Op::Read) if path == POISON => {
                server.set_error(ERROR_PROTO);
                return false;
            }
            Some(Op::Read) => {
                let value = self.store.get(&path).cloned().unwrap_or_else(|| format!("value of {path}").into_bytes());
                reply(&mut self.output, Op::Read, &value);
            }
            Some(Op::Write) => {
                let value = packet.payload.get(path.len() + 1..).unwrap_or_default().to_vec();
                self.store.insert(path, value);
                reply(&mut self.output, Op::Write, b"OK\0");
            }
            Some(Op::Watch) => {
                reply(&mut self.output, Op::Watch, b"OK\0");
                // The watch fires once at once, as xenstored's does.
                self.output.push(message(Op::WatchEvent, 0, 0, &packet.payload));
            }
            Some(op @ Op::Unwatch) => reply(&mut self.output, op, b"OK\0"),
            // Transactions in name only: their requests act at once.
            Some(Op::TransactionStart) => reply(&mut self.output, Op::TransactionStart, b"1\0"),
            Some(op @ Op::TransactionEnd) => reply(&mut self.output, op, b"OK\0"),
            _ => reply(&mut self.output, Op::Error, b"ENOSYS\0"),
        }
        true
    }
}

/// One encoded message.
pub fn message(op: Op, req_id: u32, tx_id: u32, payload: &[u8]) -> Vec<u8> {
    let header = Header { op: op as u32, req_id, tx_id, len: payload.len().try_into().unwrap() };
    let mut msg = header.encode().to_vec();
    msg.extend_from_slice(payload);
    msg
}
