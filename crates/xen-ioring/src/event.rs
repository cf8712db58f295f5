//! The notification hold-off rule of `io/ring.h`
//! (`RING_PUSH_*_AND_CHECK_NOTIFY`).
//!
//! A consumer about to sleep writes `event = cons + 1` ("wake me when the
//! producer index passes `cons`"). A producer that moved its index from
//! `old` to `new` notifies exactly when `event` lies in `(old, new]`, in
//! wrapping arithmetic: `new - event < new - old`. Any `event` a hostile
//! peer writes yields a boolean and nothing more.

#![forbid(unsafe_code)]

/// Whether a producer that published `old..new` must notify a consumer
/// that asked to be woken at `event`.
pub fn needs_notify(old: u32, new: u32, event: u32) -> bool {
    new.wrapping_sub(event) < new.wrapping_sub(old)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn event_inside_the_published_range_notifies() {
        assert!(needs_notify(0, 1, 1));
        assert!(needs_notify(4, 8, 5));
        assert!(needs_notify(4, 8, 8));
        assert!(needs_notify(u32::MAX - 1, 2, 0));
    }

    #[test]
    fn event_outside_the_published_range_does_not() {
        assert!(!needs_notify(4, 8, 4));
        assert!(!needs_notify(4, 8, 9));
        assert!(!needs_notify(4, 4, 4));
        assert!(!needs_notify(u32::MAX - 1, 2, 3));
    }
}
