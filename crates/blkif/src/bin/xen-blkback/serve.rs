//! The backend's loop, with the ways it ends: a signal (`SIGTERM`,
//! `SIGINT`, and `SIGHUP`, which libxl sends its device model on `xl
//! destroy`), or whatever the caller checks each round.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use blkif::Blkback;
use xenbus::SyncConn;

/// Set when a stopping signal arrived.
#[derive(Debug, Clone)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    /// Catches `SIGTERM`, `SIGINT` and `SIGHUP` from now on.
    pub fn on_signals() -> Result<Stop> {
        let flag = Arc::new(AtomicBool::new(false));
        for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT, signal_hook::consts::SIGHUP] {
            signal_hook::flag::register(signal, Arc::clone(&flag)).context("installing a signal handler")?;
        }
        Ok(Stop(flag))
    }

    /// Whether a stopping signal arrived.
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Why serving ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// A signal.
    Signal,
    /// The caller's reason.
    Done(String),
}

/// Serves until a signal or until `done` (asked after every round)
/// gives a reason: a round, then, if it left no work, a wait of at most
/// `tick` for an event channel or a xenstore event. The signal is seen
/// within a tick.
pub fn run(
    backend: &mut Blkback<SyncConn>,
    stop: &Stop,
    tick: Duration,
    mut done: impl FnMut(&mut Blkback<SyncConn>) -> Result<Option<String>>,
) -> Result<Ended> {
    loop {
        backend.step().context("serving")?;
        if stop.requested() {
            return Ok(Ended::Signal);
        }
        if let Some(reason) = done(backend)? {
            return Ok(Ended::Done(reason));
        }
        if !backend.has_work() {
            backend.wait(tick).context("waiting for event channels and xenstore")?;
        }
    }
}
