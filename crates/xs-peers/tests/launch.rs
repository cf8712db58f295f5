//! The launcher against Debian's daemons (each test needs the packages and
//! root, and is reported ignored without them), and the harness's skip and
//! `XS_REQUIRE_PEERS` paths, checked by running this test binary again with
//! `XS_PEERS_ROOT` pointed at an empty directory.

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
    let pid = daemon.pid();
    daemon.stop().unwrap();
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "the daemon is gone");
    assert!(std::fs::symlink_metadata(&socket).is_err(), "its socket is removed");
}

/// This test binary, run again with `env`, filtered to the C daemon test.
fn rerun(env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "c_xenstored_serves_at_the_socket_given_and_cleans_up", "--test-threads", "1"])
        .env_remove("XS_REQUIRE_PEERS")
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
        Test::new("missing_packages_are_ignored_never_passed", missing_packages_are_ignored_never_passed),
        Test::new("missing_packages_fail_when_peers_are_required", missing_packages_fail_when_peers_are_required),
    ])
}
