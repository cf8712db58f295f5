//! Progress on stderr: a full run fills stores to a million nodes and
//! repeats every workload, which takes many minutes, and a user seeing
//! nothing cannot tell a slow step from a stuck one.
//!
//! Progress goes to stderr so that the tables and JSON on stdout stay
//! clean, and `--quiet` silences it (failures are still said). A step
//! prints one line saying what it does; a long step (a store fill, many
//! domains created) also keeps a [`Counter`], redrawn in place (`\r`) on
//! a terminal and printed as a line every few seconds otherwise (a log
//! file should not fill with redraws). Updating a counter costs a clock
//! read; text is formatted only when a line is due.

use std::fmt::Display;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set once from `--quiet`; read by every step (a global, so that the
/// workloads' signatures need not carry it).
static QUIET: AtomicBool = AtomicBool::new(false);

/// How often a counter redraws on a terminal.
const TERMINAL_EVERY: Duration = Duration::from_millis(250);
/// How often a counter prints a line when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Silences progress (`--quiet`).
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Says what the run does next.
pub fn step(what: impl Display) {
    if !quiet() {
        eprintln!("xs-bench: {what}");
    }
}

/// A count toward a total during a long step.
#[derive(Debug)]
pub struct Counter {
    what: String,
    total: usize,
    unit: &'static str,
    began: Instant,
    /// When the next line or redraw is due.
    next: Instant,
    /// None when quiet; else whether stderr is a terminal.
    terminal: Option<bool>,
    /// Something has been shown (so the end is shown too).
    shown: bool,
    /// A terminal line is drawn without its newline.
    open: bool,
}

impl Counter {
    /// A counter for `what`, up to `total` `unit`s; shows nothing until
    /// the step has taken a while.
    pub fn new(what: impl Into<String>, total: usize, unit: &'static str) -> Counter {
        let terminal = (!quiet()).then(|| std::io::stderr().is_terminal());
        let began = Instant::now();
        let next = began + if terminal == Some(true) { TERMINAL_EVERY } else { LOG_EVERY };
        Counter { what: what.into(), total, unit, began, next, terminal, shown: false, open: false }
    }

    /// `done` of the total so far: shown if a line is due.
    pub fn update(&mut self, done: usize) {
        if self.terminal.is_none() {
            return;
        }
        let now = Instant::now();
        if now >= self.next {
            self.next = now + if self.terminal == Some(true) { TERMINAL_EVERY } else { LOG_EVERY };
            self.show(done, now);
        }
    }

    /// The step ended at `done`: its last count is shown if any was.
    pub fn finish(mut self, done: usize) {
        if self.shown {
            self.show(done, Instant::now());
        }
    }

    fn show(&mut self, done: usize, now: Instant) {
        let percent = done.saturating_mul(100) / self.total.max(1);
        let secs = now.duration_since(self.began).as_secs();
        let line = format!("  {}: {done} of {} {} ({percent}%), {secs} s", self.what, self.total, self.unit);
        if self.terminal == Some(true) {
            // Clear what a longer earlier line left.
            eprint!("\r{line}\x1b[K");
            self.open = true;
        } else {
            eprintln!("{line}");
        }
        self.shown = true;
    }
}

impl Drop for Counter {
    /// Ends a line drawn in place, so that what follows (the next step,
    /// an error) starts on its own line.
    fn drop(&mut self) {
        if self.open {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quick_step_shows_no_count() {
        let mut c = Counter::new("filling", 100, "nodes");
        c.update(50);
        assert!(!c.shown);
        c.finish(100);
    }

    #[test]
    fn a_count_is_shown_when_due_and_its_end_after_it() {
        let mut c = Counter::new("filling", 100, "nodes");
        c.next = Instant::now();
        c.update(50);
        assert!(c.shown);
        assert!(c.next > Instant::now(), "the next line waits");
        c.finish(100);
    }
}
