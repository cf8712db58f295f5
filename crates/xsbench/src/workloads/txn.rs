//! Transactions: start, read three nodes, write them back, commit (the
//! contended case is in `contended.rs`).

use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use xenstore_wire::Op;

use super::{on_cpu, Config, Target};
use crate::conn::{z, Conn};
use crate::results::Results;
use crate::stats::{median, micros};

/// The group the figures go in.
pub const GROUP: &str = "Transactions";

/// Starts a transaction; returns its id.
pub fn start(c: &mut Conn) -> Result<u32> {
    let m = c.call_ok(Op::TransactionStart, 0, &[b"\0"])?;
    let id = std::str::from_utf8(m.payload.strip_suffix(b"\0").unwrap_or(&m.payload))?;
    id.parse().with_context(|| format!("transaction id {id:?}"))
}

/// Ends transaction `tx`; `Ok(false)` when the daemon says EAGAIN.
pub fn commit(c: &mut Conn, tx: u32) -> Result<bool> {
    let m = c.call(Op::TransactionEnd, tx, &[b"T\0"])?;
    match m.error() {
        None => Ok(true),
        Some("EAGAIN") => Ok(false),
        Some(e) => bail!("TRANSACTION_END: {e}"),
    }
}

/// One transaction over `paths`: start, READ each, WRITE each, commit.
/// Retries on EAGAIN; returns how many retries it took.
pub fn read_modify_write(c: &mut Conn, paths: &[Vec<u8>]) -> Result<u32> {
    let mut retries = 0;
    loop {
        let tx = start(c)?;
        for p in paths {
            let m = c.call_ok(Op::Read, tx, &[p])?;
            let mut value = m.payload;
            value.push(b'+');
            value.truncate(16);
            c.call_ok(Op::Write, tx, &[p, &value])?;
        }
        if commit(c, tx)? {
            return Ok(retries);
        }
        retries += 1;
    }
}

/// Uncontended start + 3 reads + 3 writes + commit, one client.
pub fn run_uncontended(t: Target<'_>, cfg: Config, res: &mut Results) -> Result<()> {
    on_cpu(0, || uncontended(t, cfg, res))
}

fn uncontended(t: Target<'_>, cfg: Config, res: &mut Results) -> Result<()> {
    let mut c = Conn::connect(t.socket)?;
    let paths: Vec<Vec<u8>> = ["a", "b", "c"].iter().map(|n| z(&format!("/bench/tx/{n}"))).collect();
    for p in &paths {
        c.call_ok(Op::Write, 0, &[p, b"0"])?;
    }
    let mut times = Vec::new();
    for i in 0..cfg.n(3_000, 100) {
        let began = Instant::now();
        let retries = read_modify_write(&mut c, &paths)?;
        if i >= cfg.n(300, 10) {
            times.push(micros(began.elapsed()));
        }
        ensure!(retries == 0, "an uncontended transaction got EAGAIN");
    }
    c.call_ok(Op::Rm, 0, &[b"/bench/tx\0"])?;
    res.add(GROUP, "start + 3 reads + 3 writes + commit p50", "µs", false, t.name, median(&mut times));
    Ok(())
}
