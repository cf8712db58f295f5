//! Operation types (`enum xsd_sockmsg_type`).

/// A XenStore operation. The numbering is the wire's; 20 (the removed
/// `RESTRICT`) is deliberately absent, and [`Op::from_u32`] rejects it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum Op {
    /// Implementation-specific control command; `XS_DEBUG` is its old name.
    Control = 0,
    /// List a node's children.
    Directory = 1,
    /// Read a node's value.
    Read = 2,
    /// Read a node's permissions.
    GetPerms = 3,
    /// Register a watch.
    Watch = 4,
    /// Remove a watch.
    Unwatch = 5,
    /// Open a transaction.
    TransactionStart = 6,
    /// Commit or abort a transaction.
    TransactionEnd = 7,
    /// Tell the daemon about a new domain's ring.
    Introduce = 8,
    /// Stop serving a domain.
    Release = 9,
    /// A domain's home path.
    GetDomainPath = 10,
    /// Write a node's value, creating it and missing parents.
    Write = 11,
    /// Create a node and missing parents.
    Mkdir = 12,
    /// Remove a node and its subtree.
    Rm = 13,
    /// Replace a node's permissions.
    SetPerms = 14,
    /// Unsolicited watch notification (server to client only).
    WatchEvent = 15,
    /// Error reply (server to client only).
    Error = 16,
    /// Whether a domain is being served.
    IsDomainIntroduced = 17,
    /// Re-arm `@releaseDomain` for a domain.
    Resume = 18,
    /// Let one domain act for another.
    SetTarget = 19,
    /// Drop all watches and transactions of the caller.
    ResetWatches = 21,
    /// One part of a directory too large for one payload.
    DirectoryPart = 22,
    /// Read ring feature bits.
    GetFeature = 23,
    /// Set a domain's ring feature bits before it is introduced.
    SetFeature = 24,
    /// Read a quota.
    GetQuota = 25,
    /// Set a quota.
    SetQuota = 26,
    /// Guaranteed never to be valid (`XS_INVALID`).
    Invalid = 0xffff,
}

impl Op {
    /// Every operation, in numeric order.
    pub const ALL: [Op; 27] = [
        Op::Control,
        Op::Directory,
        Op::Read,
        Op::GetPerms,
        Op::Watch,
        Op::Unwatch,
        Op::TransactionStart,
        Op::TransactionEnd,
        Op::Introduce,
        Op::Release,
        Op::GetDomainPath,
        Op::Write,
        Op::Mkdir,
        Op::Rm,
        Op::SetPerms,
        Op::WatchEvent,
        Op::Error,
        Op::IsDomainIntroduced,
        Op::Resume,
        Op::SetTarget,
        Op::ResetWatches,
        Op::DirectoryPart,
        Op::GetFeature,
        Op::SetFeature,
        Op::GetQuota,
        Op::SetQuota,
        Op::Invalid,
    ];

    /// The operation with this wire number, if there is one.
    pub fn from_u32(value: u32) -> Option<Op> {
        Op::ALL.iter().copied().find(|op| *op as u32 == value)
    }

    /// The name used by the C daemon's trace and by `xenstore-control`.
    pub fn name(self) -> &'static str {
        match self {
            Op::Control => "CONTROL",
            Op::Directory => "DIRECTORY",
            Op::Read => "READ",
            Op::GetPerms => "GET_PERMS",
            Op::Watch => "WATCH",
            Op::Unwatch => "UNWATCH",
            Op::TransactionStart => "TRANSACTION_START",
            Op::TransactionEnd => "TRANSACTION_END",
            Op::Introduce => "INTRODUCE",
            Op::Release => "RELEASE",
            Op::GetDomainPath => "GET_DOMAIN_PATH",
            Op::Write => "WRITE",
            Op::Mkdir => "MKDIR",
            Op::Rm => "RM",
            Op::SetPerms => "SET_PERMS",
            Op::WatchEvent => "WATCH_EVENT",
            Op::Error => "ERROR",
            Op::IsDomainIntroduced => "IS_DOMAIN_INTRODUCED",
            Op::Resume => "RESUME",
            Op::SetTarget => "SET_TARGET",
            Op::ResetWatches => "RESET_WATCHES",
            Op::DirectoryPart => "DIRECTORY_PART",
            Op::GetFeature => "GET_FEATURE",
            Op::SetFeature => "SET_FEATURE",
            Op::GetQuota => "GET_QUOTA",
            Op::SetQuota => "SET_QUOTA",
            Op::Invalid => "INVALID",
        }
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
