//! What the frontend published for its ring, read and checked the way
//! blkback's `connect_ring` does: `ring-page-order` with `ring-ref0..N`,
//! or a single `ring-ref`; `event-channel`; `protocol`;
//! `feature-persistent`; and `multi-queue-num-queues`, which must be 1
//! if present (no `multi-queue-max-queues` is offered, so Linux's
//! blkfront never writes it, nor the `queue-N/` directories).

use xenbus::{DeviceCtx, Error};

use crate::abi::{MAX_RING_PAGE_ORDER, PROTOCOL_X86_64};

/// `EINVAL` for a value out of range.
const EINVAL: i32 = 22;
/// `ENOSYS`, blkback's errno for a protocol it cannot speak.
const ENOSYS: i32 = 38;

/// The frontend's ring, as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingConfig {
    /// Grant references of the ring pages, in order.
    pub refs: Vec<u32>,
    /// The frontend's port for the device's event channel.
    pub port: u32,
    /// Whether the frontend offers `feature-persistent` (1): it reuses
    /// its grants, so the backend keeps them mapped. Missing, or any
    /// other value, is off.
    pub persistent: bool,
}

impl RingConfig {
    /// Reads the frontend's keys. A missing `protocol` is the native
    /// layout (x86_64); any other than `x86_64-abi` is refused, as is an
    /// order above [`MAX_RING_PAGE_ORDER`] or a missing reference.
    pub fn read(dev: &DeviceCtx<'_>) -> Result<RingConfig, Error> {
        // As blkback's connect_ring: more queues than offered (1) is ENOSYS.
        match optional::<u32>(dev, "multi-queue-num-queues")? {
            None | Some(1) => {}
            Some(queues) => {
                return Err(Error::driver(
                    ENOSYS,
                    format!("frontend asked for {queues} queues, exceeding the maximum of 1"),
                ))
            }
        }
        if let Some(protocol) = optional::<String>(dev, "protocol")? {
            if protocol != PROTOCOL_X86_64 {
                return Err(Error::driver(ENOSYS, format!("unknown frontend protocol {protocol}")));
            }
        }
        let refs = match optional::<u32>(dev, "ring-page-order")? {
            None => vec![dev.read_otherend("ring-ref")?],
            Some(order) if order > MAX_RING_PAGE_ORDER => {
                return Err(Error::driver(EINVAL, format!("ring-page-order {order} above {MAX_RING_PAGE_ORDER}")));
            }
            Some(order) => (0..1u32 << order)
                .map(|i| dev.read_otherend(&format!("ring-ref{i}")))
                .collect::<Result<Vec<u32>, Error>>()?,
        };
        let port = dev.read_otherend("event-channel")?;
        // As blkback's connect_ring: a value that is not a number is off.
        let persistent = matches!(optional::<u32>(dev, "feature-persistent"), Ok(Some(1)));
        Ok(RingConfig { refs, port, persistent })
    }
}

/// A key of the other end that may be missing.
fn optional<T: std::str::FromStr>(dev: &DeviceCtx<'_>, key: &str) -> Result<Option<T>, Error> {
    match dev.read_otherend(key) {
        Ok(value) => Ok(Some(value)),
        Err(Error::Xs(err)) if err.code() == Some(xenstore::ErrorCode::ENOENT) => Ok(None),
        Err(err) => Err(err),
    }
}
