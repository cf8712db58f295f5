//! Domains' shared rings: INTRODUCE maps a guest's xenstore page and binds
//! its event channel; each ring is then a connection's transport, served
//! like a socket, as an unprivileged caller with the guest's domid.
//!
//! All rings share one pollable event-channel handle: one notification
//! wakes the loop, which asks the handle which ports are pending and
//! serves those rings only (nothing is O(domains) per request). Where the
//! platform lets each port be polled on its own (hosted: an eventfd per
//! port), a ring's port is instead registered in the server's own poll
//! under its connection's token ([`Rings::watch`]): a notification then
//! wakes the loop straight into that ring, without the handle's nested
//! set and the look that says which port fired (two system calls a round
//! trip). The domain-exception interrupt (VIRQ_DOM_EXC) arrives on the
//! shared handle either way;
//! only then does the daemon ask which domains changed (listing every
//! domain where the platform cannot say), to learn which have shut down
//! or gone.

use std::io::{self, IoSlice, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rustc_hash::FxHashMap;
use xen_platform::{
    Dom0Store, DomId, DomainStates, EventChannelParts, EventChannels, ForeignMemory, MappedPages, Notifier, Port,
};
use xenstore_db::ConnId;
use xenstore_ring::{Field, Incoming, MappedServer, Notify, ERROR_COMM};
use xenstore_wire::Packet;

use crate::conn::Received;
use crate::outbox::Outbox;

/// What the daemon needs of the platform to serve domains.
#[derive(Debug)]
pub struct Platform {
    /// The daemon's event channels: every ring's port and VIRQ_DOM_EXC.
    pub events: Box<dyn EventChannels>,
    /// Mapping guests' xenstore pages.
    pub memory: Box<dyn ForeignMemory>,
    /// Domain states, read when VIRQ_DOM_EXC fires.
    pub domains: Box<dyn DomainStates>,
    /// Dom0's own xenstore ring, served as a privileged connection when
    /// the platform has one (a xenstored in dom0 on Xen; hosted has none:
    /// dom0's processes use the socket).
    pub dom0_store: Box<dyn Dom0Store>,
    /// Rebuilds an event-channel handle of this platform from its parts
    /// (`EventChannels::into_parts`): a live update that fails after taking
    /// the handle apart takes it back with this.
    pub adopt_events: AdoptEvents,
}

/// See [`Platform::adopt_events`].
pub type AdoptEvents = fn(EventChannelParts) -> io::Result<Box<dyn EventChannels>>;

/// An [`AdoptEvents`] for platforms whose handles are not handed on (the
/// in-memory twins): `Unsupported`.
pub fn cannot_adopt_events(_: EventChannelParts) -> io::Result<Box<dyn EventChannels>> {
    Err(io::ErrorKind::Unsupported.into())
}

/// How the ring signals the guest. The ring layer asks for a
/// notification after every index update; this only records the wish, and
/// the ring sends one notification per flush ([`DomainRing::flush`]),
/// after the requests were read and the replies written: one wake-up of
/// the guest per round trip instead of two.
#[derive(Debug)]
pub(crate) struct RingNotify {
    wanted: Arc<AtomicBool>,
}

impl Notify for RingNotify {
    fn notify(&mut self) {
        self.wanted.store(true, Ordering::Relaxed);
    }
}

/// One domain's ring: the transport of its connection.
#[derive(Debug)]
pub(crate) struct DomainRing {
    pub(crate) domid: DomId,
    pub(crate) port: Port,
    server: MappedServer<MappedPages, RingNotify>,
    /// The ring layer asked to notify the guest.
    wanted: Arc<AtomicBool>,
    notifier: Notifier,
    /// Signalling the guest failed.
    broken: bool,
    /// The error indicator is set: nothing is served until the guest
    /// reconnects.
    pub(crate) stopped: bool,
}

impl DomainRing {
    /// Serves `pages` for `domid`, advertising `features`, signalling the
    /// guest through `notifier`.
    pub(crate) fn new(domid: DomId, port: Port, pages: MappedPages, notifier: Notifier, features: u32) -> DomainRing {
        let wanted = Arc::new(AtomicBool::new(false));
        let notify = RingNotify { wanted: wanted.clone() };
        let mut server = MappedServer::new(pages, notify);
        server.set_features(features);
        DomainRing { domid, port, server, wanted, notifier, broken: false, stopped: false }
    }

    /// Appends up to `budget` requests. A stopped ring only watches for
    /// the guest's reconnection.
    pub(crate) fn receive(&mut self, packets: &mut Vec<Packet>, budget: usize) -> Received {
        for _ in 0..budget {
            match self.server.poll() {
                Ok(Some(Incoming::Packet(packet))) => packets.push(packet),
                Ok(Some(Incoming::Reconnected)) => return Received::Reconnected,
                Ok(None) => return Received::Drained,
                Err(_) if self.stopped => return Received::Drained,
                Err(e) => return Received::Violation(e.to_string()),
            }
            if self.stopped {
                return Received::Drained;
            }
        }
        Received::More
    }

    /// What was read from the ring and not yet handled, for a live
    /// update; left in place.
    pub(crate) fn input(&mut self) -> Vec<u8> {
        let bytes = self.server.take_input();
        // Put back at once: what was taken came from this connection and
        // is a valid input state for it.
        let _ = self.server.restore_input(&bytes);
        bytes
    }

    /// Puts back the input a previous daemon had read from the ring.
    pub(crate) fn restore_input(&mut self, bytes: &[u8]) -> Result<(), xenstore_wire::FrameError> {
        self.server.restore_input(bytes)
    }

    /// Signals the guest now, whatever the ring layer asked: the C
    /// daemon's notification once it serves dom0's ring (`dom0_init`),
    /// which a Linux dom0 waits for before probing its backends.
    pub(crate) fn announce(&self) -> io::Result<()> {
        self.notifier.notify()
    }

    /// The daemon restarted (crash recovery): sets the error indicator
    /// (`XENSTORE_ERROR_COMM`) and signals the guest, whose client then
    /// reconnects; nothing is served until it does.
    pub(crate) fn signal_restart(&mut self) {
        self.server.set_error(ERROR_COMM);
        self.stopped = true;
        if self.notifier.notify().is_err() {
            self.broken = true;
        }
    }

    /// Whether the guest asks for a reconnection (one atomic load).
    pub(crate) fn reconnect_requested(&self) -> bool {
        self.server.reconnect_requested()
    }

    /// Writes the queue as space allows, then sends the guest the one
    /// notification this flush owes it. `Err` when the ring must be
    /// stopped (the error indicator is set already).
    pub(crate) fn flush(&mut self, outbox: &mut Outbox) -> Result<(), String> {
        let mut result = Ok(());
        if !self.stopped {
            if let Err(e) = outbox.flush_to(&mut RingSink(&mut self.server)) {
                // The ring layer set ERROR_RINGIDX.
                result = Err(format!("writing the response queue: {e}"));
            }
        }
        self.kick();
        if result.is_ok() && self.broken && !self.stopped {
            self.server.set_error(ERROR_COMM);
            // The error indicator is set; try to tell the guest anyway.
            self.kick();
            result = Err("the event channel is broken".into());
        }
        result
    }

    /// Sends the notification the ring layer asked for since the last
    /// kick, if any. The index updates it announces happened before (the
    /// ring layer fenced after each), so the guest sees them when woken.
    fn kick(&mut self) {
        if self.wanted.swap(false, Ordering::Relaxed) && self.notifier.notify().is_err() {
            self.broken = true;
        }
    }
}

/// The platform and the index of the rings being served, by port and
/// domain (the connections themselves are the server's).
#[derive(Debug)]
pub(crate) struct Rings {
    pub(crate) platform: Platform,
    /// The port bound to VIRQ_DOM_EXC.
    pub(crate) virq_port: Port,
    pub(crate) by_port: FxHashMap<Port, ConnId>,
    pub(crate) by_domid: FxHashMap<DomId, ConnId>,
    /// The server's poll, for ports polled directly.
    pub(crate) registry: mio::Registry,
    /// Ports registered in it ([`Rings::watch`]), with their descriptors
    /// (deregistered before they are closed).
    pub(crate) direct: FxHashMap<Port, OwnedFd>,
    /// Scratch for pending ports.
    pub(crate) pending: Vec<Port>,
    /// The next VIRQ_DOM_EXC looks at every domain rather than at those
    /// that changed: set at start (fresh, live update, recovery), when
    /// what the daemon knows of domains may be stale, and after a failed
    /// query, whose answer may have been lost.
    pub(crate) fresh_look: bool,
}

impl Rings {
    /// Binds VIRQ_DOM_EXC and gets ready to serve rings, polling ports
    /// that can be polled directly through `registry`.
    pub(crate) fn new(mut platform: Platform, registry: mio::Registry) -> io::Result<Rings> {
        let virq_port = platform.events.bind_virq(xen_platform::Virq::DomExc)?;
        Ok(Rings::adopted(platform, virq_port, registry))
    }

    /// Rings served again after a live update: the event-channel handle
    /// in `platform` was adopted with its ports, VIRQ_DOM_EXC's among them.
    pub(crate) fn adopted(platform: Platform, virq_port: Port, registry: mio::Registry) -> Rings {
        Rings {
            platform,
            virq_port,
            by_port: FxHashMap::default(),
            by_domid: FxHashMap::default(),
            registry,
            direct: FxHashMap::default(),
            pending: Vec::new(),
            fresh_look: true,
        }
    }

    /// Indexes `local` as `conn`'s port, and polls it directly where the
    /// platform allows: registered under the connection's token, so
    /// [`crate::Server::step`] serves the connection when it fires.
    fn watch(&mut self, local: Port, conn: ConnId) -> io::Result<()> {
        self.by_port.insert(local, conn);
        if let Some(fd) = self.platform.events.poll_directly(local)? {
            let token = crate::socket::token(conn);
            let raw = fd.as_raw_fd();
            if let Err(e) = self.registry.register(&mut mio::unix::SourceFd(&raw), token, mio::Interest::READABLE) {
                // The handle reports it again, or nobody would.
                self.platform.events.poll_through_handle(local)?;
                return Err(e);
            }
            self.direct.insert(local, fd);
        }
        Ok(())
    }

    /// Takes every directly polled port out of the server's poll and
    /// closes their descriptors (a live update is about to take the handle
    /// apart: the new daemon polls what it adopts itself).
    /// [`Rings::watch_again`] undoes it.
    pub(crate) fn unwatch_all(&mut self) {
        for (_, fd) in std::mem::take(&mut self.direct) {
            self.unwatch(&fd);
        }
    }

    /// Takes a directly polled port's descriptor out of the server's poll,
    /// before it is closed (a registration cannot be removed after).
    fn unwatch(&self, fd: &OwnedFd) {
        let _ = self.registry.deregister(&mut mio::unix::SourceFd(&fd.as_raw_fd()));
    }

    /// Polls every ring's port directly again, after [`Rings::unwatch_all`]
    /// and a handle given back (or rebuilt) whole. A port that cannot be
    /// is still reported by the handle ([`Rings::watch`] gives it back on
    /// failure), so nothing is lost but the shortcut.
    pub(crate) fn watch_again(&mut self) {
        let ports: Vec<(Port, ConnId)> = self.by_port.iter().map(|(p, c)| (*p, *c)).collect();
        for (port, conn) in ports {
            if let Err(e) = self.watch(port, conn) {
                tracing::warn!(port, conn, "polling the port through the handle: {e}");
            }
        }
    }

    /// Serves `pages` again for `domid` through `local`, a port the adopted
    /// handle still has bound (a live update), as connection `conn`;
    /// `domid` 0 is dom0's own ring, not indexed by domain.
    pub(crate) fn reattach(
        &mut self,
        domid: DomId,
        pages: MappedPages,
        local: Port,
        conn: ConnId,
        features: u32,
    ) -> io::Result<DomainRing> {
        let notifier = self.platform.events.notifier(local)?;
        self.watch(local, conn)?;
        if domid != 0 {
            self.by_domid.insert(domid, conn);
        }
        Ok(DomainRing::new(domid, local, pages, notifier, features))
    }

    /// Maps a domain's page and binds its port (the platform's half of
    /// INTRODUCE), and indexes the ring as connection `conn`.
    pub(crate) fn attach(
        &mut self,
        domid: DomId,
        gfn: u64,
        port: u32,
        conn: ConnId,
        features: u32,
    ) -> io::Result<DomainRing> {
        let pages = self.platform.memory.map_store_page(domid, gfn)?;
        // Xen 4.21+: a port Xen wrote in the page (dom0less domains) wins
        // over INTRODUCE's; only when it is non-zero.
        let port = match xenstore_ring::read_field(&pages, Field::EvtchnPort) {
            0 => port,
            filled => {
                tracing::debug!(domid, filled, introduced = port, "binding the event channel the ring page names");
                filled
            }
        };
        let (local, notifier) = self.bind(domid, port, conn)?;
        self.by_domid.insert(domid, conn);
        Ok(DomainRing::new(domid, local, pages, notifier, features))
    }

    /// Binds the port of dom0's own ring (`pages`, dom0's `port`) and
    /// indexes it as connection `conn` (not by domain: dom0 never dies).
    pub(crate) fn attach_dom0(
        &mut self,
        pages: MappedPages,
        port: Port,
        conn: ConnId,
        features: u32,
    ) -> io::Result<DomainRing> {
        let (local, notifier) = self.bind(0, port, conn)?;
        Ok(DomainRing::new(0, local, pages, notifier, features))
    }

    /// Binds `domid`'s `port` here and watches it for `conn`; returns our
    /// port and what signals it.
    fn bind(&mut self, domid: DomId, port: Port, conn: ConnId) -> io::Result<(Port, Notifier)> {
        let local = self.platform.events.bind_interdomain(domid, port)?;
        let watched = self.platform.events.notifier(local).and_then(|notifier| {
            self.watch(local, conn)?;
            Ok(notifier)
        });
        match watched {
            Ok(notifier) => Ok((local, notifier)),
            Err(e) => {
                self.forget(local);
                Err(e)
            }
        }
    }

    /// Stops polling `port` and unbinds it.
    fn forget(&mut self, port: Port) {
        self.by_port.remove(&port);
        if let Some(fd) = self.direct.remove(&port) {
            self.unwatch(&fd);
        }
        let _ = self.platform.events.unbind(port);
    }

    /// Stops serving a domain's ring: unbinds its port (the page is
    /// unmapped when `ring` is dropped).
    pub(crate) fn detach(&mut self, ring: &DomainRing) {
        self.by_domid.remove(&ring.domid);
        self.forget(ring.port);
    }
}

/// The response queue of a ring as a byte sink for an [`Outbox`]: one
/// ring write (and so one notification) per write of up to a ring-full.
struct RingSink<'a>(&'a mut MappedServer<MappedPages, RingNotify>);

impl Write for RingSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if bufs.iter().all(|b| b.is_empty()) {
            return Ok(0);
        }
        match self.0.write_vectored(bufs) {
            Ok(0) => Err(io::ErrorKind::WouldBlock.into()),
            Ok(n) => Ok(n),
            Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Whether the hypervisor has `domid`, for a request naming a domain the
/// store does not know (`xenstore_db::Exists`). Without a platform there is
/// no hypervisor to ask and every domain is taken to exist; when asking
/// fails, the domain is taken not to (a permission entry for it grants
/// nothing, as C treats a domain it cannot look up).
pub(crate) fn hypervisor_has(rings: Option<&mut Rings>, domid: DomId) -> bool {
    let Some(rings) = rings else { return true };
    match rings.platform.domains.state(domid) {
        Ok(state) => state.is_some(),
        Err(e) => {
            tracing::warn!(domid, "cannot ask the hypervisor whether the domain exists: {e}");
            false
        }
    }
}
