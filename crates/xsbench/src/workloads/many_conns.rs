//! 1,000 connections doing light work: in each round every connection
//! sends one READ, all at once, and the latency of each is the time from
//! its send to its reply. Shows how fairly and quickly a daemon serves a
//! crowd (p50) and how long the unluckiest client waits (p99).
//!
//! One thread sends, another reads every reply through epoll and stamps
//! it, so a reply is not kept waiting while the sender works.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use xenstore_wire::{Header, Op};

use super::{on_cpu, pin_thread, Config, Target};
use crate::conn::Conn;
use crate::poller::Poller;
use crate::results::Results;
use crate::stats::{micros, percentile};

/// The group the figures go in.
pub const GROUP: &str = "Many connections";

/// Runs the rounds and records p50 and p99.
pub fn run(t: Target<'_>, cfg: Config, res: &mut Results) -> Result<()> {
    let n = cfg.n(1000, 50);
    let rounds = cfg.n(20, 3);
    let mut setup = Conn::connect(t.socket)?;
    setup.call_ok(Op::Write, 0, &[b"/bench/many\0", b"0123456789abcdef"])?;
    let mut conns = Vec::with_capacity(n);
    let mut senders: Vec<UnixStream> = Vec::with_capacity(n);
    for _ in 0..n {
        let c = Conn::connect(t.socket)?;
        senders.push(c.stream().try_clone()?);
        c.stream().set_nonblocking(true)?;
        conns.push(c);
    }
    let (round_tx, round_rx) = mpsc::channel::<Vec<Instant>>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let collector = std::thread::spawn(move || -> Result<Vec<f64>> {
        pin_thread(1);
        let mut poller = Poller::new()?;
        for (i, c) in conns.iter().enumerate() {
            poller.add(c.stream(), i)?;
        }
        let mut latencies = Vec::new();
        let mut stamps = vec![None; conns.len()];
        for sent in round_rx {
            let mut left = conns.len();
            while left > 0 {
                let ready = poller.wait(Duration::from_secs(30))?;
                if ready.is_empty() {
                    bail!("replies stopped with {left} outstanding");
                }
                let now = Instant::now();
                for i in ready {
                    let c = &mut conns[i];
                    // One read per readiness: epoll is level-triggered, so what is
                    // left is reported again.
                    c.try_fill()?;
                    while let Some(m) = c.take_buffered()? {
                        ensure!(m.payload == b"0123456789abcdef", "READ returned {:?}", m.error());
                        stamps[i] = Some(now);
                        left -= 1;
                    }
                }
            }
            for (i, s) in stamps.iter_mut().enumerate() {
                let got = s.take().expect("every connection answered");
                latencies.push(micros(got.saturating_duration_since(sent[i])));
            }
            let _ = done_tx.send(());
        }
        Ok(latencies)
    });
    let mut request = Header { op: Op::Read as u32, req_id: 1, tx_id: 0, len: 12 }.encode().to_vec();
    request.extend_from_slice(b"/bench/many\0");
    let sent = on_cpu(1, || -> Result<()> {
        for _ in 0..rounds {
            let mut sent = Vec::with_capacity(n);
            for s in &mut senders {
                sent.push(Instant::now());
                s.write_all(&request)?;
            }
            round_tx.send(sent)?;
            done_rx.recv()?;
        }
        Ok(())
    });
    drop(round_tx);
    sent?;
    let mut latencies = collector.join().map_err(|_| anyhow::anyhow!("collector panicked"))??;
    setup.call_ok(Op::Rm, 0, &[b"/bench/many\0"])?;
    res.add(
        GROUP,
        &format!("{n} clients, one READ each at once: p50"),
        "µs",
        false,
        t.name,
        percentile(&mut latencies, 50.0),
    );
    res.add(
        GROUP,
        &format!("{n} clients, one READ each at once: p99"),
        "µs",
        false,
        t.name,
        percentile(&mut latencies, 99.0),
    );
    Ok(())
}
