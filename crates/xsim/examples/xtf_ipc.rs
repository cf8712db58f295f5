//! Two guests message each other through XenStore: the XTF scenario.
//!
//! ```text
//! cargo build --release --bins && cargo run --release -p xsim --example xtf_ipc -- [COUNT]
//! ```
//!
//! Starts a hosted host in a fresh state directory (xenstored as dom0's
//! daemon), creates two `xsim-guest ipc` domains paused, grants them what
//! they need the way dom0 must (see `xsim::ipc`), unpauses them, and
//! waits until both have exchanged COUNT messages (default 10,000) each
//! way and reported success.

use std::time::Duration;

use anyhow::{Context, Result};
use xsim::{host, StateDir, Toolstack};

fn main() -> Result<()> {
    let count: u64 = std::env::args().nth(1).map(|c| c.parse()).transpose().context("COUNT")?.unwrap_or(10_000);
    let dir = std::env::temp_dir().join(format!("xsim-xtf-ipc-{}", std::process::id()));
    let state = StateDir::at(dir.clone());
    let programs = host::Programs::locate()?;
    let guest = programs.xsim.with_file_name("xsim-guest");
    host::up(&state, &programs)?;
    let result = (|| {
        let mut ts = Toolstack::connect(&state)?;
        xsim::ipc::run(&mut ts, &guest.to_string_lossy(), count, Duration::from_secs(600))
    })();
    host::down(&state)?;
    let report = result?;
    println!(
        "domains {} and {} exchanged {} messages each way in {:.2} s ({:.0} messages/s in all)",
        report.domids[0],
        report.domids[1],
        report.count,
        report.elapsed.as_secs_f64(),
        (2 * report.count) as f64 / report.elapsed.as_secs_f64()
    );
    for console in &report.consoles {
        print!("{console}");
    }
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
