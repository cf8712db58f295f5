//! A per-second rate limit for log lines that others can cause (a guest
//! refused in a loop, a client cut off in a loop): at most N lines a
//! second, the count of those left out told with the next one written.
//!
//! One type for every such log: the daemon's refusal lines, its cut-off
//! lines and the platform's refused connections.

use std::time::{Duration, Instant};

/// The rate limit's state; the clock is passed in (`now`).
#[derive(Debug)]
pub struct RateLimit {
    per_second: u32,
    window: Option<Instant>,
    lines: u32,
    suppressed: u64,
}

impl RateLimit {
    /// At most `per_second` lines a second.
    pub const fn new(per_second: u32) -> RateLimit {
        RateLimit { per_second, window: None, lines: 0, suppressed: 0 }
    }

    /// Whether a line at `now` may be written; if so, how many were left
    /// out before it (to say in the line).
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        if self.window.is_none_or(|start| now.saturating_duration_since(start) >= Duration::from_secs(1)) {
            self.window = Some(now);
            self.lines = 0;
        }
        if self.lines >= self.per_second {
            self.suppressed += 1;
            return None;
        }
        self.lines += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn n_lines_a_second_then_the_rest_counted_into_the_next() {
        let mut limit = RateLimit::new(10);
        let start = Instant::now();
        let admitted = (0..25).filter(|_| limit.admit(start).is_some()).count();
        assert_eq!(admitted, 10);
        assert_eq!(limit.admit(start + Duration::from_millis(999)), None);
        assert_eq!(limit.admit(start + Duration::from_secs(1)), Some(16));
        assert_eq!(limit.admit(start + Duration::from_secs(1)), Some(0));
    }
}
