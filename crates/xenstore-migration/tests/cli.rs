//! The `xenstore-state` tool: dump then load gives the same octets; check
//! says OK or fails with exit 1; bad text names its line.

#[path = "../../xenstore-db/tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::Command;

use support::gen::{Action, Driver, Step, TxPick};
use xenstore_db::Engine;
use xenstore_migration::{
    encode, to_stream, write_with, ConnSpec, ConnTransport, DaemonState, Endian, Header, Version,
};

fn tool(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_xenstore-state")).args(args).output().unwrap()
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xenstore-state-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn state() -> DaemonState {
    let mut engine = Engine::new(support::gen::small_quotas());
    let mut driver = Driver::start(&mut engine);
    let req = |who, action| Step::Request { who, tx: TxPick::None, action };
    for step in [
        req(0, Action::Write("/a".into(), b"x\ny\0\"".to_vec())),
        req(0, Action::Introduce(1, 5, 6)),
        req(1, Action::Watch("x".into(), b"tok".to_vec(), Some(2))),
        req(0, Action::TxStart),
    ] {
        driver.step(&mut engine, &step);
    }
    let e = engine.export();
    let conns = e
        .conns
        .iter()
        .map(|c| ConnTransport {
            conn: c.id,
            spec: if c.caller.privileged {
                ConnSpec::Socket { fd: 7 }
            } else {
                ConnSpec::Ring { domid: c.caller.domid, tdomid: 0x7ff4, evtchn: 6 }
            },
            in_data: vec![0, 1],
            out_resp_len: 0,
            out_data: vec![],
        })
        .collect();
    DaemonState { engine: e, global: None, conns, daemon: Some(b"opaque".to_vec()) }
}

#[test]
fn dump_then_load_is_byte_identical_in_both_orders() {
    let s = state();
    for (name, bytes) in [
        ("le", encode(&s).unwrap()),
        ("be", write_with(&to_stream(&s).unwrap(), Header { version: Version::V2, endian: Endian::Big }).unwrap()),
    ] {
        let bin = temp(&format!("{name}.bin"));
        let txt = temp(&format!("{name}.txt"));
        let out = temp(&format!("{name}.out"));
        std::fs::write(&bin, &bytes).unwrap();
        let dump = tool(&["dump", bin.to_str().unwrap()]);
        assert!(dump.status.success());
        let text = String::from_utf8(dump.stdout.clone()).unwrap();
        assert!(text.starts_with("header version=2"), "{text}");
        assert!(text.contains("# engine extras: generation="), "{text}");
        assert!(text.contains("# transaction id="), "{text}");
        std::fs::write(&txt, &dump.stdout).unwrap();
        let load = tool(&["load", txt.to_str().unwrap(), "-o", out.to_str().unwrap()]);
        assert!(load.status.success(), "{}", String::from_utf8_lossy(&load.stderr));
        assert_eq!(std::fs::read(&out).unwrap(), bytes);
    }
}

#[test]
fn check_says_ok_or_fails() {
    let bin = temp("check.bin");
    std::fs::write(&bin, encode(&state()).unwrap()).unwrap();
    let ok = tool(&["check", bin.to_str().unwrap()]);
    assert!(ok.status.success());
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("OK:"));
    std::fs::write(&bin, b"not a stream").unwrap();
    let bad = tool(&["check", bin.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(!bad.stderr.is_empty());
}

#[test]
fn a_persist_snapshot_is_read_past_its_header() {
    // xenstored --persist writes "XSSNAPS1", a generation, a length and a
    // checksum, then the stream.
    let stream = encode(&state()).unwrap();
    let mut snapshot = b"XSSNAPS1".to_vec();
    snapshot.extend_from_slice(&7u64.to_le_bytes());
    snapshot.extend_from_slice(&u32::try_from(stream.len()).unwrap().to_le_bytes());
    snapshot.extend_from_slice(&[0; 4]);
    snapshot.extend_from_slice(&stream);
    let bin = temp("snapshot");
    std::fs::write(&bin, &snapshot).unwrap();
    let ok = tool(&["check", bin.to_str().unwrap()]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let dump = tool(&["dump", bin.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&dump.stdout).starts_with("header version=2"));
    std::fs::write(&bin, &snapshot[..20]).unwrap();
    assert_eq!(tool(&["check", bin.to_str().unwrap()]).status.code(), Some(1));
}

#[test]
fn load_of_bad_text_names_the_line() {
    let txt = temp("bad.txt");
    std::fs::write(&txt, "header version=2 endian=little\n# comment\nnode path=\"/\" value=\"\"\n").unwrap();
    let out = tool(&["load", txt.to_str().unwrap(), "-o", temp("bad.out").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 3"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn every_subcommand_has_help() {
    for sub in ["dump", "load", "check"] {
        let out = tool(&[sub, "--help"]);
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"));
    }
}
