//! The old daemon's half of a live update: write the whole state as a
//! migration stream to `$XENSTORED_RUNDIR/state_dump` (where the C daemon
//! writes it), let the descriptors the new daemon needs survive `exec`,
//! and execute the new binary with `--live-update`.
//!
//! Handed over:
//! - the listening socket (so clients connecting meanwhile wait in its
//!   backlog rather than being refused) and every connected socket, by
//!   descriptor number (`GLOBAL_DATA`, `CONNECTION_DATA`);
//! - the event-channel handle, taken apart (`EventChannels::into_parts`):
//!   its descriptors keep every port bound, with events that arrive
//!   meanwhile pending;
//! - each ring's page by its domain's ring address: mappings do not
//!   survive `exec`, the new daemon maps the page again;
//! - what each connection had read and not handled, and its queued
//!   output, the start's `OK` appended for the connection that asked
//!   (the new daemon sends it, as the C daemon's `lu_write_response`);
//! - the engine's whole state, open transactions included.
//!
//! Everything is prepared before anything is given up, and a failure
//! after the event-channel handle was taken apart takes it back: a live
//! update that fails (the state cannot be written, the binary cannot be
//! executed) leaves the daemon serving as before, and the start's reply
//! says why.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;

use xen_platform::inherit::keep_across_exec;
use xen_platform::EventChannelParts;
use xenstore_migration::{ConnSpec, ConnTransport, DaemonState, Endian, GlobalData, Header};
use xenstore_wire::{Op, Reply};

use super::extras::{DaemonExtras, PortBinding};
use super::Start;
use crate::conn::Transport;
use crate::outbox::OutboxState;
use crate::rings::{Platform, Rings};
use crate::server::{Server, EVTCHN};

/// The state file's name in the run directory (the C daemon's).
pub(crate) const STATE_DUMP: &str = "state_dump";

/// The option the new binary is told to restore with (the C daemon's
/// `-U`, which ours also takes).
pub(crate) const LIVE_UPDATE_FLAG: &str = "--live-update";

impl Server {
    /// Hands over to the new binary. Returns only if that failed, with
    /// the reason for the start's reply; the daemon then serves on.
    pub(crate) fn hand_over(&mut self, start: Start) -> String {
        let Some(session) = self.live_update.as_ref() else { return "No live-update session active.".into() };
        let (binary, cmdline, asker) = (session.binary.clone(), session.cmdline.clone(), session.conn);
        let argv = match exec_args(&binary, cmdline.as_deref(), &self.exec.args) {
            Ok(argv) => argv,
            Err(e) => return e,
        };
        let mut state = match self.daemon_state(asker, &start) {
            Ok(state) => state,
            Err(e) => return e,
        };
        // From here on the event-channel handle is apart: every failure
        // takes it back.
        let events = match self.take_events() {
            Ok(events) => events,
            Err(e) => return format!("cannot hand over the event channels: {e}"),
        };
        let failure = self.write_and_exec(&mut state, events.as_ref(), start, &argv);
        if let Some(parts) = events {
            if let Err(e) = self.give_back_events(parts) {
                // The rings are served no more; the daemon cannot go on
                // half-working without saying so loudly.
                tracing::error!("live-update: cannot take the event-channel handle back: {e}; rings are not served");
            }
        }
        let _ = std::fs::remove_file(self.exec.rundir.join(STATE_DUMP));
        failure
    }

    /// Everything but the event channels, which are not touched yet.
    fn daemon_state(&mut self, asker: xenstore_db::ConnId, start: &Start) -> Result<DaemonState, String> {
        let engine = self.engine.export();
        let targets: std::collections::HashMap<u16, u16> =
            engine.domains.iter().filter_map(|d| d.target.map(|t| (d.domid, t))).collect();
        let mut conns = Vec::with_capacity(self.conns.len());
        let mut ids: Vec<_> = self.conns.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let Some(conn) = self.conns.get_mut(&id) else { continue };
            let (spec, in_data) = match &mut conn.transport {
                Transport::Socket(socket) => (ConnSpec::Socket { fd: socket.stream.as_raw_fd() }, socket.input()),
                Transport::Ring(ring) => (
                    ConnSpec::Ring {
                        domid: ring.domid,
                        tdomid: targets.get(&ring.domid).copied().unwrap_or(xenstore_migration::daemon::DOMID_INVALID),
                        evtchn: ring.port,
                    },
                    ring.input(),
                ),
            };
            if in_data.len() > usize::from(u16::MAX) {
                return Err(format!(
                    "connection {id} has {} octets of input not yet handled (at most 65535 can be handed over); try again",
                    in_data.len()
                ));
            }
            let (out_resp_len, mut out_data) = flatten(conn.outbox.export());
            if id == asker {
                Reply::Text(b"OK".to_vec()).encode(Op::Control, start.header.req_id, start.header.tx_id, &mut out_data);
            }
            conns.push(ConnTransport { conn: id, spec, in_data, out_resp_len, out_data });
        }
        let rw_socket_fd = self.listener_fd().map_or(-1, |fd| fd.as_raw_fd());
        Ok(DaemonState { engine, global: Some(GlobalData { rw_socket_fd, evtchn_fd: -1 }), conns, daemon: None })
    }

    /// Takes the event-channel handle apart (none when no domains are
    /// served). The rings keep their notifiers, which do not need it.
    fn take_events(&mut self) -> std::io::Result<Option<EventChannelParts>> {
        let Some(rings) = self.rings.take() else { return Ok(None) };
        let (events, detached) = Detached::split(rings);
        match events.into_parts() {
            Ok(parts) => {
                self.detached = Some(detached);
                Ok(Some(parts))
            }
            // The handle comes back whole, its ports bound (and still
            // polled): the rings are served on as before.
            Err(xen_platform::IntoPartsError { handle, error }) => {
                self.rings = Some(detached.join(handle));
                Err(error)
            }
        }
    }

    /// Rebuilds the handle from its parts and serves the rings again.
    fn give_back_events(&mut self, parts: EventChannelParts) -> std::io::Result<()> {
        let Some(detached) = self.detached.take() else { return Ok(()) };
        let events = (detached.adopt_events)(parts)?;
        let fd = events.as_fd().as_raw_fd();
        self.rings = Some(detached.join(events));
        self.poll.registry().register(&mut mio::unix::SourceFd(&fd), EVTCHN, mio::Interest::READABLE)?;
        // Events that came while it was apart are pending on it.
        self.event_channels();
        Ok(())
    }

    /// Writes the stream and executes the new binary; returns only on
    /// failure, restoring close-on-exec on what it cleared.
    fn write_and_exec(
        &mut self,
        state: &mut DaemonState,
        events: Option<&EventChannelParts>,
        start: Start,
        argv: &[CString],
    ) -> String {
        let mut extras = DaemonExtras { evtchn_fds: Vec::new(), ports: Vec::new(), virq_port: None };
        if let Some(parts) = events {
            extras.evtchn_fds = parts.fds.iter().map(AsRawFd::as_raw_fd).collect();
            for bound in &parts.ports {
                match PortBinding::from_bound(*bound) {
                    Some(p) => extras.ports.push(p),
                    None => {
                        return format!("event channel port {} has a binding that cannot be handed over", bound.port)
                    }
                }
            }
            extras.virq_port = self.detached.as_ref().map(|d| d.virq_port);
            if let (Some(global), Some(first)) = (state.global.as_mut(), extras.evtchn_fds.first()) {
                global.evtchn_fd = *first;
            }
        }
        state.daemon = Some(extras.encode());
        let header = Header { version: start.version, endian: Endian::Little };
        let stream = match xenstore_migration::to_stream(state).and_then(|s| for_version(s, start.version)) {
            Ok(stream) => stream,
            Err(e) => return format!("Dump state error: {e}"),
        };
        let bytes = match xenstore_migration::write_with(&stream, header) {
            Ok(bytes) => bytes,
            Err(e) => return format!("Dump state error: {e}"),
        };
        let path = self.exec.rundir.join(STATE_DUMP);
        if let Err(e) = write_private(&path, &bytes) {
            return format!("Dump state open error: {}: {e}", path.display());
        }
        // The descriptors the stream names, borrowed from their owners.
        let mut kept: Vec<BorrowedFd<'_>> = Vec::new();
        if let Some(listener) = self.listener_fd() {
            kept.push(listener);
        }
        for conn in self.conns.values() {
            if let Transport::Socket(socket) = &conn.transport {
                kept.push(socket.stream.as_fd());
            }
        }
        if let Some(parts) = events {
            kept.extend(parts.fds.iter().map(AsFd::as_fd));
        }
        for fd in &kept {
            if let Err(e) = keep_across_exec(*fd) {
                restore_cloexec(&kept);
                return format!("cannot keep descriptor {} open across exec: {e}", fd.as_raw_fd());
            }
        }
        tracing::info!(binary = ?argv.first(), bytes = bytes.len(), "live-update: executing the new binary");
        if let Err(e) = nix::unistd::chdir(&self.exec.cwd) {
            tracing::warn!("live-update: cannot change back to {}: {e}", self.exec.cwd.display());
        }
        let error = match argv.first() {
            Some(program) => nix::unistd::execv(program, argv).err(),
            None => None,
        };
        let _ = nix::unistd::chdir("/");
        restore_cloexec(&kept);
        match error {
            Some(e) => format!("Error activating new binary: {e}"),
            None => "Error activating new binary.".into(),
        }
    }
}

/// What the rings are while their event-channel handle is apart.
pub(crate) struct Detached {
    memory: Box<dyn xen_platform::ForeignMemory>,
    domains: Box<dyn xen_platform::DomainStates>,
    dom0_store: Box<dyn xen_platform::Dom0Store>,
    adopt_events: crate::rings::AdoptEvents,
    virq_port: xen_platform::Port,
    by_port: rustc_hash::FxHashMap<xen_platform::Port, xenstore_db::ConnId>,
    by_domid: rustc_hash::FxHashMap<xen_platform::DomId, xenstore_db::ConnId>,
    registry: mio::Registry,
    pending: Vec<xen_platform::Port>,
}

impl Detached {
    /// The rings without their event-channel handle, and the handle.
    /// Directly polled ports leave the server's poll first: taking the
    /// handle apart closes their descriptors.
    fn split(mut rings: Rings) -> (Box<dyn xen_platform::EventChannels>, Detached) {
        rings.unwatch_all();
        // A failed update's rings look at every domain again: a change
        // query may have been answered while the handle was apart.
        let Rings { platform, virq_port, by_port, by_domid, registry, direct: _, pending, fresh_look: _ } = rings;
        let Platform { events, memory, domains, dom0_store, adopt_events } = platform;
        (
            events,
            Detached { memory, domains, dom0_store, adopt_events, virq_port, by_port, by_domid, registry, pending },
        )
    }

    /// The rings again, with `events` as their handle, their ports polled
    /// directly again where they can be.
    fn join(self, events: Box<dyn xen_platform::EventChannels>) -> Rings {
        let Detached { memory, domains, dom0_store, adopt_events, virq_port, by_port, by_domid, registry, pending } =
            self;
        let platform = Platform { events, memory, domains, dom0_store, adopt_events };
        let mut rings = Rings {
            platform,
            virq_port,
            by_port,
            by_domid,
            registry,
            direct: rustc_hash::FxHashMap::default(),
            pending,
            fresh_look: true,
        };
        rings.watch_again();
        rings
    }
}

impl std::fmt::Debug for Detached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detached").field("virq_port", &self.virq_port).finish_non_exhaustive()
    }
}

/// Where and how the daemon runs, for executing a new binary.
#[derive(Debug, Clone, Default)]
pub struct ExecContext {
    /// The run directory: `$XENSTORED_RUNDIR`, else the socket's.
    pub rundir: std::path::PathBuf,
    /// The directory the daemon was started in (relative paths in its
    /// arguments are relative to it).
    pub cwd: std::path::PathBuf,
    /// Its arguments, without the program name.
    pub args: Vec<std::ffi::OsString>,
}

/// The stream as `version` can carry it: version 1 has no
/// `WATCH_DATA_EXTENDED`, so a watch without a depth limit is written as
/// `WATCH_DATA` (as the C daemon writes version 1), and one with a limit
/// cannot be (the update is refused rather than losing it); nor has it
/// `DOMAIN_DATA`'s features, which are written 0 (our extension record
/// keeps them).
fn for_version(
    stream: xenstore_migration::Stream,
    version: xenstore_migration::Version,
) -> Result<xenstore_migration::Stream, xenstore_migration::Error> {
    use xenstore_migration::{Record, Version, DEPTH_UNLIMITED};
    if version == Version::V2 {
        return Ok(stream);
    }
    let records = stream
        .into_records()
        .into_iter()
        .map(|r| match r {
            Record::Watch(mut w) if w.depth == Some(DEPTH_UNLIMITED) => {
                w.depth = None;
                Record::Watch(w)
            }
            Record::Domain(mut d) => {
                d.features = 0;
                Record::Domain(d)
            }
            other => other,
        })
        .collect();
    xenstore_migration::Stream::new(records)
}

/// The new binary's argument vector: the binary, then `-c`'s words or
/// this daemon's own arguments, then [`LIVE_UPDATE_FLAG`] (once).
fn exec_args(
    binary: &std::path::Path,
    cmdline: Option<&str>,
    own: &[std::ffi::OsString],
) -> Result<Vec<CString>, String> {
    let cstring = |b: &[u8]| CString::new(b).map_err(|_| "Allocation failure.".to_owned());
    let mut argv = vec![cstring(binary.as_os_str().as_bytes())?];
    match cmdline {
        Some(line) => {
            for word in line.split_whitespace() {
                argv.push(cstring(word.as_bytes())?);
            }
        }
        None => {
            for arg in own {
                argv.push(cstring(arg.as_bytes())?);
            }
        }
    }
    let flag = cstring(LIVE_UPDATE_FLAG.as_bytes())?;
    let already = argv.iter().skip(1).any(|a| a == &flag || a.as_bytes() == b"-U");
    if !already {
        argv.push(flag);
    }
    Ok(argv)
}

/// An outbox as `CONNECTION_DATA`'s output: the unwritten rest of a
/// partly written first message (its length is `out-resp-len`), then the
/// whole messages.
fn flatten(state: OutboxState) -> (u16, Vec<u8>) {
    let mut out = Vec::new();
    let mut resp_len = 0;
    for (i, (bytes, _event)) in state.messages.iter().enumerate() {
        if i == 0 && state.front_sent > 0 {
            let rest = bytes.get(state.front_sent..).unwrap_or_default();
            resp_len = u16::try_from(rest.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(rest);
        } else {
            out.extend_from_slice(bytes);
        }
    }
    (resp_len, out)
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(bytes)
}

fn restore_cloexec(fds: &[BorrowedFd<'_>]) {
    for fd in fds {
        let _ = xen_platform::inherit::close_on_exec(*fd);
    }
}
