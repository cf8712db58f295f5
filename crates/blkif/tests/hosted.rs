//! Across real processes on the hosted platform: a host (`xsim up`: the
//! hypervisor and xenstored), `xen-blkback` as a dom0 process serving an
//! image file, and guests (`xsim create`) running `blkfront`, which
//! write, flush and read back through the ring; the image on the host
//! then holds what they wrote.
//!
//! Needs the `xsim` and `xenstored` binaries beside this crate's (built
//! by `cargo build --workspace --bins`, as scripts/test does).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use blkif::pattern::pattern;
use xen_platform::{DomId, DomainState, ShutdownReason};
use xenbus::toolstack::{self, DeviceSpec};
use xenbus::SyncConn;
use xsim::{host, DomainSpec, StateDir, Toolstack};

mod xsim_host;

const DEVID: u32 = 51712;

/// A running host and backend, stopped when dropped.
struct Hosted {
    state: StateDir,
    ts: Toolstack,
    backend: Child,
    dir: tempfile::TempDir,
}

impl Hosted {
    fn up() -> Hosted {
        Hosted::up_with(&[])
    }

    /// With `args` for the backend too.
    fn up_with(args: &[&str]) -> Hosted {
        let (dir, state, ts) = xsim_host::up();
        let backend = Command::new(env!("CARGO_BIN_EXE_xen-blkback"))
            .arg("--hypervisor")
            .arg(state.hypervisor_socket())
            .arg("--socket")
            .arg(state.xenstored_socket())
            .arg("-v")
            .args(args)
            .stderr(std::fs::File::create(dir.path().join("blkback.log")).unwrap())
            .spawn()
            .expect("xen-blkback");
        Hosted { state, ts, backend, dir }
    }

    /// Kills the backend process (SIGKILL: it leaves its devices as they
    /// were, Connected) and starts a new one, which takes them over.
    fn restart_backend(&mut self) {
        self.backend.kill().expect("kill xen-blkback");
        self.backend.wait().expect("reap xen-blkback");
        std::thread::sleep(Duration::from_millis(200));
        self.backend = Command::new(env!("CARGO_BIN_EXE_xen-blkback"))
            .arg("--hypervisor")
            .arg(self.state.hypervisor_socket())
            .arg("--socket")
            .arg(self.state.xenstored_socket())
            .arg("-v")
            .stderr(std::fs::File::create(self.dir.path().join("blkback2.log")).unwrap())
            .spawn()
            .expect("xen-blkback again");
    }

    fn image(&self, sectors: u64) -> PathBuf {
        let path = self.dir.path().join("disk.img");
        std::fs::File::create(&path).unwrap().set_len(sectors * 512).unwrap();
        path
    }

    /// Creates a paused guest running `blkfront DEVID ARGS`, attaches the
    /// image to it as libxl would, and lets it run.
    fn blkfront(&mut self, name: &str, image: &Path, mode: &str, args: &[&str]) -> DomId {
        self.blkfront_with(name, image, mode, &[], args)
    }

    /// As [`Hosted::blkfront`], with `options` before the device.
    fn blkfront_with(&mut self, name: &str, image: &Path, mode: &str, options: &[&str], args: &[&str]) -> DomId {
        let mut program = vec![env!("CARGO_BIN_EXE_blkfront").to_owned(), "--timeout".into(), "30".into()];
        program.extend(options.iter().map(|a| a.to_string()));
        program.push(DEVID.to_string());
        program.extend(args.iter().map(|a| a.to_string()));
        let spec =
            DomainSpec { name: name.to_owned(), program, env: Vec::new(), paused: true, netns: false, fuse: false };
        let domid = self.ts.create(&spec).expect("xsim create").domid;
        let mut device = DeviceSpec::new("vbd", DEVID, domid, 0);
        device.backend_keys = [
            ("params", image.display().to_string()),
            ("mode", mode.to_owned()),
            ("type", "phy".to_owned()),
            ("dev", "xvda".to_owned()),
            ("device-type", "disk".to_owned()),
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .to_vec();
        device.frontend_keys =
            vec![("virtual-device".into(), DEVID.to_string()), ("device-type".into(), "disk".into())];
        let conn = SyncConn::new(xenstore::Client::connect(self.state.xenstored_socket()).expect("xenstored"));
        toolstack::attach(&conn, &device).expect("attach");
        self.ts.unpause(domid).expect("unpause");
        domid
    }

    fn expect_pass(&mut self, domid: DomId) {
        let state = self.ts.wait_shutdown(domid, Duration::from_secs(60)).expect("domain exists");
        let console = std::fs::read_to_string(self.state.console(domid)).unwrap_or_default();
        let log = std::fs::read_to_string(self.dir.path().join("blkback.log")).unwrap_or_default();
        assert_eq!(
            state,
            Some(DomainState::Shutdown(ShutdownReason::Poweroff)),
            "blkfront in domain {domid}:\n{console}\nxen-blkback:\n{log}"
        );
        assert!(console.contains("PASS blkfront"), "console:\n{console}");
    }
}

impl Drop for Hosted {
    fn drop(&mut self) {
        let _ = self.backend.kill();
        let _ = self.backend.wait();
        let _ = host::down(&self.state);
    }
}

#[test]
fn a_guest_writes_through_blkback_and_another_reads_it_back() {
    let mut hosted = Hosted::up();
    let image = hosted.image(16384);
    let writer = hosted.blkfront(
        "writer",
        &image,
        "w",
        &["info", "write", "0", "--pattern", "42", "300", "write", "9000", "--pattern", "7", "9", "flush"],
    );
    hosted.expect_pass(writer);
    let bytes = std::fs::read(&image).unwrap();
    assert!(bytes[..300 * 512] == pattern(42, 0, 300), "the image holds the first write");
    assert!(bytes[9000 * 512..9009 * 512] == pattern(7, 9000, 9), "and the second");

    let reader = hosted.blkfront(
        "reader",
        &image,
        "r",
        &["info", "verify", "0", "--pattern", "42", "300", "verify", "9000", "--pattern", "7", "9"],
    );
    hosted.expect_pass(reader);
}

/// The `bench` command runs operations with many in flight and says how
/// many completed (the figures are xs-bench's; only the line is checked).
/// Both ends wait on their event channels and on their xenstore watch's
/// doorbell, so a state change wakes them at once: with ticks of an hour
/// (before, each end saw xenstore's changes only at its next tick, and
/// the handshake took up to a tick per step), the device still connects,
/// serves and closes.
#[test]
fn both_ends_are_woken_by_xenstore_events_not_by_their_tick() {
    let hour = "3600000";
    let mut hosted = Hosted::up_with(&["--tick-ms", hour]);
    let image = hosted.image(2048);
    let guest = hosted.blkfront_with(
        "woken",
        &image,
        "w",
        &["--tick-ms", hour],
        &["info", "write", "0", "--pattern", "5", "64", "flush", "verify", "0", "--pattern", "5", "64"],
    );
    hosted.expect_pass(guest);
}

#[test]
fn a_guest_benches_reads_and_writes_with_many_in_flight() {
    let mut hosted = Hosted::up();
    let image = hosted.image(4096);
    let guest = hosted.blkfront(
        "bench",
        &image,
        "w",
        &["bench", "write", "4096", "32", "0.2", "bench", "read", "65536", "4", "0.2"],
    );
    hosted.expect_pass(guest);
    let console = std::fs::read_to_string(hosted.state.console(guest)).unwrap();
    let lines: Vec<&str> = console.lines().filter(|l| l.starts_with("bench op=")).collect();
    assert_eq!(lines.len(), 2, "{console}");
    for (line, prefix) in lines.iter().zip(["bench op=write size=4096 depth=32 ", "bench op=read size=65536 depth=4 "])
    {
        assert!(line.starts_with(prefix), "{line}");
        let ops: u64 = line.split_whitespace().find_map(|w| w.strip_prefix("ops=")).unwrap().parse().unwrap();
        assert!(ops > 0, "{line}");
    }
    // The writes reached the image.
    assert!(std::fs::read(&image).unwrap()[..4096].iter().all(|&b| b == 0x5a));
}

/// Across processes: dom0's backend is killed (SIGKILL) while a guest
/// writes with 8 requests in flight, and a new backend process is
/// started. The new one takes the connected device over (Closing, then
/// InitWait once the frontend closed), the frontend reconnects and sends
/// its in-flight requests again, and the guest's program finishes: its
/// writes after the restart land and read back, none is lost.
#[test]
fn a_backend_killed_mid_io_and_restarted_is_reconnected_to() {
    let mut hosted = Hosted::up();
    let image = hosted.image(16384);
    let guest = hosted.blkfront(
        "survivor",
        &image,
        "w",
        &[
            "info",
            "bench",
            "write",
            "4096",
            "8",
            "2",
            "write",
            "0",
            "--pattern",
            "42",
            "4096",
            "flush",
            "verify",
            "0",
            "--pattern",
            "42",
            "4096",
        ],
    );
    // Kill it once the guest is connected and writing.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(hosted.state.console(guest)).unwrap_or_default().contains("sectors ") {
        assert!(std::time::Instant::now() < deadline, "the guest never connected");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    hosted.restart_backend();
    hosted.expect_pass(guest);
    let console = std::fs::read_to_string(hosted.state.console(guest)).unwrap();
    assert!(console.contains("bench op=write"), "{console}");
    // The second backend connected the device: the takeover happened.
    let log = std::fs::read_to_string(hosted.dir.path().join("blkback2.log")).unwrap_or_default();
    assert!(log.contains("connected"), "the new backend never connected the device:\n{log}");
    let bytes = std::fs::read(&image).unwrap();
    assert!(bytes[..4096 * 512] == pattern(42, 0, 4096), "the writes after the restart are on the image");
}
