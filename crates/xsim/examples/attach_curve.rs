//! Attaches N devices to one guest and prints how the cost per device
//! moves with the number already attached: the shape behind xs-bench's
//! "attach N in a row" figures.
//!
//! ```text
//! cargo build --release --bins && cargo run --release -p xsim --example attach_curve -- [N] [STEP]
//! ```
//!
//! Starts a hosted host in a fresh state directory, a null `vif` backend
//! in a thread of this process (dom0's side), one `xsim-guest demo`
//! domain, then attaches N (default 1,000) devices one after another as
//! `xsim attach` does, printing per STEP (default 100) devices the mean
//! time per device and the requests per device dom0 sent (from the
//! daemon's CONTROL `stats`: the toolstack's and the backend's together).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use xsim::devices::null_driver::BackendThread;
use xsim::devices::{self, AttachSpec};
use xsim::{host, DomainSpec, StateDir, Toolstack};

fn main() -> Result<()> {
    let arg = |i: usize, default: usize| -> Result<usize> {
        std::env::args()
            .nth(i)
            .map(|c| c.parse())
            .transpose()
            .context("N and STEP are numbers")
            .map(|v| v.unwrap_or(default))
    };
    let (n, step) = (arg(1, 1000)?, arg(2, 100)?.max(1));
    let dir = std::env::temp_dir().join(format!("xsim-attach-curve-{}", std::process::id()));
    let state = StateDir::at(dir.clone());
    let programs = host::Programs::locate()?;
    let guest = programs.xsim.with_file_name("xsim-guest");
    host::up(&state, &programs)?;
    let result = run(&state, &guest.to_string_lossy(), n, step);
    host::down(&state)?;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run(state: &StateDir, guest: &str, n: usize, step: usize) -> Result<()> {
    let mut ts = Toolstack::connect(state)?;
    let client = xenstore::Client::connect(state.xenstored_socket())?;
    let backend = BackendThread::start(client, 0, "vif");
    let spec = DomainSpec {
        name: "curve".into(),
        program: vec![guest.into(), "demo".into()],
        env: Vec::new(),
        paused: false,
        netns: false,
        fuse: false,
    };
    let domid = ts.create(&spec)?.domid;
    let stats = xenstore::Client::connect(state.xenstored_socket())?;
    println!("{:>12} {:>14} {:>16}", "devices", "µs per device", "dom0 requests/dev");
    let began = Instant::now();
    let mut i = 0;
    while i < n {
        let chunk = step.min(n - i);
        let before = dom0_requests(&stats)?;
        let t = Instant::now();
        for _ in 0..chunk {
            let spec = AttachSpec { timeout: Duration::from_secs(30), ..AttachSpec::new(domid, "vif") };
            devices::attach(&mut ts, &spec).with_context(|| format!("device {i}"))?;
            i += 1;
        }
        let per = t.elapsed().as_secs_f64() * 1e6 / chunk as f64;
        let reqs = (dom0_requests(&stats)? - before - 1) as f64 / chunk as f64;
        println!("{:>5}..{:<6} {per:>14.0} {reqs:>16.1}", i - chunk, i);
    }
    println!("all {n}: {:.0} µs per device", began.elapsed().as_secs_f64() * 1e6 / n as f64);
    ts.destroy(domid)?;
    backend.stop()?;
    Ok(())
}

/// dom0's `requests` column from CONTROL `stats`.
fn dom0_requests(client: &xenstore::Client) -> Result<u64> {
    let text = client.control(&[b"stats"])?;
    let text = String::from_utf8_lossy(&text);
    let columns: Vec<&str> =
        text.lines().find_map(|l| l.strip_prefix("columns ")).context("no columns")?.split(' ').collect();
    let col = columns.iter().position(|c| *c == "requests").context("no requests column")?;
    let line = text.lines().find(|l| l.starts_with("domain 0 ")).context("no dom0 line")?;
    let fields: Vec<&str> = line.split(' ').skip(1).collect();
    Ok(fields.get(col).context("short line")?.parse()?)
}
