//! Quotas: limits on what one unprivileged domain may consume.
//!
//! Defaults are the C daemon's. Each is settable globally (the default for
//! domains without their own value) and per domain; 0 disables a check.
//! Privileged callers are never limited, as in the C daemon.

use xenstore_wire::ErrorCode;

/// One kind of quota, named as `GET_QUOTA`/`SET_QUOTA` and the C daemon's
/// `-Q name=value` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuotaKind {
    /// Nodes a domain may own (`-E`; ENOSPC).
    Nodes,
    /// Bytes in one node's value (`-S`; ENOSPC).
    NodeSize,
    /// Watches per connection (`-W`; E2BIG).
    Watches,
    /// Open transactions per connection (`-t`; ENOSPC).
    Transactions,
    /// Distinct nodes one transaction may touch (`-Q transaction-nodes`; ENOSPC).
    TransactionNodes,
    /// Entries in one permission list (`-A`; ENOSPC).
    Permissions,
    /// Path length below the domain's home (`-M`; EINVAL).
    PathLength,
    /// Requests in flight per connection, enforced by the daemon (`-Q outstanding`).
    Outstanding,
}

impl QuotaKind {
    /// Every quota, in the order `GET_QUOTA` lists them.
    pub const ALL: [QuotaKind; 8] = [
        QuotaKind::Nodes,
        QuotaKind::NodeSize,
        QuotaKind::Watches,
        QuotaKind::Transactions,
        QuotaKind::TransactionNodes,
        QuotaKind::Permissions,
        QuotaKind::PathLength,
        QuotaKind::Outstanding,
    ];

    /// The name used on the wire and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            QuotaKind::Nodes => "nodes",
            QuotaKind::NodeSize => "node-size",
            QuotaKind::Watches => "watches",
            QuotaKind::Transactions => "transactions",
            QuotaKind::TransactionNodes => "transaction-nodes",
            QuotaKind::Permissions => "permissions",
            QuotaKind::PathLength => "path-length",
            QuotaKind::Outstanding => "outstanding",
        }
    }

    /// The quota with this name.
    pub fn from_name(name: &str) -> Option<QuotaKind> {
        QuotaKind::ALL.iter().copied().find(|q| q.name() == name)
    }

    /// The C daemon's default.
    pub fn default_value(self) -> u32 {
        match self {
            QuotaKind::Nodes => 1000,
            QuotaKind::NodeSize => 2048,
            QuotaKind::Watches => 128,
            QuotaKind::Transactions => 10,
            QuotaKind::TransactionNodes => 1024,
            QuotaKind::Permissions => 5,
            QuotaKind::PathLength => 2048,
            QuotaKind::Outstanding => 20,
        }
    }

    /// The error the C daemon returns when this quota is exceeded.
    pub fn error(self) -> ErrorCode {
        match self {
            QuotaKind::Watches => ErrorCode::E2BIG,
            QuotaKind::PathLength => ErrorCode::EINVAL,
            _ => ErrorCode::ENOSPC,
        }
    }
}

/// A full set of quota values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    values: [u32; QuotaKind::ALL.len()],
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas { values: QuotaKind::ALL.map(QuotaKind::default_value) }
    }
}

impl Quotas {
    /// The value of one quota (0: unlimited).
    pub fn get(&self, kind: QuotaKind) -> u32 {
        self.values.get(kind as usize).copied().unwrap_or(0)
    }

    /// Sets one quota.
    pub fn set(&mut self, kind: QuotaKind, value: u32) {
        if let Some(slot) = self.values.get_mut(kind as usize) {
            *slot = value;
        }
    }

    /// Whether `amount` exceeds the quota (never when it is 0).
    pub fn exceeded(&self, kind: QuotaKind, amount: usize) -> bool {
        let limit = self.get(kind);
        limit != 0 && amount > limit as usize
    }
}

/// Which quota stopped a request, for the daemon's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaExceeded {
    /// The quota.
    pub kind: QuotaKind,
    /// The domain it was charged to.
    pub domid: xenstore_wire::DomId,
    /// Its limit.
    pub limit: u32,
}

impl std::fmt::Display for QuotaExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "domain {} exceeded quota {} (limit {})", self.domid, self.kind.name(), self.limit)
    }
}
