//! `xsim-guest attack KIND SECONDS`: a guest that misbehaves for a while,
//! within its quotas, for `xs-bench`'s `contained` figures (a quiet
//! client's latency while a guest attacks). It pins itself to CPU 1 when
//! there is one, so the daemon's CPU does the daemon's work only; then it
//! prints how many rounds it made and exits.
//!
//! Kinds:
//! - `writes`: WRITEs to 100 nodes of its own, as fast as replies come;
//! - `unread`: 128 watches on its `data`, then WRITEs that fire them, and
//!   never a reply or event read (the daemon pauses it; the guest keeps
//!   the request queue full);
//! - `garbage`: a header claiming 5000 bytes, so the daemon sets the
//!   error indicator; a reconnection; again;
//! - `transactions`: TRANSACTION_START, a WRITE in it, abort, over and over;
//! - `storm`: 128 watches on its `data` (its quota) with 300-byte tokens,
//!   then WRITEs that fire all of them, as fast as replies come, reading
//!   every event (so it is never paused: each WRITE costs the daemon 128
//!   events, about 42 KiB through the 1 KiB ring);
//! - `hoard`: makes the daemon hold all it can for it, within its quotas
//!   (128 watches with 2 KiB tokens, 10 transactions full of writes, then
//!   nodes with 1,500-byte names and 2 KiB values), until a quota refuses
//!   each; then holds it all until the time is up. One round.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use xenstore::{Client, Store};
use xenstore_ring::{Field, ERROR_PROTO};
use xenstore_wire::Op;

use crate::raw_ring::RawRing;

/// Runs the attack named in `args` for the seconds given.
pub fn run(args: &[String]) -> Result<()> {
    let (Some(kind), Some(seconds)) = (args.first(), args.get(1)) else {
        bail!("usage: xsim-guest attack writes|unread|garbage|transactions|storm|hoard SECONDS")
    };
    let until = Instant::now() + Duration::from_secs(seconds.parse()?);
    pin_to_cpu_1();
    let rounds = match kind.as_str() {
        "writes" => writes(until)?,
        "unread" => unread(until)?,
        "garbage" => garbage(until)?,
        "transactions" => transactions(until)?,
        "storm" => storm(until)?,
        "hoard" => hoard(until)?,
        other => bail!("unknown attack {other}"),
    };
    println!("attack {kind}: {rounds} rounds");
    Ok(())
}

/// Best effort: a machine with one CPU runs the attack beside the daemon.
fn pin_to_cpu_1() {
    let mut set = rustix::thread::CpuSet::new();
    set.set(1);
    let _ = rustix::thread::sched_setaffinity(None, &set);
}

fn writes(until: Instant) -> Result<u64> {
    let client = Client::open()?;
    let mut n = 0u64;
    while Instant::now() < until {
        client.write(&format!("data/w{}", n % 100), b"0123456789abcdef")?;
        n += 1;
    }
    Ok(n)
}

fn unread(until: Instant) -> Result<u64> {
    let mut raw = RawRing::open()?;
    // The watches are set up as a client would, reading each answer (and
    // its first event): the `outstanding` quota stops reading a guest
    // that leaves 20 answers untaken, so only the flood below goes unread.
    for i in 0..128 {
        let id = raw.send(Op::Watch, format!("data\0{i}-{}\0", "token".repeat(60)).as_bytes())?;
        while let Some(packet) = raw.recv(Duration::from_secs(10))? {
            if packet.header.req_id == id && packet.header.op != Op::WatchEvent as u32 {
                break;
            }
        }
    }
    let mut n = 0u64;
    let mut pending: Vec<u8> = Vec::new();
    while Instant::now() < until {
        if pending.is_empty() {
            let payload = format!("data/u{}\0x", n % 50);
            let len = u32::try_from(payload.len())?;
            let header = xenstore_wire::Header { op: Op::Write as u32, req_id: (n % 1_000_000) as u32, tx_id: 0, len };
            pending.extend_from_slice(&header.encode());
            pending.extend_from_slice(payload.as_bytes());
            n += 1;
        }
        // The queue stays full once the daemon stops reading: wait for room.
        let written = raw.ring.write(&pending).map_err(|e| anyhow::anyhow!("{e}"))?;
        pending.drain(..written);
        if written == 0 {
            raw.wait(Duration::from_millis(5))?;
        }
    }
    Ok(n)
}

fn garbage(until: Instant) -> Result<u64> {
    let mut raw = RawRing::open()?;
    let header = xenstore_wire::Header { op: Op::Write as u32, req_id: 7, tx_id: 0, len: 5000 };
    let mut n = 0u64;
    while Instant::now() < until {
        raw.send_bytes(&header.encode())?;
        while raw.field(Field::Error) != ERROR_PROTO {
            ensure!(Instant::now() < until + Duration::from_secs(10), "the error indicator never came");
            raw.wait(Duration::from_millis(5))?;
        }
        raw.reconnect()?;
        n += 1;
    }
    Ok(n)
}

fn transactions(until: Instant) -> Result<u64> {
    let client = Client::open()?;
    let mut n = 0u64;
    while Instant::now() < until {
        let tx = client.transaction_start()?;
        tx.write("data/t", b"v")?;
        tx.abort()?;
        n += 1;
    }
    Ok(n)
}

fn storm(until: Instant) -> Result<u64> {
    let client = Client::open()?;
    let mut watch = client.watch("data", format!("0-{}", "token".repeat(60)))?;
    for i in 1..128 {
        watch.add("data", format!("{i}-{}", "token".repeat(60)))?;
    }
    let mut n = 0u64;
    while Instant::now() < until {
        client.write(&format!("data/s{}", n % 100), b"x")?;
        while watch.try_recv().is_ok() {}
        n += 1;
    }
    Ok(n)
}

fn hoard(until: Instant) -> Result<u64> {
    let client = Client::open()?;
    let value = vec![b'v'; 2048];
    let name = |i: usize| format!("data/h{i:04}-{}", "n".repeat(1500));
    let token = |i: usize| format!("{i}-{}", "t".repeat(2000));
    let mut watch = client.watch("data/w", token(0)).ok();
    let mut watches = usize::from(watch.is_some());
    while let Some(w) = watch.as_mut().filter(|_| watches < 200) {
        if w.add("data/w", token(watches)).is_err() {
            break;
        }
        watches += 1;
    }
    let mut transactions = Vec::new();
    let mut tx_nodes = 0;
    while let Ok(tx) = client.transaction_start() {
        while tx.write(&format!("{}-tx{}", name(tx_nodes), transactions.len()), &value).is_ok() {
            tx_nodes += 1;
        }
        transactions.push(tx);
        if transactions.len() >= 20 {
            break;
        }
    }
    let mut nodes = 0;
    while client.write(&name(nodes), &value).is_ok() {
        nodes += 1;
    }
    println!("hoarded: {nodes} nodes, {watches} watches, {} transactions with {tx_nodes} nodes", transactions.len());
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(watch);
    Ok(1)
}
