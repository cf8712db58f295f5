//! Ring feature bits (`XENSTORE_SERVER_FEATURE_*` in `xs_wire.h`;
//! `docs/misc/xenstore-ring.txt`, "Feature Negotiation"):
//! what a server advertises in the ring page's `server_features` field and
//! a toolstack sets with SET_FEATURE. Defined once here, for the ring crate,
//! the store engine and clients alike.

/// The ring can be reconnected (the page's `connection` field is
/// meaningful).
pub const RECONNECTION: u32 = 1;
/// The ring has a connection error indicator (the page's `error` field is
/// meaningful).
pub const ERROR: u32 = 2;
/// WATCH takes a third parameter limiting its depth.
pub const WATCH_DEPTH: u32 = 4;
/// Permission entries may name [`crate::DOMID_ANY`], "every domain"
/// (Xen 4.22).
pub const DOMID_ANY: u32 = 8;
