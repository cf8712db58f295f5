//! The new daemon's half of a live update (`--live-update`, the C
//! daemon's `-U`): read the state the old one left in
//! `$XENSTORED_RUNDIR/state_dump`, take back the descriptors it names, and
//! serve every connection from where the old daemon left it.
//!
//! The stream is read whole and checked (`xenstore_migration::decode`
//! imports it into an engine before anything is used) before any
//! descriptor is taken: a corrupt or inconsistent state stops the new
//! daemon with a clear error and nothing half-loaded. The state file is
//! removed once read, as the C daemon does.
//!
//! A stream without our extension records (the C daemon updating into
//! ours, on Xen) is taken too: its event-channel descriptor is adopted
//! with the rings' ports, and VIRQ_DOM_EXC is bound afresh.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use mio::Interest;
use tracing::{info, warn};
use xen_platform::inherit::adopt_inherited;
use xen_platform::{Binding, BoundPort, EventChannelParts};
use xenstore_db::ConnId;
use xenstore_migration::ConnSpec;
use xenstore_wire::{Header, Op, HEADER_LEN};

use super::extras::DaemonExtras;
use super::handover::{ExecContext, STATE_DUMP};
use crate::conn::{Connection, Transport};
use crate::outbox::{Outbox, OutboxState};
use crate::rings::{Platform, Rings};
use crate::server::{Server, Settings, EVTCHN};
use crate::socket::{self, SocketConn};

/// What a live update handed over, read and checked, its descriptors
/// owned again.
#[derive(Debug)]
pub struct Restored {
    state: xenstore_migration::daemon::Restored,
    extras: DaemonExtras,
    listener: Option<OwnedFd>,
    sockets: HashMap<ConnId, OwnedFd>,
    events: Option<EventChannelParts>,
}

impl Restored {
    /// Reads and removes `rundir/state_dump`, and takes back the
    /// descriptors it names.
    pub fn load(rundir: &Path) -> Result<Restored> {
        let path = state_file(rundir);
        let bytes = std::fs::read(&path).with_context(|| format!("live update: reading {}", path.display()))?;
        let _ = std::fs::remove_file(&path);
        let state =
            xenstore_migration::daemon::restore(&bytes).with_context(|| format!("live update: {}", path.display()))?;
        let extras = match state.daemon.as_deref() {
            Some(body) => DaemonExtras::decode(body).map_err(|e| anyhow!("live update: {e}"))?,
            None => DaemonExtras { evtchn_fds: Vec::new(), ports: Vec::new(), virq_port: None },
        };
        // Every number once: two owners of one descriptor would close it
        // twice.
        let listener_fd = state.global.map_or(-1, |g| g.rw_socket_fd);
        let mut numbers: Vec<i32> = Vec::new();
        numbers.extend((listener_fd >= 0).then_some(listener_fd));
        numbers.extend(state.conns.iter().filter_map(|c| match c.spec {
            ConnSpec::Socket { fd } => Some(fd),
            ConnSpec::Ring { .. } => None,
        }));
        let foreign_evtchn = extras.evtchn_fds.is_empty().then(|| state.global.map_or(-1, |g| g.evtchn_fd));
        let evtchn_fds: Vec<i32> = match foreign_evtchn {
            Some(fd) if fd >= 0 => vec![fd],
            Some(_) => Vec::new(),
            None => extras.evtchn_fds.clone(),
        };
        numbers.extend(&evtchn_fds);
        let mut seen = HashSet::new();
        if let Some(dup) = numbers.iter().find(|n| !seen.insert(**n)) {
            bail!("live update: descriptor {dup} is named twice in the state");
        }
        let adopt = |fd: i32, what: &str| {
            adopt_inherited(fd).with_context(|| format!("live update: the {what} (descriptor {fd}) was not inherited"))
        };
        let listener = if listener_fd >= 0 { Some(adopt(listener_fd, "listening socket")?) } else { None };
        let mut sockets = HashMap::new();
        for c in &state.conns {
            if let ConnSpec::Socket { fd } = c.spec {
                sockets.insert(c.conn, adopt(fd, "socket of a connection")?);
            }
        }
        let events = if evtchn_fds.is_empty() {
            None
        } else {
            let fds = evtchn_fds.iter().map(|fd| adopt(*fd, "event-channel handle")).collect::<Result<Vec<_>>>()?;
            let ports = match foreign_evtchn {
                // The C daemon's stream: the rings' ports are what its
                // handle has bound.
                Some(_) => state
                    .conns
                    .iter()
                    .filter_map(|c| match c.spec {
                        ConnSpec::Ring { domid, evtchn, .. } => Some(BoundPort {
                            port: evtchn,
                            binding: Binding::Interdomain { remote: domid, remote_port: 0 },
                        }),
                        ConnSpec::Socket { .. } => None,
                    })
                    .collect(),
                None => extras
                    .ports
                    .iter()
                    .map(|p| p.to_bound().ok_or_else(|| anyhow!("live update: unknown binding {p:?}")))
                    .collect::<Result<Vec<_>>>()?,
            };
            Some(EventChannelParts { fds, ports })
        };
        Ok(Restored { state, extras, listener, sockets, events })
    }

    /// The event-channel handle's parts, for the platform to adopt.
    pub fn take_events(&mut self) -> Option<EventChannelParts> {
        self.events.take()
    }

    /// Whether the old daemon served domains (the new one must too).
    pub fn served_domains(&self) -> bool {
        self.events.is_some() || self.state.conns.iter().any(|c| matches!(c.spec, ConnSpec::Ring { .. }))
    }
}

/// Where the state is: the run directory's `state_dump` (ours, and the C
/// daemon's since Xen 4.18); else, from Xen 4.17's C daemon, its root
/// directory's (`$XENSTORED_ROOTDIR`, else `/var/lib/xenstored`).
fn state_file(rundir: &Path) -> std::path::PathBuf {
    let ours = rundir.join(STATE_DUMP);
    if ours.exists() {
        return ours;
    }
    let rootdir = std::env::var_os("XENSTORED_ROOTDIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| std::path::PathBuf::from("/var/lib/xenstored"), std::path::PathBuf::from);
    let older = rootdir.join(STATE_DUMP);
    if older.exists() {
        older
    } else {
        ours
    }
}

impl Server {
    /// The daemon a live update handed over to: the engine, the listening
    /// socket, every connection with its input and output, the rings
    /// through `platform` (whose event-channel handle was adopted from
    /// [`Restored::take_events`]). Signals are handled as by
    /// [`Server::bind`].
    pub fn restore(
        settings: Settings,
        exec: ExecContext,
        restored: Restored,
        platform: Option<Platform>,
    ) -> Result<Server> {
        let Restored { state, extras, listener, mut sockets, events: _ } = restored;
        let engine_conns = state.engine_conns;
        let engine = state.engine;
        let mut server = Server::new(engine.config().clone(), settings.limits, settings.trace_file.as_deref())?;
        server.engine = engine;
        server.exec = exec;
        match listener {
            Some(fd) => {
                let std_listener = std::os::unix::net::UnixListener::from(fd);
                std_listener.set_nonblocking(true)?;
                let mut listener = mio::net::UnixListener::from_std(std_listener);
                server.poll.registry().register(&mut listener, crate::server::LISTENER, Interest::READABLE)?;
                server.listener = Some((listener, settings.socket.clone()));
                // Clients that connected meanwhile wait in its backlog.
                server.accept_more = true;
            }
            None => server.listen(&settings.socket)?,
        }
        server.handle_signals()?;
        if let Some(mut platform) = platform {
            let virq_port = match extras.virq_port {
                Some(port) => port,
                // The C daemon's stream: it binds the virq again after
                // its own live updates; on a handle that still has it
                // bound that fails, and the port stays unknown: events on
                // a port no ring has are taken as the virq's.
                None => match platform.events.bind_virq(xen_platform::Virq::DomExc) {
                    Ok(port) => port,
                    Err(e) => {
                        warn!("live update: VIRQ_DOM_EXC not bound again ({e}): a port no ring has counts as it");
                        0
                    }
                },
            };
            let fd = platform.events.as_fd().as_raw_fd();
            server.poll.registry().register(&mut mio::unix::SourceFd(&fd), EVTCHN, Interest::READABLE)?;
            let registry = server.poll.registry().try_clone()?;
            server.rings = Some(Rings::adopted(platform, virq_port, registry));
        }
        let now = std::time::Instant::now();
        for c in state.conns {
            let outbox = unflatten(c.out_resp_len, &c.out_data)
                .with_context(|| format!("live update: the queued output of connection {}", c.conn))?;
            let transport = match c.spec {
                ConnSpec::Socket { .. } => {
                    let fd = sockets.remove(&c.conn).ok_or_else(|| anyhow!("connection {}: no socket", c.conn))?;
                    let std_stream = std::os::unix::net::UnixStream::from(fd);
                    std_stream.set_nonblocking(true)?;
                    let mut stream = mio::net::UnixStream::from_std(std_stream);
                    server.poll.registry().register(&mut stream, socket::token(c.conn), Interest::READABLE)?;
                    Transport::Socket(SocketConn::restored(stream, c.in_data))
                }
                ConnSpec::Ring { domid, evtchn, .. } => match server.reattach_ring(domid, evtchn, c.conn, &c.in_data) {
                    Ok(ring) => Transport::Ring(ring),
                    Err(e) => {
                        // The domain may have died meanwhile: the check
                        // of all domains below removes it if so.
                        warn!(domid, conn = c.conn, "live update: cannot serve the ring again: {e:#}");
                        continue;
                    }
                },
            };
            let mut conn = Connection::new(transport);
            conn.outbox = outbox;
            server.conns.insert(c.conn, conn);
            server.again.push(c.conn);
            server.dirty.insert(c.conn);
            if server.engine.transactions_of(c.conn) > 0 {
                server.tx_started.insert(c.conn, now);
            }
        }
        // Engine connections with no transport (none from our own
        // stream) have nobody to answer.
        for id in engine_conns {
            if !server.conns.contains_key(&id) && server.engine.caller(id).is_some() {
                server.engine.disconnect(id);
            }
        }
        info!(
            connections = server.conns.len(),
            nodes = server.engine.node_count(),
            transactions = server.engine.transaction_count(),
            "live update: state restored"
        );
        // Domains that died while the daemon was being replaced: the
        // VIRQ_DOM_EXC that said so may have come before the handle was
        // adopted (the C daemon's check_domains after lu_read_state).
        server.domain_exceptions();
        Ok(server)
    }

    /// Maps a ring's page again and serves it through the adopted port.
    fn reattach_ring(
        &mut self,
        domid: u16,
        port: xen_platform::Port,
        conn: ConnId,
        input: &[u8],
    ) -> Result<crate::rings::DomainRing> {
        let rings = self.rings.as_mut().ok_or_else(|| anyhow!("a ring connection, but no platform serves domains"))?;
        let (pages, features) = if domid == 0 {
            let (pages, _) = rings.platform.dom0_store.dom0_ring()?.ok_or_else(|| anyhow!("dom0's ring is gone"))?;
            (pages, self.engine.config().features)
        } else {
            let (gfn, _) = self
                .engine
                .introduced(domid)
                .ok_or_else(|| anyhow!("domain {domid} has a ring but no ring address"))?;
            (rings.platform.memory.map_store_page(domid, gfn)?, self.engine.domain_features(domid))
        };
        let mut ring = rings.reattach(domid, pages, port, conn, features)?;
        ring.restore_input(input).map_err(|e| anyhow!("its unhandled input: {e}"))?;
        // A notification the old daemon owed the guest (it had made room
        // in the request queue, say) was not sent before the exec: one
        // now, which a guest with nothing to wait for ignores.
        if let Err(e) = ring.announce() {
            warn!(domid, "live update: cannot notify the guest: {e}");
        }
        if domid != 0 {
            self.write_rate.add(domid, std::time::Instant::now());
        }
        Ok(ring)
    }
}

/// `CONNECTION_DATA`'s output as an outbox: the first `resp_len` octets
/// are the rest of a partly written message, then whole messages, each
/// a watch event or a reply by its operation.
fn unflatten(resp_len: u16, data: &[u8]) -> Result<Outbox> {
    let resp_len = usize::from(resp_len);
    let (partial, mut rest) = data.split_at_checked(resp_len).ok_or_else(|| anyhow!("out-resp-len past the data"))?;
    let mut messages: Vec<(Vec<u8>, bool)> = Vec::new();
    if !partial.is_empty() {
        messages.push((partial.to_vec(), false));
    }
    while !rest.is_empty() {
        let header_bytes: [u8; HEADER_LEN] = rest
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| anyhow!("a truncated message header"))?;
        let header = Header::decode(&header_bytes);
        let len = HEADER_LEN + usize::try_from(header.len).unwrap_or(usize::MAX);
        let (message, next) = rest.split_at_checked(len).ok_or_else(|| anyhow!("a truncated message"))?;
        messages.push((message.to_vec(), header.op == Op::WatchEvent as u32));
        rest = next;
    }
    Outbox::import(OutboxState { messages, front_sent: 0 }).map_err(|e| anyhow!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(op: Op, req_id: u32, payload: &[u8]) -> Vec<u8> {
        let header = Header { op: op as u32, req_id, tx_id: 0, len: u32::try_from(payload.len()).unwrap() };
        [&header.encode()[..], payload].concat()
    }

    #[test]
    fn output_with_a_partial_response_becomes_the_same_bytes_in_order() {
        let reply = message(Op::Read, 7, b"value");
        let event = message(Op::WatchEvent, 0, b"/a\0tok\0");
        let data = [&reply[10..], &event[..], &reply[..]].concat();
        let outbox = unflatten(u16::try_from(reply.len() - 10).unwrap(), &data).unwrap();
        let state = outbox.export();
        let flat: Vec<u8> = state.messages.iter().flat_map(|(b, _)| b.clone()).collect();
        assert_eq!(flat, data);
        assert_eq!(state.messages.iter().map(|(_, e)| *e).collect::<Vec<_>>(), [false, true, false]);
    }

    #[test]
    fn truncated_output_is_refused() {
        let reply = message(Op::Read, 7, b"value");
        assert!(unflatten(0, &reply[..reply.len() - 1]).is_err());
        assert!(unflatten(0, &reply[..5]).is_err());
        assert!(unflatten(100, &reply).is_err());
    }
}
