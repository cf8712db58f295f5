//! The toolstack's wait for a new device's backend: libxl waits for the
//! backend's `state` to read InitWait (`LIBXL_INIT_TIMEOUT`, 10 s) before
//! it runs hotplug scripts.
//!
//! We accept InitWait **or a later working state** (Initialised,
//! Connected, Reconfiguring, Reconfigured): libxl can insist on exactly
//! InitWait because it registers its watch before the backend can move,
//! and a hosted backend with its frontend already running may well be
//! Connected by the time we read. Closing or Closed means the backend
//! gave up on the device (its probe failed): that is reported at once,
//! with what the backend wrote to its error node, instead of waiting out
//! the timeout.

use std::time::{Duration, Instant};

use xenbus::switch::read_state;
use xenbus::{paths, Conn, XenbusState};

/// How a wait for the backend ended, short of success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    /// The backend is still in `last` (`None`: the node is unreadable)
    /// after `waited`.
    Timeout {
        /// The last state seen.
        last: Option<XenbusState>,
        /// How long we waited.
        waited: Duration,
    },
    /// The backend closed the device; `error` is its error node's text, if
    /// it wrote one.
    Closed {
        /// Closing or Closed.
        state: XenbusState,
        /// `error/<device>/error` in the backend's home.
        error: Option<String>,
    },
}

/// Whether `state` is a backend that took the device: InitWait or later,
/// short of closing.
pub fn is_up(state: XenbusState) -> bool {
    use XenbusState::*;
    matches!(state, InitWait | Initialised | Connected | Reconfiguring | Reconfigured)
}

/// Waits at most `timeout` for the backend at `be_dir` (in domain `be`) to
/// take the device; returns the state it reached.
pub fn backend_up(conn: &dyn Conn, be: u16, be_dir: &str, timeout: Duration) -> Result<XenbusState, NotReady> {
    let node = paths::child(be_dir, "state");
    let token = format!("xsim-attach:{node}");
    // Without the watch we would still see the state, by the deadline: a
    // failed watch costs only promptness.
    let watching = conn.watch(&node, &token).is_ok();
    let start = Instant::now();
    let outcome = loop {
        let last = read_state(conn.store(), be_dir).ok();
        match last {
            Some(state) if is_up(state) => break Ok(state),
            Some(state @ (XenbusState::Closing | XenbusState::Closed)) => {
                let error_node = paths::error_node(&paths::home(be), be_dir);
                let error = conn.store().read(&error_node).ok().map(|v| String::from_utf8_lossy(&v).into_owned());
                break Err(NotReady::Closed { state, error });
            }
            _ => {}
        }
        let waited = start.elapsed();
        let Some(left) = timeout.checked_sub(waited).filter(|left| !left.is_zero()) else {
            break Err(NotReady::Timeout { last, waited });
        };
        let poll = if watching { left } else { left.min(Duration::from_millis(20)) };
        let _ = conn.next_event(Some(poll));
    };
    if watching {
        let _ = conn.unwatch(&node, &token);
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initwait_and_the_working_states_after_it_count_as_up() {
        let up: Vec<XenbusState> = XenbusState::ALL.into_iter().filter(|&s| is_up(s)).collect();
        use XenbusState::*;
        assert_eq!(up, [InitWait, Initialised, Connected, Reconfiguring, Reconfigured]);
    }
}
