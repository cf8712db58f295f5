//! The two-guest message exchange (the XTF scenario from the field): the
//! dom0 side.
//!
//! A test author wanted two guest test kernels to message each other
//! through XenStore. What dom0 must do, in order: create both guests
//! paused; publish their domids under `/ipc` and let both read it; give
//! each guest an inbox in its own `data/` that the other may write (and
//! that the owner keeps full access to, since nodes the peer creates there
//! are the peer's); give each an `ack` node the other may read; then
//! unpause both. The guests (`xsim-guest ipc`) do the rest and report
//! through `data/result` and their exit status.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use xen_platform::{DomId, DomainState, ShutdownReason};
use xenstore::{Access, Store};

use crate::toolstack::perms;
use crate::{DomainSpec, Toolstack};

/// How a run went.
#[derive(Debug, Clone)]
pub struct IpcReport {
    /// The two domains.
    pub domids: [DomId; 2],
    /// Messages each way.
    pub count: u64,
    /// From unpause until both had shut down.
    pub elapsed: Duration,
    /// Each guest's console.
    pub consoles: [String; 2],
}

/// Runs the exchange with `guest` (the `xsim-guest` binary) and `count`
/// messages each way; fails unless both guests report success within
/// `timeout`. The domains are destroyed either way.
pub fn run(ts: &mut Toolstack, guest: &str, count: u64, timeout: Duration) -> Result<IpcReport> {
    let spec = |name: &str| DomainSpec {
        name: name.to_owned(),
        program: vec![guest.to_owned(), "ipc".into(), "--count".into(), count.to_string()],
        env: Vec::new(),
        paused: true,
        netns: false,
        fuse: false,
    };
    let a = ts.create(&spec("ipc-a"))?.domid;
    let b = match ts.create(&spec("ipc-b")) {
        Ok(d) => d.domid,
        Err(e) => {
            let _ = ts.destroy(a);
            return Err(e);
        }
    };
    let result = exchange(ts, a, b, timeout);
    let consoles = [a, b].map(|d| std::fs::read_to_string(ts.state().console(d)).unwrap_or_default());
    let _ = ts.destroy(a);
    let _ = ts.destroy(b);
    let _ = ts.store().rm("/ipc");
    match result {
        Ok(elapsed) => Ok(IpcReport { domids: [a, b], count, elapsed, consoles }),
        Err(e) => Err(e.context(format!("console of {a}:\n{}\nconsole of {b}:\n{}", consoles[0], consoles[1]))),
    }
}

fn exchange(ts: &mut Toolstack, a: DomId, b: DomId, timeout: Duration) -> Result<Duration> {
    let store = ts.store();
    let readers = perms(&[(0, Access::None), (a, Access::Read), (b, Access::Read)]);
    store.transaction(|t| {
        t.write("/ipc/a", a.to_string().as_bytes())?;
        t.write("/ipc/b", b.to_string().as_bytes())?;
        for p in ["/ipc", "/ipc/a", "/ipc/b"] {
            t.set_perms(p, &readers)?;
        }
        for (me, peer) in [(a, b), (b, a)] {
            let data = format!("/local/domain/{me}/data");
            // The owner's own entry matters: messages the peer creates
            // inherit these permissions with the peer as owner.
            let inbox = perms(&[(me, Access::None), (peer, Access::Both), (me, Access::Both)]);
            t.mkdir(&format!("{data}/inbox"))?;
            t.set_perms(&format!("{data}/inbox"), &inbox)?;
            let ack = perms(&[(me, Access::None), (peer, Access::Read)]);
            t.write(&format!("{data}/ack"), b"0")?;
            t.set_perms(&format!("{data}/ack"), &ack)?;
        }
        Ok(())
    })?;
    let started = Instant::now();
    ts.unpause(a)?;
    ts.unpause(b)?;
    let deadline = started + timeout;
    loop {
        let states: Vec<Option<DomainState>> =
            [a, b].iter().map(|&d| ts.resolve(&d.to_string()).ok().map(|i| i.state)).collect();
        if states.iter().all(|s| matches!(s, Some(DomainState::Shutdown(_)))) {
            break;
        }
        if let Some((d, s)) = [a, b]
            .iter()
            .zip(&states)
            .find(|(_, s)| matches!(s, Some(DomainState::Shutdown(r)) if *r != ShutdownReason::Poweroff))
        {
            bail!("domain {d} failed: {s:?}");
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?}: states {states:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = started.elapsed();
    for d in [a, b] {
        let state = ts.resolve(&d.to_string())?.state;
        if state != DomainState::Shutdown(ShutdownReason::Poweroff) {
            bail!("domain {d} ended {state}");
        }
        let result = ts.store().read(&format!("/local/domain/{d}/data/result"))?;
        if result != b"ok" {
            bail!("domain {d} reported {:?}", String::from_utf8_lossy(&result));
        }
    }
    Ok(elapsed)
}
