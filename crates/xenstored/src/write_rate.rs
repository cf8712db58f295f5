//! The write rate limit (XSA-206): while transactions are open, a guest
//! that writes fast is read more slowly, so that it cannot make the
//! others' transactions fail for ever.
//!
//! A transaction's commit fails with EAGAIN when a node it read changed
//! meanwhile. The conflict rule is per node (as C's since XSA-206), but a
//! guest that rewrites, in a loop, a node that dom0's transactions read
//! (its own `device/…/state`, say) still makes every one of them fail.
//! The C daemon's answer, kept here with its figures: each unprivileged
//! domain holds write credit, spent one unit per node written outside a
//! transaction and one per commit, but only while someone else has a
//! transaction open (a write conflicts with nothing otherwise). Credit
//! comes back at [`RATE`] writes a second shared among the domains, each
//! holding at most [`DOMAIN_BURST`]; what a domain cannot hold goes to a
//! reserve of at most [`GLOBAL_BURST`], from which domains in debt are
//! paid first and new domains get their first burst. A domain in debt is
//! not read until its credit is back to zero. Dom0 and privileged domains
//! (and every socket client) are never limited.
//!
//! The arithmetic is C's `wrl_*` in fixed point ([`FACTOR`] per write),
//! with the clock passed in (`now`), so that it is tested without one.
//! Logging as C's: one line when a domain is first limited, one when
//! limiting starts again after [`LOG_EVERY`] without, one when it has not
//! been in force for that long.

use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use tracing::warn;
use xenstore_db::ConnId;
use xenstore_wire::{DomId, Op};

use crate::server::Server;

/// Fixed-point units per write.
const FACTOR: i64 = 1000;
/// Credit restored per second, shared among the domains: 200 writes.
const RATE: i64 = 200 * FACTOR;
/// Credit one domain may hold: 10 writes.
const DOMAIN_BURST: i64 = 10 * FACTOR;
/// Credit the reserve may hold: 1000 writes.
const GLOBAL_BURST: i64 = 1000 * FACTOR;
/// How far the reserve may go into debt to give new domains their first
/// burst: five domains' worth.
const NEW_DOMAINS_BURST: i64 = 5 * DOMAIN_BURST;
/// The bound that keeps the arithmetic from overflowing.
const CREDIT_MAX: i64 = 1_000_000_000;
/// How long limiting must be out of force before it is said so.
const LOG_EVERY: Duration = Duration::from_secs(120);

/// One domain's credit.
#[derive(Debug)]
struct Credit {
    credit: i64,
    /// When it was last brought up to date.
    stamp: Instant,
    /// Whether its first limiting was logged.
    logged: bool,
}

/// The credit of every unprivileged domain served over a ring, and the
/// reserve.
#[derive(Debug, Default)]
pub(crate) struct WriteRate {
    domains: FxHashMap<DomId, Credit>,
    reserve: i64,
    /// When limiting was last in force (for the log lines).
    last_limited: Option<Instant>,
}

/// Moves as much as possible from `debit` to `credit` while `debit` stays
/// at or above `floor` and `credit` at or below `ceiling` (C's
/// `wrl_xfer_credit`).
fn transfer(debit: &mut i64, floor: i64, credit: &mut i64, ceiling: i64) {
    let amount = (*debit - floor).min(ceiling - *credit);
    if amount > 0 {
        *debit -= amount;
        *credit += amount;
    }
}

impl WriteRate {
    /// A domain starts being served: its first burst comes from the
    /// reserve (which may go into debt for the first few domains).
    pub(crate) fn add(&mut self, domid: DomId, now: Instant) {
        let mut credit = 0;
        transfer(&mut self.reserve, -NEW_DOMAINS_BURST, &mut credit, DOMAIN_BURST);
        if let Some(old) = self.domains.insert(domid, Credit { credit, stamp: now, logged: false }) {
            // Served again without having gone: keep the old debt.
            let credit = old.credit.min(credit);
            if let Some(d) = self.domains.get_mut(&domid) {
                d.credit = credit;
            }
        }
    }

    /// A domain is no longer served: what credit it had goes back to the
    /// reserve.
    pub(crate) fn remove(&mut self, domid: DomId) {
        if let Some(mut gone) = self.domains.remove(&domid) {
            transfer(&mut gone.credit, 0, &mut self.reserve, DOMAIN_BURST);
        }
    }

    /// Brings a domain's credit up to `now` (C's `wrl_credit_update`):
    /// whole milliseconds of the rate, shared among the domains; debt paid
    /// from the reserve; anything above the domain's burst to the reserve.
    fn update(&mut self, domid: DomId, now: Instant) {
        let domains = i64::try_from(self.domains.len()).unwrap_or(i64::MAX).max(1);
        let Some(d) = self.domains.get_mut(&domid) else { return };
        let msec =
            i64::try_from(now.saturating_duration_since(d.stamp).as_millis()).unwrap_or(i64::MAX).min(CREDIT_MAX);
        d.credit = (d.credit + msec * RATE / (domains * 1000)).min(CREDIT_MAX);
        // Only whole milliseconds are counted; the rest stays for next time.
        d.stamp += Duration::from_millis(u64::try_from(msec).unwrap_or(0));
        transfer(&mut self.reserve, 0, &mut d.credit, 0);
        let mut surplus = 0;
        transfer(&mut d.credit, DOMAIN_BURST, &mut surplus, CREDIT_MAX);
        transfer(&mut surplus, 0, &mut self.reserve, GLOBAL_BURST);
    }

    /// Charges `writes` writes to the domain (nothing for a domain not
    /// tracked: dom0, privileged or socket callers).
    pub(crate) fn debit(&mut self, domid: DomId, writes: usize, now: Instant) {
        if !self.domains.contains_key(&domid) {
            return;
        }
        self.update(domid, now);
        let last = self.last_limited;
        let Some(d) = self.domains.get_mut(&domid) else { return };
        d.credit -= i64::try_from(writes).unwrap_or(i64::MAX).saturating_mul(FACTOR).min(CREDIT_MAX);
        if d.credit < 0 {
            if !d.logged {
                d.logged = true;
                warn!(domid, "write rate limit: domain {domid} is affected");
            } else if last.is_none() {
                warn!("write rate limit: rate limiting restarts");
            }
            self.last_limited = Some(now);
        }
    }

    /// How long the domain must wait before it is read again; `None` when
    /// it may be read now.
    pub(crate) fn wait(&mut self, domid: DomId, now: Instant) -> Option<Duration> {
        self.update(domid, now);
        let credit = self.domains.get(&domid)?.credit;
        if credit >= 0 {
            return None;
        }
        // The time until the shared rate has paid the debt, rounded up to
        // a whole millisecond (credit is only restored in those).
        let domains = u64::try_from(self.domains.len()).unwrap_or(u64::MAX);
        let debt = u64::try_from(-credit).unwrap_or(0);
        let rate = u64::try_from(RATE).unwrap_or(1);
        Some(Duration::from_millis((debt * 1000 * domains).div_ceil(rate).max(1)))
    }

    /// Says once when limiting has been out of force for [`LOG_EVERY`]
    /// (C's `wrl_log_periodic`).
    pub(crate) fn log_periodic(&mut self, now: Instant) {
        if self.last_limited.is_some_and(|t| now.saturating_duration_since(t) > LOG_EVERY) {
            warn!("write rate limit: not in force recently");
            self.last_limited = None;
        }
    }

    /// The domain's credit, in writes (for tests and statistics).
    #[cfg(test)]
    fn credit(&self, domid: DomId) -> Option<i64> {
        self.domains.get(&domid).map(|d| d.credit / FACTOR)
    }
}

impl Server {
    /// Charges the caller of a request that changed the store: one write
    /// per node written outside a transaction while some transaction is
    /// open, one per commit while another is (C's
    /// `wrl_apply_debit_direct` and `wrl_apply_debit_trans_commit`).
    pub(crate) fn charge_writes(&mut self, id: ConnId, tx_id: u32, op: u32, applied: usize) {
        if applied == 0 {
            return;
        }
        let Some(caller) = self.engine.caller(id).filter(|c| !c.privileged) else { return };
        // After the request: a commit's own transaction is gone already.
        let open = self.engine.transaction_count();
        let writes = if op == Op::TransactionEnd as u32 {
            usize::from(open > 0)
        } else if tx_id == 0 && open > 0 {
            applied
        } else {
            0
        };
        if writes > 0 {
            self.write_rate.debit(caller.domid, writes, Instant::now());
        }
    }

    /// Whether ring `id` may be read now under the write rate limit; when
    /// not, it is held until its credit is back (the loop wakes for it).
    pub(crate) fn write_rate_allows_reading(&mut self, id: ConnId) -> bool {
        let Some(domid) = self.conns.get(&id).and_then(|c| c.domid()) else { return true };
        let now = Instant::now();
        match self.write_rate.wait(domid, now) {
            None => true,
            Some(wait) => {
                if !self.rate_held.iter().any(|&(_, held)| held == id) {
                    self.rate_held.push((now + wait, id));
                }
                false
            }
        }
    }

    /// Serves again the held rings whose wait is over.
    pub(crate) fn recheck_rate_held(&mut self) {
        if self.rate_held.is_empty() {
            return;
        }
        let now = Instant::now();
        self.write_rate.log_periodic(now);
        let mut i = 0;
        while let Some(&(until, id)) = self.rate_held.get(i) {
            if until <= now {
                self.rate_held.swap_remove(i);
                if self.conns.contains_key(&id) {
                    self.again.push(id);
                }
            } else {
                i += 1;
            }
        }
    }

    /// How long until the first held ring may be read.
    pub(crate) fn rate_wakeup(&self) -> Option<Duration> {
        let first = self.rate_held.iter().map(|&(until, _)| until).min()?;
        Some(first.saturating_duration_since(Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_new_domain_has_a_burst_of_ten_and_then_waits() {
        let t0 = Instant::now();
        let mut rate = WriteRate::default();
        rate.add(1, t0);
        assert_eq!(rate.credit(1), Some(10));
        rate.debit(1, 10, t0);
        assert_eq!(rate.wait(1, t0), None, "ten writes are within the burst");
        rate.debit(1, 1, t0);
        // One write in debt, 200 writes a second for one domain: 5 ms.
        assert_eq!(rate.wait(1, t0), Some(ms(5)));
        assert_eq!(rate.wait(1, t0 + ms(4)), Some(ms(1)));
        assert_eq!(rate.wait(1, t0 + ms(5)), None);
    }

    #[test]
    fn the_rate_is_shared_among_the_domains() {
        let t0 = Instant::now();
        let mut rate = WriteRate::default();
        for domid in 1..=4 {
            rate.add(domid, t0);
        }
        rate.debit(1, 11, t0);
        // 200 a second shared by four: 50 a second, 20 ms for one write.
        assert_eq!(rate.wait(1, t0), Some(ms(20)));
        assert_eq!(rate.wait(1, t0 + ms(20)), None);
    }

    #[test]
    fn credit_saturates_at_the_burst_and_the_surplus_feeds_the_reserve() {
        let t0 = Instant::now();
        let mut rate = WriteRate::default();
        rate.add(1, t0);
        assert_eq!(rate.wait(1, t0 + Duration::from_secs(3600)), None);
        assert_eq!(rate.credit(1), Some(10), "never above the domain's burst");
        assert!(rate.reserve > 0 && rate.reserve <= GLOBAL_BURST, "reserve {}", rate.reserve);
        // A debt is paid from the reserve first.
        let reserve = rate.reserve;
        rate.debit(1, 15, t0 + Duration::from_secs(3600));
        assert_eq!(rate.wait(1, t0 + Duration::from_secs(3600)), None);
        assert_eq!(rate.reserve, reserve - 5 * FACTOR);
    }

    #[test]
    fn the_first_domains_borrow_their_burst_and_later_ones_do_not() {
        let t0 = Instant::now();
        let mut rate = WriteRate::default();
        for domid in 1..=7 {
            rate.add(domid, t0);
        }
        let credits: Vec<_> = (1..=7).map(|d| rate.credit(d).unwrap_or(-1)).collect();
        assert_eq!(credits, [10, 10, 10, 10, 10, 0, 0]);
        rate.remove(1);
        assert_eq!(rate.reserve, -4 * DOMAIN_BURST, "a departing domain returns its credit");
    }

    #[test]
    fn untracked_callers_are_never_limited() {
        let t0 = Instant::now();
        let mut rate = WriteRate::default();
        rate.debit(0, 1_000_000, t0);
        assert_eq!(rate.wait(0, t0), None);
    }

    #[test]
    fn huge_debits_and_long_gaps_do_not_overflow() {
        let t0 = Instant::now();
        let mut rate = WriteRate::default();
        rate.add(1, t0);
        rate.debit(1, usize::MAX, t0);
        let wait = rate.wait(1, t0).unwrap_or_default();
        assert!(wait > Duration::from_secs(3600), "{wait:?}");
        assert_eq!(rate.wait(1, t0 + wait), None);
    }
}
