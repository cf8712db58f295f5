//! The bytes of journal entries: one [`Applied`] each, grouped per request.
//!
//! All integers little-endian. A record's payload is a list of requests,
//! each a list of entries: `u32` request count, then per request a `u32`
//! entry count and the entries. An entry is a tag byte and its fields:
//!
//! | tag | entry | fields |
//! |---|---|---|
//! | 1 | `Write` | path, value, perms |
//! | 2 | `SetPerms` | path, perms |
//! | 3 | `Remove` | path |
//! | 4 | `SpecialPerms` | name, perms |
//! | 5 | `Target` | domid, target |
//! | 6 | `GlobalQuota` | quota, `u32` |
//! | 7 | `SoftQuota` | quota, `u32` |
//! | 8 | `DomainQuota` | domid, quota, `u32` |
//! | 9 | `Features` | domid, `u32` |
//! | 10 | `Introduced` | domid, `u64` gfn, `u32` port |
//! | 11 | `ReleaseFired` | domid |
//! | 12 | `Resumed` | domid |
//! | 13 | `DomainRemoved` | domid |
//! | 14 | `Known` | domid |
//!
//! A path, name, quota (its `CONTROL` name) or value is a `u32` length and
//! its bytes; a domid a `u16`; perms a `u16` count and per entry a `u16`
//! domid and the access letter (`n r w b`), owner first. Decoding trusts
//! nothing: every length is checked against what is left before anything
//! is allocated, and an unknown tag, quota, letter or special path is an
//! error naming the offset.

use std::sync::Arc;

use xenstore_db::applied::special_path;
use xenstore_db::{Applied, QuotaKind};
use xenstore_wire::{Access, DomId, Perm, PermList};

/// Appends one request's entries to `out`.
pub(crate) fn encode_request(entries: &[Applied], out: &mut Vec<u8>) {
    put_u32(out, len32(entries.len()));
    for entry in entries {
        encode_entry(entry, out);
    }
}

fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u32(out, len32(b.len()));
    out.extend_from_slice(b);
}

fn put_perms(out: &mut Vec<u8>, perms: &PermList) {
    let entries = perms.entries();
    put_u16(out, u16::try_from(entries.len()).unwrap_or(u16::MAX));
    for p in entries {
        put_u16(out, p.domid);
        out.push(p.access.letter());
    }
}

fn encode_entry(entry: &Applied, out: &mut Vec<u8>) {
    match entry {
        Applied::Write { path, value, perms } => {
            out.push(1);
            put_bytes(out, path.as_bytes());
            put_bytes(out, value);
            put_perms(out, perms);
        }
        Applied::SetPerms { path, perms } => {
            out.push(2);
            put_bytes(out, path.as_bytes());
            put_perms(out, perms);
        }
        Applied::Remove { path } => {
            out.push(3);
            put_bytes(out, path.as_bytes());
        }
        Applied::SpecialPerms { name, perms } => {
            out.push(4);
            put_bytes(out, name.as_bytes());
            put_perms(out, perms);
        }
        Applied::Target { domid, target } => {
            out.push(5);
            put_u16(out, *domid);
            put_u16(out, *target);
        }
        Applied::GlobalQuota { kind, value } | Applied::SoftQuota { kind, value } => {
            out.push(if matches!(entry, Applied::GlobalQuota { .. }) { 6 } else { 7 });
            put_bytes(out, kind.name().as_bytes());
            put_u32(out, *value);
        }
        Applied::DomainQuota { domid, kind, value } => {
            out.push(8);
            put_u16(out, *domid);
            put_bytes(out, kind.name().as_bytes());
            put_u32(out, *value);
        }
        Applied::Features { domid, value } => {
            out.push(9);
            put_u16(out, *domid);
            put_u32(out, *value);
        }
        Applied::Introduced { domid, gfn, port } => {
            out.push(10);
            put_u16(out, *domid);
            out.extend_from_slice(&gfn.to_le_bytes());
            put_u32(out, *port);
        }
        Applied::ReleaseFired { domid } => domid_entry(out, 11, *domid),
        Applied::Resumed { domid } => domid_entry(out, 12, *domid),
        Applied::DomainRemoved { domid } => domid_entry(out, 13, *domid),
        Applied::Known { domid } => domid_entry(out, 14, *domid),
        // `Applied` may grow: a kind this daemon cannot write must not be
        // silently dropped from a journal that promises durability.
        other => panic!("journal: no encoding for {other:?}"),
    }
}

fn domid_entry(out: &mut Vec<u8>, tag: u8, domid: DomId) {
    out.push(tag);
    put_u16(out, domid);
}

/// Why a payload could not be decoded, and where (offset in the payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError {
    pub(crate) offset: usize,
    pub(crate) what: String,
}

/// A cursor over a payload.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn fail<T>(&self, what: impl Into<String>) -> Result<T, DecodeError> {
        Err(DecodeError { offset: self.at, what: what.into() })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        match self.bytes.get(self.at..self.at.saturating_add(n)) {
            Some(b) if self.at.checked_add(n).is_some() => {
                self.at += n;
                Ok(b)
            }
            _ => self.fail(format!("{n} bytes wanted, {} left", self.bytes.len().saturating_sub(self.at))),
        }
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A count of items at least `min_size` bytes each: checked against
    /// what is left before a vector is sized by it.
    fn count(&mut self, n: usize, min_size: usize) -> Result<usize, DecodeError> {
        let left = self.bytes.len().saturating_sub(self.at);
        if n.saturating_mul(min_size) > left {
            return self.fail(format!("count {n} larger than the {left} bytes left"));
        }
        Ok(n)
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let at = self.at;
        let b = self.bytes()?;
        std::str::from_utf8(b).map_err(|_| DecodeError { offset: at, what: "a path that is not UTF-8".into() })
    }

    fn perms(&mut self) -> Result<PermList, DecodeError> {
        let at = self.at;
        let n = usize::from(self.u16()?);
        let n = self.count(n, 3)?;
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            let domid = self.u16()?;
            let letter = self.u8()?;
            let Some(access) = Access::from_letter(letter) else {
                return self.fail(format!("access letter {letter:#x}"));
            };
            entries.push(Perm { domid, access });
        }
        PermList::new(entries).ok_or(DecodeError { offset: at, what: "an empty permission list".into() })
    }

    fn quota(&mut self) -> Result<QuotaKind, DecodeError> {
        let at = self.at;
        let name = self.str()?;
        QuotaKind::from_name(name).ok_or(DecodeError { offset: at, what: format!("unknown quota {name:?}") })
    }

    fn entry(&mut self) -> Result<Applied, DecodeError> {
        let at = self.at;
        let tag = self.u8()?;
        Ok(match tag {
            1 => {
                let path = Arc::from(self.str()?);
                let value = Arc::from(self.bytes()?);
                Applied::Write { path, value, perms: self.perms()? }
            }
            2 => {
                let path = Arc::from(self.str()?);
                Applied::SetPerms { path, perms: self.perms()? }
            }
            3 => Applied::Remove { path: Arc::from(self.str()?) },
            4 => {
                let name_at = self.at;
                let name = self.str()?;
                let Some(name) = special_path(name) else {
                    return Err(DecodeError { offset: name_at, what: format!("unknown special path {name:?}") });
                };
                Applied::SpecialPerms { name, perms: self.perms()? }
            }
            5 => Applied::Target { domid: self.u16()?, target: self.u16()? },
            6 => Applied::GlobalQuota { kind: self.quota()?, value: self.u32()? },
            7 => Applied::SoftQuota { kind: self.quota()?, value: self.u32()? },
            8 => Applied::DomainQuota { domid: self.u16()?, kind: self.quota()?, value: self.u32()? },
            9 => Applied::Features { domid: self.u16()?, value: self.u32()? },
            10 => Applied::Introduced { domid: self.u16()?, gfn: self.u64()?, port: self.u32()? },
            11 => Applied::ReleaseFired { domid: self.u16()? },
            12 => Applied::Resumed { domid: self.u16()? },
            13 => Applied::DomainRemoved { domid: self.u16()? },
            14 => Applied::Known { domid: self.u16()? },
            _ => return Err(DecodeError { offset: at, what: format!("unknown entry tag {tag}") }),
        })
    }
}

/// Decodes a record's payload: its requests, each a list of entries.
pub(crate) fn decode_payload(bytes: &[u8]) -> Result<Vec<Vec<Applied>>, DecodeError> {
    let mut r = Reader { bytes, at: 0 };
    let n = r.u32()? as usize;
    let n = r.count(n, 4)?;
    let mut requests = Vec::with_capacity(n);
    for _ in 0..n {
        let m = r.u32()? as usize;
        let m = r.count(m, 3)?;
        let mut entries = Vec::with_capacity(m);
        for _ in 0..m {
            entries.push(r.entry()?);
        }
        requests.push(entries);
    }
    if r.at != bytes.len() {
        return r.fail(format!("{} bytes after the last request", bytes.len() - r.at));
    }
    Ok(requests)
}

/// A payload holding `requests`, as [`decode_payload`] reads it (the
/// daemon builds its groups in place, [`super::Persist::append`]).
#[cfg(test)]
pub(crate) fn encode_payload(requests: &[&[Applied]]) -> Vec<u8> {
    let mut out = Vec::new();
    put_u32(&mut out, len32(requests.len()));
    for r in requests {
        encode_request(r, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_kind() -> Vec<Applied> {
        let perms = PermList::new(vec![
            Perm { domid: 0, access: Access::None },
            Perm { domid: 5, access: Access::Both },
            Perm { domid: 6, access: Access::Read },
        ])
        .unwrap_or_else(|| PermList::owned_by(0, Access::None));
        vec![
            Applied::Write { path: Arc::from("/a/b"), value: Arc::from(&b"v\0x"[..]), perms: perms.clone() },
            Applied::SetPerms { path: Arc::from("/a"), perms: perms.clone() },
            Applied::Remove { path: Arc::from("/a/b") },
            Applied::SpecialPerms { name: xenstore_wire::path::RELEASE_DOMAIN, perms },
            Applied::Target { domid: 3, target: 4 },
            Applied::GlobalQuota { kind: QuotaKind::Nodes, value: 9 },
            Applied::SoftQuota { kind: QuotaKind::Memory, value: 10 },
            Applied::DomainQuota { domid: 3, kind: QuotaKind::Watches, value: 11 },
            Applied::Features { domid: 3, value: 1 },
            Applied::Introduced { domid: 3, gfn: 0xfeff_0000_1234, port: 7 },
            Applied::ReleaseFired { domid: 3 },
            Applied::Resumed { domid: 3 },
            Applied::DomainRemoved { domid: 3 },
            Applied::Known { domid: 8 },
        ]
    }

    #[test]
    fn every_entry_kind_round_trips() {
        let all = every_kind();
        let payload = encode_payload(&[&all, &[], &all[..2]]);
        let back = decode_payload(&payload).expect("decodes");
        assert_eq!(back, vec![all.clone(), Vec::new(), all[..2].to_vec()]);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let all = every_kind();
        let payload = encode_payload(&[&all]);
        for cut in 0..payload.len() {
            assert!(decode_payload(&payload[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn a_huge_count_is_refused_before_allocating() {
        let payload = [0xff, 0xff, 0xff, 0x7f];
        let e = decode_payload(&payload).expect_err("refused");
        assert!(e.what.contains("count"), "{e:?}");
    }

    #[test]
    fn an_unknown_tag_names_its_offset() {
        let mut payload = encode_payload(&[&[Applied::Known { domid: 1 }]]);
        payload[8] = 99;
        let e = decode_payload(&payload).expect_err("refused");
        assert_eq!(e.offset, 8);
    }
}
