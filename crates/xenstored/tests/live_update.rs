//! Live update of the real daemon binary under load: clients writing,
//! reading, committing transactions and watching see no failed request and
//! lose no event, through several updates in a row; the transaction rules
//! (wait up to `-t`, then refuse unless `-F`); and a failed update leaves
//! the daemon serving.

// Payloads are written as on the wire: `\0` is the nul separator, never octal.
#![allow(clippy::octal_escapes)]

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;
use xenstore::{Client, Store};
use xenstore_wire::Op;

/// A copy of the daemon binary to update to (a different file, as a real
/// update would be).
fn new_binary(d: &Daemon) -> String {
    let path = d.dir.join("xenstored-new");
    std::fs::copy(env!("CARGO_BIN_EXE_xenstored"), &path).unwrap();
    path.to_str().unwrap().to_owned()
}

/// One CONTROL `live-update` step; the reply text without its NUL.
fn step(c: &Client, args: &[&str]) -> String {
    let mut call: Vec<&[u8]> = vec![b"live-update"];
    call.extend(args.iter().map(|a| a.as_bytes()));
    let reply = c.control(&call).unwrap_or_else(|e| panic!("live-update {args:?}: {e}"));
    String::from_utf8_lossy(&reply).trim_end_matches('\0').to_owned()
}

fn update(c: &Client, binary: &str, start: &[&str]) -> String {
    assert_eq!(step(c, &["-f", binary]), "OK");
    let mut s = vec!["-s"];
    s.extend_from_slice(start);
    step(c, &s)
}

#[test]
fn live_updates_under_load_fail_no_request_and_lose_no_event() {
    let d = Daemon::start(&[]);
    let binary = new_binary(&d);
    let pid = d.pid();
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    // Writers that read back what they wrote.
    for k in 0..3 {
        let (socket, stop, failures) = (d.socket.clone(), stop.clone(), failures.clone());
        threads.push(std::thread::spawn(move || {
            let c = Client::connect(&socket).unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let path = format!("/lu/w{k}/{}", n % 64);
                let value = n.to_string();
                let ok = c.write(&path, value.as_bytes()).is_ok() && c.read(&path).is_ok_and(|v| v == value.as_bytes());
                if !ok {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
            }
            n
        }));
    }
    // A counter incremented in transactions (retried on EAGAIN).
    let commits = {
        let (socket, stop, failures) = (d.socket.clone(), stop.clone(), failures.clone());
        std::thread::spawn(move || {
            let c = Client::connect(&socket).unwrap();
            c.write("/lu/counter", b"0").unwrap();
            let mut commits = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let r = c.transaction(|tx| {
                    let v: u64 = String::from_utf8_lossy(&tx.read("/lu/counter")?).parse().unwrap_or(u64::MAX);
                    tx.write("/lu/counter", (v + 1).to_string().as_bytes())
                });
                match r {
                    Ok(()) => commits += 1,
                    Err(_) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            commits
        })
    };
    // A watcher of distinct paths (identical pending events may be
    // coalesced; these never are), fed by its own writer.
    let watcher = Client::connect(&d.socket).unwrap();
    let watch = watcher.watch("/lu/ev", "t").unwrap();
    let events_written = {
        let (socket, stop, failures) = (d.socket.clone(), stop.clone(), failures.clone());
        std::thread::spawn(move || {
            let c = Client::connect(&socket).unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if c.write(&format!("/lu/ev/{n}"), b"").is_err() {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
                std::thread::sleep(Duration::from_micros(200));
            }
            n
        })
    };
    let controller = Client::connect(&d.socket).unwrap();
    let updates = 5;
    for _ in 0..updates {
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(update(&controller, &binary, &["-t", "10"]), "OK", "log:\n{}", d.log());
    }
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let writes: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let commits = commits.join().unwrap();
    let written = events_written.join().unwrap();
    assert_eq!(failures.load(Ordering::Relaxed), 0, "failed requests; log:\n{}", d.log());
    assert!(writes.iter().all(|n| *n > 50) && commits > 10 && written > 50, "{writes:?} {commits} {written}");
    // Still the same process, updated `updates` times.
    assert_eq!(d.pid(), pid);
    assert_eq!(d.log().matches("live update: state restored").count(), updates, "log:\n{}", d.log());
    let c = Client::connect(&d.socket).unwrap();
    assert_eq!(c.read("/lu/counter").unwrap(), commits.to_string().into_bytes());
    // Every event, each once: the one WATCH fires at once, then /lu/ev/N.
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.len() < usize::try_from(written).unwrap() && Instant::now() < deadline {
        if let Ok(event) = watch.recv_timeout(Duration::from_millis(200)) {
            if let Some(n) = event.path.strip_prefix("/lu/ev/") {
                assert!(seen.insert(n.parse::<u64>().unwrap()), "event {n} twice");
            }
        }
    }
    let missing: Vec<u64> = (0..written).filter(|n| !seen.contains(n)).take(10).collect();
    assert!(
        missing.is_empty(),
        "{} of {written} events lost, first {missing:?}",
        usize::try_from(written).unwrap() - seen.len()
    );
}

#[test]
fn open_transactions_delay_the_update_then_refuse_it_unless_forced() {
    let d = Daemon::start(&[]);
    let binary = new_binary(&d);
    let mut holder = d.client();
    let (_, id) = holder.call(Op::TransactionStart, 0, b"\0");
    let tx: u32 = String::from_utf8_lossy(&id).trim_end_matches('\0').parse().unwrap();
    assert_eq!(holder.call(Op::Write, tx, b"/t/a\0in-tx").1, b"OK\0");
    let c = Client::connect(&d.socket).unwrap();
    // Waits the timeout, then names the transaction's owner.
    let started = Instant::now();
    let refusal = update(&c, &binary, &["-t", "1"]);
    assert!(started.elapsed() >= Duration::from_secs(1), "answered before the timeout");
    assert!(refusal.starts_with("Domains with long running transactions:\nDomain 0: "), "{refusal}");
    assert_eq!(d.log().matches("live update: state restored").count(), 0);
    // The session ended with the refusal: a new one may begin. Forced, it
    // goes ahead with two transactions open, which keep working.
    let (_, id2) = holder.call(Op::TransactionStart, 0, b"\0");
    let tx2: u32 = String::from_utf8_lossy(&id2).trim_end_matches('\0').parse().unwrap();
    assert_eq!(update(&c, &binary, &["-t", "0", "-F"]), "OK", "log:\n{}", d.log());
    assert_eq!(d.log().matches("live update: state restored").count(), 1);
    assert_eq!(holder.call(Op::Read, tx, &p("/t/a")).1, b"in-tx");
    assert_eq!(holder.call(Op::TransactionEnd, tx, b"T\0").1, b"OK\0");
    assert_eq!(holder.call(Op::TransactionEnd, tx2, b"F\0").1, b"OK\0");
    assert_eq!(c.read("/t/a").unwrap(), b"in-tx");
}

#[test]
fn a_start_waits_for_transactions_to_end() {
    let d = Daemon::start(&[]);
    let binary = new_binary(&d);
    let mut holder = d.client();
    let (_, id) = holder.call(Op::TransactionStart, 0, b"\0");
    let tx: u32 = String::from_utf8_lossy(&id).trim_end_matches('\0').parse().unwrap();
    let socket = d.socket.clone();
    let waiting = std::thread::spawn(move || {
        let c = Client::connect(&socket).unwrap();
        let started = Instant::now();
        (update(&c, &binary, &["-t", "20"]), started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(500));
    // Other requests are served while the start waits.
    holder.write("/w/x", b"1");
    assert_eq!(holder.call(Op::TransactionEnd, tx, b"T\0").1, b"OK\0");
    let (answer, took) = waiting.join().unwrap();
    assert_eq!(answer, "OK");
    assert!(took >= Duration::from_millis(400) && took < Duration::from_secs(15), "{took:?}");
    assert_eq!(holder.call(Op::Read, 0, &p("/w/x")).1, b"1");
}

#[test]
fn session_rules_and_a_failed_update_that_leaves_the_daemon_serving() {
    let d = Daemon::start(&[]);
    let binary = new_binary(&d);
    let c = Client::connect(&d.socket).unwrap();
    let other = Client::connect(&d.socket).unwrap();
    assert_eq!(step(&c, &["-f", "/no/such/binary"]), "File not accessible.");
    let not_exec = d.dir.join("not-executable");
    std::fs::write(&not_exec, b"x").unwrap();
    assert_eq!(step(&c, &["-f", not_exec.to_str().unwrap()]), "File not executable.");
    assert_eq!(step(&c, &["-s"]), "Not in live-update session.");
    assert_eq!(step(&c, &["-a"]), "No live-update session active.");
    assert_eq!(step(&c, &["-f", &binary]), "OK");
    assert_eq!(step(&other, &["-f", &binary]), "live-update session already active.");
    assert_eq!(step(&other, &["-c", "-N"]), "Not in live-update session.");
    assert_eq!(step(&c, &["-s", "-v", "3"]), "Migration stream version not supported.");
    assert_eq!(step(&c, &["-a"]), "OK");
    // A session ends with its connection.
    {
        let gone = Client::connect(&d.socket).unwrap();
        assert_eq!(step(&gone, &["-f", &binary]), "OK");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match step(&other, &["-f", &binary]).as_str() {
            "OK" => break,
            text => assert!(Instant::now() < deadline, "session outlived its connection: {text}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(step(&other, &["-a"]), "OK");
    // A binary exec refuses (its interpreter does not exist).
    let broken = d.dir.join("broken");
    std::fs::write(&broken, b"#!/no/such/interpreter\n").unwrap();
    std::fs::set_permissions(&broken, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let answer = update(&c, broken.to_str().unwrap(), &[]);
    assert!(answer.starts_with("Error activating new binary"), "{answer}");
    // Serving as before: requests, and a later update.
    c.write("/after", b"1").unwrap();
    assert_eq!(c.read("/after").unwrap(), b"1");
    assert!(!d.dir.join("state_dump").exists(), "state file left behind");
    assert_eq!(update(&c, &binary, &[]), "OK", "log:\n{}", d.log());
    assert_eq!(c.read("/after").unwrap(), b"1");
}
