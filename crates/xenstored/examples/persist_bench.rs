//! What `--persist` costs: WRITE latency (p50, p99) and WRITE throughput
//! with 1 and 16 clients, against the daemon without and with a journal.
//!
//! `cargo build --release -p xenstored --examples && target/release/examples/persist_bench [SECONDS] [DIR]`
//! starts `target/release/xenstored` (beside this program's directory)
//! on a socket in DIR (default: a directory under the current one, so the
//! journal is on the disk that would hold it, not a tmpfs), once per mode.
//! Each client is a thread on its own connection doing one WRITE at a time
//! (a new key each time, 16-byte values).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use xenstore_wire::{Header, Op, HEADER_LEN};

fn daemon(bin: &Path, dir: &Path, persist: bool) -> Child {
    let socket = dir.join("socket");
    let _ = std::fs::remove_file(&socket);
    let mut cmd = Command::new(bin);
    cmd.arg("-N")
        .arg("--socket")
        .arg(&socket)
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(dir.join("log")).expect("log")));
    if persist {
        cmd.arg("--persist").arg(dir.join("store"));
    }
    let child = cmd.spawn().expect("start xenstored");
    let deadline = Instant::now() + Duration::from_secs(10);
    while UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "daemon did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

/// One client's WRITE latencies over `time`.
fn client(socket: PathBuf, k: usize, time: Duration) -> Vec<Duration> {
    let mut s = UnixStream::connect(socket).expect("connect");
    let mut lat = Vec::new();
    let mut reply = vec![0u8; 4096];
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < time {
        let payload = format!("/bench/c{k}/k{}\00123456789abcdef", n % 1000);
        let len = u32::try_from(payload.len()).unwrap_or(0);
        let header = Header { op: Op::Write as u32, req_id: n, tx_id: 0, len };
        let mut msg = header.encode().to_vec();
        msg.extend_from_slice(payload.as_bytes());
        let t = Instant::now();
        s.write_all(&msg).expect("send");
        s.read_exact(&mut reply[..HEADER_LEN]).expect("reply");
        let body = u32::from_le_bytes([reply[12], reply[13], reply[14], reply[15]]) as usize;
        s.read_exact(&mut reply[..body]).expect("reply body");
        lat.push(t.elapsed());
        n += 1;
    }
    lat
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let root = args.get(2).map_or_else(|| PathBuf::from("persist-bench"), PathBuf::from);
    let exe = std::env::current_exe().expect("own path");
    let bin = exe.parent().and_then(Path::parent).map(|d| d.join("xenstored")).expect("target dir");
    println!("| mode | clients | WRITE p50 µs | WRITE p99 µs | WRITE/s |");
    println!("|---|---|---|---|---|");
    for persist in [false, true] {
        for clients in [1usize, 16] {
            let dir = root.join(format!("{}-{clients}", if persist { "persist" } else { "memory" }));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("bench dir");
            let mut child = daemon(&bin, &dir, persist);
            let time = Duration::from_secs_f64(secs);
            let threads: Vec<_> = (0..clients)
                .map(|k| {
                    let socket = dir.join("socket");
                    std::thread::spawn(move || client(socket, k, time))
                })
                .collect();
            let mut all: Vec<Duration> = threads.into_iter().flat_map(|t| t.join().expect("client")).collect();
            all.sort_unstable();
            let pct = |per_mille: usize| all[(all.len() * per_mille / 1000).min(all.len() - 1)].as_secs_f64() * 1e6;
            let mode = if persist { "--persist" } else { "in memory" };
            println!("| {mode} | {clients} | {:.0} | {:.0} | {:.0} |", pct(500), pct(990), all.len() as f64 / secs);
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let _ = child.wait();
            if persist {
                // The daemon's own figures: syncs, and their mean and worst time.
                let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
                if let Some(line) = log.lines().find(|l| l.contains(" journal ")) {
                    println!("|   | daemon: {} |", line.split("journal ").nth(1).unwrap_or(line).trim());
                }
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    let _ = std::fs::remove_dir(&root);
}
