//! The XenStore wire protocol, with no I/O.
//!
//! Every XenStore message is a 16-byte [`Header`] followed by at most
//! [`PAYLOAD_MAX`] bytes of payload. This crate knows how to frame those
//! messages ([`Decoder`] for incoming bytes in any chunking, [`Header::encode`]
//! for outgoing ones), what each operation's payload means ([`Request`],
//! [`Reply`], [`WatchEvent`]), and the syntax of the values inside them
//! ([`path`], [`perms`]). The daemon and every client share it, so a message
//! that one side encodes is exactly what the other side decodes.
//!
//! How it is driven:
//!
//! 1. Feed received bytes to a [`Decoder`]; it yields complete [`Packet`]s or a
//!    [`FrameError`] after which the connection must be dropped.
//! 2. A server turns a packet into a typed request with [`Request::parse`];
//!    a parse error is an [`ErrorCode`] to send back (`EINVAL` for a
//!    malformed payload, `ENOSYS` for an unknown operation).
//! 3. Replies are encoded with [`Reply::encode`] (or [`ErrorCode::encode_reply`]);
//!    clients decode them with [`Reply::parse`].
//!
//! The protocol is specified in Xen's `docs/misc/xenstore.txt` and the header
//! in `xen/include/public/io/xs_wire.h`.

#![forbid(unsafe_code)]

pub mod decoder;
pub mod error;
pub mod features;
pub mod header;
pub mod limits;
pub mod op;
pub mod path;
pub mod perms;
pub mod reply;
pub mod request;

mod fields;

pub use decoder::{Decoder, FrameError, Packet};
pub use error::ErrorCode;
pub use header::{Header, HEADER_LEN};
pub use limits::{ABS_PATH_MAX, PAYLOAD_MAX, REL_PATH_MAX};
pub use op::Op;
pub use perms::{Access, Perm, PermList};
pub use reply::{Reply, WatchEvent};
pub use request::Request;

/// A Xen domain identifier (0..=65535 on the wire).
pub type DomId = u16;

/// `DOMID_SELF` (0x7FF0): "the calling domain" where the protocol takes a
/// domain id (IS_DOMAIN_INTRODUCED answers true for it, as C does).
pub const DOMID_SELF: DomId = 0x7FF0;

/// `DOMID_ANY` (0x7FF5): in a permission entry, every domain (Xen 4.22,
/// feature bit [`features::DOMID_ANY`]). As the owner it gives everyone
/// every right, as C's `perm_allows_conn` does.
pub const DOMID_ANY: DomId = 0x7FF5;
