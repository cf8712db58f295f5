//! Xen's paravirtual block device (`xen/include/public/io/blkif.h`),
//! split across domains: the protocol, a backend that serves image files,
//! and a frontend with a block API.
//!
//! # Layers
//!
//! - The protocol, pure: [`abi`] (the numbers), [`request`] and
//!   [`response`] (the ring messages in their exact x86_64 layout, as
//!   [`xen_ioring::Message`]s), [`validate`] (what a backend may do with
//!   a request from a frontend it does not trust).
//! - [`backend`]: blkback. A xenbus backend bus over `backend/vbd`, or
//!   `backend/qdisk` where libxl puts the disks it gives a userspace
//!   backend (QEMU's, or `xen-blkback` in its place), for every frontend
//!   domain or one; one thread and one event-channel handle for all
//!   devices, a raw image per device read and written with
//!   `pread`/`pwrite`, data grants kept mapped from their first use to
//!   disconnect when the frontend offers `feature-persistent`
//!   ([`backend::persistent`]: at most 1056 a device), else mapped per
//!   request and unmapped before the response.
//! - [`frontend`]: blkfront. A xenbus frontend bus over `device/vbd`,
//!   a queue that splits operations into requests of at most eleven
//!   pages and keeps them across reconnections.
//!
//! Both ends reach the machine only through `xen-platform`'s [`Grants`]
//! and [`EventChannels`], so they run the same over the hosted platform
//! (the `xen-blkback` and `blkfront` programs), over Xen (`xen-blkback`
//! built with the `xen` feature, also in QEMU's place as libxl's `qdisk`
//! backend) and over the in-memory twins in a stepped world (the tests).
//!
//! # Node names
//!
//! As libxl, Linux and QEMU use them. The toolstack writes the backend's
//! `params` (the image: a path, or libxl's `aio:<path>` for a `qdisk`
//! disk, [`backend::params`]), `mode` (`w` writable, else read-only),
//! `type`, `dev`, `device-type` (`disk`, or `cdrom`: read-only and
//! `VDISK_CDROM`), `discard-enable` (0 turns discard off) and the
//! frontend's `virtual-device` (the device id). The backend writes
//! `sectors`, `sector-size` (512), `info` (`VDISK_READONLY`,
//! `VDISK_CDROM`), `feature-flush-cache`, `feature-discard` (with
//! `discard-granularity` 512 and `discard-alignment` 0),
//! `feature-persistent` and `max-ring-page-order` before InitWait; the
//! frontend `ring-ref` (or `ring-page-order` and `ring-ref0..N`),
//! `event-channel`, `protocol` (`x86_64-abi`) and `feature-persistent`
//! before Initialised. docs/DESIGN.md has the table of what Linux's
//! blkfront reads and then sends.
//!
//! # Not offered
//!
//! Indirect requests (`feature-max-indirect-segments`; answered with
//! `BLKIF_RSP_EOPNOTSUPP` and their `indirect_op`), multiple queues
//! (`multi-queue-max-queues`; more than one asked for is fatal), secure
//! discard (`discard-secure`; answered `EOPNOTSUPP`), image formats other
//! than raw (refused at probe), and the 32-bit `x86_32-abi` layout
//! (refused at connect).
//!
//! [`Grants`]: xen_platform::Grants
//! [`EventChannels`]: xen_platform::EventChannels

#![forbid(unsafe_code)]

pub mod abi;
pub mod backend;
mod bytes;
pub mod frontend;
pub mod pattern;
pub mod request;
pub mod response;
pub mod validate;

pub use backend::{BackendType, Blkback, ServeConfig};
pub use frontend::{Blkfront, DiskInfo, FrontConfig, IoError, Ticket};
pub use request::{DiscardRequest, IndirectRequest, Request, Segment, SegmentRequest};
pub use response::Response;
