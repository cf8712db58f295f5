//! Watch fan-out: W connections each watch `/bench/fan`; one writer makes
//! K writes below it; the figure is the time from the first write until
//! every watcher has read every one of the K events.
//!
//! The watchers are read by one thread through epoll, so the client side
//! costs the same whatever the daemon.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use xenstore_wire::Op;

use super::{on_cpu, pin_thread, Config, Target};
use crate::conn::{z, Conn};
use crate::poller::Poller;
use crate::results::Results;
use crate::stats::micros;

/// The group the figures go in.
pub const GROUP: &str = "Watch fan-out";

/// Watcher counts measured.
pub fn watcher_counts(cfg: Config) -> [usize; 3] {
    if cfg.quick {
        [1, 10, 50]
    } else {
        [1, 100, 1000]
    }
}

/// Measures fan-out at each watcher count.
pub fn run(t: Target<'_>, cfg: Config, res: &mut Results) -> Result<()> {
    let events = cfg.n(20, 5);
    for watchers in watcher_counts(cfg) {
        let us = measure(t, watchers, events)?;
        res.add(GROUP, &format!("{events} writes to {watchers} watchers"), "µs", false, t.name, us);
    }
    Ok(())
}

/// Microseconds until all `watchers` got all `events`.
pub fn measure(t: Target<'_>, watchers: usize, events: usize) -> Result<f64> {
    let mut writer = Conn::connect(t.socket)?;
    writer.call_ok(Op::Write, 0, &[b"/bench/fan\0", b""])?;
    let mut conns = Vec::with_capacity(watchers);
    for i in 0..watchers {
        let mut c = Conn::connect(t.socket)?;
        c.call_ok(Op::Watch, 0, &[b"/bench/fan\0", format!("w{i}\0").as_bytes()])?;
        // Every daemon fires a watch once when it is set; wait for that.
        while c.events == 0 {
            if c.recv_any()?.is_event() {
                c.events += 1;
            }
        }
        c.events = 0;
        c.stream().set_nonblocking(true)?;
        conns.push(c);
    }
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let collector = std::thread::spawn(move || -> Result<Instant> {
        pin_thread(1);
        let mut poller = Poller::new()?;
        for (i, c) in conns.iter().enumerate() {
            poller.add(c.stream(), i)?;
        }
        let _ = ready_tx.send(());
        let mut complete = 0;
        while complete < conns.len() {
            let ready = poller.wait(Duration::from_secs(30))?;
            if ready.is_empty() {
                bail!("watch events stopped: {complete} of {} watchers complete", conns.len());
            }
            for i in ready {
                let c = &mut conns[i];
                // One read per readiness: epoll is level-triggered, so what is
                // left is reported again.
                c.try_fill()?;
                while let Some(m) = c.take_buffered()? {
                    ensure!(m.is_event(), "watcher got a reply it did not ask for");
                    c.events += 1;
                    if c.events == events {
                        complete += 1;
                    }
                }
            }
        }
        let finished = Instant::now();
        let _ = done_rx.recv();
        Ok(finished)
    });
    ready_rx.recv()?;
    let began = Instant::now();
    let written = on_cpu(1, || -> Result<()> {
        for k in 0..events {
            writer.call_ok(Op::Write, 0, &[&z(&format!("/bench/fan/k{k}")), b"x"])?;
        }
        Ok(())
    });
    let _ = done_tx.send(());
    written?;
    let finished = collector.join().map_err(|_| anyhow::anyhow!("collector panicked"))??;
    writer.call_ok(Op::Rm, 0, &[b"/bench/fan\0"])?;
    Ok(micros(finished.saturating_duration_since(began)))
}
