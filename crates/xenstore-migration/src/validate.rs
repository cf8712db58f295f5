//! The consistency rules every [`Stream`](crate::Stream) obeys, shared by
//! [`Stream::new`](crate::Stream::new) and [`read`](crate::read).

use std::collections::{HashMap, HashSet};

use crate::{
    write, Connection, DomainData, Error, ErrorKind, GlobalQuota, Location, Node, Quota, Record, Transaction, Watch,
    ACCESS_READ, ACCESS_WRITTEN,
};

/// Checks `records` in order; `at` gives the location of record `i`.
pub(crate) fn check(records: &[Record], at: impl Fn(usize) -> Location) -> Result<(), Error> {
    let mut state = State::default();
    for (index, record) in records.iter().enumerate() {
        state.record(record).map_err(|kind| Error { at: at(index), kind })?;
    }
    Ok(())
}

/// What the records so far have established.
#[derive(Default)]
struct State {
    /// Connection id to its transaction ids.
    conns: HashMap<u32, HashSet<u32>>,
    global: bool,
    global_quota: bool,
    domains: HashSet<u16>,
}

impl State {
    fn record(&mut self, record: &Record) -> Result<(), ErrorKind> {
        if u32::try_from(write::body_len(record)).is_err() {
            return Err(ErrorKind::TooLong { field: "record" });
        }
        match record {
            Record::Global(_) => {
                if std::mem::replace(&mut self.global, true) {
                    return Err(ErrorKind::DuplicateGlobal);
                }
            }
            Record::Connection(c) => self.connection(c)?,
            Record::Watch(w) => self.watch(w)?,
            Record::Transaction(t) => self.transaction(*t)?,
            Record::Node(n) => self.node(n)?,
            Record::GlobalQuota(q) => self.global_quota(q)?,
            Record::Domain(d) => self.domain(d)?,
            Record::Extension { kind, .. } => {
                if !(write::EXTENSION_FIRST..=write::EXTENSION_LAST).contains(kind) {
                    return Err(ErrorKind::NotExtensionKind(*kind));
                }
            }
        }
        Ok(())
    }

    fn connection(&mut self, c: &Connection) -> Result<(), ErrorKind> {
        if c.id == 0 {
            return Err(ErrorKind::ZeroConnId);
        }
        fits16(c.in_data.len(), "in-data")?;
        if u32::try_from(c.out_data.len()).is_err() {
            return Err(ErrorKind::TooLong { field: "out-data" });
        }
        if usize::from(c.out_resp_len) > c.out_data.len() {
            return Err(ErrorKind::RespLongerThanOut);
        }
        if self.conns.insert(c.id, HashSet::new()).is_some() {
            return Err(ErrorKind::DuplicateConn(c.id));
        }
        Ok(())
    }

    fn watch(&self, w: &Watch) -> Result<(), ErrorKind> {
        if !self.conns.contains_key(&w.conn_id) {
            return Err(ErrorKind::UnknownConn(w.conn_id));
        }
        fits16(w.path.len() + 1, "wpath")?;
        fits16(w.token.len() + 1, "token")?;
        if !watch_path(w.path.as_bytes()) {
            return Err(ErrorKind::BadPath { field: "wpath" });
        }
        if w.token.contains(&0) {
            return Err(ErrorKind::BadString { field: "token" });
        }
        Ok(())
    }

    fn transaction(&mut self, t: Transaction) -> Result<(), ErrorKind> {
        let txs = self.conns.get_mut(&t.conn_id).ok_or(ErrorKind::UnknownConn(t.conn_id))?;
        if t.tx_id == 0 {
            return Err(ErrorKind::ZeroTxId);
        }
        if !txs.insert(t.tx_id) {
            return Err(ErrorKind::DuplicateTransaction { conn_id: t.conn_id, tx_id: t.tx_id });
        }
        Ok(())
    }

    fn node(&self, n: &Node) -> Result<(), ErrorKind> {
        fits16(n.path.len() + 1, "path")?;
        fits16(n.value.len(), "value")?;
        fits16(n.perms.len(), "permissions")?;
        if !node_path(n.path.as_bytes()) {
            return Err(ErrorKind::BadPath { field: "path" });
        }
        match n.pending {
            None if n.perms.is_empty() => return Err(ErrorKind::NoOwner),
            None => {}
            Some(p) => {
                let known = self.conns.get(&p.conn_id).is_some_and(|txs| txs.contains(&p.tx_id));
                if !known {
                    return Err(ErrorKind::UnknownTransaction { conn_id: p.conn_id, tx_id: p.tx_id });
                }
                if p.access & !(ACCESS_READ | ACCESS_WRITTEN) != 0 {
                    return Err(ErrorKind::BadAccess(p.access));
                }
                if n.perms.is_empty() && (!n.value.is_empty() || p.access != 0) {
                    return Err(ErrorKind::DeletedNotEmpty);
                }
            }
        }
        Ok(())
    }

    fn global_quota(&mut self, q: &GlobalQuota) -> Result<(), ErrorKind> {
        if std::mem::replace(&mut self.global_quota, true) {
            return Err(ErrorKind::DuplicateGlobalQuota);
        }
        fits16(q.per_domain.len(), "n-dom-quota")?;
        fits16(q.global.len(), "n-glob-quota")?;
        quotas(&q.per_domain)?;
        quotas(&q.global)
    }

    fn domain(&mut self, d: &DomainData) -> Result<(), ErrorKind> {
        if !self.domains.insert(d.domid) {
            return Err(ErrorKind::DuplicateDomain(d.domid));
        }
        fits16(d.quotas.len(), "n-quota")?;
        quotas(&d.quotas)
    }
}

fn fits16(len: usize, field: &'static str) -> Result<(), ErrorKind> {
    match u16::try_from(len) {
        Ok(_) => Ok(()),
        Err(_) => Err(ErrorKind::TooLong { field }),
    }
}

fn quotas(list: &[Quota]) -> Result<(), ErrorKind> {
    if list.iter().any(|q| q.name.is_empty() || q.name.as_bytes().contains(&0)) {
        return Err(ErrorKind::BadQuotaName);
    }
    Ok(())
}

/// A character allowed in a path element (docs/misc/xenstore.txt).
fn path_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'@')
}

/// `elem(/elem)*`, every element non-empty.
fn elements(path: &[u8]) -> bool {
    !path.is_empty() && path.split(|&b| b == b'/').all(|elem| !elem.is_empty() && elem.iter().all(|&b| path_char(b)))
}

/// `@name`: a special path such as `@releaseDomain`.
fn special(path: &[u8]) -> bool {
    match path.split_first() {
        Some((b'@', rest)) => !rest.is_empty() && rest.iter().all(|&b| path_char(b)),
        _ => false,
    }
}

/// A node's path: `/`, `/elem(/elem)*`, or `@name`.
pub(crate) fn node_path(path: &[u8]) -> bool {
    match path.split_first() {
        Some((b'/', [])) => true,
        Some((b'/', rest)) => elements(rest),
        _ => special(path),
    }
}

/// A watch's path: a node path, a relative `elem(/elem)*`, or `@` and
/// elements (the engine takes special watch paths with an argument, such
/// as `@releaseDomain/1`).
pub(crate) fn watch_path(path: &[u8]) -> bool {
    node_path(path)
        || match path.split_first() {
            Some((b'@', rest)) => elements(rest),
            _ => elements(path),
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        for good in ["/", "/local", "/local/domain/1", "@releaseDomain", "/a-b_c@d"] {
            assert!(node_path(good.as_bytes()), "{good}");
            assert!(watch_path(good.as_bytes()), "{good}");
        }
        for bad in ["", "/a/", "//", "/a//b", "a", "@", "/a b", "/a\0", "@a/b"] {
            assert!(!node_path(bad.as_bytes()), "{bad:?}");
        }
        assert!(watch_path(b"device/vbd"));
        for bad in ["", "a/", "/a/", "a//b", "@", "a b"] {
            assert!(!watch_path(bad.as_bytes()), "{bad:?}");
        }
    }
}
