//! The protocol's error names (`xsd_errors[]`).

use crate::header::Header;
use crate::op::Op;

/// An error as XenStore sends it: by name, in an `ERROR` reply.
///
/// The variants are in the protocol's array order. Each says when this
/// implementation returns it; other implementations may differ, which is why
/// clients must treat the set as open ([`ErrorCode::parse`] fails on an
/// unknown name rather than guessing). Hence `#[non_exhaustive]`: a match
/// outside this crate needs a wildcard arm, and a new name is not a breaking
/// change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Malformed request: bad path syntax, missing terminator, trailing
    /// bytes, unparsable number, special path where none is allowed.
    EINVAL,
    /// The caller lacks permission, or asks about a node under a directory
    /// it cannot read, or sends a privileged-only request.
    EACCES,
    /// The node (or watch) already exists where it must not.
    EEXIST,
    /// The operation needs a non-directory.
    EISDIR,
    /// No such node, watch, transaction or domain.
    ENOENT,
    /// The daemon is out of memory.
    ENOMEM,
    /// A quota is exhausted: nodes, transactions, permissions per node,
    /// nodes touched by a transaction.
    ENOSPC,
    /// An internal failure.
    EIO,
    /// The node has children where it must not.
    ENOTEMPTY,
    /// Unknown or unsupported operation.
    ENOSYS,
    /// Read-only transaction or store.
    EROFS,
    /// The resource is in use (a live update in progress).
    EBUSY,
    /// The transaction conflicted with another change; retry it.
    EAGAIN,
    /// Already connected (a domain introduced twice with another ring).
    EISCONN,
    /// Too big: a node value over the size quota, too many watches, a reply
    /// that would not fit in a payload.
    E2BIG,
    /// Not allowed even with access: changing a node's owner unprivileged.
    EPERM,
}

impl ErrorCode {
    /// Every error, in the protocol's order.
    pub const ALL: [ErrorCode; 16] = [
        ErrorCode::EINVAL,
        ErrorCode::EACCES,
        ErrorCode::EEXIST,
        ErrorCode::EISDIR,
        ErrorCode::ENOENT,
        ErrorCode::ENOMEM,
        ErrorCode::ENOSPC,
        ErrorCode::EIO,
        ErrorCode::ENOTEMPTY,
        ErrorCode::ENOSYS,
        ErrorCode::EROFS,
        ErrorCode::EBUSY,
        ErrorCode::EAGAIN,
        ErrorCode::EISCONN,
        ErrorCode::E2BIG,
        ErrorCode::EPERM,
    ];

    /// The name sent on the wire.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::EINVAL => "EINVAL",
            ErrorCode::EACCES => "EACCES",
            ErrorCode::EEXIST => "EEXIST",
            ErrorCode::EISDIR => "EISDIR",
            ErrorCode::ENOENT => "ENOENT",
            ErrorCode::ENOMEM => "ENOMEM",
            ErrorCode::ENOSPC => "ENOSPC",
            ErrorCode::EIO => "EIO",
            ErrorCode::ENOTEMPTY => "ENOTEMPTY",
            ErrorCode::ENOSYS => "ENOSYS",
            ErrorCode::EROFS => "EROFS",
            ErrorCode::EBUSY => "EBUSY",
            ErrorCode::EAGAIN => "EAGAIN",
            ErrorCode::EISCONN => "EISCONN",
            ErrorCode::E2BIG => "E2BIG",
            ErrorCode::EPERM => "EPERM",
        }
    }

    /// The error with this wire name (without its nul).
    pub fn from_name(name: &[u8]) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|e| e.name().as_bytes() == name)
    }

    /// Decodes an `ERROR` reply payload (`E<name>` plus its nul).
    pub fn parse(payload: &[u8]) -> Option<ErrorCode> {
        let name = payload.strip_suffix(b"\0").unwrap_or(payload);
        ErrorCode::from_name(name)
    }

    /// The Linux errno with this name, for clients that map to `io::Error`.
    pub fn errno(self) -> i32 {
        match self {
            ErrorCode::EINVAL => 22,
            ErrorCode::EACCES => 13,
            ErrorCode::EEXIST => 17,
            ErrorCode::EISDIR => 21,
            ErrorCode::ENOENT => 2,
            ErrorCode::ENOMEM => 12,
            ErrorCode::ENOSPC => 28,
            ErrorCode::EIO => 5,
            ErrorCode::ENOTEMPTY => 39,
            ErrorCode::ENOSYS => 38,
            ErrorCode::EROFS => 30,
            ErrorCode::EBUSY => 16,
            ErrorCode::EAGAIN => 11,
            ErrorCode::EISCONN => 106,
            ErrorCode::E2BIG => 7,
            ErrorCode::EPERM => 1,
        }
    }

    /// Appends a complete `ERROR` reply to `out`, echoing the request's ids.
    pub fn encode_reply(self, req_id: u32, tx_id: u32, out: &mut Vec<u8>) {
        let name = self.name().as_bytes();
        let header =
            Header { op: Op::Error as u32, req_id, tx_id, len: u32::try_from(name.len() + 1).unwrap_or(u32::MAX) };
        out.extend_from_slice(&header.encode());
        out.extend_from_slice(name);
        out.push(0);
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::error::Error for ErrorCode {}
