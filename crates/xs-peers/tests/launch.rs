//! The launcher against Debian's daemons (each test needs the packages and
//! root, and is reported ignored without them), and the harness's skip and
//! `XS_REQUIRE_PEERS` paths, checked by running this test binary again with
//! `XS_PEERS_ROOT` pointed at an empty directory.
//!
//! The Xen 4.20 daemons' tests need the Debian 13 root already built
//! ([`xs_peers::XEN_420_READY`]), and are required by
//! `XS_REQUIRE_PEERS_420=1` rather than `XS_REQUIRE_PEERS=1`: building the
//! root downloads a few hundred megabytes from the Debian archive, which
//! `.ci/run` (which sets `XS_REQUIRE_PEERS=1`) must not start on its own, so
//! there a missing root leaves them ignored; a machine that has the root
//! (any start of a 4.20 reference builds it, e.g. `xs-bench compare
//! --daemons c-4.20`) runs them, and `XS_REQUIRE_PEERS_420=1` makes a missing
//! root a failure where they must run.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, ExitCode};

use xenstore_wire::{Header, Op, HEADER_LEN};
use xs_peers::harness::{run, Test};
use xs_peers::{Flavor, Launch, Reference};

/// Writes `value` at `path` and reads it back over `socket`.
fn write_then_read(socket: &Path, path: &str, value: &[u8]) -> Vec<u8> {
    let mut stream = UnixStream::connect(socket).unwrap();
    let call = |stream: &mut UnixStream, op: Op, payload: &[u8]| {
        let header = Header { op: op as u32, req_id: 7, tx_id: 0, len: payload.len().try_into().unwrap() };
        stream.write_all(&header.encode()).unwrap();
        stream.write_all(payload).unwrap();
        let mut reply = [0u8; HEADER_LEN];
        stream.read_exact(&mut reply).unwrap();
        let reply = Header::decode(&reply);
        let mut body = vec![0u8; reply.len as usize];
        stream.read_exact(&mut body).unwrap();
        assert_eq!(reply.op, op as u32, "{op:?} answered {:?}", String::from_utf8_lossy(&body));
        body
    };
    let mut payload = format!("{path}\0").into_bytes();
    payload.extend_from_slice(value);
    call(&mut stream, Op::Write, &payload);
    call(&mut stream, Op::Read, format!("{path}\0").as_bytes())
}

fn serves_at_the_socket_given_and_cleans_up(flavor: Flavor) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("sub/socket");
    let daemon = Launch::new(flavor).domains("1-3").start(&socket).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(daemon.socket(), socket);
    assert_eq!(write_then_read(&socket, "/peers/x", b"hello"), b"hello");
    // A second one beside it, at another socket, has its own store.
    let other = Reference::start(flavor, &dir.path().join("other")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(write_then_read(other.socket(), "/peers/y", b"2"), b"2");
    // The process recorded is the daemon itself (what stop kills), the
    // 4.20 one in the Debian 13 root when asked for.
    let exe = std::fs::read_link(format!("/proc/{}/exe", daemon.pid())).unwrap();
    assert_eq!(exe, std::fs::canonicalize(flavor.binary()).unwrap());
    assert!(!daemon.log().contains("cannot be preloaded"), "{}", daemon.log());
    if flavor.in_trixie() {
        // The daemons' mounts are in their own namespaces, not the host's.
        assert_eq!(mounts_in_trixie_root(), Vec::<String>::new());
    }
    let pid = daemon.pid();
    daemon.stop().unwrap();
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "the daemon is gone");
    assert!(std::fs::symlink_metadata(&socket).is_err(), "its socket is removed");
    drop(other);
    assert_eq!(mounts_in_trixie_root(), Vec::<String>::new());
}

/// The host's mount points at or below the Debian 13 root (none where
/// there is no root: a machine that never made it).
fn mounts_in_trixie_root() -> Vec<String> {
    let Ok(root) = std::fs::canonicalize(xs_peers::trixie::root()) else { return Vec::new() };
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| Path::new(m).starts_with(&root))
        .map(str::to_owned)
        .collect()
}

/// This test binary, run again with `env`, filtered to the C daemon test.
fn rerun(env: &[(&str, &str)]) -> (bool, String) {
    rerun_test("c_xenstored_serves_at_the_socket_given_and_cleans_up", env)
}

/// This test binary, run again with `env`, filtered to the test `name`.
fn rerun_test(name: &str, env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--test-threads", "1"])
        .env_remove("XS_REQUIRE_PEERS")
        .env_remove("XS_REQUIRE_PEERS_420")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn missing_packages_are_ignored_never_passed() {
    let empty = tempfile::tempdir().unwrap();
    let root = empty.path().to_str().unwrap();
    let (ok, out) = rerun(&[("XS_PEERS_ROOT", root)]);
    assert!(ok, "{out}");
    assert!(out.contains("ignored (xen-utils-4.17 is missing"), "{out}");
    assert!(out.contains("apt-get install xen-utils-4.17"), "{out}");
    assert!(out.contains("0 passed; 0 failed; 1 ignored"), "{out}");
}

fn missing_packages_fail_when_peers_are_required() {
    let empty = tempfile::tempdir().unwrap();
    let root = empty.path().to_str().unwrap();
    let (ok, out) = rerun(&[("XS_PEERS_ROOT", root), ("XS_REQUIRE_PEERS", "1")]);
    assert!(!ok, "{out}");
    assert!(out.contains("xen-utils-4.17 is missing"), "{out}");
    assert!(out.contains("0 passed; 1 failed; 0 ignored"), "{out}");
}

fn a_missing_trixie_root_is_ignored_unless_420_is_required() {
    let empty = tempfile::tempdir().unwrap();
    let root = empty.path().to_str().unwrap();
    let test = "c_xenstored_420_serves_at_the_socket_given_and_cleans_up";
    let (ok, out) = rerun_test(test, &[("XS_TRIXIE_ROOT", root), ("XS_REQUIRE_PEERS", "1")]);
    assert!(ok, "{out}");
    assert!(out.contains("ignored (no ready Debian 13 root"), "{out}");
    assert!(out.contains("0 passed; 0 failed; 1 ignored"), "{out}");
    let (ok, out) = rerun_test(test, &[("XS_TRIXIE_ROOT", root), ("XS_REQUIRE_PEERS_420", "1")]);
    assert!(!ok, "{out}");
    assert!(out.contains("XS_REQUIRE_PEERS_420=1: a missing peer is a failure"), "{out}");
    assert!(out.contains("0 passed; 1 failed; 0 ignored"), "{out}");
    assert!(std::fs::read_dir(empty.path()).unwrap().next().is_none(), "nothing was built");
}

fn main() -> ExitCode {
    run(vec![
        Test::new("c_xenstored_serves_at_the_socket_given_and_cleans_up", || {
            serves_at_the_socket_given_and_cleans_up(Flavor::C)
        })
        .needs(xs_peers::C_XENSTORED),
        Test::new("oxenstored_serves_at_the_socket_given_and_cleans_up", || {
            serves_at_the_socket_given_and_cleans_up(Flavor::OCaml)
        })
        .needs(xs_peers::OXENSTORED),
        Test::new("c_xenstored_420_serves_at_the_socket_given_and_cleans_up", || {
            serves_at_the_socket_given_and_cleans_up(Flavor::C420)
        })
        .needs(xs_peers::XEN_420_READY)
        .required_by("XS_REQUIRE_PEERS_420"),
        Test::new("oxenstored_420_serves_at_the_socket_given_and_cleans_up", || {
            serves_at_the_socket_given_and_cleans_up(Flavor::OCaml420)
        })
        .needs(xs_peers::XEN_420_READY)
        .required_by("XS_REQUIRE_PEERS_420"),
        Test::new(
            "a_missing_trixie_root_is_ignored_unless_420_is_required",
            a_missing_trixie_root_is_ignored_unless_420_is_required,
        ),
        Test::new("missing_packages_are_ignored_never_passed", missing_packages_are_ignored_never_passed),
        Test::new("missing_packages_fail_when_peers_are_required", missing_packages_fail_when_peers_are_required),
    ])
}
