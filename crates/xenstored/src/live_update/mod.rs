//! Live update: the daemon replaces its own binary while it runs, and
//! nobody notices but for a delay (`xenstore-control live-update`).
//!
//! The steps, as the C daemon takes them on one connection:
//! 1. `live-update -f FILE` names the new binary (it must exist and be
//!    executable) and begins a session; one session at a time.
//! 2. `live-update -c CMDLINE` (optional) gives the arguments it runs
//!    with; by default this daemon's own, plus `--live-update`.
//! 3. `live-update -s [-t SEC] [-F] [-v VERSION]` starts it. The reply
//!    waits: while transactions are open, up to `-t` seconds for them to
//!    end (checked every loop iteration, all other requests served as
//!    usual). Then the update happens, and the new daemon sends `OK`; or,
//!    if transactions are still open and `-F` was not given, the reply is
//!    the C daemon's refusal (which names the connections whose
//!    transactions ran longer than the timeout).
//!    With `-F` the update goes ahead with transactions open, which keep
//!    working in the new daemon (the C daemon drops them; the stream
//!    carries ours whole).
//! 4. `live-update -a` aborts a session before its start.
//!
//! A session ends with its connection.
//!
//! The hand-over itself is [`handover`] (the state as a migration stream
//! in `$XENSTORED_RUNDIR/state_dump`, the descriptors kept open across
//! `exec`) and [`restore`] (the new process picks both up).

pub(crate) mod extras;
pub mod handover;
pub mod restore;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tracing::info;
use xenstore_db::{ConnId, LiveUpdate};
use xenstore_wire::{Header, Op, Reply};

use crate::server::Server;

/// How often a waiting start looks at the open transactions again.
pub(crate) const RECHECK: Duration = Duration::from_millis(50);

/// An open live-update session.
#[derive(Debug)]
pub(crate) struct Session {
    /// The connection that began it: only it may continue it.
    pub(crate) conn: ConnId,
    /// The new binary.
    pub(crate) binary: PathBuf,
    /// Its arguments, if given (`-c`).
    pub(crate) cmdline: Option<String>,
    /// The start, once asked for.
    pub(crate) start: Option<Start>,
}

/// A `-s` waiting to happen.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Start {
    /// The request, answered when the update happens or fails.
    pub(crate) header: Header,
    pub(crate) force: bool,
    pub(crate) timeout: Duration,
    pub(crate) version: xenstore_migration::Version,
    pub(crate) at: Instant,
}

impl Server {
    /// One `live-update` step from `conn`: `Some(reply text)` now, or
    /// `None` for a start, whose reply comes later.
    pub(crate) fn live_update_step(&mut self, conn: ConnId, header: &Header, step: LiveUpdate) -> Option<Vec<u8>> {
        let result = match step {
            LiveUpdate::Binary(file) => self.live_update_binary(conn, file),
            LiveUpdate::CommandLine(cmdline) => {
                info!("live-update: cmdline {cmdline}");
                match self.live_update.as_mut().filter(|s| s.conn == conn) {
                    Some(session) => {
                        session.cmdline = Some(cmdline);
                        Ok(())
                    }
                    None => Err("Not in live-update session."),
                }
            }
            LiveUpdate::Start { timeout_secs, force, version } => {
                info!("live-update: start, force={}, to={timeout_secs}", u8::from(force));
                let version = match version {
                    1 => Some(xenstore_migration::Version::V1),
                    2 => Some(xenstore_migration::Version::V2),
                    _ => None,
                };
                match (self.live_update.as_mut().filter(|s| s.conn == conn), version) {
                    (None, _) => Err("Not in live-update session."),
                    (Some(_), None) => Err("Migration stream version not supported."),
                    (Some(session), Some(version)) => {
                        session.start = Some(Start {
                            header: *header,
                            force,
                            timeout: Duration::from_secs(u64::from(timeout_secs)),
                            version,
                            at: Instant::now(),
                        });
                        return None;
                    }
                }
            }
            LiveUpdate::Abort => {
                info!("live-update: abort");
                match self.live_update.take() {
                    Some(_) => Ok(()),
                    None => Err("No live-update session active."),
                }
            }
        };
        Some(match result {
            Ok(()) => b"OK".to_vec(),
            Err(text) => text.as_bytes().to_vec(),
        })
    }

    /// `-f FILE`: the C daemon's checks, then a new session.
    fn live_update_binary(&mut self, conn: ConnId, file: String) -> Result<(), &'static str> {
        use std::os::unix::fs::PermissionsExt;
        info!("live-update: binary {file}");
        let meta = std::fs::metadata(&file).map_err(|_| "File not accessible.")?;
        if meta.permissions().mode() & 0o111 == 0 {
            return Err("File not executable.");
        }
        if self.live_update.is_some() {
            return Err("live-update session already active.");
        }
        self.live_update = Some(Session { conn, binary: PathBuf::from(file), cmdline: None, start: None });
        Ok(())
    }

    /// Whether a start waits (the loop then wakes every [`RECHECK`]).
    pub(crate) fn live_update_waiting(&self) -> bool {
        self.live_update.as_ref().is_some_and(|s| s.start.is_some())
    }

    /// Once per loop iteration while a start waits: updates if it may,
    /// refuses if the time is up, else keeps waiting.
    pub(crate) fn live_update_due(&mut self) {
        let Some(start) = self.live_update.as_ref().and_then(|s| s.start) else { return };
        if self.gate.holds_any() {
            // A request the transaction gate held is handled first (it
            // is let through while a live update waits).
            return;
        }
        let now = Instant::now();
        let open: Vec<(ConnId, Duration)> = self
            .tx_started
            .iter()
            .filter(|(conn, _)| self.engine.transactions_of(**conn) > 0)
            .map(|(conn, at)| (*conn, now.saturating_duration_since(*at)))
            .collect();
        // Transactions the daemon did not see start (none, normally) count
        // as young.
        let untracked = self.engine.transaction_count() > 0 && open.is_empty();
        let long = open.iter().filter(|(_, age)| *age >= start.timeout).count();
        let allowed = self.engine.transaction_count() == 0 || (start.force && !untracked && long == open.len());
        if !allowed {
            if now < start.at + start.timeout {
                return;
            }
            if !start.force {
                let mut reason = String::new();
                for (conn, age) in open.iter().filter(|(_, age)| *age >= start.timeout) {
                    if reason.is_empty() {
                        reason.push_str("Domains with long running transactions:");
                    }
                    let domid = self.engine.caller(*conn).map_or(0, |c| c.domid);
                    reason.push_str(&format!("\nDomain {domid}: {} s", age.as_secs()));
                }
                if reason.is_empty() {
                    reason.push_str("Overlapping transactions");
                }
                self.live_update_answer(reason.into_bytes());
                return;
            }
        }
        let failure = self.hand_over(start);
        // Only a failure returns here: the new binary answers success.
        tracing::warn!("live-update failed: {failure}");
        self.live_update_answer(failure.into_bytes());
    }

    /// Answers the waiting start with `text` and ends the session.
    fn live_update_answer(&mut self, text: Vec<u8>) {
        let Some(session) = self.live_update.take() else { return };
        let Some(start) = session.start else { return };
        let mut bytes = Vec::new();
        Reply::Text(text).encode(Op::Control, start.header.req_id, start.header.tx_id, &mut bytes);
        if let Some(conn) = self.conns.get_mut(&session.conn) {
            conn.outbox.push_reply(bytes);
            self.dirty.insert(session.conn);
        }
    }

    /// A connection went (or its ring was reset): its session with it.
    pub(crate) fn live_update_forget(&mut self, conn: ConnId) {
        if self.live_update.as_ref().is_some_and(|s| s.conn == conn) {
            info!("live-update: session ended with its connection");
            self.live_update = None;
        }
        self.tx_started.remove(&conn);
    }

    /// Notes when a connection's transactions started, for the timeout
    /// rule (after each TRANSACTION_START or _END).
    pub(crate) fn note_transactions(&mut self, conn: ConnId, op: Option<Op>) {
        match op {
            Some(Op::TransactionStart) if self.engine.transactions_of(conn) > 0 => {
                self.tx_started.entry(conn).or_insert_with(Instant::now);
            }
            Some(Op::TransactionEnd) if self.engine.transactions_of(conn) == 0 => {
                self.tx_started.remove(&conn);
            }
            _ => {}
        }
    }
}
