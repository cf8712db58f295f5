//! A hosted host per test: the hypervisor and xenstored in a temporary
//! state directory, stopped when the test ends.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use xen_platform::hosted::Isolation;
use xen_platform::{DomId, DomainState};
use xsim::{host, DomainSpec, StateDir, Toolstack};

/// A running host.
pub struct TestHost {
    pub state: StateDir,
    pub ts: Toolstack,
    _dir: tempfile::TempDir,
}

/// The `xsim-guest` binary.
pub fn guest_program() -> String {
    env!("CARGO_BIN_EXE_xsim-guest").to_owned()
}

pub fn programs() -> host::Programs {
    let xsim = PathBuf::from(env!("CARGO_BIN_EXE_xsim"));
    let xenstored = match std::env::var_os("XSIM_XENSTORED") {
        Some(p) => PathBuf::from(p),
        None => xsim.with_file_name("xenstored"),
    };
    assert!(
        xenstored.is_file(),
        "{} is missing: build the daemon first (`cargo build --bins`, as scripts/test does)",
        xenstored.display()
    );
    host::Programs { xsim, xenstored }
}

impl TestHost {
    /// A host with the strongest isolation of guests available.
    pub fn up() -> TestHost {
        TestHost::up_with(Isolation::strongest())
    }

    /// A host whose guests are isolated as `isolation` says.
    pub fn up_with(isolation: Isolation) -> TestHost {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = StateDir::at(dir.path().to_path_buf());
        host::up_with(&state, &programs(), isolation).expect("xsim up");
        let ts = Toolstack::connect(&state).expect("toolstack");
        TestHost { state, ts, _dir: dir }
    }

    /// Creates `xsim-guest ARGS` as domain `name`.
    pub fn guest(&mut self, name: &str, args: &[&str], paused: bool) -> DomId {
        let mut program = vec![guest_program()];
        program.extend(args.iter().map(|a| a.to_string()));
        let spec = DomainSpec { name: name.to_owned(), program, env: Vec::new(), paused, netns: false, fuse: false };
        self.ts.create(&spec).expect("xsim create").domid
    }

    /// The pid of a guest's process.
    pub fn pid(&mut self, domid: DomId) -> u32 {
        let domains = self.ts.list().expect("list");
        domains.iter().find(|d| d.domid == domid).and_then(|d| d.pid).expect("the guest's pid")
    }

    pub fn console(&self, domid: DomId) -> String {
        std::fs::read_to_string(self.state.console(domid)).unwrap_or_default()
    }

    /// Waits (up to a minute) until `domid`'s console has `text`; returns
    /// the console.
    pub fn wait_console(&self, domid: DomId, text: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let console = self.console(domid);
            if console.contains(text) {
                return console;
            }
            assert!(std::time::Instant::now() < deadline, "domain {domid} never printed {text:?}:\n{console}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs the `vdevice` tool on this host and asserts it succeeded; its
    /// stdout.
    pub fn vdevice(&self, args: &[&str]) -> String {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vdevice"))
            .arg("--state")
            .arg(self.state.root())
            .args(args)
            .output()
            .expect("vdevice");
        assert!(out.status.success(), "vdevice {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits for the domain to shut down; returns its state.
    pub fn wait_shutdown(&mut self, domid: DomId, timeout: Duration) -> DomainState {
        match self.ts.wait_shutdown(domid, timeout).expect("domain exists") {
            Some(state) => state,
            None => panic!("domain {domid} still running after {timeout:?}:\n{}", self.console(domid)),
        }
    }

    /// Runs `xsim-guest check NAME ARGS` as a new domain and asserts it
    /// passed.
    pub fn check(&mut self, name: &str, args: &[&str]) -> DomId {
        let mut full = vec!["check", name];
        full.extend_from_slice(args);
        let domid = self.guest(&format!("check-{name}"), &full, false);
        self.expect_pass(domid, name);
        domid
    }

    pub fn expect_pass(&mut self, domid: DomId, name: &str) {
        let state = self.wait_shutdown(domid, Duration::from_secs(60));
        let console = self.console(domid);
        assert_eq!(
            state,
            DomainState::Shutdown(xen_platform::ShutdownReason::Poweroff),
            "check {name} failed:\n{console}"
        );
        assert!(console.contains(&format!("PASS {name}")), "check {name}: console:\n{console}");
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        let _ = host::down(&self.state);
    }
}
