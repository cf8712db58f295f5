//! The daemon as a client sees it: framing, pipelining, errors, watches,
//! CONTROL, bounded output, and a clean exit.

// Payloads are written as on the wire: `\0` is the nul separator, never octal.
#![allow(clippy::octal_escapes)]
// Test payloads are far below 4 GiB: their lengths fit the header's u32.
#![allow(clippy::cast_possible_truncation)]

mod support;

use std::io::Write;
use std::time::Duration;

use support::*;
use xenstore_wire::{Header, Op};

#[test]
fn write_read_directory_round_trip() {
    let d = Daemon::start(&[]);
    let mut c = d.client();
    c.write("/a/b", b"hello\0binary");
    assert_eq!(c.call(Op::Read, 0, &p("/a/b")), (Op::Read as u32, b"hello\0binary".to_vec()));
    assert_eq!(c.call(Op::Directory, 0, &p("/")), (Op::Directory as u32, b"tool\0a\0".to_vec()));
    assert_eq!(c.call(Op::Read, 0, &p("/nothere")), err("ENOENT"));
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let d = Daemon::start(&[]);
    let mut c = d.client();
    let mut batch = Vec::new();
    for i in 0..200u32 {
        let payload = format!("/pipe/{i}\0{i}");
        let h = Header { op: Op::Write as u32, req_id: 1000 + i, tx_id: 0, len: payload.len() as u32 };
        batch.extend_from_slice(&h.encode());
        batch.extend_from_slice(payload.as_bytes());
        let payload = format!("/pipe/{i}\0");
        let h = Header { op: Op::Read as u32, req_id: 5000 + i, tx_id: 0, len: payload.len() as u32 };
        batch.extend_from_slice(&h.encode());
        batch.extend_from_slice(payload.as_bytes());
    }
    c.stream.write_all(&batch).unwrap();
    for i in 0..200u32 {
        let w = c.recv().unwrap();
        assert_eq!((w.header.req_id, w.payload.as_slice()), (1000 + i, &b"OK\0"[..]));
        let r = c.recv().unwrap();
        assert_eq!((r.header.req_id, r.payload), (5000 + i, i.to_string().into_bytes()));
    }
}

#[test]
fn malformed_payloads_get_einval_at_once() {
    let d = Daemon::start(&[]);
    let mut c = d.client();
    for (op, payload) in [
        (Op::Read, &b""[..]),
        (Op::Read, b"/a"),
        (Op::Read, b"/a\0trailing"),
        (Op::Rm, b""),
        (Op::Directory, b"/a\0\0"),
        (Op::Write, b"/no-nul"),
        (Op::GetPerms, b"/a//b\0"),
        (Op::TransactionEnd, b"maybe\0"),
    ] {
        assert_eq!(c.call(op, 0, payload), err("EINVAL"), "{op} {payload:?}");
    }
    for op in [20u32, 27, 999, 0xffff, Op::WatchEvent as u32, Op::Error as u32] {
        let id = c.send_raw(op, 0, b"/a\0");
        let r = c.recv().unwrap();
        assert_eq!((r.header.req_id, r.header.op, r.payload), (id, Op::Error as u32, p("ENOSYS")), "op {op}");
    }
    assert_eq!(c.call(Op::Read, 12345, &p("/tool")), err("ENOENT"));
    assert_eq!(c.call(Op::TransactionEnd, 777, b"T\0"), err("ENOENT"));
    // The connection survived all of it.
    assert_eq!(c.call(Op::Read, 0, &p("/tool")), (Op::Read as u32, Vec::new()));
}

#[test]
fn oversize_lengths_close_only_that_connection() {
    let d = Daemon::start(&[]);
    let mut bystander = d.client();
    bystander.write("/still", b"here");
    for len in [4097u32, 65536, 0x8000_0000, u32::MAX] {
        let mut bad = d.client();
        let h = Header { op: Op::Write as u32, req_id: 1, tx_id: 0, len };
        bad.stream.write_all(&h.encode()).unwrap();
        assert!(bad.recv().is_none(), "len {len}: connection must be closed without a reply");
    }
    assert_eq!(bystander.call(Op::Read, 0, &p("/still")), (Op::Read as u32, b"here".to_vec()));
    assert!(d.log().contains("protocol violation"), "the close is logged with its reason");
}

#[test]
fn a_megabyte_of_garbage_closes_that_connection_only() {
    let d = Daemon::start(&[]);
    let mut bystander = d.client();
    let mut garbage = Vec::with_capacity(1 << 20);
    let mut x: u32 = 0x1234_5678;
    while garbage.len() < 1 << 20 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        garbage.extend_from_slice(&x.to_le_bytes());
    }
    let mut bad = d.client();
    // The daemon may close before all of it is written.
    let _ = bad.stream.write_all(&garbage);
    bad.stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    while bad.recv().is_some() {}
    assert_eq!(bystander.call(Op::Read, 0, &p("/tool")), (Op::Read as u32, Vec::new()));
}

#[test]
fn watch_events_come_before_the_reply_and_the_first_after_it() {
    let d = Daemon::start(&[]);
    let mut c = d.client();
    let id = c.send_raw(Op::Watch as u32, 0, b"/w\0tok\0");
    let reply = c.recv().unwrap();
    assert_eq!((reply.header.req_id, reply.payload), (id, b"OK\0".to_vec()));
    let first = c.recv().unwrap();
    assert_eq!(
        (first.header.op, first.header.req_id, first.payload),
        (Op::WatchEvent as u32, 0, b"/w\0tok\0".to_vec())
    );
    let id = c.send_raw(Op::Write as u32, 0, b"/w/x\0v");
    let event = c.recv().unwrap();
    assert_eq!((event.header.op, event.payload), (Op::WatchEvent as u32, b"/w/x\0tok\0".to_vec()));
    let reply = c.recv().unwrap();
    assert_eq!((reply.header.req_id, reply.payload), (id, b"OK\0".to_vec()));
}

#[test]
fn oversize_directory_is_e2big_never_a_long_reply() {
    let d = Daemon::start(&[]);
    let mut c = d.client();
    for i in 0..400 {
        c.write(&format!("/big/a-rather-long-child-name-{i}"), b"");
    }
    assert_eq!(c.call(Op::Directory, 0, &p("/big")), err("E2BIG"));
    let (op, part) = c.call(Op::DirectoryPart, 0, b"/big\00\0");
    assert_eq!(op, Op::DirectoryPart as u32);
    assert!(part.len() <= 4096);
}

#[test]
fn control_commands_answer_like_the_c_daemon() {
    let d = Daemon::start(&["-E", "1234"]);
    let mut c = d.client();
    assert_eq!(c.call(Op::Control, 0, b"check\0"), (Op::Control as u32, b"OK\0".to_vec()));
    let (_, quota) = c.call(Op::Control, 0, b"quota\0");
    let quota = String::from_utf8(quota).unwrap();
    assert!(quota.starts_with("Quota settings:\nnodes            :     1234 Nodes per domain\n"), "{quota}");
    assert!(quota.contains("path-max         :     2048 Max. length of a node path\n"), "{quota}");
    assert_eq!(c.call(Op::Control, 0, b"quota\0set\0nodes\0999\0"), (Op::Control as u32, b"OK\0".to_vec()));
    let (_, quota) = c.call(Op::Control, 0, b"quota\0");
    assert!(String::from_utf8(quota).unwrap().contains("nodes            :      999"));
    let (_, dom0) = c.call(Op::Control, 0, b"quota\00\0");
    assert!(String::from_utf8(dom0).unwrap().starts_with("Domain 0:\nnodes           :        3\n"));
    assert_eq!(c.call(Op::Control, 0, b"quota\099\0"), err("ENOENT"));
    assert_eq!(c.call(Op::Control, 0, b"bogus\0"), err("EINVAL"));
    assert_eq!(c.call(Op::Control, 0, b"quota\0set\0bogus\05\0"), err("EINVAL"));
    let (_, help) = c.call(Op::Control, 0, b"help\0");
    assert!(String::from_utf8(help).unwrap().contains("quota\t[set <name> <val>|<domid>]\n"));
    let (_, mem) = c.call(Op::Control, 0, b"memreport\0");
    assert!(String::from_utf8(mem).unwrap().contains("nodes: 3\n"));
    assert_eq!(c.call(Op::Control, 0, b"print\0hello\0"), (Op::Control as u32, b"OK\0".to_vec()));
}

#[test]
fn trace_file_gets_one_line_per_message() {
    let dir = fresh_dir("trace");
    let trace = dir.join("trace");
    let d = Daemon::start(&["-T", trace.to_str().unwrap()]);
    let mut c = d.client();
    c.write("/t", b"v");
    assert_eq!(c.call(Op::Read, 0, &p("/nope")), err("ENOENT"));
    let text = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("IN ") && lines[0].ends_with("WRITE (/t v)"), "{}", lines[0]);
    assert!(lines[1].starts_with("OUT") && lines[1].ends_with("WRITE (OK )"), "{}", lines[1]);
    assert!(lines[3].ends_with("ERROR (ENOENT )"), "{}", lines[3]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigterm_exits_cleanly_and_removes_the_socket() {
    let dir = fresh_dir("pid");
    let pid_file = dir.join("pid");
    let mut d = Daemon::start(&["-F", pid_file.to_str().unwrap()]);
    // The socket answers as soon as it is bound; the pid file follows.
    let pid: u32 = read_pid_file(&pid_file).parse().unwrap();
    assert_eq!(pid, d.pid());
    let _c = d.client();
    assert!(d.terminate(), "exit status must be success");
    assert!(!d.socket.exists(), "socket removed");
    assert!(!pid_file.exists(), "pid file removed");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn forked_daemon_serves_logs_to_its_file_and_stops_on_sigterm() {
    let dir = fresh_dir("fork");
    let (socket, pid_file, log) = (dir.join("socket"), dir.join("pid"), dir.join("log"));
    // Without -N the parent returns once the socket is bound and the child
    // has detached.
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_xenstored"))
        .arg("--socket")
        .arg(&socket)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg("--log-file")
        .arg(&log)
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let pid = read_pid_file(&pid_file);
    let mut c = Client::connect(&socket);
    c.write("/forked", b"yes");
    assert_eq!(c.call(Op::Read, 0, &p("/forked")), (Op::Read as u32, b"yes".to_vec()));
    assert!(std::process::Command::new("kill").arg(&pid).status().unwrap().success());
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(std::time::Instant::now() < deadline, "daemon did not stop");
        std::thread::sleep(Duration::from_millis(10));
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("xenstored ready") && text.contains("shutting down"), "{text}");
    assert!(!socket.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn forked_daemon_without_a_log_file_logs_to_the_system_log() {
    let dir = fresh_dir("syslog");
    let (socket, pid_file, dev_log) = (dir.join("socket"), dir.join("pid"), dir.join("dev-log"));
    let log = std::os::unix::net::UnixDatagram::bind(&dev_log).unwrap();
    log.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_xenstored"))
        .env("XENSTORED_SYSLOG_SOCKET", &dev_log)
        .args(["--socket", socket.to_str().unwrap(), "--pid-file", pid_file.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let pid = read_pid_file(&pid_file);
    let mut lines = Vec::new();
    let mut buf = [0u8; 2048];
    while !lines.iter().any(|l: &String| l.contains("xenstored ready")) {
        let n = log.recv(&mut buf).expect("a syslog line within 10 s");
        lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(std::process::Command::new("kill").arg(&pid).status().unwrap().success());
    // daemon facility: warning <28>, info <30>; the forked child's pid.
    let ready = lines.iter().find(|l| l.contains("xenstored ready")).unwrap();
    assert!(ready.starts_with(&format!("<30>xenstored[{pid}]: ")), "{ready}");
    assert!(lines.iter().any(|l| l.starts_with("<28>") && l.contains("no platform")), "{lines:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn socket_in_a_missing_tree_is_an_error_not_new_directories() {
    let dir = std::env::temp_dir().join(format!("xenstored-typo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let socket = dir.join("no/such/socket");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xenstored"))
        .args(["-N", "--socket", socket.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("creating the socket's directory"), "{err}");
    assert!(!dir.exists(), "no directory was made");
}

#[test]
fn under_systemd_the_daemon_says_ready_once_its_socket_answers() {
    let dir = fresh_dir("notify");
    let notify = dir.join("notify");
    let systemd = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    systemd.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let socket = dir.join("socket");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_xenstored"))
        .env("NOTIFY_SOCKET", &notify)
        .args(["--no-fork", "--socket", socket.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 64];
    let n = systemd.recv(&mut buf).expect("READY=1 within 10 s");
    assert_eq!(&buf[..n], b"READY=1");
    // Ready means ready: the socket answers now.
    let mut c = Client::connect(&socket);
    c.write("/ready", b"1");
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sighup_reopens_the_log_and_trace_files_and_keeps_serving() {
    let dir = fresh_dir("hup");
    let (log, trace) = (dir.join("log"), dir.join("trace"));
    let mut d = Daemon::start(&["--log-file", log.to_str().unwrap(), "-T", trace.to_str().unwrap()]);
    let mut c = d.client();
    c.write("/before", b"1");
    // logrotate moves the files away, then signals the daemon.
    std::fs::rename(&log, dir.join("log.1")).unwrap();
    std::fs::rename(&trace, dir.join("trace.1")).unwrap();
    let pid = d.pid().to_string();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log).is_ok_and(|t| t.contains("reopened")) {
        assert!(std::time::Instant::now() < deadline, "no new log file after SIGHUP");
        std::thread::sleep(Duration::from_millis(10));
    }
    c.write("/after", b"2");
    assert_eq!(c.call(Op::Read, 0, &p("/after")), (Op::Read as u32, b"2".to_vec()));
    assert!(d.terminate(), "the daemon survived SIGHUP and exits cleanly");
    let new_trace = std::fs::read_to_string(&trace).unwrap();
    assert!(new_trace.contains("/after") && !new_trace.contains("/before"), "{new_trace}");
    let old_trace = std::fs::read_to_string(dir.join("trace.1")).unwrap();
    assert!(old_trace.contains("/before"), "{old_trace}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn version_prints_and_exits_and_c_daemon_option_clusters_start_it() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xenstored")).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("xenstored "), "{out:?}");
    // XENSTORED_ARGS as the C daemon's init scripts pass them.
    let mut d = Daemon::start(&["-NV", "-E5", "--event", "3", "-Ioff"]);
    let mut c = d.client();
    assert_eq!(c.call(Op::GetQuota, 0, b"nodes\0"), (Op::GetQuota as u32, b"5\0".to_vec()));
    assert!(d.terminate());
    let log = std::fs::read_to_string(d.dir.join("log")).unwrap();
    assert!(log.contains("--event 3 has no effect"), "{log}");
}

/// Waits for a pid file to hold a whole pid (it is written after the socket
/// is bound, so a test may get there first).
fn read_pid_file(path: &std::path::Path) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if text.ends_with('\n') && text.trim().parse::<u32>().is_ok() {
                return text.trim().to_owned();
            }
        }
        assert!(std::time::Instant::now() < deadline, "no pid in {}", path.display());
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// More watchers than the loop flushes per iteration: every watcher still
/// gets every event, in the order of the writes, while the writer's
/// replies are not held back behind them.
#[test]
fn events_to_hundreds_of_watchers_all_arrive_in_order() {
    let d = Daemon::start(&[]);
    let mut watchers: Vec<Client> = (0..300)
        .map(|i| {
            let mut c = d.client();
            assert_eq!(c.call(Op::Watch, 0, format!("/fan\0t{i}\0").as_bytes()).1, b"OK\0");
            let first = c.recv().unwrap();
            assert_eq!(first.payload, format!("/fan\0t{i}\0").into_bytes());
            c
        })
        .collect();
    let mut writer = d.client();
    for k in 0..10 {
        writer.write(&format!("/fan/k{k}"), b"v");
    }
    for (i, c) in watchers.iter_mut().enumerate() {
        for k in 0..10 {
            let event = c.recv().unwrap();
            assert_eq!(event.header.op, Op::WatchEvent as u32);
            assert_eq!(event.payload, format!("/fan/k{k}\0t{i}\0").into_bytes(), "watcher {i}");
        }
    }
}
