//! Crash recovery with a hosted guest: xenstored runs with `--persist`, a
//! guest writes over its ring, xenstored is SIGKILLed and started again on
//! the same directory. The restarted daemon attaches the guest's ring again
//! and sets its error indicator; the guest reconnects and goes on, and
//! every write it saw acknowledged is there (`xsim-guest check resume`
//! over the raw ring, `xsim-guest check resume-client` with the ordinary
//! `xenstore::Client`, which resumes by itself).

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::TestHost;
use xenstore::Store;

/// Our xenstored on the host's sockets, with `--persist dir`.
fn start_xenstored(host: &TestHost, dir: &Path) -> Child {
    let state = &host.state;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(state.xenstored_log()).unwrap();
    let child = Command::new(support::programs().xenstored)
        .arg("--no-fork")
        .arg("--socket")
        .arg(state.xenstored_socket())
        .arg("--hosted")
        .arg(state.hypervisor_socket())
        .arg("--persist")
        .arg(dir)
        .env_remove("XENSTORED_PATH")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start xenstored");
    std::fs::write(state.xenstored_pid(), format!("{}\n", child.id())).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(state.xenstored_socket()).is_err() {
        assert!(Instant::now() < deadline, "xenstored did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

/// SIGKILLs `pid` and waits until it is gone: a daemon started while the
/// old one still holds the socket would find it in use and exit.
fn sigkill(pid: u32) {
    let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        // A zombie (the host's own daemon is not our child) is gone enough:
        // its descriptors are closed.
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if state.split_whitespace().nth(2) == Some("Z") {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Replaces the host's xenstored by ours with `--persist`, starts a guest
/// running `xsim-guest check <check>`, waits until `data/<dir>` has 50
/// entries, SIGKILLs xenstored and starts it again on the same directory,
/// and expects the guest to pass.
fn guest_survives_a_kill(name: &str, check: &[&str], dir_name: &str) {
    let mut host = TestHost::up();
    let dir = host.state.root().join("store");
    // The host's own xenstored keeps nothing: ours, persistent, replaces it.
    let pid: u32 = std::fs::read_to_string(host.state.xenstored_pid()).unwrap().trim().parse().unwrap();
    sigkill(pid);
    let mut daemon = start_xenstored(&host, &dir);
    host.ts = xsim::Toolstack::connect(&host.state).expect("toolstack");
    let domid = host.guest(name, check, false);
    let written = format!("/local/domain/{domid}/data/{dir_name}");
    let dom0 = xenstore::Client::connect(host.state.xenstored_socket()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while dom0.directory(&written).map_or(0, |d| d.len()) < 50 {
        assert!(Instant::now() < deadline, "the guest did not write:\n{}", host.console(domid));
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(dom0);
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    let mut daemon = start_xenstored(&host, &dir);
    host.ts = xsim::Toolstack::connect(&host.state).expect("toolstack");
    host.expect_pass(domid, name);
    eprintln!("{}", host.console(domid));
    let log = std::fs::read_to_string(host.state.xenstored_log()).unwrap_or_default();
    assert!(log.contains("asked the guest to reconnect"), "{log}");
    sigkill(daemon.id());
    let _ = daemon.wait();
}

#[test]
fn a_guest_resumes_after_xenstored_is_killed_and_recovered() {
    guest_survives_a_kill("resume", &["check", "resume", "100"], "r");
}

#[test]
fn a_guest_using_the_client_resumes_after_xenstored_is_killed_and_recovered() {
    guest_survives_a_kill("resume-client", &["check", "resume-client", "100"], "c");
}
