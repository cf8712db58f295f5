//! Conversions between the stream's records and `xenstore_db`'s exported
//! state ([`xenstore_db::state`]), for the parts both describe the same way:
//! permissions, committed nodes, quotas and domains.
//!
//! Not converted, because the stream does not carry what the engine needs:
//! a [`NodeState`] from a [`Node`] (the engine's generations and children
//! order), and connections, watches and transactions (the engine's ids and
//! transaction trees).
//!
//! Staleness: the stream marks a stale permission with a flag; the engine
//! judges it from generations. A permission from the engine is written
//! not stale; a stale flag read from a stream is dropped going to the
//! engine, whose import decides staleness itself.

use xenstore_db::state::{DomainState, NodeState};
use xenstore_db::{Config, QuotaKind, Quotas};
use xenstore_wire::{Access, Perm as DbPerm};

use crate::{DomainData, GlobalQuota, Node, Perm, PermKind, Quota};

impl From<Access> for PermKind {
    fn from(access: Access) -> PermKind {
        match access {
            Access::None => PermKind::None,
            Access::Read => PermKind::Read,
            Access::Write => PermKind::Write,
            Access::Both => PermKind::Both,
        }
    }
}

impl From<PermKind> for Access {
    fn from(kind: PermKind) -> Access {
        match kind {
            PermKind::None => Access::None,
            PermKind::Read => Access::Read,
            PermKind::Write => Access::Write,
            PermKind::Both => Access::Both,
        }
    }
}

impl From<DbPerm> for Perm {
    /// Not stale (see the module docs).
    fn from(p: DbPerm) -> Perm {
        Perm { kind: p.access.into(), stale: false, domid: p.domid }
    }
}

impl From<Perm> for DbPerm {
    /// Drops the stale flag (see the module docs).
    fn from(p: Perm) -> DbPerm {
        DbPerm { domid: p.domid, access: p.kind.into() }
    }
}

impl From<&NodeState> for Node {
    /// A committed node: path, value and permissions.
    fn from(n: &NodeState) -> Node {
        Node {
            pending: None,
            path: n.path.clone(),
            value: n.value.clone(),
            perms: n.perms.iter().copied().map(Perm::from).collect(),
        }
    }
}

/// Every quota of `quotas`, by its `GET_QUOTA` name, in `GET_QUOTA` order.
#[must_use]
pub fn quotas_to_stream(quotas: &Quotas) -> Vec<Quota> {
    QuotaKind::ALL.iter().map(|&kind| Quota { name: kind.name().to_owned(), value: quotas.get(kind) }).collect()
}

/// `base` with the values of `list` the engine knows by name set; names it
/// does not know have no effect, as the document requires.
#[must_use]
pub fn quotas_from_stream(list: &[Quota], base: Quotas) -> Quotas {
    let mut quotas = base;
    for q in list {
        if let Some(kind) = QuotaKind::from_name(&q.name) {
            quotas.set(kind, q.value);
        }
    }
    quotas
}

impl From<&DomainState> for DomainData {
    fn from(d: &DomainState) -> DomainData {
        DomainData { domid: d.domid, features: d.features, quotas: quotas_to_stream(&d.quotas) }
    }
}

impl From<&Config> for GlobalQuota {
    /// The engine's global quotas are the defaults for every domain; it has
    /// no global-only ones.
    fn from(c: &Config) -> GlobalQuota {
        GlobalQuota { per_domain: quotas_to_stream(&c.quotas), global: Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{read, write, Record, Stream};

    #[test]
    fn perms_round_trip() {
        for access in [Access::None, Access::Read, Access::Write, Access::Both] {
            let p = DbPerm { domid: 7, access };
            assert_eq!(DbPerm::from(Perm::from(p)), p);
            assert_eq!(PermKind::from(access).letter(), access.letter());
        }
        let stale = Perm { kind: PermKind::Read, stale: true, domid: 3 };
        assert_eq!(DbPerm::from(stale), DbPerm { domid: 3, access: Access::Read });
    }

    #[test]
    fn quotas_round_trip_and_ignore_unknown_names() {
        let mut q = Quotas::default();
        q.set(QuotaKind::Nodes, 5);
        q.set(QuotaKind::Memory, 0);
        let mut list = quotas_to_stream(&q);
        assert_eq!(list.len(), QuotaKind::ALL.len());
        assert_eq!(quotas_from_stream(&list, Quotas::unlimited()), q);
        list.push(Quota { name: "no-such-quota".into(), value: 1 });
        assert_eq!(quotas_from_stream(&list, Quotas::unlimited()), q);
    }

    #[test]
    fn engine_export_goes_through_a_stream() {
        let engine = xenstore_db::Engine::new(Config::default());
        let state = engine.export();
        let mut records = vec![Record::GlobalQuota(GlobalQuota::from(&state.config))];
        records.extend(state.nodes.iter().map(|n| Record::Node(Node::from(n))));
        records.extend(state.domains.iter().map(|d| Record::Domain(DomainData::from(d))));
        let stream = Stream::new(records).unwrap();
        let back = read(&write(&stream)).unwrap();
        assert_eq!(back, stream);
        let nodes: Vec<_> = back
            .records()
            .iter()
            .filter_map(|r| match r {
                Record::Node(n) => Some((
                    n.path.clone(),
                    n.value.clone(),
                    n.perms.iter().map(|&p| DbPerm::from(p)).collect::<Vec<_>>(),
                )),
                _ => None,
            })
            .collect();
        let expected: Vec<_> = state.nodes.iter().map(|n| (n.path.clone(), n.value.clone(), n.perms.clone())).collect();
        assert_eq!(nodes, expected);
        assert!(!nodes.is_empty());
    }
}
