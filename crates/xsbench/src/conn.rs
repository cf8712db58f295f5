//! A bare wire-protocol connection to any xenstored's Unix socket.
//!
//! The benchmark speaks the protocol itself rather than through a client
//! library, so that every daemon is driven by exactly the same bytes and
//! the client's own cost is a buffer copy: requests are encoded into one
//! buffer and sent with one `write`, replies are read in large chunks and
//! split in place. Requests can be pipelined (`send` many, `flush`, then
//! `recv` as many), which is how stores of a million nodes are filled in
//! seconds.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{bail, Context, Result};
use xenstore_wire::{Header, Op, HEADER_LEN};

/// The largest reply taken: far over the protocol's limit, to measure
/// daemons that exceed it rather than fail on them.
pub const REPLY_MAX: usize = 1 << 20;

/// One message read from the daemon.
#[derive(Debug, Clone)]
pub struct Msg {
    /// Its header.
    pub header: Header,
    /// Its payload.
    pub payload: Vec<u8>,
}

impl Msg {
    /// The error name if this is an error reply (`"EAGAIN"`, ...).
    pub fn error(&self) -> Option<&str> {
        (self.header.op == Op::Error as u32)
            .then(|| std::str::from_utf8(self.payload.strip_suffix(b"\0").unwrap_or(&self.payload)).unwrap_or("?"))
    }

    /// Whether this is a watch event rather than a reply.
    pub fn is_event(&self) -> bool {
        self.header.op == Op::WatchEvent as u32
    }
}

/// A connection with its outgoing and incoming buffers.
#[derive(Debug)]
pub struct Conn {
    stream: UnixStream,
    out: Vec<u8>,
    inbuf: Vec<u8>,
    start: usize,
    next_req: u32,
    /// Watch events that arrived while waiting for a reply.
    pub events: usize,
}

impl Conn {
    /// Connects to the daemon at `socket`.
    pub fn connect(socket: &Path) -> Result<Conn> {
        let stream = UnixStream::connect(socket).with_context(|| format!("connect to {}", socket.display()))?;
        Ok(Conn {
            stream,
            out: Vec::with_capacity(4096),
            inbuf: Vec::with_capacity(65536),
            start: 0,
            next_req: 1,
            events: 0,
        })
    }

    /// The socket, for readiness polling.
    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// Queues a request whose payload is the concatenation of `parts`.
    pub fn send(&mut self, op: Op, tx: u32, parts: &[&[u8]]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let header = Header {
            op: op as u32,
            req_id: self.next_req,
            tx_id: tx,
            len: u32::try_from(len).expect("payload fits u32"),
        };
        self.next_req = self.next_req.wrapping_add(1);
        self.out.extend_from_slice(&header.encode());
        for p in parts {
            self.out.extend_from_slice(p);
        }
    }

    /// Writes every queued request in one go.
    pub fn flush(&mut self) -> Result<()> {
        self.stream.write_all(&self.out).context("write to daemon")?;
        self.out.clear();
        Ok(())
    }

    /// The next message, event or reply.
    pub fn recv_any(&mut self) -> Result<Msg> {
        loop {
            if let Some(msg) = self.take_buffered()? {
                return Ok(msg);
            }
            self.fill()?;
        }
    }

    /// The next reply, counting (and dropping) watch events before it.
    pub fn recv(&mut self) -> Result<Msg> {
        loop {
            let msg = self.recv_any()?;
            if msg.is_event() {
                self.events += 1;
                continue;
            }
            return Ok(msg);
        }
    }

    /// Sends one request and waits for its reply.
    pub fn call(&mut self, op: Op, tx: u32, parts: &[&[u8]]) -> Result<Msg> {
        self.send(op, tx, parts);
        self.flush()?;
        self.recv()
    }

    /// Like [`Conn::call`], but an error reply is an error.
    pub fn call_ok(&mut self, op: Op, tx: u32, parts: &[&[u8]]) -> Result<Msg> {
        let msg = self.call(op, tx, parts)?;
        if let Some(e) = msg.error() {
            bail!("{} {:?}: {e}", op.name(), String::from_utf8_lossy(&parts.concat()));
        }
        Ok(msg)
    }

    /// Reads whatever the socket has (at least one byte).
    pub fn fill(&mut self) -> Result<()> {
        if self.try_fill()? {
            Ok(())
        } else {
            bail!("nothing to read on a non-blocking socket")
        }
    }

    /// Reads whatever the socket has; `false` if a non-blocking socket had
    /// nothing.
    pub fn try_fill(&mut self) -> Result<bool> {
        if self.start > 0 && self.start == self.inbuf.len() {
            self.inbuf.clear();
            self.start = 0;
        } else if self.start > 32768 {
            self.inbuf.drain(..self.start);
            self.start = 0;
        }
        let len = self.inbuf.len();
        self.inbuf.resize(len + 65536, 0);
        let n = self.stream.read(&mut self.inbuf[len..]);
        let n = match n {
            Ok(n) => n,
            Err(e) => {
                self.inbuf.truncate(len);
                if e.kind() == std::io::ErrorKind::WouldBlock {
                    return Ok(false);
                }
                return Err(e).context("read from daemon");
            }
        };
        self.inbuf.truncate(len + n);
        if n == 0 {
            bail!("daemon closed the connection");
        }
        Ok(true)
    }

    /// A complete message already in the buffer, if any.
    pub fn take_buffered(&mut self) -> Result<Option<Msg>> {
        let avail = &self.inbuf[self.start..];
        if avail.len() < HEADER_LEN {
            return Ok(None);
        }
        let header = Header::decode(avail[..HEADER_LEN].try_into().expect("header length"));
        // Replies over the protocol's 4096 bytes are taken (oxenstored sends
        // them for long directories); the workloads note them.
        if header.len as usize > REPLY_MAX {
            bail!("daemon sent a {}-byte payload", header.len);
        }
        let total = HEADER_LEN + header.len as usize;
        if avail.len() < total {
            return Ok(None);
        }
        let payload = avail[HEADER_LEN..total].to_vec();
        self.start += total;
        Ok(Some(Msg { header, payload }))
    }
}

/// `path` followed by a nul, as most requests want it.
pub fn z(path: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(path.len() + 1);
    v.extend_from_slice(path.as_bytes());
    v.push(0);
    v
}

/// Flushes and reads `n` replies, failing on the first error reply.
pub fn drain(conn: &mut Conn, n: usize) -> Result<usize> {
    if n == 0 {
        return Ok(0);
    }
    conn.flush()?;
    for _ in 0..n {
        let msg = conn.recv()?;
        if let Some(e) = msg.error() {
            bail!("pipelined request failed: {e}");
        }
    }
    Ok(n)
}
