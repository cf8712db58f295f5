//! What the engine asks its driver to do outside the store.
//!
//! The engine decides every protocol rule, including the ones whose effect
//! lies outside the store: INTRODUCE means "map this domain's ring page and
//! bind its event channel", RELEASE and domain removal mean "stop serving
//! that ring", and some CONTROL commands act on the daemon itself (its log,
//! its memory report). It cannot do those things (no I/O), so it returns
//! them as data in [`crate::Outcome::effects`]; the driver carries them out
//! before it sends the outcome's events and reply, and reports a failure
//! back once ([`crate::Engine::effect_failed`]), which undoes the request.
//! The engine never calls back into the driver.

use xenstore_wire::DomId;

use crate::ConnId;

/// One thing the driver must do for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Effect {
    /// INTRODUCE was accepted: map the domain's ring page (`gfn`), bind its
    /// event channel (`port`), advertise `features` on the page, and serve
    /// the ring as connection `conn` (already registered as the domain, an
    /// unprivileged caller). If the page cannot be mapped or the channel
    /// bound, call [`crate::Engine::effect_failed`] with this effect and
    /// send the outcome it returns instead.
    AttachRing {
        /// The domain.
        domid: DomId,
        /// The guest frame of its ring page.
        gfn: u64,
        /// Its unbound event-channel port.
        port: u32,
        /// The connection its ring is served as.
        conn: ConnId,
        /// The ring feature bits to advertise.
        features: u32,
        /// What undoing the INTRODUCE takes, if this fails.
        rollback: Rollback,
    },
    /// The domain is gone (RELEASE, or it died): stop serving its ring,
    /// unbind the channel and unmap the page. The engine has already
    /// forgotten `conn` (its watches and transactions are gone).
    DetachRing {
        /// The domain.
        domid: DomId,
        /// The connection its ring was served as.
        conn: ConnId,
    },
    /// A CONTROL command that acts on the daemon, not the store: the
    /// driver runs it and replies with its answer in place of the
    /// outcome's reply.
    Daemon(DaemonCommand),
}

/// What the engine needs to undo an INTRODUCE whose ring could not be
/// attached, carried in the effect so that the engine keeps no hidden
/// "last request" state; the driver only hands it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rollback {
    /// The INTRODUCE made the domain known (it was not before).
    pub(crate) made_known: bool,
    /// The generation before the INTRODUCE.
    pub(crate) gen_before: u64,
}

/// The CONTROL commands only the daemon can carry out (`xenstore-control`,
/// with the C daemon's names).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DaemonCommand {
    /// `log on|off`: turn the trace on or off.
    Log(bool),
    /// `logfile <file>`: trace to this file from now on.
    LogFile(String),
    /// `print <string>`: write a line to the log and the trace.
    Print(String),
    /// `memreport [<file>]`: report memory use, in the reply or to a file.
    MemReport(Option<String>),
    /// `stats [<first domid>]`: the per-domain statistics (`xenstore top`
    /// reads them), from that domain on, as many as fit in one reply.
    Stats(DomId),
    /// `live-update ...`: one step of replacing the daemon's binary while
    /// it runs (see [`LiveUpdate`]).
    LiveUpdate(LiveUpdate),
}

/// The steps of a live update, as the C daemon takes them on one
/// connection (`xenstore-control live-update` sends them in this order):
/// the new binary, optionally its command line, then the start, which the
/// daemon answers once the update happened (the new daemon sends `OK`) or
/// failed; abort cancels a session at any point before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveUpdate {
    /// `-f <file>`: the new binary; begins a session.
    Binary(String),
    /// `-c <cmdline>`: the arguments the new binary runs with (split at
    /// white space), instead of this daemon's own.
    CommandLine(String),
    /// `-s [-t <seconds>] [-F] [-v <version>]`: start.
    Start {
        /// How long to wait for open transactions to end (C's default 0
        /// here; the tool sends 60).
        timeout_secs: u32,
        /// Update even if transactions are still open after the timeout.
        force: bool,
        /// The migration stream version to write (1 or 2).
        version: u32,
    },
    /// `-a`: abort the session.
    Abort,
}
