//! xsim's command line: help for every command that does nothing else,
//! extra arguments and bad values refused with a clear error.

use std::process::{Command, Output};

fn xsim(state: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xsim")).env("XSIM_STATE", state).args(args).output().unwrap()
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("xsim-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn every_command_has_help_that_does_nothing_else() {
    let state = scratch("help");
    for command in [
        "up", "down", "env", "create", "list", "console", "unpause", "pause", "shutdown", "destroy", "attach",
        "detach", "devices",
    ] {
        let out = xsim(&state, &[command, "--help"]);
        assert!(out.status.success(), "{command} --help: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(&format!("Usage: xsim {command}")), "{command}: {text}");
    }
    assert!(!state.exists(), "`xsim up --help` started nothing");
    let out = xsim(&state, &["--version"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("xsim "), "{out:?}");
}

#[test]
fn extra_arguments_and_bad_values_are_refused() {
    let state = scratch("bad");
    for (args, says) in [
        (&["env", "extra"][..], "unexpected argument 'extra'"),
        (&["create", "123", "--", "/bin/true"], "all digits"),
        (&["create", "guest"], "PROGRAM"),
        (&["shutdown", "-r", "bogus", "guest"], "valid: poweroff"),
        (&["frobnicate"], "unrecognized subcommand"),
    ] {
        let out = xsim(&state, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert!(!state.exists());
}

/// A host started with `xsim up` in a scratch state directory, stopped on
/// drop.
struct Up(std::path::PathBuf);

impl Up {
    fn new(name: &str) -> Up {
        let state = scratch(name);
        let out = xsim(&state, &["up"]);
        assert!(out.status.success(), "xsim up: {out:?}");
        Up(state)
    }

    fn run(&self, args: &[&str]) -> Output {
        xsim(&self.0, args)
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = xsim(&self.0, &["down"]);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn wait_for_console(host: &Up, name: &str, text: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let out = String::from_utf8_lossy(&host.run(&["console", name]).stdout).into_owned();
        if out.contains(text) {
            return out;
        }
        assert!(std::time::Instant::now() < deadline, "{name}'s console never said {text:?}: {out}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_guest_gets_the_callers_environment_and_env_but_not_dom0s_socket() {
    let host = Up::new("env");
    let out = Command::new(env!("CARGO_BIN_EXE_xsim"))
        .env("XSIM_STATE", &host.0)
        .env("FROM_CALLER", "caller")
        .env("XENSTORED_PATH", "/dom0/socket")
        .args(["create", "--env", "EXTRA=extra", "guest", "--"])
        .args(["sh", "-c", "echo caller=$FROM_CALLER extra=$EXTRA path=${XENSTORED_PATH:-none}; echo done"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let console = wait_for_console(&host, "guest", "done");
    assert!(console.contains("caller=caller extra=extra path=none"), "{console}");
}

#[test]
fn shutdown_forces_only_when_asked_and_records_the_reason() {
    let host = Up::new("shutdown");
    // A guest that does not watch control/shutdown.
    assert!(host.run(&["create", "deaf", "--", "sleep", "30"]).status.success());
    let refused = host.run(&["shutdown", "-w", "0.3", "deaf"]);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("asked deaf") && err.contains("still running") && err.contains("--force"), "{err}");
    assert!(row(&host, "deaf").state.ends_with("---"), "still running");
    let forced = host.run(&["shutdown", "-r", "reboot", "-w", "0.3", "--force", "deaf"]);
    assert!(forced.status.success(), "{forced:?}");
    assert!(String::from_utf8_lossy(&forced.stderr).contains("forcing it (reboot)"), "{forced:?}");
    assert!(String::from_utf8_lossy(&forced.stdout).contains("shutdown (reboot)"), "{forced:?}");
    assert_eq!(row(&host, "deaf").state, "---sr-", "shut down, for reboot");
}

#[test]
fn a_guest_that_is_asked_to_reboot_reports_a_reboot() {
    let host = Up::new("reboot");
    let guest = env!("CARGO_BIN_EXE_xsim-guest");
    assert!(host.run(&["create", "polite", "--", guest, "demo"]).status.success());
    wait_for_console(&host, "polite", "waiting for control/shutdown");
    let asked = host.run(&["shutdown", "-r", "reboot", "-w", "10", "polite"]);
    assert!(asked.status.success(), "{asked:?}");
    assert!(!String::from_utf8_lossy(&asked.stderr).contains("forcing"), "{asked:?}");
    // The guest itself said why (SCHEDOP_shutdown), not the toolstack.
    assert_eq!(row(&host, "polite").state, "---sr-");
}

/// One domain's line of `xsim list`, in xl's columns.
#[derive(Debug)]
struct Row {
    name: String,
    id: u16,
    mem_mib: u64,
    vcpus: u64,
    state: String,
    time: f64,
}

/// The rows of `xsim list ARGS`, after checking its header is xl's.
fn list(host: &Up, args: &[&str]) -> Vec<Row> {
    let out = host.run(&[&["list"], args].concat());
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("Name                                        ID   Mem VCPUs\tState\tTime(s)"));
    lines
        .map(|line| {
            // The name is the first 40 columns; the rest are numbers and
            // the flags, separated by spaces.
            let (name, rest) = line.split_at(40);
            let cols: Vec<&str> = rest.split_whitespace().collect();
            assert_eq!(cols.len(), 5, "{line:?}");
            Row {
                name: name.trim_end().to_owned(),
                id: cols[0].parse().unwrap(),
                mem_mib: cols[1].parse().unwrap(),
                vcpus: cols[2].parse().unwrap(),
                state: cols[3].to_owned(),
                time: cols[4].parse().unwrap(),
            }
        })
        .collect()
}

fn row(host: &Up, name: &str) -> Row {
    let mut rows = list(host, &[name]);
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows.remove(0)
}

/// Waits until `name`'s state flags are `state`.
fn wait_for_state(host: &Up, name: &str, state: &str) -> Row {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let row = row(host, name);
        if row.state == state {
            return row;
        }
        assert!(std::time::Instant::now() < deadline, "{name} never got to {state}: {row:?}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn list_prints_xl_lists_columns() {
    let host = Up::new("list");
    let rows = list(&host, &[]);
    assert_eq!(rows.len(), 1, "only dom0: {rows:?}");
    let dom0 = &rows[0];
    assert_eq!((dom0.name.as_str(), dom0.id), ("Domain-0", 0));
    // xenstored's process stands for dom0.
    assert!(dom0.mem_mib > 0 && dom0.vcpus >= 1, "{dom0:?}");
    assert!(dom0.state == "r-----" || dom0.state == "-b----", "{dom0:?}");

    assert!(host.run(&["create", "-p", "guest1", "--", "sleep", "30"]).status.success());
    assert!(host.run(&["create", "busy", "--", "sh", "-c", "while :; do :; done"]).status.success());
    assert!(host.run(&["create", "crasher", "--", "sh", "-c", "exit 3"]).status.success());
    let guest1 = row(&host, "guest1");
    assert_eq!((guest1.name.as_str(), guest1.id, guest1.vcpus, guest1.state.as_str()), ("guest1", 1, 1, "--p---"));
    assert!(host.run(&["unpause", "guest1"]).status.success());
    let guest1 = wait_for_state(&host, "guest1", "-b----");
    assert!(guest1.mem_mib < 1024, "sleep is small: {guest1:?}");

    // A guest spinning on the CPU gathers CPU time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while row(&host, "busy").time < 0.2 {
        assert!(std::time::Instant::now() < deadline, "{:?}", row(&host, "busy"));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // Exited with a failure: crashed; nothing left to measure.
    let crasher = wait_for_state(&host, "crasher", "---sc-");
    assert_eq!((crasher.mem_mib, crasher.vcpus, crasher.time), (0, 0, 0.0), "{crasher:?}");

    // Names or ids pick domains, in the order given.
    let picked: Vec<(String, u16)> = list(&host, &["crasher", "1"]).into_iter().map(|r| (r.name, r.id)).collect();
    assert_eq!(picked, [("crasher".to_owned(), 3), ("guest1".to_owned(), 1)]);
    let all: Vec<u16> = list(&host, &[]).iter().map(|r| r.id).collect();
    assert_eq!(all, [0, 1, 2, 3]);
    let unknown = host.run(&["list", "nosuch"]);
    assert_eq!(unknown.status.code(), Some(1), "{unknown:?}");
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no domain \"nosuch\""), "{unknown:?}");
}

#[test]
fn console_follow_prints_until_the_domain_is_destroyed() {
    let host = Up::new("console");
    assert!(host
        .run(&["create", "talker", "--", "sh", "-c", "echo first; sleep 0.5; echo second; sleep 30"])
        .status
        .success());
    wait_for_console(&host, "talker", "first");
    let follower = Command::new(env!("CARGO_BIN_EXE_xsim"))
        .env("XSIM_STATE", &host.0)
        .args(["console", "-f", "talker"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_console(&host, "talker", "second");
    assert!(host.run(&["destroy", "talker"]).status.success());
    let out = follower.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("first") && text.contains("second"), "{text}");
}

/// `vdevice --xen` asks `vdeviced` over its socket: without one it says
/// so; with one, it prints the answer, notes on stderr, and fails with
/// the service's reason when the service refuses.
#[test]
fn vdevice_on_xen_asks_vdeviced_and_says_what_it_answered() {
    use std::io::Write;
    let dir = scratch("vdeviced");
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("vdeviced.sock");
    let vdevice = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_vdevice"))
            .args(["--xen", "--socket"])
            .arg(&socket)
            .args(args)
            .output()
            .unwrap()
    };
    let out = vdevice(&["--list"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is vdeviced running in dom0?"), "{out:?}");

    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let server = std::thread::spawn(move || {
        let mut requests = Vec::new();
        for answer in ["ok\nvdevice: dom0 is on LAN 5\n5\n", "error\nvdevice: a note\nno domain \"x\"\n"] {
            let (mut stream, _) = listener.accept().unwrap();
            let words = xsim::vdeviced::read_request(&mut stream).unwrap();
            requests.push(words);
            stream.write_all(answer.as_bytes()).unwrap();
        }
        requests
    });
    let out = vdevice(&["--timeout", "3", "--create", "net", "0", "7"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "5\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "vdevice: dom0 is on LAN 5\n");
    let out = vdevice(&["--add", "5", "x"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("vdevice: a note\n") && stderr.contains("no domain \"x\""), "{stderr}");
    let requests = server.join().unwrap();
    assert_eq!(requests[0], ["timeout", "3", "create", "net", "0", "7"]);
    assert_eq!(requests[1], ["timeout", "10", "add", "5", "x"]);
    let _ = std::fs::remove_dir_all(&dir);
}
