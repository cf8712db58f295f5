//! The XenStore migration stream: the image format of Xen's
//! `docs/designs/xenstore-migration.md` (version 2, as Xen 4.21+ writes
//! it, and version 1), with no I/O, no clock and no global state.
//!
//! A stream is a header (the `xenstore` ident, a version and an
//! endianness flag, always big-endian) followed by records, each a type, a
//! length and a body padded to 8 octets, ending with an `END` record.
//!
//! - [`write()`] encodes a [`Stream`] as version 2 in little-endian order;
//!   [`write_with`] chooses the version and byte order.
//! - [`read`] decodes either byte order and either version, and returns
//!   the whole stream or an [`Error`] naming what is wrong, at which byte
//!   offset and in which record. It never panics.
//! - [`daemon`] carries the daemon's whole state (engine and connections)
//!   as a stream, for live update and for loading a C `xenstored`'s stream.
//! - [`text`] is the readable form `xenstore-state dump` prints and `load`
//!   takes back.
//! - [`db`] converts nodes, permissions, quotas and domains to and from
//!   `xenstore_db`'s exported state.
//!
//! A [`Stream`] is always consistent: it is built by [`read`] or by
//! [`Stream::new`], which run the same checks (connection ids unique and
//! non-zero, watches and transactions naming earlier connections, pending
//! nodes naming earlier transactions, well-formed paths, permission and
//! quota lists, lengths that fit their fields). So every `Stream` can be
//! written, and reading what was written gives the same `Stream`.
//!
//! Choices where the document leaves room:
//! - The record `len` is written rounded up to 8, as Xen's `xenstored`
//!   writes it; the reader accepts either the exact or the rounded length,
//!   and padding octets are ignored, as the document says.
//! - Records of an unknown type (and `WATCH_DATA_EXTENDED` in a version 1
//!   stream, where it is not valid) are skipped, as Xen's reader does,
//!   except our vendor range [`EXTENSION_FIRST`]..=[`EXTENSION_LAST`]
//!   (`"XS"` in the top half), read as [`Record::Extension`].
//! - A watch path may be `@name/argument` (the engine takes special watch
//!   paths with an argument), besides absolute, relative and `@name`.
//! - Fields not valid in the version read (`features` of `DOMAIN_DATA` in
//!   version 1) are ignored; writing version 1 refuses records or fields it
//!   cannot carry rather than dropping them.

#![forbid(unsafe_code)]

pub mod daemon;
pub mod db;
mod read;
pub mod text;
mod validate;
mod write;

use std::fmt;

pub use daemon::{decode, encode, from_stream, to_stream, ConnTransport, DaemonState};
pub use read::{read, read_header};
pub use write::{write, write_with, EXTENSION_FIRST, EXTENSION_LAST};

/// The stream's ident: `xenstore` in ASCII.
pub const IDENT: [u8; 8] = *b"xenstore";

/// The `depth` of a `WATCH_DATA_EXTENDED` record meaning "unlimited".
pub const DEPTH_UNLIMITED: u16 = 0xffff;

/// A version of the specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Version 1: no `WATCH_DATA_EXTENDED`, no domain `features`.
    V1,
    /// Version 2 (Xen 4.21 and later).
    V2,
}

impl Version {
    /// The number in the header.
    #[must_use]
    pub fn number(self) -> u32 {
        match self {
            Version::V1 => 1,
            Version::V2 => 2,
        }
    }
}

/// The byte order of the records (the header is always big-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endian {
    /// Flag bit 0 clear.
    Little,
    /// Flag bit 0 set.
    Big,
}

/// The stream header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The specification version.
    pub version: Version,
    /// The byte order of the records.
    pub endian: Endian,
}

/// A whole, consistent migration stream: its records in order, without the
/// final `END` (implied).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stream {
    records: Vec<Record>,
}

impl Stream {
    /// Checks `records` for consistency (see the crate docs) and makes a
    /// stream of them. The error names the offending record's index.
    pub fn new(records: Vec<Record>) -> Result<Stream, Error> {
        validate::check(&records, |index| Location { offset: None, record: Some(index) })?;
        Ok(Stream { records })
    }

    /// The records, in stream order.
    #[must_use]
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// The records, in stream order.
    #[must_use]
    pub fn into_records(self) -> Vec<Record> {
        self.records
    }
}

/// One record other than `END`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// `GLOBAL_DATA` (type 1): at most once.
    Global(GlobalData),
    /// `CONNECTION_DATA` (type 2).
    Connection(Connection),
    /// `WATCH_DATA` (type 3) or `WATCH_DATA_EXTENDED` (type 8).
    Watch(Watch),
    /// `TRANSACTION_DATA` (type 4).
    Transaction(Transaction),
    /// `NODE_DATA` (type 5).
    Node(Node),
    /// `GLOBAL_QUOTA_DATA` (type 6): at most once.
    GlobalQuota(GlobalQuota),
    /// `DOMAIN_DATA` (type 7): at most once per domain.
    Domain(DomainData),
    /// A vendor record of ours, type `kind` in [`EXTENSION_FIRST`] ..=
    /// [`EXTENSION_LAST`] (see [`daemon`] for the ones in use). Its body
    /// is a `u32` length (in the stream's byte order) then `body`, so
    /// padding never changes it. Xen's reader skips it as an unknown type.
    Extension {
        /// The record type.
        kind: u32,
        /// The body.
        body: Vec<u8>,
    },
}

/// `GLOBAL_DATA`: the live-update daemon's file descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlobalData {
    /// The socket accepting read-write connections, or -1.
    pub rw_socket_fd: i32,
    /// The event channel driver's descriptor.
    pub evtchn_fd: i32,
}

/// `CONNECTION_DATA`: one connection and its pending data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// The non-zero id later records name it by.
    pub id: u32,
    /// What the connection is.
    pub spec: ConnSpec,
    /// Read from the connection, not yet processed (at most 65535 octets).
    pub in_data: Vec<u8>,
    /// How many octets at the start of `out_data` are a partial response
    /// (at most `out_data.len()`).
    pub out_resp_len: u16,
    /// Not yet written to the connection.
    pub out_data: Vec<u8>,
    /// The domain's unique id, when present (`fields` bit 0).
    pub unique_id: Option<u64>,
}

/// `conn-type` and `conn-spec` of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnSpec {
    /// Type 0: a shared ring.
    Ring {
        /// The domain owning the shared page.
        domid: u16,
        /// The domain `domid` acts for (SET_TARGET), or `DOMID_INVALID`.
        tdomid: u16,
        /// The interdomain event channel port.
        evtchn: u32,
    },
    /// Type 1: a socket.
    Socket {
        /// The connected socket's file descriptor.
        fd: i32,
    },
}

/// `WATCH_DATA` or `WATCH_DATA_EXTENDED`: one registered watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    /// The connection that registered it (an earlier [`Connection`]).
    pub conn_id: u32,
    /// The watched path as given to `WATCH` (absolute, relative or
    /// `@special`).
    pub path: String,
    /// The token, without NUL octets.
    pub token: Vec<u8>,
    /// `None` for a `WATCH_DATA` record; `Some(depth)` for a
    /// `WATCH_DATA_EXTENDED` record (version 2), [`DEPTH_UNLIMITED`] for no
    /// limit.
    pub depth: Option<u16>,
}

/// `TRANSACTION_DATA`: one pending transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transaction {
    /// The connection that started it (an earlier [`Connection`]).
    pub conn_id: u32,
    /// The transaction id given to the client (non-zero).
    pub tx_id: u32,
}

/// `NODE_DATA`: a committed node, or one as a pending transaction sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The transaction the record belongs to, or `None` for a committed
    /// node.
    pub pending: Option<Pending>,
    /// The absolute path, or `@releaseDomain` / `@introduceDomain`.
    pub path: String,
    /// The value (may contain NUL octets; at most 65535 octets).
    pub value: Vec<u8>,
    /// The permissions, owner first. Empty only for a node deleted in a
    /// pending transaction (then `value` is empty and `access` zero).
    pub perms: Vec<Perm>,
}

/// The transaction of a pending [`Node`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// The connection (non-zero).
    pub conn_id: u32,
    /// The transaction, an earlier [`Transaction`] of `conn_id`.
    pub tx_id: u32,
    /// The accesses made: [`ACCESS_READ`] | [`ACCESS_WRITTEN`], 0 for a
    /// deleted node.
    pub access: u16,
}

/// `access` bit: the transaction read the node.
pub const ACCESS_READ: u16 = 0x0001;
/// `access` bit: the transaction wrote the node.
pub const ACCESS_WRITTEN: u16 = 0x0002;

/// A node permission specifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Perm {
    /// The access granted.
    pub kind: PermKind,
    /// Flag 0x01: stale, ignored when checking permissions.
    pub stale: bool,
    /// The domain it applies to.
    pub domid: u16,
}

/// The access letter of a permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermKind {
    /// `n`.
    None,
    /// `r`.
    Read,
    /// `w`.
    Write,
    /// `b`.
    Both,
}

impl PermKind {
    /// The ASCII letter.
    #[must_use]
    pub fn letter(self) -> u8 {
        match self {
            PermKind::None => b'n',
            PermKind::Read => b'r',
            PermKind::Write => b'w',
            PermKind::Both => b'b',
        }
    }

    /// The kind of an ASCII letter.
    #[must_use]
    pub fn from_letter(letter: u8) -> Option<PermKind> {
        match letter {
            b'n' => Some(PermKind::None),
            b'r' => Some(PermKind::Read),
            b'w' => Some(PermKind::Write),
            b'b' => Some(PermKind::Both),
            _ => None,
        }
    }
}

/// One named quota value (0 means unlimited).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    /// The quota's name (non-empty, no NUL).
    pub name: String,
    /// Its value.
    pub value: u32,
}

/// `GLOBAL_QUOTA_DATA`: the daemon's quota settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GlobalQuota {
    /// Per-domain defaults.
    pub per_domain: Vec<Quota>,
    /// Global-only quotas.
    pub global: Vec<Quota>,
}

/// `DOMAIN_DATA`: one domain's features and quotas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainData {
    /// The domain.
    pub domid: u16,
    /// The ring page's feature field (version 2; zero in version 1).
    pub features: u32,
    /// The domain's own quota values.
    pub quotas: Vec<Quota>,
}

/// Where an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Location {
    /// Byte offset in the stream (of the field, or of the record when the
    /// error is about the record as a whole); `None` for [`Stream::new`].
    pub offset: Option<usize>,
    /// Index of the record (0 is the first after the header, skipped
    /// records counted); `None` for the header.
    pub record: Option<usize>,
}

/// A stream that cannot be read, or records that cannot form a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// Where.
    pub at: Location,
    /// What.
    pub kind: ErrorKind,
}

/// What is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input ends before a header, record header or record body ends.
    Truncated {
        /// Octets needed from the location.
        needed: usize,
        /// Octets left.
        available: usize,
    },
    /// The ident is not `xenstore`.
    BadIdent,
    /// A version other than 1 or 2.
    UnsupportedVersion(u32),
    /// Reserved header flag bits set.
    ReservedFlags(u32),
    /// The input ends without an `END` record.
    MissingEnd,
    /// An `END` record with a non-zero length.
    EndNotEmpty(u32),
    /// Octets after the `END` record.
    TrailingData(usize),
    /// A body shorter than its fields say.
    BodyTooShort {
        /// The field that does not fit.
        field: &'static str,
    },
    /// A body longer than its fields and at most 7 octets of padding.
    BodyTooLong {
        /// The record's `len`.
        len: u32,
        /// The octets its fields use.
        used: usize,
    },
    /// A string not ending in NUL, or containing NUL.
    BadString {
        /// Which string.
        field: &'static str,
    },
    /// A path that is not well-formed.
    BadPath {
        /// Which path.
        field: &'static str,
    },
    /// An unknown `conn-type`.
    UnknownConnType(u16),
    /// Unknown `fields` bits in a connection.
    UnknownConnFields(u16),
    /// `out-resp-len` over `out-data-len`.
    RespLongerThanOut,
    /// A connection id of zero.
    ZeroConnId,
    /// A connection id used twice.
    DuplicateConn(u32),
    /// A record naming no earlier connection.
    UnknownConn(u32),
    /// A transaction id of zero.
    ZeroTxId,
    /// A transaction id used twice on a connection.
    DuplicateTransaction {
        /// The connection.
        conn_id: u32,
        /// The transaction.
        tx_id: u32,
    },
    /// A pending node naming no earlier transaction.
    UnknownTransaction {
        /// The connection.
        conn_id: u32,
        /// The transaction.
        tx_id: u32,
    },
    /// A permission letter other than `n`, `r`, `w`, `b`.
    BadPermKind(u8),
    /// Unknown permission flag bits.
    BadPermFlags(u8),
    /// Unknown `access` bits.
    BadAccess(u16),
    /// A committed node without permissions (no owner).
    NoOwner,
    /// A deleted pending node (no permissions) with a value or accesses.
    DeletedNotEmpty,
    /// A second `GLOBAL_DATA` record.
    DuplicateGlobal,
    /// A second `GLOBAL_QUOTA_DATA` record.
    DuplicateGlobalQuota,
    /// A second `DOMAIN_DATA` record for one domain.
    DuplicateDomain(u16),
    /// A quota name that is empty, not UTF-8 or missing its NUL.
    BadQuotaName,
    /// A field too long or a list too long for its length field.
    TooLong {
        /// Which field.
        field: &'static str,
    },
    /// Writing version 1: a `WATCH_DATA_EXTENDED` record.
    ExtendedWatchInV1,
    /// Writing version 1: a domain with non-zero `features`.
    FeaturesInV1,
    /// A [`Record::Extension`] whose type is outside our vendor range.
    NotExtensionKind(u32),
    /// An extension record's body does not decode.
    BadExtension(String),
    /// Our extension records contradict the Xen records (or each other).
    ExtensionMismatch(String),
    /// The records describe a state the engine cannot take (a foreign
    /// stream without extension records).
    Inconsistent(String),
    /// The state converted from the stream is refused by
    /// [`xenstore_db::Engine::import`].
    Import(xenstore_db::ImportError),
    /// A daemon state that the Xen records cannot carry.
    Unrepresentable(String),
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Truncated { needed, available } => {
                write!(f, "truncated: {needed} octets needed, {available} left")
            }
            ErrorKind::BadIdent => f.write_str("not a xenstore stream (bad ident)"),
            ErrorKind::UnsupportedVersion(v) => write!(f, "unsupported version {v}"),
            ErrorKind::ReservedFlags(x) => write!(f, "reserved header flags set: {x:#x}"),
            ErrorKind::MissingEnd => f.write_str("no END record"),
            ErrorKind::EndNotEmpty(len) => write!(f, "END record with length {len}"),
            ErrorKind::TrailingData(n) => write!(f, "{n} octets after the END record"),
            ErrorKind::BodyTooShort { field } => write!(f, "record body too short for {field}"),
            ErrorKind::BodyTooLong { len, used } => {
                write!(f, "record length {len} exceeds its {used} octets of fields and padding")
            }
            ErrorKind::BadString { field } => {
                write!(f, "{field} is not a NUL-terminated string")
            }
            ErrorKind::BadPath { field } => write!(f, "{field} is not a well-formed path"),
            ErrorKind::UnknownConnType(t) => write!(f, "unknown connection type {t}"),
            ErrorKind::UnknownConnFields(x) => write!(f, "unknown connection fields {x:#x}"),
            ErrorKind::RespLongerThanOut => f.write_str("partial response longer than the pending output"),
            ErrorKind::ZeroConnId => f.write_str("connection id 0"),
            ErrorKind::DuplicateConn(id) => write!(f, "connection {id} appears twice"),
            ErrorKind::UnknownConn(id) => write!(f, "no earlier connection {id}"),
            ErrorKind::ZeroTxId => f.write_str("transaction id 0"),
            ErrorKind::DuplicateTransaction { conn_id, tx_id } => {
                write!(f, "transaction {tx_id} of connection {conn_id} appears twice")
            }
            ErrorKind::UnknownTransaction { conn_id, tx_id } => {
                write!(f, "no earlier transaction {tx_id} of connection {conn_id}")
            }
            ErrorKind::BadPermKind(b) => write!(f, "bad permission letter {b:#04x}"),
            ErrorKind::BadPermFlags(b) => write!(f, "unknown permission flags {b:#04x}"),
            ErrorKind::BadAccess(a) => write!(f, "unknown access bits {a:#x}"),
            ErrorKind::NoOwner => f.write_str("committed node without permissions"),
            ErrorKind::DeletedNotEmpty => f.write_str("deleted node (no permissions) with a value or accesses"),
            ErrorKind::DuplicateGlobal => f.write_str("second GLOBAL_DATA record"),
            ErrorKind::DuplicateGlobalQuota => f.write_str("second GLOBAL_QUOTA_DATA record"),
            ErrorKind::DuplicateDomain(d) => write!(f, "second DOMAIN_DATA for domain {d}"),
            ErrorKind::BadQuotaName => f.write_str("bad or missing quota name"),
            ErrorKind::TooLong { field } => write!(f, "{field} too long for its length field"),
            ErrorKind::ExtendedWatchInV1 => f.write_str("WATCH_DATA_EXTENDED cannot be written in version 1"),
            ErrorKind::FeaturesInV1 => f.write_str("domain features cannot be written in version 1"),
            ErrorKind::NotExtensionKind(k) => write!(f, "record type {k:#x} is not in the extension range"),
            ErrorKind::BadExtension(e) => write!(f, "bad extension record: {e}"),
            ErrorKind::ExtensionMismatch(e) => write!(f, "extension records contradict the stream: {e}"),
            ErrorKind::Inconsistent(e) => write!(f, "inconsistent records: {e}"),
            ErrorKind::Import(e) => write!(f, "the engine refuses the state: {e}"),
            ErrorKind::Unrepresentable(e) => write!(f, "cannot be written: {e}"),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "xenstore migration stream")?;
        if let Some(record) = self.at.record {
            write!(f, ", record {record}")?;
        }
        if let Some(offset) = self.at.offset {
            write!(f, ", offset {offset}")?;
        }
        write!(f, ": {}", self.kind)
    }
}

impl std::error::Error for Error {}
