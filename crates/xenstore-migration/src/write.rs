//! The writer.

use crate::{ConnSpec, Endian, Error, ErrorKind, Header, Location, Quota, Record, Stream, Version, IDENT};

pub(crate) const TYPE_END: u32 = 0;
pub(crate) const TYPE_GLOBAL: u32 = 1;
pub(crate) const TYPE_CONN: u32 = 2;
pub(crate) const TYPE_WATCH: u32 = 3;
pub(crate) const TYPE_TA: u32 = 4;
pub(crate) const TYPE_NODE: u32 = 5;
pub(crate) const TYPE_GLB_QUOTA: u32 = 6;
pub(crate) const TYPE_DOMAIN: u32 = 7;
pub(crate) const TYPE_WATCH_EXT: u32 = 8;
/// The first record type of our vendor range ("XS" in the top half).
pub const EXTENSION_FIRST: u32 = 0x5853_0000;
/// The last record type of our vendor range.
pub const EXTENSION_LAST: u32 = 0x5853_ffff;

/// `conn-type` of a shared ring.
pub(crate) const CONN_RING: u16 = 0;
/// `conn-type` of a socket.
pub(crate) const CONN_SOCKET: u16 = 1;
/// `fields` bit: `unique-id` present.
pub(crate) const FIELD_UNIQUE_ID: u16 = 0x0001;
/// Permission flag: stale.
pub(crate) const PERM_STALE: u8 = 0x01;

/// `n` rounded up to a multiple of 8 (saturating).
pub(crate) fn round8(n: usize) -> usize {
    n.saturating_add(7) & !7
}

/// The length of a record's body without padding (saturating, so an
/// unencodable record gives a length over `u32::MAX`).
pub(crate) fn body_len(record: &Record) -> usize {
    match record {
        Record::Global(_) | Record::Transaction(_) => 8,
        Record::Connection(c) => {
            let data = 24usize.saturating_add(c.in_data.len()).saturating_add(c.out_data.len());
            if c.unique_id.is_some() {
                round8(data).saturating_add(8)
            } else {
                data
            }
        }
        Record::Watch(w) => {
            let fixed = if w.depth.is_some() { 12 } else { 8 };
            fixed + w.path.len().saturating_add(w.token.len()).saturating_add(2)
        }
        Record::Node(n) => 16usize
            .saturating_add(n.perms.len().saturating_mul(4))
            .saturating_add(n.path.len())
            .saturating_add(1)
            .saturating_add(n.value.len()),
        Record::GlobalQuota(q) => {
            4usize.saturating_add(quotas_len(&q.per_domain)).saturating_add(quotas_len(&q.global))
        }
        Record::Domain(d) => 8usize.saturating_add(quotas_len(&d.quotas)),
        Record::Extension { body, .. } => 4usize.saturating_add(body.len()),
    }
}

/// The octets a quota list takes: a value and a NUL-terminated name each.
fn quotas_len(list: &[Quota]) -> usize {
    list.iter().fold(0usize, |n, q| n.saturating_add(4).saturating_add(q.name.len()).saturating_add(1))
}

/// Writes `stream` as version 2 in little-endian order.
#[must_use]
pub fn write(stream: &Stream) -> Vec<u8> {
    encode(stream, Header { version: Version::V2, endian: Endian::Little })
}

/// Writes `stream` with the given version and byte order. Version 1 cannot
/// carry `WATCH_DATA_EXTENDED` records ([`ErrorKind::ExtendedWatchInV1`])
/// or domain `features` ([`ErrorKind::FeaturesInV1`]); the error names the
/// record's index.
pub fn write_with(stream: &Stream, header: Header) -> Result<Vec<u8>, Error> {
    if header.version == Version::V1 {
        for (index, record) in stream.records().iter().enumerate() {
            let kind = match record {
                Record::Watch(w) if w.depth.is_some() => ErrorKind::ExtendedWatchInV1,
                Record::Domain(d) if d.features != 0 => ErrorKind::FeaturesInV1,
                _ => continue,
            };
            return Err(Error { at: Location { offset: None, record: Some(index) }, kind });
        }
    }
    Ok(encode(stream, header))
}

/// A length that [`Stream`]'s invariant says fits its field.
fn len16(n: usize) -> u16 {
    u16::try_from(n).expect("Stream::new checked that the length fits 16 bits")
}

fn len32(n: usize) -> u32 {
    u32::try_from(n).expect("Stream::new checked that the length fits 32 bits")
}

struct Out {
    bytes: Vec<u8>,
    big: bool,
}

impl Out {
    fn u16(&mut self, v: u16) {
        let b = if self.big { v.to_be_bytes() } else { v.to_le_bytes() };
        self.bytes.extend_from_slice(&b);
    }
    fn u32(&mut self, v: u32) {
        let b = if self.big { v.to_be_bytes() } else { v.to_le_bytes() };
        self.bytes.extend_from_slice(&b);
    }
    fn i32(&mut self, v: i32) {
        let b = if self.big { v.to_be_bytes() } else { v.to_le_bytes() };
        self.bytes.extend_from_slice(&b);
    }
    fn u64(&mut self, v: u64) {
        let b = if self.big { v.to_be_bytes() } else { v.to_le_bytes() };
        self.bytes.extend_from_slice(&b);
    }
    fn cstr(&mut self, s: &[u8]) {
        self.bytes.extend_from_slice(s);
        self.bytes.push(0);
    }
    fn pad8(&mut self) {
        self.bytes.resize(round8(self.bytes.len()), 0);
    }
    fn quota_values(&mut self, list: &[Quota]) {
        for q in list {
            self.u32(q.value);
        }
    }
    fn quota_names(&mut self, list: &[Quota]) {
        for q in list {
            self.cstr(q.name.as_bytes());
        }
    }
}

fn encode(stream: &Stream, header: Header) -> Vec<u8> {
    let mut out = Out { bytes: Vec::new(), big: header.endian == Endian::Big };
    out.bytes.extend_from_slice(&IDENT);
    out.bytes.extend_from_slice(&header.version.number().to_be_bytes());
    let flags: u32 = match header.endian {
        Endian::Little => 0,
        Endian::Big => 1,
    };
    out.bytes.extend_from_slice(&flags.to_be_bytes());
    for record in stream.records() {
        let len = len32(round8(body_len(record)));
        let start = out.bytes.len();
        out.u32(record_type(record));
        out.u32(len);
        body(&mut out, record);
        out.pad8();
        debug_assert_eq!(out.bytes.len() - start, 8 + round8(body_len(record)));
    }
    out.u32(TYPE_END);
    out.u32(0);
    out.bytes
}

fn record_type(record: &Record) -> u32 {
    match record {
        Record::Global(_) => TYPE_GLOBAL,
        Record::Connection(_) => TYPE_CONN,
        Record::Watch(w) if w.depth.is_some() => TYPE_WATCH_EXT,
        Record::Watch(_) => TYPE_WATCH,
        Record::Transaction(_) => TYPE_TA,
        Record::Node(_) => TYPE_NODE,
        Record::GlobalQuota(_) => TYPE_GLB_QUOTA,
        Record::Domain(_) => TYPE_DOMAIN,
        Record::Extension { kind, .. } => *kind,
    }
}

fn body(out: &mut Out, record: &Record) {
    match record {
        Record::Extension { body, .. } => {
            out.u32(len32(body.len()));
            out.bytes.extend_from_slice(body);
        }
        Record::Global(g) => {
            out.i32(g.rw_socket_fd);
            out.i32(g.evtchn_fd);
        }
        Record::Connection(c) => {
            out.u32(c.id);
            match c.spec {
                ConnSpec::Ring { .. } => out.u16(CONN_RING),
                ConnSpec::Socket { .. } => out.u16(CONN_SOCKET),
            }
            out.u16(if c.unique_id.is_some() { FIELD_UNIQUE_ID } else { 0 });
            match c.spec {
                ConnSpec::Ring { domid, tdomid, evtchn } => {
                    out.u16(domid);
                    out.u16(tdomid);
                    out.u32(evtchn);
                }
                ConnSpec::Socket { fd } => {
                    out.i32(fd);
                    out.u32(0);
                }
            }
            out.u16(len16(c.in_data.len()));
            out.u16(c.out_resp_len);
            out.u32(len32(c.out_data.len()));
            out.bytes.extend_from_slice(&c.in_data);
            out.bytes.extend_from_slice(&c.out_data);
            if let Some(id) = c.unique_id {
                out.pad8();
                out.u64(id);
            }
        }
        Record::Watch(w) => {
            out.u32(w.conn_id);
            out.u16(len16(w.path.len() + 1));
            out.u16(len16(w.token.len() + 1));
            if let Some(depth) = w.depth {
                out.u16(depth);
                out.u16(0);
            }
            out.cstr(w.path.as_bytes());
            out.cstr(&w.token);
        }
        Record::Transaction(t) => {
            out.u32(t.conn_id);
            out.u32(t.tx_id);
        }
        Record::Node(n) => {
            let (conn_id, tx_id, access) = n.pending.map_or((0, 0, 0), |p| (p.conn_id, p.tx_id, p.access));
            out.u32(conn_id);
            out.u32(tx_id);
            out.u16(len16(n.path.len() + 1));
            out.u16(len16(n.value.len()));
            out.u16(access);
            out.u16(len16(n.perms.len()));
            for p in &n.perms {
                out.bytes.push(p.kind.letter());
                out.bytes.push(if p.stale { PERM_STALE } else { 0 });
                out.u16(p.domid);
            }
            out.cstr(n.path.as_bytes());
            out.bytes.extend_from_slice(&n.value);
        }
        Record::GlobalQuota(q) => {
            out.u16(len16(q.per_domain.len()));
            out.u16(len16(q.global.len()));
            out.quota_values(&q.per_domain);
            out.quota_values(&q.global);
            out.quota_names(&q.per_domain);
            out.quota_names(&q.global);
        }
        Record::Domain(d) => {
            out.u16(d.domid);
            out.u16(len16(d.quotas.len()));
            out.u32(d.features);
            out.quota_values(&d.quotas);
            out.quota_names(&d.quotas);
        }
    }
}
