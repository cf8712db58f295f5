//! A quiet client's READ latency while another client attacks the daemon,
//! beside the same client's latency on an idle daemon: the "other domains
//! keep their latency" half of the adversarial suite
//! (`crates/xenstored/tests/xsa*.rs` test the rest, without clocks).
//!
//! Each attack runs in threads on CPU 1 while the quiet client times its
//! READs on CPU 0 (the daemon's CPU, as in `latency`), so what is measured
//! is the daemon's own work between the quiet client's requests; the quiet
//! client runs at a higher priority, as if on its own vCPU
//! ([`as_quiet_domain`]). The
//! attackers are socket clients: privileged in every daemon, so quotas do
//! not bind them, but the daemon's flow control does (the event cap, the
//! pause of a client that reads nothing, the cut-off of a protocol
//! violation, fair turns). A ring guest as the attacker needs the hosted
//! platform and is left to `hosted`.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use xenstore_wire::{Header, Op};

use super::{as_quiet_domain, on_cpu, pin_thread, Config, Target};
use crate::conn::{z, Conn};
use crate::results::Results;
use crate::stats::time_each;

/// The group the figures go in.
pub const GROUP: &str = "Contained: quiet client READ under attack";

/// An attack: runs until `stop` is set.
type Attack = fn(&Path, &AtomicBool) -> Result<()>;

/// The attacks, by name.
const ATTACKS: &[(&str, Attack)] = &[
    ("write flood", write_flood),
    ("watch-event storm, watcher not reading", event_storm),
    ("replies not read", not_reading),
    ("garbage and oversize headers", garbage),
    ("transaction spam", transaction_spam),
];

/// Measures the quiet client idle, then under each attack; records p50,
/// p99 and their ratios to idle.
pub fn run(t: Target<'_>, cfg: Config, res: &mut Results) -> Result<()> {
    let iters = cfg.n(5_000, 300);
    let mut quiet = on_cpu(0, || connect(t.socket))?;
    quiet.call_ok(Op::Write, 0, &[b"/bench/contained/quiet\0", b"0123456789abcdef"])?;
    let path = z("/bench/contained/quiet");
    let measure = |quiet: &mut Conn| {
        on_cpu(0, || {
            as_quiet_domain(|| {
                time_each(iters / 10, iters, || {
                    let m = quiet.call(Op::Read, 0, &[&path])?;
                    anyhow::ensure!(m.payload == b"0123456789abcdef", "READ returned {:?}", m.payload);
                    Ok(())
                })
            })
        })
    };
    let (idle50, idle99) = measure(&mut quiet)?;
    res.add(GROUP, "idle p50", "µs", false, t.name, idle50);
    res.add(GROUP, "idle p99", "µs", false, t.name, idle99);
    for (name, attack) in ATTACKS {
        let stop = Arc::new(AtomicBool::new(false));
        let socket = t.socket.to_owned();
        let flag = stop.clone();
        let attacker = std::thread::spawn(move || {
            pin_thread(1);
            attack(&socket, &flag)
        });
        // Let the attack get going before timing.
        std::thread::sleep(Duration::from_millis(100));
        let timed = measure(&mut quiet);
        stop.store(true, Ordering::Relaxed);
        let attacked = attacker.join().map_err(|_| anyhow::anyhow!("attack {name} panicked"))?;
        // A daemon that starves the quiet client (or the attacker) is a
        // finding about the daemon, said in the report, not a failure of
        // the run; the next attack starts on a fresh connection.
        let (p50, p99) = match (timed, attacked) {
            (Ok(figures), Ok(())) => figures,
            (Err(e), _) | (_, Err(e)) => {
                res.observe(format!("{}: under \"{name}\" a client was not served: {e:#}", t.name));
                quiet = on_cpu(0, || connect(t.socket))?;
                continue;
            }
        };
        res.add(GROUP, &format!("{name}: p50"), "µs", false, t.name, p50);
        res.add(GROUP, &format!("{name}: p99"), "µs", false, t.name, p99);
        res.add(GROUP, &format!("{name}: p50 / idle"), "x", false, t.name, p50 / idle50);
        res.add(GROUP, &format!("{name}: p99 / idle"), "x", false, t.name, p99 / idle99);
    }
    quiet.call_ok(Op::Rm, 0, &[b"/bench/contained\0"])?;
    Ok(())
}

/// A connection whose reads give up after ten seconds: a daemon that
/// starves a client fails the workload instead of hanging it.
fn connect(socket: &Path) -> Result<Conn> {
    let c = Conn::connect(socket)?;
    c.stream().set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(c)
}

/// Pipelined WRITEs, 64 at a time, over 1,000 nodes of its own.
fn write_flood(socket: &Path, stop: &AtomicBool) -> Result<()> {
    let mut c = connect(socket)?;
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..64 {
            let node = format!("/bench/contained/flood/n{}\0", i % 1000);
            c.send(Op::Write, 0, &[node.as_bytes(), b"0123456789abcdef0123456789abcdef"]);
            i += 1;
        }
        c.flush()?;
        for _ in 0..64 {
            c.recv()?;
        }
    }
    c.call_ok(Op::Rm, 0, &[b"/bench/contained/flood\0"])?;
    Ok(())
}

/// A watcher with 100 long-token watches that never reads, and a writer
/// firing them as fast as it can.
fn event_storm(socket: &Path, stop: &AtomicBool) -> Result<()> {
    let mut watcher = connect(socket)?;
    for i in 0..100 {
        let token = format!("{i}-{}\0", "token".repeat(60));
        watcher.send(Op::Watch, 0, &[b"/bench/contained/storm\0", token.as_bytes()]);
    }
    watcher.flush()?;
    let mut writer = connect(socket)?;
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..16 {
            let node = format!("/bench/contained/storm/n{}\0", i % 100);
            writer.send(Op::Write, 0, &[node.as_bytes(), b"x"]);
            i += 1;
        }
        writer.flush()?;
        for _ in 0..16 {
            writer.recv()?;
        }
    }
    drop(watcher);
    writer.call_ok(Op::Rm, 0, &[b"/bench/contained/storm\0"])?;
    Ok(())
}

/// READs of a 2 KiB value, sent as fast as the socket takes them, no
/// reply ever read.
fn not_reading(socket: &Path, stop: &AtomicBool) -> Result<()> {
    let mut setup = connect(socket)?;
    setup.call_ok(Op::Write, 0, &[b"/bench/contained/big\0", &[b'b'; 2048]])?;
    let mut sink = UnixStream::connect(socket)?;
    sink.set_nonblocking(true)?;
    let payload = b"/bench/contained/big\0";
    let header = Header { op: Op::Read as u32, req_id: 1, tx_id: 0, len: u32::try_from(payload.len())? };
    let mut batch = Vec::new();
    for _ in 0..64 {
        batch.extend_from_slice(&header.encode());
        batch.extend_from_slice(payload);
    }
    while !stop.load(Ordering::Relaxed) {
        if sink.write(&batch).is_err() {
            // Full: the daemon stopped reading it, as it should.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    drop(sink);
    setup.call_ok(Op::Rm, 0, &[b"/bench/contained/big\0"])?;
    Ok(())
}

/// New connections sending 64 KiB of garbage, or a header claiming a
/// payload over 4096 bytes, as fast as they connect; the daemon closes
/// each. (Unpaced, this once starved everyone else: the accept loop
/// accepted until the backlog was empty. It now accepts a budget per loop
/// iteration.)
fn garbage(socket: &Path, stop: &AtomicBool) -> Result<()> {
    let junk: Vec<u8> = (0..65536u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let oversize = Header { op: Op::Write as u32, req_id: 1, tx_id: 0, len: 4097 }.encode();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let mut c = UnixStream::connect(socket)?;
        // The daemon may close before all is written.
        let _ = if n % 2 == 0 { c.write_all(&junk) } else { c.write_all(&oversize) };
        n += 1;
    }
    Ok(())
}

/// TRANSACTION_START, a WRITE in it, TRANSACTION_END abort, over and over.
fn transaction_spam(socket: &Path, stop: &AtomicBool) -> Result<()> {
    let mut c = connect(socket)?;
    while !stop.load(Ordering::Relaxed) {
        let id = c.call_ok(Op::TransactionStart, 0, &[b"\0"])?;
        let tx: u32 = std::str::from_utf8(id.payload.strip_suffix(b"\0").unwrap_or(&id.payload))?.parse()?;
        c.call_ok(Op::Write, tx, &[b"/bench/contained/tx\0", b"v"])?;
        c.call_ok(Op::TransactionEnd, tx, &[b"F\0"])?;
    }
    Ok(())
}
