//! Clients racing to increment one counter in transactions: each does
//! start, READ, WRITE of the value plus one, commit, and starts over on
//! EAGAIN, a fixed number of times; the counter must end right.
//!
//! The racers are state machines driven by one thread through epoll, each
//! sending its next request as soon as its reply is in. Threads would
//! measure the client machine instead: eight of them sharing a core keep
//! each other's transactions open while waiting for the CPU, and the
//! faster the daemon answers, the more of them wait.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use xenstore_wire::Op;

use super::{on_cpu, Config, Target};
use crate::conn::{Conn, Msg};
use crate::poller::Poller;
use crate::results::Results;

/// The group the figures go in.
pub const GROUP: &str = super::txn::GROUP;

/// Clients racing.
pub const RACERS: usize = 8;

const COUNTER: &[u8] = b"/bench/counter\0";

/// Where a racer is in its transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Starting,
    Reading(u32),
    Writing(u32),
    Committing,
}

#[derive(Debug)]
struct Racer {
    conn: Conn,
    step: Step,
    left: usize,
    retries: u64,
}

impl Racer {
    /// Handles the reply to the current step and sends the next request;
    /// `false` once the racer has done all its increments.
    fn advance(&mut self, reply: &Msg) -> Result<bool> {
        let text = || std::str::from_utf8(reply.payload.strip_suffix(b"\0").unwrap_or(&reply.payload));
        match (self.step, reply.error()) {
            (Step::Committing, Some("EAGAIN")) => self.retries += 1,
            (Step::Committing, None) => self.left -= 1,
            (step, Some(e)) => bail!("{step:?}: {e}"),
            (Step::Starting, None) => {
                let tx: u32 = text()?.parse().context("transaction id")?;
                self.step = Step::Reading(tx);
                self.conn.send(Op::Read, tx, &[COUNTER]);
                return Ok(true);
            }
            (Step::Reading(tx), None) => {
                let n: u64 = text()?.parse().context("counter value")?;
                self.step = Step::Writing(tx);
                self.conn.send(Op::Write, tx, &[COUNTER, (n + 1).to_string().as_bytes()]);
                return Ok(true);
            }
            (Step::Writing(tx), None) => {
                self.step = Step::Committing;
                self.conn.send(Op::TransactionEnd, tx, &[b"T\0"]);
                return Ok(true);
            }
        }
        if self.left == 0 {
            return Ok(false);
        }
        self.start();
        Ok(true)
    }

    fn start(&mut self) {
        self.step = Step::Starting;
        self.conn.send(Op::TransactionStart, 0, &[b"\0"]);
    }
}

/// Runs the race and records commits per second and retries per commit.
pub fn run(t: Target<'_>, cfg: Config, res: &mut Results) -> Result<()> {
    let per = cfg.n(250, 20);
    let mut setup = Conn::connect(t.socket)?;
    setup.call_ok(Op::Write, 0, &[COUNTER, b"0"])?;
    let mut racers: Vec<Racer> = (0..RACERS)
        .map(|_| Ok(Racer { conn: Conn::connect(t.socket)?, step: Step::Starting, left: per, retries: 0 }))
        .collect::<Result<_>>()?;
    let began = Instant::now();
    on_cpu(1, || race(&mut racers))?;
    let secs = began.elapsed().as_secs_f64();
    let value = setup.call_ok(Op::Read, 0, &[COUNTER])?.payload;
    let expected = RACERS * per;
    ensure!(
        value == expected.to_string().as_bytes(),
        "counter is {:?}, expected {expected}",
        String::from_utf8_lossy(&value)
    );
    setup.call_ok(Op::Rm, 0, &[COUNTER])?;
    let retries: u64 = racers.iter().map(|r| r.retries).sum();
    // Counts far below 2^53.
    #[allow(clippy::cast_precision_loss)]
    {
        res.add(
            GROUP,
            &format!("contended counter, {RACERS} clients: commits/s"),
            "commits/s",
            true,
            t.name,
            expected as f64 / secs,
        );
        res.add(
            GROUP,
            &format!("contended counter, {RACERS} clients: EAGAIN retries per 100 commits"),
            "retries",
            false,
            t.name,
            retries as f64 * 100.0 / expected as f64,
        );
    }
    Ok(())
}

fn race(racers: &mut [Racer]) -> Result<()> {
    let mut poller = Poller::new()?;
    for (i, r) in racers.iter_mut().enumerate() {
        r.conn.stream().set_nonblocking(true)?;
        poller.add(r.conn.stream(), i)?;
        r.start();
        r.conn.flush()?;
    }
    let mut running = racers.len();
    while running > 0 {
        let ready = poller.wait(Duration::from_secs(10))?;
        ensure!(!ready.is_empty(), "the daemon stopped answering");
        for i in ready {
            let r = &mut racers[i];
            // One read per readiness: epoll is level-triggered.
            r.conn.try_fill()?;
            while let Some(m) = r.conn.take_buffered()? {
                ensure!(!m.is_event(), "a racer got a watch event");
                if !r.advance(&m)? {
                    running -= 1;
                }
            }
            r.conn.flush()?;
        }
    }
    Ok(())
}
