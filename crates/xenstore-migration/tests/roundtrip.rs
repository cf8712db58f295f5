//! Property tests: any consistent stream, written in either byte order and
//! (when it can be) version 1, reads back the same.

use proptest::prelude::*;
use std::collections::BTreeSet;
use xenstore_migration::{
    read, read_header, write, write_with, ConnSpec, Connection, DomainData, Endian, ErrorKind, GlobalData, GlobalQuota,
    Header, Node, Pending, Perm, PermKind, Quota, Record, Stream, Transaction, Version, Watch,
};

fn elem() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_@-]{1,8}"
}

fn abs_path() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/".to_owned()),
        prop::collection::vec(elem(), 1..4).prop_map(|e| format!("/{}", e.join("/"))),
        Just("@releaseDomain".to_owned()),
        Just("@introduceDomain".to_owned()),
    ]
}

fn watch_path() -> impl Strategy<Value = String> {
    prop_oneof![abs_path(), prop::collection::vec("[a-z0-9_-]{1,6}", 1..3).prop_map(|e| e.join("/")),]
}

fn perm() -> impl Strategy<Value = Perm> {
    (
        prop_oneof![Just(PermKind::None), Just(PermKind::Read), Just(PermKind::Write), Just(PermKind::Both)],
        any::<bool>(),
        any::<u16>(),
    )
        .prop_map(|(kind, stale, domid)| Perm { kind, stale, domid })
}

fn quotas() -> impl Strategy<Value = Vec<Quota>> {
    prop::collection::vec(("[a-z-]{1,12}", any::<u32>()).prop_map(|(name, value)| Quota { name, value }), 0..4)
}

fn spec() -> impl Strategy<Value = ConnSpec> {
    prop_oneof![
        (any::<u16>(), any::<u16>(), any::<u32>())
            .prop_map(|(domid, tdomid, evtchn)| { ConnSpec::Ring { domid, tdomid, evtchn } }),
        any::<i32>().prop_map(|fd| ConnSpec::Socket { fd }),
    ]
}

fn connection(id: u32) -> impl Strategy<Value = Connection> {
    (
        spec(),
        prop::collection::vec(any::<u8>(), 0..20),
        prop::collection::vec(any::<u8>(), 0..20),
        any::<u16>(),
        any::<Option<u64>>(),
    )
        .prop_map(move |(spec, in_data, out_data, resp, unique_id)| {
            let out_resp_len = match u16::try_from(out_data.len()) {
                Ok(0) | Err(_) => 0,
                Ok(n) => resp % (n + 1),
            };
            Connection { id, spec, in_data, out_resp_len, out_data, unique_id }
        })
}

/// A consistent stream: connections first, then what names them, in an
/// order that keeps every dependency earlier.
fn stream() -> impl Strategy<Value = Stream> {
    let ids = prop::collection::btree_set(1u32.., 0..4);
    ids.prop_flat_map(|ids| {
        let ids: Vec<u32> = ids.into_iter().collect();
        let conns: Vec<_> = ids.iter().map(|&id| connection(id)).collect();
        let n = ids.len();
        let pick = move |i: usize| ids[i % n.max(1)];
        (
            conns,
            prop::option::of((any::<i32>(), any::<i32>())),
            prop::collection::vec(
                (any::<usize>(), watch_path(), prop::collection::vec(1u8.., 0..10), any::<Option<u16>>()),
                0..4,
            ),
            prop::collection::vec((any::<usize>(), 1u32..), 0..4),
            prop::collection::vec(
                (abs_path(), prop::collection::vec(any::<u8>(), 0..12), prop::collection::vec(perm(), 1..4)),
                0..5,
            ),
            prop::collection::vec(
                (
                    any::<usize>(),
                    abs_path(),
                    prop::collection::vec(any::<u8>(), 0..12),
                    prop::collection::vec(perm(), 0..3),
                    0u16..4,
                ),
                0..4,
            ),
            prop::option::of((quotas(), quotas())),
            prop::collection::btree_map(any::<u16>(), (any::<u32>(), quotas()), 0..3),
        )
            .prop_map(move |(conns, global, watches, txs, nodes, pending, gq, domains)| {
                let mut records = Vec::new();
                if let Some((rw_socket_fd, evtchn_fd)) = global {
                    records.push(Record::Global(GlobalData { rw_socket_fd, evtchn_fd }));
                }
                records.extend(conns.into_iter().map(Record::Connection));
                let mut tx_set = BTreeSet::new();
                if n > 0 {
                    for (c, path, token, depth) in watches {
                        records.push(Record::Watch(Watch { conn_id: pick(c), path, token, depth }));
                    }
                    for (c, tx_id) in txs {
                        if tx_set.insert((pick(c), tx_id)) {
                            records.push(Record::Transaction(Transaction { conn_id: pick(c), tx_id }));
                        }
                    }
                }
                for (path, value, perms) in nodes {
                    records.push(Record::Node(Node { pending: None, path, value, perms }));
                }
                let txs: Vec<_> = tx_set.into_iter().collect();
                if !txs.is_empty() {
                    for (t, path, value, perms, access) in pending {
                        let (conn_id, tx_id) = txs[t % txs.len()];
                        let deleted = perms.is_empty();
                        records.push(Record::Node(Node {
                            pending: Some(Pending { conn_id, tx_id, access: if deleted { 0 } else { access } }),
                            path,
                            value: if deleted { Vec::new() } else { value },
                            perms,
                        }));
                    }
                }
                if let Some((per_domain, global)) = gq {
                    records.push(Record::GlobalQuota(GlobalQuota { per_domain, global }));
                }
                for (domid, (features, quotas)) in domains {
                    records.push(Record::Domain(DomainData { domid, features, quotas }));
                }
                Stream::new(records).expect("the strategy builds consistent streams")
            })
    })
}

proptest! {
    #[test]
    fn write_then_read_is_identity(s in stream()) {
        let bytes = write(&s);
        prop_assert_eq!(bytes.len() % 8, 0);
        prop_assert_eq!(read(&bytes), Ok(s.clone()));
        let big = Header { version: Version::V2, endian: Endian::Big };
        let be = write_with(&s, big).unwrap();
        prop_assert_eq!(read_header(&be), Ok(big));
        prop_assert_eq!(read(&be), Ok(s));
    }

    #[test]
    fn version_1_round_trips_or_refuses(s in stream(), big in any::<bool>()) {
        let endian = if big { Endian::Big } else { Endian::Little };
        let header = Header { version: Version::V1, endian };
        let needs_v2 = s.records().iter().any(|r| match r {
            Record::Watch(w) => w.depth.is_some(),
            Record::Domain(d) => d.features != 0,
            _ => false,
        });
        match write_with(&s, header) {
            Ok(bytes) => {
                prop_assert!(!needs_v2);
                prop_assert_eq!(read(&bytes), Ok(s));
            }
            Err(e) => {
                prop_assert!(needs_v2);
                prop_assert!(matches!(e.kind, ErrorKind::ExtendedWatchInV1 | ErrorKind::FeaturesInV1));
            }
        }
    }

    /// Any truncation, or any one octet changed, is refused or read as a
    /// consistent stream (never a panic); a prefix never reads.
    #[test]
    fn corruption_never_panics(s in stream(), cut in any::<usize>(), at in any::<usize>(), byte in any::<u8>()) {
        let bytes = write(&s);
        let cut = cut % bytes.len();
        prop_assert!(read(&bytes[..cut]).is_err());
        let mut changed = bytes.clone();
        let at = at % changed.len();
        changed[at] = byte;
        if let Ok(again) = read(&changed) {
            prop_assert_eq!(read(&write(&again)), Ok(again));
        }
    }
}
