//! Linux's xenbus character device (`/dev/xen/xenbus`): the guest's (or
//! dom0's) kernel carries the same framing over the domain's ring.
//!
//! The device takes requests one at a time, and the client must respect
//! two rules of Linux's `drivers/xen/xenbus/xenbus_dev_frontend.c` that a
//! socket does not have (both found on real Xen, where the multi-threaded
//! message exchange of `tests/xen` broke on them):
//!
//! - **One message per `write`.** `xenbus_file_write` acts on the first
//!   whole message in its buffer, then empties the buffer: a second
//!   message in the same write is silently dropped, and its caller waits
//!   for ever.
//! - **One request in flight.** The kernel queues a request whose body
//!   still points into that per-file buffer (`xenbus_dev_request_and_reply`
//!   does not copy it) until its xenbus thread copies it into the ring; a
//!   next write overwrites it, and the daemon receives a mix of the two
//!   (a READ answered with another request's bytes). libxenstore never
//!   sees this because it holds a lock for each whole round trip.
//!
//! So [`XenbusDevice`] writes one message per call, and before each
//! waits until the reply to the previous one was read: its reader counts
//! replies (every message but a watch event) as they pass. A failed write
//! or a reader that ends releases waiting writers with an error.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};

use super::Transport;

/// Bytes in a message header (`struct xsd_sockmsg`).
const HEADER: usize = 16;
/// `XS_WATCH_EVENT`: the one message that answers no request.
const WATCH_EVENT: u32 = 15;

/// The xenbus device, driven one request at a time.
#[derive(Debug)]
pub struct XenbusDevice {
    file: File,
    gate: Arc<Gate>,
}

impl XenbusDevice {
    /// Opens the device read-write.
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(XenbusDevice { file: OpenOptions::new().read(true).write(true).open(path)?, gate: Arc::default() })
    }
}

impl Transport for XenbusDevice {
    fn reader(&self) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(ReplyCounter::new(self.file.try_clone()?, self.gate.clone())))
    }

    fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        write_one_at_a_time(&mut &self.file, &self.gate, bytes)
    }

    /// A read blocked on the device cannot be interrupted: the reader
    /// thread of a dropped client lingers until the next message arrives.
    fn shutdown(&self) {}
}

/// Whether a request awaits its reply, and whether replies can still come.
#[derive(Debug, Default)]
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    awaiting_reply: bool,
    closed: bool,
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until no request is in flight, then marks one as sent.
    fn enter(&self) -> io::Result<()> {
        let mut state = self.lock();
        while state.awaiting_reply && !state.closed {
            state = self.changed.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        if state.closed {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "the xenbus device's reader has stopped"));
        }
        state.awaiting_reply = true;
        Ok(())
    }

    /// A reply arrived, or the request was never sent.
    fn release(&self) {
        self.lock().awaiting_reply = false;
        self.changed.notify_all();
    }

    fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }
}

/// Writes `bytes` (whole messages back to back) one message per
/// `write_all`, each after the previous one's reply.
fn write_one_at_a_time(out: &mut impl Write, gate: &Gate, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        let whole = match bytes.get(12..HEADER) {
            Some(len) => {
                let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]);
                usize::try_from(len).map_or(bytes.len(), |len| (HEADER + len).min(bytes.len()))
            }
            // The client never writes less than a header.
            None => bytes.len(),
        };
        gate.enter()?;
        if let Err(e) = out.write_all(&bytes[..whole]) {
            gate.release();
            return Err(e);
        }
        bytes = &bytes[whole..];
    }
    Ok(())
}

/// The device's byte stream, passed through while counting the replies in
/// it (each releases the gate).
struct ReplyCounter<R> {
    inner: R,
    gate: Arc<Gate>,
    /// The header being assembled.
    header: [u8; HEADER],
    have: usize,
    /// Payload bytes of the current message still to pass.
    payload_left: usize,
}

impl<R: Read> ReplyCounter<R> {
    fn new(inner: R, gate: Arc<Gate>) -> Self {
        ReplyCounter { inner, gate, header: [0; HEADER], have: 0, payload_left: 0 }
    }

    /// Follows the framing over `bytes`.
    fn observe(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len());
                self.payload_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (HEADER - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == HEADER {
                self.have = 0;
                let word = |i: usize| {
                    u32::from_le_bytes([self.header[i], self.header[i + 1], self.header[i + 2], self.header[i + 3]])
                };
                self.payload_left = usize::try_from(word(12)).unwrap_or(usize::MAX);
                if word(0) != WATCH_EVENT {
                    self.gate.release();
                }
            }
        }
    }
}

impl<R: Read> Read for ReplyCounter<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(0) => {
                self.gate.close();
                Ok(0)
            }
            Ok(n) => {
                self.observe(&buf[..n]);
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                self.gate.close();
                Err(e)
            }
        }
    }
}

impl<R> Drop for ReplyCounter<R> {
    fn drop(&mut self) {
        self.gate.close();
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    fn message(kind: u32, req_id: u32, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        for word in [kind, req_id, 0, u32::try_from(payload.len()).unwrap()] {
            m.extend_from_slice(&word.to_le_bytes());
        }
        m.extend_from_slice(payload);
        m
    }

    /// Records each `write` call's bytes.
    #[derive(Default)]
    struct Calls(Vec<Vec<u8>>);

    impl Write for Calls {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn one_message_per_write() {
        // Replies are "read" between the writes by releasing the gate from
        // a second thread as each write lands.
        let batch = [message(2, 1, b"/a\0"), message(2, 2, b""), message(2, 3, b"/local/domain/1/data/x\0")];
        let gate = Arc::new(Gate::default());
        let replier = {
            let gate = gate.clone();
            std::thread::spawn(move || {
                for _ in 0..3 {
                    while !gate.lock().awaiting_reply {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    gate.release();
                }
            })
        };
        let mut calls = Calls::default();
        write_one_at_a_time(&mut calls, &gate, &batch.concat()).unwrap();
        replier.join().unwrap();
        assert_eq!(calls.0, batch.to_vec());
    }

    #[test]
    fn a_second_request_waits_for_the_first_reply_and_events_do_not_count() {
        // The "kernel" end fails the test if a request arrives while the
        // previous one is unanswered; it sends a watch event first, which
        // must not let the next request through.
        let (ours, mut kernel) = UnixStream::pair().unwrap();
        let gate = Arc::new(Gate::default());
        let mut reader = ReplyCounter::new(ours.try_clone().unwrap(), gate.clone());
        let overlapped = Arc::new(AtomicBool::new(false));
        let kernel_side = {
            let overlapped = overlapped.clone();
            std::thread::spawn(move || {
                for req_id in 1..=3u32 {
                    let mut header = [0u8; HEADER];
                    kernel.set_read_timeout(None).unwrap();
                    kernel.read_exact(&mut header).unwrap();
                    let len = u32::from_le_bytes(header[12..16].try_into().unwrap());
                    let mut body = vec![0; usize::try_from(len).unwrap()];
                    kernel.read_exact(&mut body).unwrap();
                    // Nothing more may arrive before the reply.
                    kernel.set_read_timeout(Some(std::time::Duration::from_millis(50))).unwrap();
                    let mut probe = [0u8; 1];
                    if kernel.read(&mut probe).is_ok() {
                        // Dropping our end stops the reader and the writers.
                        overlapped.store(true, Ordering::SeqCst);
                        return;
                    }
                    kernel.write_all(&message(WATCH_EVENT, 0, b"/w\0tok\0")).unwrap();
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    kernel.write_all(&message(2, req_id, b"OK\0")).unwrap();
                }
            })
        };
        let writers: Vec<_> = (1..=3u32)
            .map(|req_id| {
                let (ours, gate) = (ours.try_clone().unwrap(), gate.clone());
                std::thread::spawn(move || write_one_at_a_time(&mut &ours, &gate, &message(2, req_id, b"/p\0")))
            })
            .collect();
        let mut seen = Vec::new();
        let mut buf = [0u8; 7];
        while seen.len() < 3 * (HEADER + 7) + 3 * (HEADER + 3) {
            let n = reader.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        kernel_side.join().unwrap();
        assert!(!overlapped.load(Ordering::SeqCst), "a request was written before the previous reply");
        for w in writers {
            w.join().unwrap().unwrap();
        }
    }

    #[test]
    fn a_reader_that_stops_releases_waiting_writers_with_an_error() {
        let gate = Arc::new(Gate::default());
        gate.enter().unwrap();
        let waiting = {
            let gate = gate.clone();
            std::thread::spawn(move || gate.enter())
        };
        drop(ReplyCounter::new(io::empty(), gate.clone()));
        assert_eq!(waiting.join().unwrap().unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    }
}
