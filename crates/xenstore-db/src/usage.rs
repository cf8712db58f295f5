//! What each domain uses of the store now: the figures behind CONTROL
//! `quota <domid>` and the daemon's statistics (`xenstore top`, metrics).
//!
//! Counted, never stored twice: nodes come from each domain's owned count
//! (dom0 is charged every node no other domain owns, as the C daemon
//! reports it), watches and transactions from the connections. Reading
//! them is linear in domains plus connections, so it is for CONTROL and a
//! scraper's period, never for the request path.

use xenstore_wire::DomId;

use crate::quota::Quotas;
use crate::Engine;

/// A domain's current consumption of the quota-limited resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Nodes owned.
    pub nodes: usize,
    /// Watches registered by its connections.
    pub watches: usize,
    /// Transactions open on its connections.
    pub transactions: usize,
    /// Bytes the store holds for it (the `memory` quota's count).
    pub memory: usize,
}

/// One domain as the statistics show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainUsage {
    /// The domain.
    pub domid: DomId,
    /// What it uses now.
    pub usage: Usage,
    /// Its quotas, or `None` when it is privileged (dom0: quotas spare it).
    pub quotas: Option<Quotas>,
    /// INTRODUCE was accepted and RELEASE not yet (dom0 always counts as
    /// introduced, as IS_DOMAIN_INTRODUCED answers).
    pub introduced: bool,
    /// Its connections the engine knows (sockets and its ring).
    pub connections: usize,
    /// Its name, from `/local/domain/<domid>/name` as the toolstack wrote
    /// it (xl does; the store does not check it).
    pub name: Option<String>,
}

impl Engine {
    /// How many domains the store knows (introduced, connected, or named
    /// in a permission).
    pub fn domain_count(&self) -> usize {
        self.domains.len()
    }

    /// What a domain uses now (`None` for a domain the store does not
    /// know). Linear in connections: for CONTROL `quota <domid>`.
    pub fn usage(&self, domid: DomId) -> Option<Usage> {
        self.domains.get(&domid)?;
        let mut usage = Usage { nodes: self.nodes_charged(domid), memory: self.memory(domid), ..Usage::default() };
        for conn in self.conns.values().filter(|c| c.caller.domid == domid) {
            usage.watches += conn.watches.len();
            usage.transactions += conn.txs.len();
        }
        Some(usage)
    }

    /// Every known domain with `domid >= from`, in domid order, at most
    /// `limit` of them: one pass over the connections, not one per domain.
    pub fn usage_from(&self, from: DomId, limit: usize) -> Vec<DomainUsage> {
        let mut out: Vec<DomainUsage> = self
            .domains
            .range(from..)
            .take(limit)
            .map(|(&domid, domain)| DomainUsage {
                domid,
                usage: Usage { nodes: self.nodes_charged(domid), memory: domain.memory, ..Usage::default() },
                quotas: (domid != 0).then_some(domain.quotas),
                introduced: domid == 0 || domain.introduced.is_some(),
                connections: 0,
                name: self.domain_name(domid),
            })
            .collect();
        for conn in self.conns.values() {
            if let Ok(i) = out.binary_search_by_key(&conn.caller.domid, |d| d.domid) {
                let d = &mut out[i];
                d.connections += 1;
                d.usage.watches += conn.watches.len();
                d.usage.transactions += conn.txs.len();
            }
        }
        out
    }

    /// Nodes charged to a domain: those it owns; for dom0, every node no
    /// other domain owns.
    fn nodes_charged(&self, domid: DomId) -> usize {
        if domid == 0 {
            let others: usize = self.domains.iter().filter(|(d, _)| **d != 0).map(|(_, d)| d.owned).sum();
            self.tree.len().saturating_sub(others)
        } else {
            self.domains.get(&domid).map_or(0, |d| d.owned)
        }
    }

    /// `/local/domain/<domid>/name`, when it holds UTF-8 text.
    fn domain_name(&self, domid: DomId) -> Option<String> {
        let node = self.tree.get(&format!("/local/domain/{domid}/name"))?;
        std::str::from_utf8(&node.value).ok().filter(|n| !n.is_empty()).map(str::to_owned)
    }
}
