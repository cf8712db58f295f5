//! The changes a request applied to the persistent store state, named with
//! their values, so that a journal can be written between apply and reply.
//!
//! Crash recovery (`ARCHITECTURE.md`) needs every acknowledged change on
//! disk before its reply leaves. The engine applies a request and returns
//! its [`crate::Outcome`]; the driver carries out its effects (a failed
//! one replaces the outcome), appends [`crate::Outcome::applied`] to its
//! journal, and only then sends the events and the reply.
//! Replaying the journal's entries in order onto the state they started
//! from gives the live store's nodes and the domain records they name.
//!
//! What appears, and when:
//! - a request on the live store lists its changes in the order it made
//!   them (a WRITE that creates missing parents lists each of them first);
//! - a request inside a transaction lists nothing: the transaction's
//!   changes appear in the outcome of its successful commit, in the order
//!   the commit applies them (removals, then changed nodes, then created
//!   ones, parents first);
//! - a failed or read-only request lists nothing of its own (but see
//!   [`Applied::Known`] below); when an effect fails,
//!   [`crate::Engine::effect_failed`]'s outcome replaces the request's, its
//!   list included;
//! - [`crate::Engine::remove_domain`] (and RELEASE) lists the removal or
//!   hand-over to dom0 of each node the domain owned, then
//!   [`Applied::DomainRemoved`]; [`crate::Engine::domain_shutdown`] lists
//!   [`Applied::ReleaseFired`].
//!
//! - a domain becoming known (a connection, a permission entry, INTRODUCE
//!   or SET_TARGET named it) is [`Applied::Known`], at the front of the
//!   next outcome's list: its record starts from the global settings, and
//!   the generation it became known at decides which permission entries
//!   naming it are stale, so a replay must make it known at the same
//!   point relative to the node changes.
//!
//! Not listed: connections, watches and open transactions (they do not
//! survive a crash) and owned-node counts (they follow from the nodes).
//! [`crate::Engine::replay`] applies one entry.

use std::sync::Arc;

use xenstore_wire::{DomId, PermList};

use crate::quota::QuotaKind;

/// One change to the persistent store state.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Applied {
    /// A node was created with this value and these permissions, or an
    /// existing node's value (and, from a commit, permissions) replaced.
    Write {
        /// The node.
        path: Arc<str>,
        /// Its value now.
        value: Arc<[u8]>,
        /// Its permissions now, as stored.
        perms: PermList,
    },
    /// A node's permissions were replaced (SET_PERMS, or its owner handed
    /// to dom0 when the owning domain went).
    SetPerms {
        /// The node.
        path: Arc<str>,
        /// Its permissions now.
        perms: PermList,
    },
    /// A node and everything below it were removed.
    Remove {
        /// The node.
        path: Arc<str>,
    },
    /// SET_PERMS on `@introduceDomain` or `@releaseDomain`.
    SpecialPerms {
        /// The special path.
        name: &'static str,
        /// Its permissions now.
        perms: PermList,
    },
    /// SET_TARGET: `domid` acts for `target`.
    Target {
        /// The controlling domain.
        domid: DomId,
        /// The domain it acts for.
        target: DomId,
    },
    /// A global quota (SET_QUOTA without a domain, CONTROL `quota set`).
    GlobalQuota {
        /// The quota.
        kind: QuotaKind,
        /// Its value now.
        value: u32,
    },
    /// A warning level (CONTROL `quota-soft set`).
    SoftQuota {
        /// The quota.
        kind: QuotaKind,
        /// Its value now.
        value: u32,
    },
    /// One domain's quota (SET_QUOTA with a domain).
    DomainQuota {
        /// The domain.
        domid: DomId,
        /// The quota.
        kind: QuotaKind,
        /// Its value now.
        value: u32,
    },
    /// SET_FEATURE: the ring features to advertise to a domain.
    Features {
        /// The domain.
        domid: DomId,
        /// The feature bits.
        value: u32,
    },
    /// INTRODUCE was accepted: the domain's ring.
    Introduced {
        /// The domain.
        domid: DomId,
        /// Guest frame of its ring page.
        gfn: u64,
        /// Its event channel port.
        port: u32,
    },
    /// `@releaseDomain` fired for the domain's shutdown.
    ReleaseFired {
        /// The domain.
        domid: DomId,
    },
    /// RESUME: `@releaseDomain` fires again at the next shutdown.
    Resumed {
        /// The domain.
        domid: DomId,
    },
    /// The domain was forgotten (RELEASE, or it died), after its nodes were
    /// removed or handed to dom0.
    DomainRemoved {
        /// The domain.
        domid: DomId,
    },
    /// The domain became known to the store, with the global settings.
    Known {
        /// The domain.
        domid: DomId,
    },
}

/// The special path `name` names (`@introduceDomain` or `@releaseDomain`),
/// as [`Applied::SpecialPerms`] holds it: for a journal reader.
pub fn special_path(name: &str) -> Option<&'static str> {
    [xenstore_wire::path::INTRODUCE_DOMAIN, xenstore_wire::path::RELEASE_DOMAIN].into_iter().find(|n| *n == name)
}
