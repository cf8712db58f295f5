//! The response a backend puts in the slot of the request it answers:
//! `struct blkif_response` (id, operation, status).

use xen_ioring::Message;

use crate::abi::{RSP_EOPNOTSUPP, RSP_ERROR, RSP_OKAY};
use crate::bytes::{get_u16, get_u64, get_u8, put};

/// `sizeof(struct blkif_response)` on x86_64.
pub const RESPONSE_SIZE: usize = 16;

const ID: usize = 0;
const OPERATION: usize = 8;
const STATUS: usize = 10;

/// `struct blkif_response`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    /// The request's tag.
    pub id: u64,
    /// The request's operation.
    pub operation: u8,
    /// `BLKIF_RSP_*` (any value, as the peer wrote it).
    pub status: i16,
}

impl Response {
    /// Whether the request succeeded (`BLKIF_RSP_OKAY`).
    pub fn is_ok(&self) -> bool {
        self.status == RSP_OKAY
    }

    /// The status's name in `blkif.h`, for messages.
    pub fn status_name(status: i16) -> &'static str {
        match status {
            RSP_OKAY => "BLKIF_RSP_OKAY",
            RSP_ERROR => "BLKIF_RSP_ERROR",
            RSP_EOPNOTSUPP => "BLKIF_RSP_EOPNOTSUPP",
            _ => "an unknown status",
        }
    }
}

impl Message for Response {
    const SIZE: usize = RESPONSE_SIZE;
    const ALIGN: usize = 8;

    fn encode(&self, out: &mut [u8]) {
        out.fill(0);
        put(out, ID, &self.id.to_ne_bytes());
        put(out, OPERATION, &[self.operation]);
        put(out, STATUS, &self.status.to_ne_bytes());
    }

    fn decode(bytes: &[u8]) -> Response {
        Response {
            id: get_u64(bytes, ID),
            operation: get_u8(bytes, OPERATION),
            status: i16::from_ne_bytes(get_u16(bytes, STATUS).to_ne_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_round_trips_with_a_negative_status() {
        let response = Response { id: 42, operation: 3, status: RSP_EOPNOTSUPP };
        let mut bytes = [0xffu8; RESPONSE_SIZE];
        response.encode(&mut bytes);
        assert_eq!(&bytes[12..], [0, 0, 0, 0], "padding is zeroed");
        assert_eq!(Response::decode(&bytes), response);
    }
}
