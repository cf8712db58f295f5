//! Test doubles shared by the integration tests: a scripted fake daemon
//! on one end of a socket pair, and the C reference daemon (run by the
//! project's own launcher, `xs-peers`).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use xenstore::transport::UnixSocket;
use xenstore::{Client, ErrorCode, Op, Options};
use xenstore_wire::{Decoder, Header};

/// One request as the fake daemon received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub header: Header,
    pub payload: Vec<u8>,
}

impl Received {
    pub fn op(&self) -> Op {
        Op::from_u32(self.header.op).expect("known op")
    }
}

/// The daemon end of a socket pair, driven by the test.
#[derive(Debug)]
pub struct FakeDaemon {
    stream: UnixStream,
    decoder: Decoder,
    buffered: Vec<u8>,
}

impl FakeDaemon {
    /// A blocking client connected to a fake daemon.
    pub fn pair(options: Options) -> (Client, FakeDaemon) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let client = Client::with_transport(Box::new(UnixSocket::from_stream(ours)), options).unwrap();
        (client, FakeDaemon::new(theirs))
    }

    pub fn new(stream: UnixStream) -> Self {
        FakeDaemon { stream, decoder: Decoder::new(), buffered: Vec::new() }
    }

    /// The next request, or `None` once the client closed the connection.
    pub fn recv(&mut self) -> Option<Received> {
        loop {
            let mut input = &self.buffered[..];
            let packet = self.decoder.decode(&mut input).unwrap();
            let rest = input.to_vec();
            self.buffered = rest;
            if let Some(packet) = packet {
                return Some(Received { header: packet.header, payload: packet.payload });
            }
            let mut buf = [0u8; 8192];
            let n = self.stream.read(&mut buf).ok()?;
            if n == 0 {
                return None;
            }
            self.buffered.extend_from_slice(&buf[..n]);
        }
    }

    /// The next request, which must be `op`.
    pub fn expect(&mut self, op: Op) -> Received {
        let req = self.recv().unwrap_or_else(|| panic!("connection closed while expecting {op}"));
        assert_eq!(req.op(), op, "payload {:?}", String::from_utf8_lossy(&req.payload));
        req
    }

    pub fn send(&mut self, op: Op, req_id: u32, tx_id: u32, payload: &[u8]) {
        let header = Header { op: op as u32, req_id, tx_id, len: payload.len().try_into().unwrap() };
        let mut msg = header.encode().to_vec();
        msg.extend_from_slice(payload);
        self.stream.write_all(&msg).unwrap();
    }

    /// Answers `req` with its own operation and `payload`.
    pub fn reply(&mut self, req: &Received, payload: &[u8]) {
        self.send(req.op(), req.header.req_id, req.header.tx_id, payload);
    }

    pub fn ok(&mut self, req: &Received) {
        self.reply(req, b"OK\0");
    }

    pub fn error(&mut self, req: &Received, code: ErrorCode) {
        let mut payload = code.name().as_bytes().to_vec();
        payload.push(0);
        self.send(Op::Error, req.header.req_id, req.header.tx_id, &payload);
    }

    pub fn event(&mut self, path: &str, token: &[u8]) {
        let mut payload = path.as_bytes().to_vec();
        payload.push(0);
        payload.extend_from_slice(token);
        payload.push(0);
        self.send(Op::WatchEvent, 0, 0, &payload);
    }

    /// Closes the daemon's end.
    pub fn hang_up(self) {
        drop(self);
    }
}

/// The C reference `xenstored` (Xen 4.17) at a private socket, run by
/// `xs_peers` (needs root, and the packages of [`xs_peers::C_XENSTORED`],
/// which the tests using it declare to their harness); stopped on drop.
/// Domains 1..=10 "exist" (so permissions may name them).
#[derive(Debug)]
pub struct CDaemon {
    daemon: xs_peers::Reference,
    dir: tempfile::TempDir,
}

impl CDaemon {
    pub fn start() -> CDaemon {
        let dir = tempfile::Builder::new().prefix("xs-client-").tempdir().unwrap();
        let daemon = xs_peers::Launch::new(xs_peers::Flavor::C)
            .domains("1-10")
            .start(&dir.path().join("socket"))
            .unwrap_or_else(|e| panic!("the C reference daemon did not start: {e}"));
        CDaemon { daemon, dir }
    }

    pub fn socket(&self) -> &Path {
        self.daemon.socket()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn client(&self) -> Client {
        Client::connect(self.socket()).unwrap()
    }
}
