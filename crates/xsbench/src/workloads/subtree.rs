//! MKDIR of a two-level subtree one node at a time, then RM of the whole
//! subtree in one request.

use std::time::Instant;

use anyhow::{ensure, Result};
use xenstore_wire::Op;

use super::{on_cpu, Config, Target};
use crate::conn::{z, Conn};
use crate::results::Results;
use crate::stats::{median, micros};

/// The group the figures go in.
pub const GROUP: &str = "Subtrees";

/// Builds `/bench/tree/a<i>/b<j>` with MKDIR round trips, then removes it.
pub fn run(t: Target<'_>, cfg: Config, res: &mut Results) -> Result<()> {
    on_cpu(0, || measure(t, cfg, res))
}

fn measure(t: Target<'_>, cfg: Config, res: &mut Results) -> Result<()> {
    let (dirs, leaves) = (10, cfg.n(100, 10));
    let nodes = 1 + dirs + dirs * leaves;
    let mut c = Conn::connect(t.socket)?;
    let mut times = Vec::with_capacity(dirs * leaves);
    c.call_ok(Op::Mkdir, 0, &[b"/bench/tree\0"])?;
    for i in 0..dirs {
        for j in 0..leaves {
            let path = z(&format!("/bench/tree/a{i}/b{j}"));
            let began = Instant::now();
            c.call_ok(Op::Mkdir, 0, &[&path])?;
            times.push(micros(began.elapsed()));
        }
    }
    let listed = c.call_ok(Op::Directory, 0, &[b"/bench/tree/a3\0"])?;
    ensure!(listed.payload.iter().filter(|b| **b == 0).count() == leaves, "MKDIR lost nodes");
    let began = Instant::now();
    c.call_ok(Op::Rm, 0, &[b"/bench/tree\0"])?;
    let rm = micros(began.elapsed());
    ensure!(c.call(Op::Read, 0, &[b"/bench/tree/a3/b1\0"])?.error() == Some("ENOENT"), "RM left nodes");
    res.add(GROUP, "MKDIR round trip p50", "µs", false, t.name, median(&mut times));
    res.add(GROUP, &format!("RM of a {nodes}-node subtree"), "µs", false, t.name, rm);
    Ok(())
}
