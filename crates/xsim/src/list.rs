//! `xsim list` in `xl list`'s columns: Name, ID, Mem, VCPUs, State,
//! Time(s), in the same widths, so that eyes and scripts used to `xl list`
//! read it the same way.
//!
//! A hosted domain is a process, so its figures are the process's, read
//! from `/proc/PID/stat`: resident memory for Mem, threads for VCPUs, user
//! plus system CPU time for Time(s), and whether it is on a CPU (`r`) or
//! waiting (`b`). A domain whose process has ended (shut down, not yet
//! destroyed) shows 0 for all three: nothing of it is left to measure.

use std::time::Duration;

use xen_platform::{DomainInfo, DomainState, ShutdownReason};

/// `xl list`'s header line (tabs included, as xl prints it).
pub const HEADER: &str = "Name                                        ID   Mem VCPUs\tState\tTime(s)";

/// What a domain's process uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Resident memory in KiB.
    pub rss_kib: u64,
    /// Threads: the hosted counterpart of online VCPUs.
    pub threads: u64,
    /// CPU time, user plus system.
    pub cpu: Duration,
    /// On a CPU or ready to be (`R` in `/proc/PID/stat`).
    pub running: bool,
}

impl Usage {
    /// The process `pid`'s usage, or `None` if it is gone.
    pub fn of(pid: u32) -> Option<Usage> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let ticks = rustix::param::clock_ticks_per_second().max(1);
        let page_kib = u64::try_from(rustix::param::page_size() / 1024).unwrap_or(4);
        Usage::parse(&stat, ticks, page_kib)
    }

    /// Parses a `/proc/PID/stat` line (proc(5)). The command name, in
    /// parentheses, may hold spaces and parentheses itself: the fields
    /// are counted from the last `)`.
    pub fn parse(stat: &str, ticks_per_second: u64, page_kib: u64) -> Option<Usage> {
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        // Field 3 (state) is fields[0]; 14 utime, 15 stime, 20
        // num_threads, 24 rss (pages).
        let number = |field: usize| -> Option<u64> { fields.get(field - 3)?.parse().ok() };
        let ticks = number(14)? + number(15)?;
        let cpu = Duration::from_secs(ticks / ticks_per_second)
            + Duration::from_nanos((ticks % ticks_per_second) * 1_000_000_000 / ticks_per_second);
        Some(Usage { rss_kib: number(24)? * page_kib, threads: number(20)?, cpu, running: fields.first()? == &"R" })
    }
}

/// xl's six state flags: `r` running, `b` blocked, `p` paused, `s` shut
/// down, then the shutdown reason (`-` poweroff, `r` reboot, `s` suspend,
/// `c` crash, `w` watchdog, `S` soft reset), `d` dying; `-` where unset.
/// Running and blocked come from the process (`usage`), and only for a
/// domain that is neither paused nor shut down.
pub fn flags(state: DomainState, usage: Option<Usage>) -> String {
    let running = state == DomainState::Running;
    let on_cpu = usage.is_some_and(|u| u.running);
    let reason = match state {
        DomainState::Shutdown(reason) => Some(reason),
        _ => None,
    };
    let set = |on: bool, letter: char| if on { letter } else { '-' };
    [
        set(running && on_cpu, 'r'),
        set(running && !on_cpu, 'b'),
        set(state == DomainState::Paused, 'p'),
        set(reason.is_some(), 's'),
        reason.map_or('-', reason_letter),
        set(state == DomainState::Dying, 'd'),
    ]
    .into_iter()
    .collect()
}

/// xl's letter for a shutdown reason (its `shutdown_reason_letters`).
fn reason_letter(reason: ShutdownReason) -> char {
    match reason {
        ShutdownReason::Poweroff => '-',
        ShutdownReason::Reboot => 'r',
        ShutdownReason::Suspend => 's',
        ShutdownReason::Crash => 'c',
        ShutdownReason::Watchdog => 'w',
        ShutdownReason::SoftReset => 'S',
    }
}

/// One line of the listing, in xl's `%-40s %5d %5lu %5d     %s  %8.1f`.
pub fn row(domain: &DomainInfo, usage: Option<Usage>) -> String {
    let u = usage.unwrap_or_default();
    format!(
        "{:<40} {:>5} {:>5} {:>5}     {}  {:>8.1}",
        domain.name,
        domain.domid,
        u.rss_kib / 1024,
        u.threads,
        flags(domain.state, usage),
        u.cpu.as_secs_f64()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 120 0 0 0 250 125 0 0 20 0 3 0 \
                        1000 10000000 512 18446744073709551615";

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let u = Usage::parse(STAT, 100, 4).unwrap();
        assert_eq!(u, Usage { rss_kib: 2048, threads: 3, cpu: Duration::from_millis(3750), running: false });
        assert!(Usage::parse("1 (x) R", 100, 4).is_none());
    }

    #[test]
    fn this_process_has_usage() {
        let u = Usage::of(std::process::id()).unwrap();
        assert!(u.rss_kib > 0 && u.threads >= 1, "{u:?}");
    }

    #[test]
    fn flags_are_xls() {
        let on = Some(Usage { running: true, ..Usage::default() });
        let off = Some(Usage::default());
        assert_eq!(flags(DomainState::Running, on), "r-----");
        assert_eq!(flags(DomainState::Running, off), "-b----");
        assert_eq!(flags(DomainState::Paused, off), "--p---");
        assert_eq!(flags(DomainState::Shutdown(ShutdownReason::Poweroff), None), "---s--");
        assert_eq!(flags(DomainState::Shutdown(ShutdownReason::Crash), None), "---sc-");
        assert_eq!(flags(DomainState::Dying, None), "-----d");
    }

    #[test]
    fn a_row_lines_up_under_the_header() {
        let d = DomainInfo { domid: 7, name: "guest1".into(), state: DomainState::Running, pid: Some(1) };
        let u = Usage { rss_kib: 512 * 1024, threads: 2, cpu: Duration::from_millis(1300), running: false };
        let line = row(&d, Some(u));
        assert_eq!(line, format!("{:<40}     7   512     2     -b----       1.3", "guest1"));
        // The ID column ends where the header's "ID" does.
        assert_eq!(line.find(" 7 ").map(|i| i + 2), HEADER.find("ID").map(|i| i + 2));
    }
}
