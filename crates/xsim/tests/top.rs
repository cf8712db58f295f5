//! `xenstore top` against a hosted host with guests, used as a person
//! would: in a terminal (tmux, keys sent and the screen read back), and in
//! batch mode as a script would. Without tmux the terminal test is
//! reported ignored (`xs_peers::harness`).

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use support::TestHost;
use xs_peers::harness::{run, Test};
use xs_peers::TMUX;

/// The `xenstore` tool, built beside xsim (`cargo build --bins`, as
/// scripts/test does).
fn xenstore() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_xsim")).with_file_name("xenstore");
    assert!(path.is_file(), "{} is missing: cargo build --bins", path.display());
    path
}

/// A host with a busy guest (a shell loop of writes over its own ring)
/// and an idle one.
fn busy_host() -> (TestHost, u16, u16) {
    let mut host = TestHost::up();
    let loop_ = format!("while :; do {} write data/x 1; done", xenstore().display());
    let spec = |name: &str, program: Vec<String>| xsim::DomainSpec {
        name: name.to_owned(),
        program,
        env: Vec::new(),
        paused: false,
        netns: false,
        fuse: false,
    };
    let busy = host.ts.create(&spec("busy", vec!["sh".into(), "-c".into(), loop_])).unwrap().domid;
    let idle = host.ts.create(&spec("idle", vec!["sleep".into(), "60".into()])).unwrap().domid;
    (host, busy, idle)
}

/// The DOMID column of the table's rows, top to bottom.
fn row_ids(screen: &str) -> Vec<u16> {
    screen
        .lines()
        .skip_while(|l| !l.starts_with("DOMID"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// A row's REQ/S, by domid.
fn requests(screen: &str, domid: u16) -> Option<f64> {
    let header: Vec<&str> = screen.lines().find(|l| l.starts_with("DOMID"))?.split_whitespace().collect();
    let column = header.iter().position(|h| *h == "REQ/S")?;
    let row = screen.lines().find(|l| l.split_whitespace().next() == Some(&domid.to_string()))?;
    row.split_whitespace().nth(column)?.parse().ok()
}

struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let out =
            Command::new("tmux").arg("-L").arg(&self.socket).args(args).output().expect("tmux (apt-get install tmux)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "top"])
    }

    /// Waits until the screen satisfies `ok`; returns it.
    fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let screen = self.screen();
            if ok(&screen) {
                return screen;
            }
            assert!(Instant::now() < deadline, "waiting for {what}; the screen:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").arg("-L").arg(&self.socket).arg("kill-server").output();
    }
}

fn top_in_a_terminal_shows_the_busy_guest_first_sorts_on_keys_and_quits_cleanly() {
    let (host, busy, idle) = busy_host();
    let tmux = Tmux { socket: format!("xs-top-{}", std::process::id()) };
    // The exit status goes to a file: tmux's own `pane_dead_status` was
    // seen empty under load (the pane dead, its status never recorded).
    let status_file = host.state.root().join("top.status");
    let command = format!("{} top -d 0.5; echo $? > {}", xenstore().display(), status_file.display());
    let socket = format!("XENSTORED_PATH={}", host.state.xenstored_socket().display());
    tmux.run(&["new-session", "-d", "-s", "top", "-x", "130", "-y", "30", "-e", &socket, &command]);
    tmux.run(&["set-option", "-t", "top", "remain-on-exit", "on"]);

    // Sorted by requests per second: the busy guest leads once rates come.
    let screen = tmux.wait_for("the busy guest on top with a rate", |s| {
        row_ids(s).first() == Some(&busy) && requests(s, busy).is_some_and(|r| r > 0.0)
    });
    assert!(screen.starts_with("xenstored up "), "{screen}");
    assert!(screen.contains(" busy ") && screen.contains(" idle "), "names from the store: {screen}");
    assert_eq!(requests(&screen, idle), Some(0.0), "{screen}");
    let mut ids = row_ids(&screen);
    ids.sort_unstable();
    assert_eq!(ids, [0, busy, idle], "{screen}");

    // `d`: by domain id; `R`: reversed.
    tmux.run(&["send-keys", "-t", "top", "d"]);
    tmux.wait_for("domid order", |s| row_ids(s) == [0, busy, idle] && s.contains("sorted by DOMID"));
    tmux.run(&["send-keys", "-t", "top", "R"]);
    tmux.wait_for("reversed domid order", |s| row_ids(s) == [idle, busy, 0]);
    // `h` shows the keys.
    tmux.run(&["send-keys", "-t", "top", "h"]);
    tmux.wait_for("the keys", |s| s.contains("R reverse"));

    // `q` quits with status 0, and the terminal leaves the alternate
    // screen (the table is gone from what remains).
    tmux.run(&["send-keys", "-t", "top", "q"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = std::fs::read_to_string(&status_file).unwrap_or_default();
        if !status.trim().is_empty() {
            assert_eq!(status.trim(), "0", "top's exit status; the screen:\n{}", tmux.screen());
            break;
        }
        assert!(Instant::now() < deadline, "top did not quit on q; the screen:\n{}", tmux.screen());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!tmux.screen().contains("DOMID"), "the alternate screen was left:\n{}", tmux.screen());
}

fn top_in_batch_mode_prints_frames_with_rates_for_scripts() {
    let (host, busy, idle) = busy_host();
    let out = Command::new(xenstore())
        .args(["top", "-b", "-n", "2", "-d", "1", "--sort", "domid"])
        .env("XENSTORED_PATH", host.state.xenstored_socket())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let frames: Vec<&str> = text.split("\n\n").collect();
    assert_eq!(frames.len(), 2, "{text}");
    for frame in &frames {
        assert_eq!(row_ids(frame), [0, busy, idle], "{frame}");
    }
    assert_eq!(requests(frames[0], busy), None, "no rate before a second sample: {}", frames[0]);
    assert!(requests(frames[1], busy).is_some_and(|r| r > 0.0), "{}", frames[1]);

    // A bad option is refused with the valid values.
    let bad = Command::new(xenstore()).args(["top", "--sort", "bogus"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("valid: DOMID"), "{bad:?}");
}

fn main() -> std::process::ExitCode {
    run(vec![
        Test::new(
            "top_in_a_terminal_shows_the_busy_guest_first_sorts_on_keys_and_quits_cleanly",
            top_in_a_terminal_shows_the_busy_guest_first_sorts_on_keys_and_quits_cleanly,
        )
        .needs(&[TMUX]),
        Test::new(
            "top_in_batch_mode_prints_frames_with_rates_for_scripts",
            top_in_batch_mode_prints_frames_with_rates_for_scripts,
        ),
    ])
}
