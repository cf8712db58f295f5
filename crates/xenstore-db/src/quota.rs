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
    /// Watches per connection (`-W`; E2BIG).
    Watches,
    /// Open transactions per connection (`-t`; ENOSPC).
    Transactions,
    /// Requests in flight per connection, enforced by the daemon (`-Q outstanding`).
    Outstanding,
    /// Distinct nodes one transaction may touch (`-Q transaction-nodes`; ENOSPC).
    TransactionNodes,
    /// Bytes in one node's value (`-S`; ENOSPC).
    NodeSize,
    /// Path length below the domain's home, named `path-max` as in C (`-M`; EINVAL).
    PathLength,
    /// Entries in one permission list (`-A`; ENOSPC).
    Permissions,
    /// Bytes of the daemon's memory a domain makes it hold (`-Q memory`;
    /// ENOMEM): the nodes it owns (leaf name, value, permissions, and the
    /// node's own bookkeeping), its watches, and its transactions' copies
    /// and records (`memory.rs`); the daemon adds its queued output and
    /// stops reading the domain's ring at the quota. Last, so older quota
    /// tables keep their indexes.
    Memory,
}

impl QuotaKind {
    /// Every quota, in the order `GET_QUOTA` lists them (the C daemon's
    /// order; discriminants follow it, as [`Quotas`] indexes by them).
    pub const ALL: [QuotaKind; 9] = [
        QuotaKind::Nodes,
        QuotaKind::Watches,
        QuotaKind::Transactions,
        QuotaKind::Outstanding,
        QuotaKind::TransactionNodes,
        QuotaKind::NodeSize,
        QuotaKind::PathLength,
        QuotaKind::Permissions,
        QuotaKind::Memory,
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
            QuotaKind::PathLength => "path-max",
            QuotaKind::Outstanding => "outstanding",
            QuotaKind::Memory => "memory",
        }
    }

    /// The quota with this name; C 4.22's `node-permissions` is taken for
    /// `permissions` (the name `xenstore.txt` gives), so settings written
    /// for either daemon work.
    pub fn from_name(name: &str) -> Option<QuotaKind> {
        if name == "node-permissions" {
            return Some(QuotaKind::Permissions);
        }
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
            // The C daemon's hard default, 2.5 MiB (its soft one is 2 MiB).
            QuotaKind::Memory => 2 * 1024 * 1024 + 512 * 1024,
        }
    }

    /// The error the C daemon returns when this quota is exceeded.
    pub fn error(self) -> ErrorCode {
        match self {
            QuotaKind::Watches => ErrorCode::E2BIG,
            QuotaKind::PathLength => ErrorCode::EINVAL,
            QuotaKind::Memory => ErrorCode::ENOMEM,
            _ => ErrorCode::ENOSPC,
        }
    }
}

/// A full set of quota values.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
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
    /// Every quota 0: nothing is limited (the soft quotas' start).
    pub fn unlimited() -> Quotas {
        Quotas { values: [0; QuotaKind::ALL.len()] }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_discriminant_order_so_quotas_index_right() {
        for (i, kind) in QuotaKind::ALL.iter().enumerate() {
            assert_eq!(*kind as usize, i);
        }
    }

    #[test]
    fn c_names_are_taken_too() {
        assert_eq!(QuotaKind::from_name("node-permissions"), Some(QuotaKind::Permissions));
        assert_eq!(QuotaKind::from_name("permissions"), Some(QuotaKind::Permissions));
    }

    #[test]
    fn names_round_trip_and_defaults_are_the_c_daemons() {
        for kind in QuotaKind::ALL {
            assert_eq!(QuotaKind::from_name(kind.name()), Some(kind));
        }
        let q = Quotas::default();
        let expected =
            [("nodes", 1000), ("watches", 128), ("transactions", 10), ("outstanding", 20), ("transaction-nodes", 1024)];
        for (name, value) in expected {
            assert_eq!(q.get(QuotaKind::from_name(name).unwrap()), value, "{name}");
        }
        assert_eq!(q.get(QuotaKind::NodeSize), 2048);
        assert_eq!(q.get(QuotaKind::PathLength), 2048);
        assert_eq!(q.get(QuotaKind::Permissions), 5);
        assert_eq!(q.get(QuotaKind::Memory), 2_621_440);
    }
}
