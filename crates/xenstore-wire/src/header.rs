//! The 16-byte message header (`struct xsd_sockmsg`).

use crate::limits::PAYLOAD_MAX;

/// Size of an encoded [`Header`].
pub const HEADER_LEN: usize = 16;

/// The header in front of every message, all fields little-endian `u32`.
///
/// `op` stays a raw number here so that an unknown operation can still be
/// answered (with `ENOSYS`) using its `req_id`; see [`crate::Op::from_u32`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Header {
    /// Operation type (`XS_*`), raw.
    pub op: u32,
    /// Chosen by the client, echoed in the reply; 0 in watch events.
    pub req_id: u32,
    /// Transaction the request belongs to, or 0.
    pub tx_id: u32,
    /// Payload length in bytes.
    pub len: u32,
}

impl Header {
    /// Decodes a header from exactly [`HEADER_LEN`] bytes.
    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Self {
        let word = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        Header { op: word(0), req_id: word(4), tx_id: word(8), len: word(12) }
    }

    /// Encodes the header.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..4].copy_from_slice(&self.op.to_le_bytes());
        out[4..8].copy_from_slice(&self.req_id.to_le_bytes());
        out[8..12].copy_from_slice(&self.tx_id.to_le_bytes());
        out[12..16].copy_from_slice(&self.len.to_le_bytes());
        out
    }

    /// Whether the announced payload length is within [`PAYLOAD_MAX`].
    pub fn len_ok(&self) -> bool {
        usize::try_from(self.len).is_ok_and(|len| len <= PAYLOAD_MAX)
    }
}
