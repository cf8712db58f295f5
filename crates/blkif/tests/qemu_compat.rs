//! `xen-blkback` in QEMU's place, across real processes on the hosted
//! platform: started with the command line libxl 4.17 gives its device
//! model for a PV guest, it writes the readiness node libxl waits for,
//! answers libxl's QMP conversation, serves the guest's `qdisk` disk
//! (written as libxl writes it) to a guest running `blkfront`, and exits
//! on `SIGHUP` (what `xl destroy` sends) or when the guest's home is
//! removed. And a command line asking for what only QEMU does is refused.
//!
//! Needs the `xsim` and `xenstored` binaries beside this crate's (built
//! by `cargo build --workspace --bins`, as scripts/test does).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use blkif::pattern::pattern;
use xen_platform::{DomId, DomainState, ShutdownReason};
use xenbus::toolstack::{self, DeviceSpec};
use xenbus::SyncConn;
use xenstore::Store;
use xsim::{host, DomainSpec, StateDir, Toolstack};

mod xsim_host;

const DEVID: u32 = 51712;

/// A hosted host (no backend running), stopped when dropped.
struct Host {
    state: StateDir,
    ts: Toolstack,
    conn: SyncConn,
    dir: tempfile::TempDir,
    shim: Option<Child>,
}

impl Host {
    fn up() -> Host {
        let (dir, state, ts) = xsim_host::up();
        let conn = SyncConn::new(xenstore::Client::connect(state.xenstored_socket()).expect("xenstored"));
        Host { state, ts, conn, dir, shim: None }
    }

    /// A paused guest running `blkfront DEVID ARGS`, with a qdisk disk of
    /// `image` written as libxl writes it, and the device-model directory
    /// libxl makes before spawning its device model.
    fn guest(&mut self, name: &str, image: &Path, args: &[&str]) -> DomId {
        let mut program = vec![env!("CARGO_BIN_EXE_blkfront").to_owned(), "--timeout".into(), "30".into()];
        program.push(DEVID.to_string());
        program.extend(args.iter().map(|a| a.to_string()));
        let spec =
            DomainSpec { name: name.to_owned(), program, env: Vec::new(), paused: true, netns: false, fuse: false };
        let domid = self.ts.create(&spec).expect("xsim create").domid;
        let mut device = DeviceSpec::new("vbd", DEVID, domid, 0).with_backend_devtype("qdisk");
        device.backend_keys = [
            ("params", format!("aio:{}", image.display())),
            ("removable", "0".into()),
            ("bootable", "1".into()),
            ("dev", "xvda".into()),
            ("type", "qdisk".into()),
            ("mode", "w".into()),
            ("device-type", "disk".into()),
            ("discard-enable", "1".into()),
            ("specification", "xen".into()),
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .to_vec();
        device.frontend_keys = [("virtual-device", DEVID.to_string()), ("device-type", "disk".into())]
            .map(|(k, v)| (k.to_owned(), v))
            .to_vec();
        toolstack::attach(&self.conn, &device).expect("attach");
        self.conn.client().mkdir(&format!("/local/domain/0/device-model/{domid}")).unwrap();
        domid
    }

    fn qmp_socket(&self, domid: DomId) -> PathBuf {
        self.dir.path().join(format!("qmp-libxl-{domid}"))
    }

    /// Starts `xen-blkback qemu-compat` with libxl 4.17's arguments for a
    /// PV guest (its QMP sockets in the test's directory).
    fn start_shim(&mut self, domid: DomId, name: &str) {
        let stat = self.dir.path().join(format!("qmp-libxenstat-{domid}"));
        let line = format!(
            "qemu-compat -xen-domid {domid} -no-shutdown \
             -chardev socket,id=libxl-cmd,path={},server=on,wait=off -mon chardev=libxl-cmd,mode=control \
             -chardev socket,id=libxenstat-cmd,path={},server=on,wait=off -mon chardev=libxenstat-cmd,mode=control \
             -nodefaults -no-user-config -xen-attach -name {name} -vnc none -display none -nographic \
             -machine xenpv -m 512",
            self.qmp_socket(domid).display(),
            stat.display()
        );
        let child = Command::new(env!("CARGO_BIN_EXE_xen-blkback"))
            .args(line.split_whitespace())
            .env("XSIM_STATE", self.state.root())
            .env("XENSTORED_PATH", self.state.xenstored_socket())
            .env("XEN_BLKBACK_LOG", "debug")
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join("qemu-dm.log")).unwrap())
            .spawn()
            .expect("xen-blkback qemu-compat");
        self.shim = Some(child);
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("qemu-dm.log")).unwrap_or_default()
    }

    /// Waits (as libxl's spawn does, 60 s there) for the readiness node.
    fn wait_running(&self, domid: DomId) {
        let node = format!("/local/domain/0/device-model/{domid}/state");
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.conn.client().read(&node).ok().as_deref() != Some(b"running".as_slice()) {
            assert!(Instant::now() < deadline, "{node} never read running:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits at most 5 s for the shim to exit.
    fn wait_exit(&mut self) -> ExitStatus {
        let child = self.shim.as_mut().expect("a shim");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.shim = None;
                return status;
            }
            assert!(Instant::now() < deadline, "the shim did not exit:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal_shim(&self, signal: rustix::process::Signal) {
        let pid = self.shim.as_ref().expect("a shim").id();
        let pid = rustix::process::Pid::from_raw(i32::try_from(pid).unwrap()).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut shim) = self.shim.take() {
            let _ = shim.kill();
            let _ = shim.wait();
        }
        let _ = host::down(&self.state);
    }
}

/// libxl's QMP client (libxl_qmp.c): greeting, qmp_capabilities, then
/// `command`; each message a line ending in CRLF. Returns the replies.
fn libxl_qmp(socket: &Path, command: &str) -> (serde_json::Value, serde_json::Value) {
    let mut stream = UnixStream::connect(socket).expect("QMP socket");
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut next = || {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(line.ends_with("\r\n"), "{line:?}");
        serde_json::from_str::<serde_json::Value>(&line).unwrap()
    };
    let greeting = next();
    write!(stream, "{{\"execute\":\"qmp_capabilities\",\"id\":1}}\r\n").unwrap();
    assert_eq!(next(), serde_json::json!({ "return": {}, "id": 1 }));
    write!(stream, "{{\"execute\":\"{command}\",\"id\":2}}\r\n").unwrap();
    (greeting, next())
}

#[test]
fn as_qemu_for_libxl_it_gets_ready_answers_qmp_serves_the_guest_and_exits_on_sighup() {
    let mut host = Host::up();
    let image = host.dir.path().join("disk.img");
    std::fs::File::create(&image).unwrap().set_len(4096 * 512).unwrap();
    let domid = host.guest(
        "guest",
        &image,
        &["info", "write", "0", "--pattern", "9", "200", "flush", "verify", "0", "--pattern", "9", "200"],
    );
    host.start_shim(domid, "guest");
    host.wait_running(domid);
    // The disk was probed before "running": the backend waits for the
    // guest, which is still paused.
    let be_dir = format!("/local/domain/0/backend/qdisk/{domid}/{DEVID}");
    assert_eq!(host.conn.client().read(&format!("{be_dir}/state")).unwrap(), b"2");

    // What libxl asks after the spawn (device_model_postconfig_chardev).
    let (greeting, reply) = libxl_qmp(&host.qmp_socket(domid), "query-chardev");
    assert_eq!(greeting["QMP"]["version"]["qemu"]["major"], 7);
    assert_eq!(reply, serde_json::json!({ "return": [], "id": 2 }));

    host.ts.unpause(domid).expect("unpause");
    let state = host.ts.wait_shutdown(domid, Duration::from_secs(60)).expect("domain exists");
    let console = std::fs::read_to_string(host.state.console(domid)).unwrap_or_default();
    assert_eq!(
        state,
        Some(DomainState::Shutdown(ShutdownReason::Poweroff)),
        "guest:\n{console}\nshim:\n{}",
        host.log()
    );
    assert!(console.contains("PASS blkfront"), "{console}");
    assert!(std::fs::read(&image).unwrap()[..200 * 512] == pattern(9, 0, 200), "the image holds the guest's write");

    // xl destroy: libxl__kill_xs_path sends SIGHUP.
    host.signal_shim(rustix::process::Signal::HUP);
    let status = host.wait_exit();
    assert!(status.success(), "{status}:\n{}", host.log());
    assert!(!host.qmp_socket(domid).exists(), "its QMP sockets are removed");
    assert!(host.log().contains("signalled"), "{}", host.log());
}

#[test]
fn as_qemu_it_exits_by_itself_when_the_guests_home_is_removed() {
    let mut host = Host::up();
    let image = host.dir.path().join("disk.img");
    std::fs::File::create(&image).unwrap().set_len(64 * 512).unwrap();
    let domid = host.guest("guest", &image, &["info"]);
    host.start_shim(domid, "guest");
    host.wait_running(domid);
    // libxl's destroy removes /local/domain/<domid> (devices_destroy_cb).
    host.conn.client().rm(&format!("/local/domain/{domid}")).unwrap();
    let status = host.wait_exit();
    assert!(status.success(), "{status}:\n{}", host.log());
    assert!(host.log().contains("is gone"), "{}", host.log());
}

#[test]
fn as_qemu_a_command_line_asking_for_what_only_qemu_does_is_refused_clearly() {
    let rows: &[(&str, &str)] = &[
        ("-xen-domid 1 -xen-attach -machine xenpv -vnc 127.0.0.1:0", "framebuffer"),
        ("-xen-domid 1 -xen-attach -machine xenfv", "HVM"),
        ("-xen-domid 1 -xen-attach -machine xenpv -xen-domid-restrict", "dm_restrict"),
        ("-S -machine none,accel=xen", "probe"),
    ];
    for (line, expected) in rows {
        let output = Command::new(env!("CARGO_BIN_EXE_xen-blkback"))
            .arg("qemu-compat")
            .args(line.split_whitespace())
            .env("XSIM_STATE", "/nonexistent")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{line}");
        assert!(stderr.contains(expected), "{line}: {stderr}");
    }
}
