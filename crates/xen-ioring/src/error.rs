//! What can go wrong: memory that cannot hold a ring, a full ring, and a
//! peer whose indices make the ring unusable.

#![forbid(unsafe_code)]

/// The shared memory cannot hold a ring of these messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LayoutError {
    /// Not even one entry fits after the 64-byte header.
    TooSmall {
        /// The size of the memory.
        bytes: usize,
        /// The size of one entry.
        entry_size: usize,
    },
    /// Both messages have `SIZE` 0.
    ZeroSizedEntry,
    /// A `ring-page-order` above [`crate::MAX_RING_PAGE_ORDER`].
    OrderTooLarge {
        /// The order asked for.
        order: u32,
    },
}

impl std::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LayoutError::TooSmall { bytes, entry_size } => {
                write!(f, "{bytes} bytes hold no ring of {entry_size}-byte entries after the 64-byte header")
            }
            LayoutError::ZeroSizedEntry => write!(f, "ring entries must not be empty"),
            LayoutError::OrderTooLarge { order } => {
                write!(f, "ring-page-order {order} is above the maximum {}", crate::MAX_RING_PAGE_ORDER)
            }
        }
    }
}

impl std::error::Error for LayoutError {}

/// No slot for the message: the front has `RING_SIZE` requests in flight
/// (`RING_FULL`), or the back has answered every request it took (a
/// response goes in the slot of the request it answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingFull;

impl std::fmt::Display for RingFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no free ring slot")
    }
}

impl std::error::Error for RingFull {}

/// The peer's indices are impossible: the ring is corrupt.
///
/// Nothing was copied. The end that saw it stops: every later take and
/// check returns the same error (as blkback halts ring processing), and
/// its owner should tear the connection down (on xenbus, move to
/// `Closing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RingError {
    /// The front's `req_prod` claims more unanswered requests than the ring
    /// holds, or moved back past requests already taken (blkback:
    /// "Frontend provided bogus ring requests").
    BogusRequests {
        /// The `req_prod` read.
        req_prod: u32,
        /// The back's consumer index.
        req_cons: u32,
        /// The `rsp_prod` the back last published.
        rsp_prod: u32,
        /// Entries in the ring.
        size: u32,
    },
    /// The back's `rsp_prod` claims more responses than requests in flight,
    /// or moved back past responses already taken (blkfront: "illegal
    /// number of responses").
    BogusResponses {
        /// The `rsp_prod` read.
        rsp_prod: u32,
        /// The front's consumer index.
        rsp_cons: u32,
        /// The `req_prod` the front last published.
        req_prod: u32,
    },
}

impl std::fmt::Display for RingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RingError::BogusRequests { req_prod, req_cons, rsp_prod, size } => write!(
                f,
                "frontend provided bogus ring requests: req_prod {req_prod}, req_cons {req_cons}, \
                 rsp_prod {rsp_prod}, ring of {size}"
            ),
            RingError::BogusResponses { rsp_prod, rsp_cons, req_prod } => write!(
                f,
                "backend provided bogus ring responses: rsp_prod {rsp_prod}, rsp_cons {rsp_cons}, \
                 req_prod {req_prod}"
            ),
        }
    }
}

impl std::error::Error for RingError {}
