//! xen-blkback in QEMU's place: libxl runs its device model for a PV
//! guest whose disks have `backend=qdisk`, with a fixed path and QEMU's
//! command line ([`crate::qemu_args`]). Installed (or linked) at that
//! path, xen-blkback reads the command line, serves the guest's
//! `backend/qdisk/<domid>/*` disks, answers libxl's QMP questions on the
//! monitors it was given ([`crate::qmp`]), says it is ready the way QEMU
//! does, and ends when libxl signals it (`SIGHUP` on `xl destroy`), on
//! `SIGTERM`/`SIGINT`, on QMP `quit`, or when the guest's home in
//! xenstore is removed (its domain is gone: the grants it still maps
//! would keep the dead domain from being freed).
//!
//! Readiness: libxl waits (60 s) for
//! `/local/domain/<own domid>/device-model/<domid>/state` to read
//! `running`, which QEMU writes when its machine starts; here it is
//! written once the backend has probed the disks there are (each is in
//! InitWait), or, started with `-S`, at QMP `cont`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use anyhow::{Context, Result};
use blkif::{BackendType, Blkback, ServeConfig};
use xenbus::{Conn, SyncConn};
use xenstore::Store;

use crate::platform;
use crate::qemu_args::{self, DmArgs, Parsed};
use crate::qmp::{self, Effect};
use crate::serve::{self, Ended, Stop};

/// How often xenstore events, signals and QMP are looked at when no
/// request comes.
const TICK: Duration = Duration::from_millis(20);

/// Whether the program was called by a name of QEMU's (libxl runs
/// `/usr/libexec/xen-qemu-system-i386` on Debian,
/// `<libexec>/qemu-system-i386` upstream).
pub fn called_as_qemu(argv0: &str) -> bool {
    let name = std::path::Path::new(argv0).file_name().and_then(|n| n.to_str()).unwrap_or_default();
    name.starts_with("qemu-system-") || name.starts_with("xen-qemu-system-")
}

/// Runs as QEMU with `args` (QEMU's, without the program name). Errors
/// go to stderr, which libxl sends to `/var/log/xen/qemu-dm-<name>.log`.
pub fn main(args: &[String]) -> Result<()> {
    let dm = match qemu_args::parse(args).context("reading QEMU's command line")? {
        Parsed::Serve(dm) => dm,
        Parsed::Probe => {
            // Xen 4.20's probe: failing it is allowed, libxl goes on.
            anyhow::bail!("not QEMU: there are no command line options to probe (-machine none)");
        }
    };
    crate::init_logging(log_level());
    tracing::info!(domid = dm.domid, name = ?dm.name, "serving backend/qdisk in QEMU's place");
    run(&dm)
}

/// `XEN_BLKBACK_LOG` (error, warn, info, debug, trace), else info.
fn log_level() -> tracing::Level {
    std::env::var("XEN_BLKBACK_LOG").ok().and_then(|v| v.parse().ok()).unwrap_or(tracing::Level::INFO)
}

fn run(dm: &DmArgs) -> Result<()> {
    let stop = Stop::on_signals()?;
    let machine = platform::open(platform::detect(), || platform::hypervisor_socket(None))?;
    let client = xenstore::Client::open().context("connecting to xenstored")?;
    // QEMU's xen-bus: the "domid" node of its own home, else dom0.
    let own: u16 = client
        .read("domid")
        .ok()
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let home = format!("/local/domain/{}", dm.domid);
    anyhow::ensure!(
        client.exists(&home).context("reading the guest's home")?,
        "domain {} has no {home}: no such guest",
        dm.domid
    );
    let home_watch = client.watch(&home, "xen-blkback:home").context("watching the guest's home")?;

    let running = Arc::new(AtomicBool::new(!dm.start_paused));
    let (effects_sink, effects) = mpsc::channel();
    let mut sockets: Vec<PathBuf> = Vec::new();
    for path in &dm.monitors {
        let listener = qmp::listen(path).with_context(|| format!("listening on {}", path.display()))?;
        sockets.push(path.clone());
        qmp::serve(listener, path.clone(), Arc::clone(&running), effects_sink.clone());
    }

    let config = ServeConfig { backend_type: BackendType::Qdisk, frontend: Some(dm.domid) };
    let mut backend = Blkback::with_config(SyncConn::new(client), own, machine.grants, machine.events, config);
    backend.start().context("watching backend/qdisk")?;
    // The disks already there are probed (in InitWait) before "running".
    backend.scan().context("probing the disks")?;
    let state_node = format!("/local/domain/{own}/device-model/{}/state", dm.domid);
    if running.load(Ordering::Acquire) {
        ready(&backend, &state_node)?;
    }

    let ended = serve::run(&mut backend, &stop, TICK, |backend| {
        while let Ok(effect) = effects.try_recv() {
            match effect {
                Effect::Quit => return Ok(Some("QMP quit".into())),
                Effect::Cont => {
                    if !running.swap(true, Ordering::AcqRel) {
                        ready(backend, &state_node)?;
                    }
                }
            }
        }
        while let Ok(event) = home_watch.try_recv() {
            if event.path == home && !backend.bus().conn().store().exists(&home)? {
                return Ok(Some(format!("domain {} is gone ({home} removed)", dm.domid)));
            }
        }
        Ok(None)
    });
    for path in &sockets {
        let _ = std::fs::remove_file(path);
    }
    match ended? {
        Ended::Signal => tracing::info!("signalled: unmapping and exiting"),
        Ended::Done(reason) => tracing::info!(%reason, "unmapping and exiting"),
    }
    drop(backend);
    Ok(())
}

/// Writes the readiness node QEMU writes when its machine runs.
fn ready(backend: &Blkback<SyncConn>, node: &str) -> Result<()> {
    backend.bus().conn().store().write(node, b"running").with_context(|| format!("writing {node}"))?;
    tracing::info!(node, "ready");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemus_names_are_recognised_and_ours_is_not() {
        for name in ["/usr/libexec/xen-qemu-system-i386", "qemu-system-i386", "/usr/lib/xen/bin/qemu-system-x86_64"] {
            assert!(called_as_qemu(name), "{name}");
        }
        for name in ["xen-blkback", "/usr/sbin/xen-blkback", "qemu-img", ""] {
            assert!(!called_as_qemu(name), "{name}");
        }
    }
}
