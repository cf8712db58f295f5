//! The numbers of `xen/include/public/io/blkif.h`: operations, response
//! statuses, `info` bits, sizes, and the xenstore names the two ends use.

/// `BLKIF_OP_READ`: read sectors into the granted pages.
pub const OP_READ: u8 = 0;
/// `BLKIF_OP_WRITE`: write the granted pages' sectors.
pub const OP_WRITE: u8 = 1;
/// `BLKIF_OP_WRITE_BARRIER`: a write ordered after everything before it
/// (served as write then flush; not advertised).
pub const OP_WRITE_BARRIER: u8 = 2;
/// `BLKIF_OP_FLUSH_DISKCACHE`: make completed writes durable.
pub const OP_FLUSH_DISKCACHE: u8 = 3;
/// `BLKIF_OP_DISCARD`: the sectors' contents are no longer needed.
pub const OP_DISCARD: u8 = 5;
/// `BLKIF_OP_INDIRECT`: segments listed in granted pages (not served).
pub const OP_INDIRECT: u8 = 6;

/// `BLKIF_DISCARD_SECURE`, the discard request's `flag` asking for a
/// secure erase (only meaningful if the backend offers
/// `discard-secure`, which this one does not).
pub const DISCARD_SECURE: u8 = 0x1;

/// `BLKIF_RSP_OKAY`.
pub const RSP_OKAY: i16 = 0;
/// `BLKIF_RSP_ERROR`: the request failed (Linux: `-EIO`).
pub const RSP_ERROR: i16 = -1;
/// `BLKIF_RSP_EOPNOTSUPP`: the operation is not supported.
pub const RSP_EOPNOTSUPP: i16 = -2;

/// `BLKIF_MAX_SEGMENTS_PER_REQUEST`: segments in one direct request.
pub const MAX_SEGMENTS: usize = 11;
/// The sector of the protocol: `sector_number`, `first_sect` and
/// `last_sect` count 512-byte units whatever the disk's `sector-size`.
pub const SECTOR_SIZE: u64 = 512;
/// Sectors in one granted page (so `last_sect` is at most 7).
pub const SECTORS_PER_PAGE: u8 = 8;

/// `VDISK_CDROM` bit of the backend's `info`.
pub const VDISK_CDROM: u32 = 0x1;
/// `VDISK_REMOVABLE` bit of the backend's `info`.
pub const VDISK_REMOVABLE: u32 = 0x2;
/// `VDISK_READONLY` bit of the backend's `info`: writes fail.
pub const VDISK_READONLY: u32 = 0x4;

/// The frontend's `protocol` value for the x86_64 layout, the only one
/// this crate speaks (it is also the native layout of x86_64 and arm64).
pub const PROTOCOL_X86_64: &str = "x86_64-abi";

/// The largest `ring-page-order` the backend offers
/// (`max-ring-page-order`): 16 pages, 512 requests, as Linux's default
/// `xen_blkif_max_ring_order` is 4.
pub const MAX_RING_PAGE_ORDER: u32 = 4;
