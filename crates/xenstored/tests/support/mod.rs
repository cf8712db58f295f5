//! Runs the daemon binary at a private socket, and a raw protocol client.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use xenstore_wire::{Decoder, Header, Op, Packet};

/// An empty directory of this test process's own, named after `name`
/// (what an earlier run left there is removed first).
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xenstored-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A daemon child process, terminated on drop.
pub struct Daemon {
    pub child: Child,
    pub dir: PathBuf,
    pub socket: PathBuf,
}

impl Daemon {
    pub fn start(extra: &[&str]) -> Daemon {
        Daemon::start_on(None, extra)
    }

    /// Starts the daemon allowed `nofile` open files (`prlimit`).
    #[allow(dead_code)]
    pub fn start_with_nofile(nofile: u32, extra: &[&str]) -> Daemon {
        Daemon::spawn(Some(nofile), None, extra)
    }

    /// Starts the daemon, pinned to one CPU if `cpu` is given.
    pub fn start_on(cpu: Option<usize>, extra: &[&str]) -> Daemon {
        Daemon::spawn(None, cpu, extra)
    }

    fn spawn(nofile: Option<u32>, cpu: Option<usize>, extra: &[&str]) -> Daemon {
        let dir = std::env::temp_dir().join(format!(
            "xenstored-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("socket");
        let mut command = match (nofile, cpu) {
            (Some(n), _) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg(env!("CARGO_BIN_EXE_xenstored"));
                c
            }
            (None, Some(cpu)) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).arg(env!("CARGO_BIN_EXE_xenstored"));
                c
            }
            (None, None) => Command::new(env!("CARGO_BIN_EXE_xenstored")),
        };
        let child = command
            .arg("-N")
            .arg("--socket")
            .arg(&socket)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(dir.join("log")).unwrap()))
            .spawn()
            .expect("start xenstored");
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "daemon did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Daemon { child, dir, socket }
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.socket)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size of the daemon, in bytes.
    pub fn rss(&self) -> u64 {
        let statm = std::fs::read_to_string(format!("/proc/{}/statm", self.pid())).unwrap();
        statm.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 4096
    }

    /// Sends SIGTERM and returns whether the daemon exited successfully.
    pub fn terminate(&mut self) -> bool {
        let _ = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A raw protocol client: whole packets in, whole packets out.
pub struct Client {
    pub stream: UnixStream,
    decoder: Decoder,
    pending: std::collections::VecDeque<Packet>,
    next_id: u32,
}

impl Client {
    pub fn connect(path: &std::path::Path) -> Client {
        let stream = UnixStream::connect(path).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client { stream, decoder: Decoder::new(), pending: Default::default(), next_id: 1 }
    }

    pub fn send_raw(&mut self, op: u32, tx: u32, payload: &[u8]) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        let len = u32::try_from(payload.len()).expect("test payload fits a u32");
        let header = Header { op, req_id: id, tx_id: tx, len };
        let mut bytes = header.encode().to_vec();
        bytes.extend_from_slice(payload);
        self.stream.write_all(&bytes).unwrap();
        id
    }

    /// The next packet, or `None` if the daemon closed the connection.
    pub fn recv(&mut self) -> Option<Packet> {
        loop {
            if let Some(p) = self.pending.pop_front() {
                return Some(p);
            }
            let mut buf = [0u8; 8192];
            let n = match self.stream.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("read: {e}"),
            };
            let mut input = &buf[..n];
            while !input.is_empty() {
                match self.decoder.decode(&mut input).expect("daemon framing") {
                    Some(p) => self.pending.push_back(p),
                    None => break,
                }
            }
        }
    }

    /// Sends a request and returns its reply (op, payload), skipping nothing.
    pub fn call(&mut self, op: Op, tx: u32, payload: &[u8]) -> (u32, Vec<u8>) {
        let id = self.send_raw(op as u32, tx, payload);
        let p = self.recv().expect("reply");
        assert_eq!(p.header.req_id, id, "reply to the request just sent");
        (p.header.op, p.payload)
    }

    pub fn write(&mut self, path: &str, value: &[u8]) {
        let mut payload = path.as_bytes().to_vec();
        payload.push(0);
        payload.extend_from_slice(value);
        assert_eq!(self.call(Op::Write, 0, &payload), (Op::Write as u32, b"OK\0".to_vec()));
    }
}

/// `path\0`
pub fn p(path: &str) -> Vec<u8> {
    let mut v = path.as_bytes().to_vec();
    v.push(0);
    v
}

pub fn err(name: &str) -> (u32, Vec<u8>) {
    (Op::Error as u32, p(name))
}
