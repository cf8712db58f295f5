//! Hosted mode (ours only: the references cannot serve hosted domains):
//! the READ round trip over a guest's shared-memory ring beside the
//! machine's eventfd + shared-memory floor, the cost of creating and
//! introducing N domains, a quiet client's latency while a guest
//! attacks (`hosted_attacks`), and the device layer's figures
//! (`hosted_devices`: a device ring's round trip, attaching devices).
//!
//! The whole host (hypervisor, xenstored, guests) runs on CPU 0, as the
//! single-client latencies do, so a round trip is two switches on one
//! core.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use rustix::event::{eventfd, EventfdFlags};
use xenstore_wire::Op;
use xsim::{host, DomainSpec, StateDir, Toolstack};

use crate::conn::Conn;
use crate::limits;
use crate::progress;
use crate::results::{Results, OURS};
use crate::stats::time_each;
use crate::workloads::latency::MACHINE;
use crate::workloads::{on_cpu, pin_thread, Config};
use crate::{hosted_devices, hosted_domains};

/// The group the figures go in.
pub const GROUP: &str = "Hosted domains";

/// Domain counts for create + introduce, the handshake and destroy
/// (`hosted_domains`).
pub fn domain_counts(cfg: Config) -> Vec<usize> {
    if cfg.quick {
        vec![2, 10]
    } else {
        vec![10, 100, 1000, 10_000]
    }
}

/// Where xsim's programs are: beside this binary.
pub(crate) fn programs() -> Result<(host::Programs, PathBuf)> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("binary directory")?;
    let programs = host::Programs { xsim: dir.join("xsim"), xenstored: crate::daemons::our_xenstored()? };
    let guest = dir.join("xsim-guest");
    for p in [&programs.xsim, &guest] {
        if !p.is_file() {
            bail!("{} missing: build it with `cargo build --release --bins`", p.display());
        }
    }
    Ok((programs, guest))
}

/// Runs the hosted figures `reps` times; with `domains_only`, only the
/// many-domains ones (`--only domains`).
pub fn run(dir: &Path, cfg: Config, reps: usize, domains_only: bool, res: &mut Results) -> Result<()> {
    let (programs, guest) = programs()?;
    // Before the host starts, which inherits it: thousands of domains
    // hold more descriptors than a default limit allows.
    let (before, after) = limits::raise_files();
    let (pid_max, threads_max, nproc) = limits::processes();
    let shown = |n: Option<u64>| n.map_or_else(|| "?".to_owned(), |n| n.to_string());
    let raised = if after.1 > before.1 {
        "hard limit raised"
    } else {
        "the hard limit could not be raised (that needs CAP_SYS_RESOURCE)"
    };
    res.limits.push(format!(
        "RLIMIT_NOFILE (soft/hard) {}/{}, for the host {}/{} ({raised}); pid_max {}, threads-max {}, \
         RLIMIT_NPROC {}, memory available {} KiB",
        before.0,
        before.1,
        after.0,
        after.1,
        shown(pid_max),
        shown(threads_max),
        nproc,
        shown(limits::available_kib()),
    ));
    let state = StateDir::at(dir.join("xsim"));
    // Children inherit the affinity: the whole host lives on CPU 0.
    let (result, down) = on_cpu(0, || {
        let result = host::up(&state, &programs).and_then(|()| {
            if domains_only {
                let mut ts = Toolstack::connect(&state)?;
                many_domains(&mut ts, &state, cfg, reps, res);
                Ok(())
            } else {
                measure(&state, &guest, cfg, reps, res)
            }
        });
        (result, host::down(&state))
    });
    result?;
    down.map(|_| ())
}

fn measure(state: &StateDir, guest: &Path, cfg: Config, reps: usize, res: &mut Results) -> Result<()> {
    let iters = cfg.n(20_000, 300);
    let mut ts = Toolstack::connect(state)?;
    let mut sock = Conn::connect(&state.xenstored_socket())?;
    sock.call_ok(Op::Write, 0, &[b"/bench\0", b"0123456789abcdef"])?;
    for rep in 0..reps {
        progress::step(format_args!("hosted: round trips, repetition {} of {reps}", rep + 1));
        let (evt50, _) = eventfd_floor(iters)?;
        res.add(GROUP, "floor: eventfd + shared memory ping-pong p50", "µs", false, MACHINE, evt50);
        let (sock50, _) = time_each(iters / 10, iters, || {
            sock.call_ok(Op::Read, 0, &[b"/bench\0"])?;
            Ok(())
        })?;
        res.add(GROUP, "READ over the Unix socket p50", "µs", false, OURS, sock50);
        res.add(GROUP, "READ over a guest's ring p50", "µs", false, OURS, ring_read(&mut ts, state, guest, iters)?);
        progress::step(format_args!("hosted: a guest attacks, repetition {} of {reps}", rep + 1));
        crate::hosted_attacks::measure(&mut ts, state, guest, &mut sock, cfg, res)?;
        progress::step(format_args!("hosted: device ring round trips, repetition {} of {reps}", rep + 1));
        hosted_devices::ring(iters, res)?;
    }
    for n in hosted_devices::device_counts(cfg) {
        for rep in 0..reps {
            progress::step(format_args!("hosted: {n} devices attached, repetition {} of {reps}", rep + 1));
            let per = hosted_devices::attach(&mut ts, state, guest, n)?;
            res.add(hosted_devices::ATTACH_GROUP, &format!("attach {n} in a row: per device"), "µs", false, OURS, per);
        }
    }
    many_domains(&mut ts, state, cfg, reps, res);
    Ok(())
}

/// The many-domains figures (`hosted_domains`) for each count; a count
/// the host's descriptor limit cannot hold (as measured at the counts
/// before it) is lowered to what it can, and said; a count that fails is
/// noted with what stopped it, and larger ones are not tried. The first
/// repetition of the largest count notes what each domain costs the host,
/// and where that puts the limit.
fn many_domains(ts: &mut Toolstack, state: &StateDir, cfg: Config, reps: usize, res: &mut Results) {
    let held = |file: &Path| host::pid_of(file).and_then(limits::held);
    let counts = domain_counts(cfg);
    let mut fits: Option<(usize, String)> = None;
    for &wanted in &counts {
        let n = match &fits {
            Some((most, why)) if *most < wanted => {
                res.limits.push(format!("{wanted} domains lowered to {most}: {why}"));
                *most
            }
            _ => wanted,
        };
        for rep in 0..reps {
            progress::step(format_args!(
                "hosted: {n} domains created, connected and destroyed, repetition {} of {reps}",
                rep + 1
            ));
            let base = (held(&state.hypervisor_pid()), held(&state.xenstored_pid()), limits::available_kib());
            let per = match hosted_domains::run(ts, state, n) {
                Ok(per) => per,
                Err(e) => {
                    res.notes.push(format!("hosted domains: {n} domains not reached: {e:#}"));
                    return;
                }
            };
            res.add(GROUP, &format!("create + introduce, {n} domains: per domain"), "µs", false, OURS, per.create);
            res.add(GROUP, &format!("device handshake, {n} domains: per domain"), "µs", false, OURS, per.handshake);
            res.add(GROUP, &format!("destroy + release, {n} domains: per domain"), "µs", false, OURS, per.destroy);
            if rep == 0 {
                fits = most_domains(n, base, &per).or(fits);
                if counts.last() == Some(&wanted) {
                    res.limits.push(cost_note(n, base, &per));
                }
            }
        }
    }
}

/// The most domains the descriptor limit lets the host hold (with a
/// twentieth to spare, in hundreds), from the descriptors each process
/// gained with `n` domains, and which process that is.
fn most_domains(
    n: usize,
    base: (Option<limits::Held>, Option<limits::Held>, Option<u64>),
    per: &hosted_domains::PerDomain,
) -> Option<(usize, String)> {
    let files = limits::files();
    let mut most: Option<(usize, String)> = None;
    for (name, before, after) in [("the hypervisor", base.0, per.hypervisor), ("xenstored", base.1, per.xenstored)] {
        let (Some(b), Some(a)) = (before, after) else { continue };
        let gained = a.fds.saturating_sub(b.fds);
        if gained == 0 {
            continue;
        }
        let room = files.saturating_sub(b.fds).saturating_mul(19) / 20;
        let count = usize::try_from(room.saturating_mul(n as u64) / gained).unwrap_or(usize::MAX);
        let count = if count >= 100 { count / 100 * 100 } else { count };
        // Counts fit f64 exactly.
        #[allow(clippy::cast_precision_loss)]
        let each = gained as f64 / n as f64;
        if most.as_ref().is_none_or(|(m, _)| count < *m) {
            most = Some((count, format!("{name} holds {each:.1} descriptors per domain and RLIMIT_NOFILE is {files}")));
        }
    }
    most
}

/// What one domain costs the host, from what was held before `n` domains
/// and with them, and how many domains that allows.
fn cost_note(
    n: usize,
    base: (Option<limits::Held>, Option<limits::Held>, Option<u64>),
    per: &hosted_domains::PerDomain,
) -> String {
    // Counts and sizes fit f64 exactly enough for a note.
    #[allow(clippy::cast_precision_loss)]
    let each = |before: u64, after: u64| after.saturating_sub(before) as f64 / n as f64;
    let mut note = format!("with {n} domains up, per domain:");
    let files = limits::files();
    for (name, before, after) in [("hypervisor", base.0, per.hypervisor), ("xenstored", base.1, per.xenstored)] {
        if let (Some(b), Some(a)) = (before, after) {
            let fds = each(b.fds, a.fds);
            note += &format!(" {name} {fds:.1} descriptors and {:.1} KiB resident", each(b.rss_kib, a.rss_kib));
            if fds > 0.0 {
                // Rough: a limit over what f64 says exactly is no limit here.
                #[allow(clippy::cast_precision_loss)]
                let most = files.saturating_sub(b.fds) as f64 / fds;
                note += &format!(" (RLIMIT_NOFILE {files} allows ~{most:.0} domains);");
            }
        }
    }
    if let (Some(b), Some(a)) = (base.2, per.available_kib) {
        let kib = each(a, b);
        note += &format!(" machine memory {kib:.0} KiB (all processes and the kernel)");
        if kib > 0.0 {
            // As above.
            #[allow(clippy::cast_precision_loss)]
            let most = b as f64 / kib;
            note += &format!(", so the {b} KiB available would hold ~{most:.0} domains");
        }
    }
    note
}

/// Two threads ping-pong a counter in shared memory, waking each other
/// through eventfds: what a ring round trip costs at least.
pub fn eventfd_floor(iters: usize) -> Result<(f64, f64)> {
    let to_b = Arc::new(eventfd(0, EventfdFlags::empty())?);
    let to_a = Arc::new(eventfd(0, EventfdFlags::empty())?);
    let shared = Arc::new(AtomicU64::new(0));
    let (tb, ta, sh) = (to_b.clone(), to_a.clone(), shared.clone());
    let total = iters + iters / 10;
    let echo = std::thread::spawn(move || -> rustix::io::Result<()> {
        pin_thread(0);
        let mut buf = [0u8; 8];
        for _ in 0..total {
            rustix::io::read(&*tb, &mut buf)?;
            sh.fetch_add(1, Ordering::AcqRel);
            rustix::io::write(&*ta, &1u64.to_ne_bytes())?;
        }
        Ok(())
    });
    let mut buf = [0u8; 8];
    let result = time_each(iters / 10, iters, || {
        let before = shared.load(Ordering::Acquire);
        rustix::io::write(&*to_b, &1u64.to_ne_bytes())?;
        rustix::io::read(&*to_a, &mut buf)?;
        ensure!(shared.load(Ordering::Acquire) == before + 1, "the echo thread did not count");
        Ok(())
    });
    echo.join().map_err(|_| anyhow::anyhow!("echo thread panicked"))??;
    result
}

/// Median READ round trip of a guest over its ring (`xsim-guest
/// bench-read`, one round), in microseconds.
fn ring_read(ts: &mut Toolstack, state: &StateDir, guest: &Path, iters: usize) -> Result<f64> {
    let spec = DomainSpec {
        name: "bench-read".into(),
        program: vec![guest.to_string_lossy().into_owned(), "bench-read".into(), "1".into(), iters.to_string()],
        env: Vec::new(),
        paused: false,
        netns: false,
        fuse: false,
    };
    let domid = ts.create(&spec)?.domid;
    let finished = ts.wait_shutdown(domid, Duration::from_secs(300))?;
    let console = std::fs::read_to_string(state.console(domid)).unwrap_or_default();
    ts.destroy(domid)?;
    ensure!(finished.is_some(), "the bench guest did not finish:\n{console}");
    let line =
        console.lines().find_map(|l| l.strip_prefix("round ")).with_context(|| format!("no result in\n{console}"))?;
    let ns: f64 = line.split_whitespace().next().context("round median")?.parse()?;
    Ok(ns / 1000.0)
}
