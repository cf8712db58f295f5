//! READ throughput with 1, 8 and 64 clients, each on its own connection
//! with one request outstanding at a time, for a fixed time.
//!
//! The clients run on CPU 1 and the daemon on CPU 0 (see the binary's
//! pinning), so the daemon has a core to itself and the figure is how many
//! requests it turns round, not how the two share a core.

use std::time::{Duration, Instant};

use anyhow::Result;
use xenstore_wire::Op;

use super::{on_cpu, Config, Target};
use crate::conn::Conn;
use crate::poller::Poller;
use crate::results::Results;

/// The group the figures go in.
pub const GROUP: &str = "READ throughput";

/// Client counts measured.
pub const CLIENTS: [usize; 3] = [1, 8, 64];

/// Measures throughput at each client count.
pub fn run(t: Target<'_>, cfg: Config, res: &mut Results) -> Result<()> {
    let secs = if cfg.quick { 0.2 } else { 2.0 };
    let mut setup = Conn::connect(t.socket)?;
    setup.call_ok(Op::Write, 0, &[b"/bench/thr\0", b"0123456789abcdef"])?;
    for clients in CLIENTS {
        let ops = measure(t, clients, Duration::from_secs_f64(secs))?;
        res.add(GROUP, &format!("{clients} clients"), "req/s", true, t.name, ops);
    }
    setup.call_ok(Op::Rm, 0, &[b"/bench/thr\0"])?;
    Ok(())
}

/// Requests per second that `clients` clients completed in `time`.
///
/// All clients are driven by one thread through epoll, each with one
/// request outstanding at a time: the load generator costs a read and a
/// write per request and no thread wake-ups, so the daemon, not 64
/// client threads on one core, is what limits the figure.
pub fn measure(t: Target<'_>, clients: usize, time: Duration) -> Result<f64> {
    let mut conns: Vec<Conn> = (0..clients).map(|_| Conn::connect(t.socket)).collect::<Result<_>>()?;
    on_cpu(1, || drive(&mut conns, time))
}

fn drive(conns: &mut [Conn], time: Duration) -> Result<f64> {
    let mut poller = Poller::new()?;
    for (i, c) in conns.iter_mut().enumerate() {
        c.stream().set_nonblocking(true)?;
        poller.add(c.stream(), i)?;
    }
    let began = Instant::now();
    let deadline = began + time;
    for c in conns.iter_mut() {
        c.send(Op::Read, 0, &[b"/bench/thr\0"]);
        c.flush()?;
    }
    let mut done = 0u64;
    let mut outstanding = conns.len();
    let mut stopped_at = None;
    while outstanding > 0 {
        let ready = poller.wait(Duration::from_secs(10))?;
        anyhow::ensure!(!ready.is_empty(), "the daemon stopped answering");
        let now = Instant::now();
        if stopped_at.is_none() && now >= deadline {
            stopped_at = Some(now);
        }
        let stopping = stopped_at.is_some();
        for i in ready {
            let c = &mut conns[i];
            // One read per readiness: epoll is level-triggered.
            c.try_fill()?;
            while let Some(m) = c.take_buffered()? {
                anyhow::ensure!(m.error().is_none(), "READ failed: {:?}", m.error());
                outstanding -= 1;
                if !stopping {
                    done += 1;
                    c.send(Op::Read, 0, &[b"/bench/thr\0"]);
                    outstanding += 1;
                }
            }
            c.flush()?;
        }
    }
    // Precision loss only past 2^53 requests.
    #[allow(clippy::cast_precision_loss)]
    Ok(done as f64 / stopped_at.unwrap_or_else(Instant::now).duration_since(began).as_secs_f64())
}
