//! READ round trip over a hosted domain's ring, beside the same over the
//! Unix socket, and the machine's floors for both transports.
//!
//! ```text
//! cargo build --release --bins && cargo bench -p xsim --bench ring_read
//! ```
//!
//! Four figures, each the median over rounds of the per-round median (and
//! p99) of single round trips:
//!
//! - floor, eventfd + shared memory: two threads ping-pong a counter in
//!   shared memory, waking each other through eventfds (what a ring round
//!   trip costs at least: two wake-ups);
//! - floor, AF_UNIX: two threads ping-pong 16-byte messages over a socket
//!   pair;
//! - xenstored READ over the socket, from a dom0 client;
//! - xenstored READ over the ring, from a guest (`xsim-guest bench-read`),
//!   with the same client library.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::event::{eventfd, EventfdFlags};
use xenstore::Store;
use xsim::{host, DomainSpec, StateDir, Toolstack};

const ROUNDS: usize = 7;
const ITERS: usize = 20_000;

fn summarize(rounds: &mut [(u128, u128)]) -> (f64, f64) {
    rounds.sort_unstable();
    let (median, _) = rounds[rounds.len() / 2];
    let mut p99s: Vec<u128> = rounds.iter().map(|r| r.1).collect();
    p99s.sort_unstable();
    (median as f64 / 1000.0, p99s[p99s.len() / 2] as f64 / 1000.0)
}

fn time_round(iters: usize, mut op: impl FnMut()) -> (u128, u128) {
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        op();
        times.push(t.elapsed().as_nanos());
    }
    times.sort_unstable();
    (times[iters / 2], times[iters * 99 / 100])
}

/// [`ROUNDS`] rounds of 1,000 untimed then [`ITERS`] timed calls of `op`.
fn measure(mut op: impl FnMut()) -> (f64, f64) {
    let mut rounds: Vec<_> = (0..ROUNDS)
        .map(|_| {
            for _ in 0..1000 {
                op();
            }
            time_round(ITERS, &mut op)
        })
        .collect();
    summarize(&mut rounds)
}

fn eventfd_floor() -> (f64, f64) {
    let to_b = Arc::new(eventfd(0, EventfdFlags::empty()).expect("eventfd"));
    let to_a = Arc::new(eventfd(0, EventfdFlags::empty()).expect("eventfd"));
    let shared = Arc::new(AtomicU64::new(0));
    let (tb, ta, sh) = (to_b.clone(), to_a.clone(), shared.clone());
    let total = ROUNDS * (ITERS + 1000);
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 8];
        for _ in 0..total {
            rustix::io::read(&*tb, &mut buf).expect("read");
            sh.fetch_add(1, Ordering::AcqRel);
            rustix::io::write(&*ta, &1u64.to_ne_bytes()).expect("write");
        }
    });
    let mut buf = [0u8; 8];
    let mut ping = || {
        let before = shared.load(Ordering::Acquire);
        rustix::io::write(&*to_b, &1u64.to_ne_bytes()).expect("write");
        rustix::io::read(&*to_a, &mut buf).expect("read");
        assert_eq!(shared.load(Ordering::Acquire), before + 1);
    };
    let result = measure(&mut ping);
    echo.join().expect("echo thread");
    result
}

fn unix_floor() -> (f64, f64) {
    let (mut a, mut b) = UnixStream::pair().expect("socketpair");
    let total = ROUNDS * (ITERS + 1000);
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 16];
        for _ in 0..total {
            b.read_exact(&mut buf).expect("read");
            b.write_all(&buf).expect("write");
        }
    });
    let mut buf = [0u8; 16];
    let mut ping = || {
        a.write_all(&[7u8; 16]).expect("write");
        a.read_exact(&mut buf).expect("read");
    };
    let result = measure(&mut ping);
    echo.join().expect("echo thread");
    result
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is understood.
    let exe = std::env::current_exe().expect("current exe");
    let target = exe.parent().and_then(|d| d.parent()).map(PathBuf::from).expect("target dir");
    let programs = host::Programs { xsim: target.join("xsim"), xenstored: target.join("xenstored") };
    for p in [&programs.xsim, &programs.xenstored, &target.join("xsim-guest")] {
        assert!(p.is_file(), "{} missing: run `cargo build --release --bins` first", p.display());
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let state = StateDir::at(dir.path().to_path_buf());
    host::up(&state, &programs).expect("xsim up");
    let mut ts = Toolstack::connect(&state).expect("toolstack");

    let floor_evt = eventfd_floor();
    let floor_unix = unix_floor();

    let client = xenstore::Client::connect(state.xenstored_socket()).expect("connect");
    client.write("/bench", b"0123456789abcdef").expect("write");
    let socket = measure(|| {
        client.read("/bench").expect("read");
    });

    let guest = target.join("xsim-guest").to_string_lossy().into_owned();
    let spec = DomainSpec {
        name: "bench".into(),
        program: vec![guest, "bench-read".into(), ROUNDS.to_string(), ITERS.to_string()],
        env: Vec::new(),
        paused: false,
    };
    let domid = ts.create(&spec).expect("create").domid;
    let finished = ts.wait_shutdown(domid, Duration::from_secs(300)).expect("bench guest");
    assert!(finished.is_some(), "bench guest did not finish");
    let console = std::fs::read_to_string(state.console(domid)).expect("console");
    let mut rounds: Vec<(u128, u128)> = console
        .lines()
        .filter_map(|l| l.strip_prefix("round "))
        .filter_map(|l| {
            let mut it = l.split_whitespace().map(|n| n.parse::<u128>());
            Some((it.next()?.ok()?, it.next()?.ok()?))
        })
        .collect();
    assert_eq!(rounds.len(), ROUNDS, "bench guest console:\n{console}");
    let ring = summarize(&mut rounds);
    host::down(&state).expect("xsim down");

    println!(
        "READ round trip, {ROUNDS} rounds x {ITERS}; median of round medians (median of round p99s), microseconds"
    );
    println!("{:<44} {:>8} {:>8}", "", "median", "p99");
    for (name, (median, p99)) in [
        ("floor: eventfd + shared memory ping-pong", floor_evt),
        ("floor: AF_UNIX request/reply", floor_unix),
        ("xenstored READ over the Unix socket", socket),
        ("xenstored READ over a hosted ring", ring),
    ] {
        println!("{name:<44} {median:>8.2} {p99:>8.2}");
    }
    println!("ring / socket: {:.2}x; ring / eventfd floor: {:.2}x", ring.0 / socket.0, ring.0 / floor_evt.0);
}
