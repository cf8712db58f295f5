//! Incremental framing of a byte stream into packets.
//!
//! Bytes arrive in any chunking (a socket read, a ring's wrap-around). The
//! decoder keeps at most one header and one payload of at most
//! [`PAYLOAD_MAX`] bytes: the announced length is checked before anything is
//! allocated for it, so a hostile length costs nothing.
//!
//! A live update hands each connection's partial input to the new process:
//! [`Decoder::pending`] gives the bytes received but not yet framed, and
//! [`Decoder::restore`] feeds them to a fresh decoder, so they pass the same
//! checks as if they had just arrived.

use crate::header::{Header, HEADER_LEN};
use crate::limits::PAYLOAD_MAX;

/// One complete message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Its header.
    pub header: Header,
    /// Exactly `header.len` bytes.
    pub payload: Vec<u8>,
}

/// Why a stream can no longer be framed. The connection must be dropped:
/// the protocol has no way to resynchronise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The header announced a payload over [`PAYLOAD_MAX`] bytes.
    PayloadTooLong {
        /// The announced length.
        len: u32,
    },
    /// The bytes given to [`Decoder::restore`] hold a whole packet, so they
    /// are not a partial message: the state they came from is corrupt.
    NotPending {
        /// How many bytes were given.
        len: usize,
    },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::PayloadTooLong { len } => {
                write!(f, "payload length {len} exceeds the protocol maximum of {PAYLOAD_MAX}")
            }
            FrameError::NotPending { len } => {
                write!(f, "{len} bytes to restore hold a whole packet, not a partial one")
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// Turns a byte stream into [`Packet`]s.
///
/// Call [`Decoder::decode`] with the bytes received; it consumes what it
/// uses from the front of the slice and returns a packet as soon as one is
/// complete. Call it again with the rest until it returns `Ok(None)` with the
/// slice empty. After an error the decoder stays failed.
#[derive(Debug, Default)]
pub struct Decoder {
    header_buf: [u8; HEADER_LEN],
    header_fill: usize,
    header: Option<Header>,
    payload: Vec<u8>,
    failed: Option<FrameError>,
}

impl Decoder {
    /// A decoder at a message boundary.
    pub fn new() -> Self {
        Decoder::default()
    }

    /// Consumes bytes from the front of `input`; returns a packet when one
    /// completes, `None` once `input` is used up mid-message.
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Option<Packet>, FrameError> {
        if let Some(err) = self.failed {
            return Err(err);
        }
        loop {
            let header = match self.header {
                Some(header) => header,
                None => {
                    let want = HEADER_LEN - self.header_fill;
                    let take = want.min(input.len());
                    let (chunk, rest) = input.split_at(take);
                    self.header_buf[self.header_fill..self.header_fill + take].copy_from_slice(chunk);
                    self.header_fill += take;
                    *input = rest;
                    if self.header_fill < HEADER_LEN {
                        return Ok(None);
                    }
                    let header = Header::decode(&self.header_buf);
                    if !header.len_ok() {
                        let err = FrameError::PayloadTooLong { len: header.len };
                        self.failed = Some(err);
                        return Err(err);
                    }
                    self.header_fill = 0;
                    self.header = Some(header);
                    // len <= PAYLOAD_MAX was just checked.
                    self.payload = Vec::with_capacity(header.len as usize);
                    header
                }
            };
            let want = header.len as usize - self.payload.len();
            let take = want.min(input.len());
            let (chunk, rest) = input.split_at(take);
            self.payload.extend_from_slice(chunk);
            *input = rest;
            if self.payload.len() == header.len as usize {
                self.header = None;
                return Ok(Some(Packet { header, payload: std::mem::take(&mut self.payload) }));
            }
            if input.is_empty() {
                return Ok(None);
            }
        }
    }

    /// Whether the decoder sits between messages (no partial message held).
    pub fn at_boundary(&self) -> bool {
        self.header.is_none() && self.header_fill == 0
    }

    /// Drops any partial message and any failure (a ring reconnection).
    pub fn reset(&mut self) {
        *self = Decoder::default();
    }

    /// The bytes received but not yet framed into a packet, as they came:
    /// a partial header, or a whole header and part of its payload. Empty
    /// at a message boundary. A failed decoder gives the header that failed
    /// it, so [`Decoder::restore`] fails the same way.
    pub fn pending(&self) -> Vec<u8> {
        match self.header {
            Some(header) => {
                let mut bytes = Vec::with_capacity(HEADER_LEN + self.payload.len());
                bytes.extend_from_slice(&header.encode());
                bytes.extend_from_slice(&self.payload);
                bytes
            }
            None => self.header_buf[..self.header_fill].to_vec(),
        }
    }

    /// [`Decoder::pending`], leaving the decoder at a message boundary.
    pub fn take_pending(&mut self) -> Vec<u8> {
        let bytes = self.pending();
        self.reset();
        bytes
    }

    /// A decoder that has received `bytes` (what [`Decoder::pending`] gave
    /// in another process) and nothing else. The bytes are decoded, not
    /// trusted: an oversize length in them is the same
    /// [`FrameError::PayloadTooLong`] as on the wire, and bytes holding a
    /// whole packet are [`FrameError::NotPending`].
    pub fn restore(bytes: &[u8]) -> Result<Decoder, FrameError> {
        let mut decoder = Decoder::new();
        let mut input = bytes;
        match decoder.decode(&mut input)? {
            None => Ok(decoder),
            Some(_) => Err(FrameError::NotPending { len: bytes.len() }),
        }
    }
}
