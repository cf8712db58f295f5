//! Real clients against our daemon: Debian's xenstore-utils (compared byte
//! for byte with the same commands against the C reference daemon, run by
//! the project's own launcher, `xs-peers`), pyxs, and Xen's own
//! test-xenstore. `.ci/run` installs all three; where a Debian package is
//! missing the test is reported ignored with what to install (failed under
//! `XS_REQUIRE_PEERS=1`, as in CI). The harness is `xs_peers::harness`
//! (`harness = false` in Cargo.toml).

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::*;
use xs_peers::harness::{run, Test};
use xs_peers::{Flavor, PYTHON3, PYXS, XENSTORE_UTILS, XEN_UTILS};

/// The C reference daemon at a socket of this test's own; stopped on drop.
fn reference(name: &str) -> xs_peers::Reference {
    let socket = fresh_dir(&format!("ref-{name}")).join("socket");
    xs_peers::Reference::start(Flavor::C, &socket).unwrap_or_else(|e| panic!("C reference daemon did not start: {e}"))
}

fn run_tool(socket: &Path, args: &[&str]) -> Output {
    Command::new(format!("/usr/bin/{}", args[0]))
        .args(&args[1..])
        .env("XENSTORED_PATH", socket)
        .stdin(Stdio::null())
        .output()
        .expect("run tool")
}

/// Commands run in order against both daemons; each must print the same
/// and exit the same way.
const CORPUS: &[&[&str]] = &[
    &["xenstore-write", "/i/a", "1", "/i/b", "two words", "/i/c/d", "deep"],
    &["xenstore-read", "/i/a", "/i/b"],
    &["xenstore-read", "-p", "/i/a", "/i/c/d"],
    &["xenstore-read", "/i/nope"],
    &["xenstore-read", "/i/a", "/i/nope", "/i/b"],
    &["xenstore-ls", "/i"],
    &["xenstore-ls", "-f", "/i"],
    &["xenstore-ls", "-p", "/i"],
    &["xenstore-ls", "-fp", "/i"],
    &["xenstore-ls", "/nope"],
    &["xenstore-ls", "/"],
    &["xenstore-list", "/i"],
    &["xenstore-list", "-p", "/i"],
    &["xenstore-list", "/nope"],
    &["xenstore-exists", "/i/a"],
    &["xenstore-exists", "/i/zz"],
    &["xenstore-chmod", "/i/a", "n0", "r1", "b2"],
    &["xenstore-ls", "-p", "/i"],
    &["xenstore-chmod", "-r", "/i/c", "b0", "r5"],
    &["xenstore-ls", "-p", "/i"],
    &["xenstore-chmod", "/i/a", "q7"],
    &["xenstore-chmod", "/i/nope", "r1"],
    &["xenstore-write", "/i/bin", "tab\there\x01\x7f"],
    &["xenstore-read", "/i/bin"],
    &["xenstore-read", "-R", "/i/bin"],
    &["xenstore-ls", "/i"],
    &["xenstore-rm", "/i/b"],
    &["xenstore-rm", "/i/nope"],
    &["xenstore-rm", "/nope/deeper"],
    &["xenstore-rm", "-t", "/i/c/d"],
    &["xenstore-ls", "/i"],
    &["xenstore", "read", "/i/a"],
    &["xenstore", "write", "/i/z", "zed"],
    &["xenstore", "ls", "/i"],
    &["xenstore-write", "/bad//path", "x"],
    &["xenstore-read", "relative/path"],
    &["xenstore-rm", "/i"],
    &["xenstore-ls", "/"],
];

fn xenstore_utils_print_the_same_as_against_the_c_daemon() {
    let ours = Daemon::start(&[]);
    let reference = reference("utils");
    for args in CORPUS {
        let theirs = run_tool(reference.socket(), args);
        let mine = run_tool(&ours.socket, args);
        assert_eq!(
            (String::from_utf8_lossy(&mine.stdout), String::from_utf8_lossy(&mine.stderr), mine.status.code()),
            (String::from_utf8_lossy(&theirs.stdout), String::from_utf8_lossy(&theirs.stderr), theirs.status.code()),
            "{args:?}: ours (left) differs from the C daemon (right)"
        );
    }
}

fn xenstore_watch_sees_events_like_against_the_c_daemon() {
    let ours = Daemon::start(&[]);
    let reference = reference("watch");
    let mut outputs = Vec::new();
    for socket in [ours.socket.as_path(), reference.socket()] {
        let child = Command::new("/usr/bin/xenstore-watch")
            .args(["-n", "4", "/wt"])
            .env("XENSTORED_PATH", socket)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // Let the watch register (its initial event is the first line).
        std::thread::sleep(Duration::from_millis(300));
        for args in [&["xenstore-write", "/wt/a", "1"][..], &["xenstore-write", "/wt/b", "2"], &["xenstore-rm", "/wt"]]
        {
            assert!(run_tool(socket, args).status.success());
        }
        let out = child.wait_with_output().unwrap();
        outputs.push((String::from_utf8_lossy(&out.stdout).into_owned(), out.status.code()));
    }
    assert_eq!(outputs[0], outputs[1], "ours (left) vs the C daemon (right)");
    assert_eq!(outputs[0].0, "/wt\n/wt/a\n/wt/b\n/wt\n");
}

fn pyxs_client_works_for_every_operation_it_offers() {
    let d = Daemon::start(&[]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/pyxs_check.py");
    let out = Command::new("/usr/bin/python3").arg(&script).arg(&d.socket).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("No module named 'pyxs'"), "pyxs is missing: apt-get install python3-pyxs (.ci/run does)");
    assert!(out.status.success(), "pyxs checks failed:\n{}{stderr}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("all checks passed"));
}

fn xen_test_xenstore_passes_all_its_tests() {
    let exe = "/usr/lib/xen-4.17/bin/test-xenstore";
    let d = Daemon::start(&[]);
    let list = Command::new(exe).arg("-l").output().unwrap();
    let tests = String::from_utf8_lossy(&list.stdout).into_owned();
    assert!(tests.lines().count() >= 5, "test-xenstore lists its tests: {tests}");
    let all = Command::new(exe).args(["-i", "5"]).env("XENSTORED_PATH", &d.socket).output().unwrap();
    assert!(
        all.status.success(),
        "test-xenstore failed:\n{}{}",
        String::from_utf8_lossy(&all.stdout),
        String::from_utf8_lossy(&all.stderr)
    );
    let random = Command::new(exe).args(["-r", "5"]).env("XENSTORED_PATH", &d.socket).output().unwrap();
    assert!(random.status.success(), "test-xenstore random tests failed: {}", String::from_utf8_lossy(&random.stderr));
}

fn main() -> std::process::ExitCode {
    let c_daemon = xs_peers::C_XENSTORED;
    run(vec![
        Test::new(
            "xenstore_utils_print_the_same_as_against_the_c_daemon",
            xenstore_utils_print_the_same_as_against_the_c_daemon,
        )
        .needs(&[XENSTORE_UTILS])
        .needs(c_daemon),
        Test::new(
            "xenstore_watch_sees_events_like_against_the_c_daemon",
            xenstore_watch_sees_events_like_against_the_c_daemon,
        )
        .needs(&[XENSTORE_UTILS])
        .needs(c_daemon),
        Test::new("pyxs_client_works_for_every_operation_it_offers", pyxs_client_works_for_every_operation_it_offers)
            .needs(&[PYTHON3, PYXS]),
        Test::new("xen_test_xenstore_passes_all_its_tests", xen_test_xenstore_passes_all_its_tests).needs(&[XEN_UTILS]),
    ])
}
