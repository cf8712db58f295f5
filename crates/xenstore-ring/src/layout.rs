//! The page layout and the values of its signalling fields, as
//! `xenstore-ring.txt` and `xen/io/xs_wire.h` (`struct
//! xenstore_domain_interface`) define them.

#![forbid(unsafe_code)]

/// Size of the shared page.
pub const PAGE_SIZE: usize = 4096;
/// Size of each of the two byte queues.
pub const RING_SIZE: usize = 1024;
/// `RING_SIZE` as the index type, for index arithmetic.
pub(crate) const RING_SIZE_U32: u32 = 1024;
/// Mask turning a free-running index into an offset in a queue.
pub(crate) const RING_MASK: u32 = RING_SIZE_U32 - 1;

/// Offset of the request ("Input", guest to server) queue.
pub const REQ_OFFSET: usize = 0;
/// Offset of the response ("Output", server to guest) queue.
pub const RSP_OFFSET: usize = 1024;

/// The feature bits, defined once in [`xenstore_wire::features`], under
/// this crate's names.
pub use xenstore_wire::features::{
    ERROR as FEATURE_ERROR, RECONNECTION as FEATURE_RECONNECTION, WATCH_DEPTH as FEATURE_WATCH_DEPTH,
};

/// Connection state: the ring is connected (the steady state).
pub const CONNECTED: u32 = 0;
/// Connection state: the guest asked for a close and reconnect, which the
/// server has not completed yet.
pub const RECONNECT: u32 = 1;

/// Error indicator: no error, the connection is valid.
pub const ERROR_NONE: u32 = 0;
/// Error indicator: communication problem (event channel not functional).
pub const ERROR_COMM: u32 = 1;
/// Error indicator: inconsistent producer or consumer index.
pub const ERROR_RINGIDX: u32 = 2;
/// Error indicator: protocol violation (a packet's payload too long).
pub const ERROR_PROTO: u32 = 3;

/// One of the 32-bit fields after the two queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// Request consumer index (written by the server), offset 2048.
    ReqCons,
    /// Request producer index (written by the guest), offset 2052.
    ReqProd,
    /// Response consumer index (written by the guest), offset 2056.
    RspCons,
    /// Response producer index (written by the server), offset 2060.
    RspProd,
    /// Server feature bitmap (written by the server), offset 2064.
    ServerFeatures,
    /// Connection state, offset 2068: the guest sets [`RECONNECT`], the
    /// server sets [`CONNECTED`].
    Connection,
    /// Connection error indicator (written by the server), offset 2072.
    Error,
    /// The guest's event channel for the server, offset 2076, filled in by
    /// Xen for dom0less/Hyperlaunch domains (Xen 4.21, `xs_wire.h`): when
    /// non-zero the server binds it instead of INTRODUCE's port. Nobody
    /// writes it through this crate.
    EvtchnPort,
}

impl Field {
    /// Every field, in page order.
    pub const ALL: [Field; 8] = [
        Field::ReqCons,
        Field::ReqProd,
        Field::RspCons,
        Field::RspProd,
        Field::ServerFeatures,
        Field::Connection,
        Field::Error,
        Field::EvtchnPort,
    ];

    /// Byte offset of the field in the page (a multiple of 4).
    pub const fn offset(self) -> usize {
        match self {
            Field::ReqCons => 2048,
            Field::ReqProd => 2052,
            Field::RspCons => 2056,
            Field::RspProd => 2060,
            Field::ServerFeatures => 2064,
            Field::Connection => 2068,
            Field::Error => 2072,
            Field::EvtchnPort => 2076,
        }
    }
}

/// One of the two byte queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Queue {
    /// Guest to server.
    Req,
    /// Server to guest.
    Rsp,
}

impl Queue {
    pub(crate) const fn data_offset(self) -> usize {
        match self {
            Queue::Req => REQ_OFFSET,
            Queue::Rsp => RSP_OFFSET,
        }
    }

    pub(crate) const fn cons(self) -> Field {
        match self {
            Queue::Req => Field::ReqCons,
            Queue::Rsp => Field::RspCons,
        }
    }

    pub(crate) const fn prod(self) -> Field {
        match self {
            Queue::Req => Field::ReqProd,
            Queue::Rsp => Field::RspProd,
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn field_offsets_match_xs_wire_h() {
        let offsets: Vec<usize> = Field::ALL.iter().map(|f| f.offset()).collect();
        // `evtchn_port` follows `error` in Xen 4.21's xs_wire.h (Debian
        // 12's 4.17 headers end at `error`, offset 2076).
        assert_eq!(offsets, [2048, 2052, 2056, 2060, 2064, 2068, 2072, 2076]);
        assert!(Field::EvtchnPort.offset() + 4 <= PAGE_SIZE);
        assert_eq!(RSP_OFFSET + RING_SIZE, Field::ReqCons.offset());
    }
}
