//! The reader: all-or-nothing, never panicking, distrusting every length.

use crate::write::{
    round8, CONN_RING, CONN_SOCKET, EXTENSION_FIRST, EXTENSION_LAST, FIELD_UNIQUE_ID, PERM_STALE, TYPE_CONN,
    TYPE_DOMAIN, TYPE_END, TYPE_GLB_QUOTA, TYPE_GLOBAL, TYPE_NODE, TYPE_TA, TYPE_WATCH, TYPE_WATCH_EXT,
};
use crate::{
    validate, ConnSpec, Connection, DomainData, Endian, Error, ErrorKind, GlobalData, GlobalQuota, Header, Location,
    Node, Pending, Perm, PermKind, Quota, Record, Stream, Transaction, Version, Watch, IDENT,
};

/// The header's size.
const HEADER_LEN: usize = 16;

/// Reads the header of a stream.
pub fn read_header(bytes: &[u8]) -> Result<Header, Error> {
    let header_err = |kind| Error { at: Location { offset: Some(0), record: None }, kind };
    let Some(head) = bytes.get(..HEADER_LEN) else {
        return Err(header_err(ErrorKind::Truncated { needed: HEADER_LEN, available: bytes.len() }));
    };
    if head[..8] != IDENT {
        return Err(header_err(ErrorKind::BadIdent));
    }
    let version = u32::from_be_bytes([head[8], head[9], head[10], head[11]]);
    let flags = u32::from_be_bytes([head[12], head[13], head[14], head[15]]);
    let version = match version {
        1 => Version::V1,
        2 => Version::V2,
        v => {
            return Err(Error {
                at: Location { offset: Some(8), record: None },
                kind: ErrorKind::UnsupportedVersion(v),
            })
        }
    };
    if flags & !1 != 0 {
        return Err(Error {
            at: Location { offset: Some(12), record: None },
            kind: ErrorKind::ReservedFlags(flags & !1),
        });
    }
    let endian = if flags & 1 == 0 { Endian::Little } else { Endian::Big };
    Ok(Header { version, endian })
}

/// Reads a whole stream of either version and byte order: the stream, or
/// the first thing wrong with it.
pub fn read(bytes: &[u8]) -> Result<Stream, Error> {
    let header = read_header(bytes)?;
    let big = header.endian == Endian::Big;
    let mut records = Vec::new();
    let mut places = Vec::new();
    let mut pos = HEADER_LEN;
    for index in 0usize.. {
        let at = Location { offset: Some(pos), record: Some(index) };
        let err = |kind| Error { at, kind };
        let rest = &bytes[pos..];
        if rest.is_empty() {
            return Err(err(ErrorKind::MissingEnd));
        }
        let Some(head) = rest.get(..8) else {
            return Err(err(ErrorKind::Truncated { needed: 8, available: rest.len() }));
        };
        let word = |b: &[u8]| {
            let b = [b[0], b[1], b[2], b[3]];
            if big {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        let (ty, len32) = (word(&head[..4]), word(&head[4..]));
        if ty == TYPE_END {
            if len32 != 0 {
                return Err(err(ErrorKind::EndNotEmpty(len32)));
            }
            let after = rest.len() - 8;
            if after != 0 {
                return Err(Error {
                    at: Location { offset: Some(pos + 8), record: Some(index) },
                    kind: ErrorKind::TrailingData(after),
                });
            }
            break;
        }
        let available = rest.len() - 8;
        let len = usize::try_from(len32).unwrap_or(usize::MAX);
        let padded = round8(len);
        if padded > available {
            return Err(err(ErrorKind::Truncated { needed: padded, available }));
        }
        let mut body = Body { bytes: &rest[8..8 + len], pos: 0, base: pos + 8, index, big };
        let record = match ty {
            TYPE_GLOBAL => Some(Record::Global(GlobalData {
                rw_socket_fd: body.i32("rw-socket-fd")?,
                evtchn_fd: body.i32("evtchn-fd")?,
            })),
            TYPE_CONN => Some(Record::Connection(body.connection()?)),
            TYPE_WATCH => Some(Record::Watch(body.watch(false)?)),
            TYPE_WATCH_EXT if header.version == Version::V2 => Some(Record::Watch(body.watch(true)?)),
            TYPE_TA => {
                Some(Record::Transaction(Transaction { conn_id: body.u32("conn-id")?, tx_id: body.u32("tx-id")? }))
            }
            TYPE_NODE => Some(Record::Node(body.node()?)),
            TYPE_GLB_QUOTA => Some(Record::GlobalQuota(body.global_quota()?)),
            TYPE_DOMAIN => Some(Record::Domain(body.domain(header.version)?)),
            EXTENSION_FIRST..=EXTENSION_LAST => {
                let n = body.u32("extension-len")?;
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                Some(Record::Extension { kind: ty, body: body.take(n, "extension-body")?.to_vec() })
            }
            // Unknown types, and WATCH_DATA_EXTENDED where the version does
            // not define it: skipped, as Xen's reader does.
            _ => {
                body.pos = len;
                None
            }
        };
        if round8(body.pos) != padded {
            return Err(err(ErrorKind::BodyTooLong { len: len32, used: body.pos }));
        }
        if let Some(record) = record {
            records.push(record);
            places.push(at);
        }
        pos += 8 + padded;
    }
    validate::check(&records, |i| places.get(i).copied().unwrap_or_default())?;
    Ok(Stream { records })
}

/// A cursor over one record's body.
struct Body<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// The body's offset in the stream.
    base: usize,
    index: usize,
    big: bool,
}

impl<'a> Body<'a> {
    fn err(&self, kind: ErrorKind) -> Error {
        Error { at: Location { offset: Some(self.base + self.pos), record: Some(self.index) }, kind }
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], Error> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end {
            Some(end) => {
                let out = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(out)
            }
            None => Err(self.err(ErrorKind::BodyTooShort { field })),
        }
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], Error> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N, field)?);
        if self.big {
            Ok(out)
        } else {
            out.reverse();
            Ok(out)
        }
    }

    // Big-endian arrays (reversed above for little-endian streams).
    fn u8(&mut self, field: &'static str) -> Result<u8, Error> {
        Ok(self.take(1, field)?[0])
    }
    fn u16(&mut self, field: &'static str) -> Result<u16, Error> {
        self.array(field).map(u16::from_be_bytes)
    }
    fn u32(&mut self, field: &'static str) -> Result<u32, Error> {
        self.array(field).map(u32::from_be_bytes)
    }
    fn i32(&mut self, field: &'static str) -> Result<i32, Error> {
        self.array(field).map(i32::from_be_bytes)
    }
    fn u64(&mut self, field: &'static str) -> Result<u64, Error> {
        self.array(field).map(u64::from_be_bytes)
    }

    fn pad8(&mut self, field: &'static str) -> Result<(), Error> {
        self.take(round8(self.pos) - self.pos, field).map(drop)
    }

    /// A string of `len` octets including its NUL terminator, none inside.
    fn cstr(&mut self, len: u16, field: &'static str) -> Result<&'a [u8], Error> {
        let start = self.pos;
        let raw = self.take(usize::from(len), field)?;
        match raw.split_last() {
            Some((0, s)) if !s.contains(&0) => Ok(s),
            _ => {
                self.pos = start;
                Err(self.err(ErrorKind::BadString { field }))
            }
        }
    }

    fn path(&mut self, len: u16, field: &'static str) -> Result<String, Error> {
        let start = self.pos;
        let raw = self.cstr(len, field)?;
        String::from_utf8(raw.to_vec()).map_err(|_| {
            self.pos = start;
            self.err(ErrorKind::BadPath { field })
        })
    }

    fn connection(&mut self) -> Result<Connection, Error> {
        let id = self.u32("conn-id")?;
        let ty_at = self.pos;
        let ty = self.u16("conn-type")?;
        let fields_at = self.pos;
        let fields = self.u16("fields")?;
        let spec = match ty {
            CONN_RING => {
                ConnSpec::Ring { domid: self.u16("domid")?, tdomid: self.u16("tdomid")?, evtchn: self.u32("evtchn")? }
            }
            CONN_SOCKET => {
                let fd = self.i32("socket-fd")?;
                self.take(4, "pad")?;
                ConnSpec::Socket { fd }
            }
            other => {
                self.pos = ty_at;
                return Err(self.err(ErrorKind::UnknownConnType(other)));
            }
        };
        if fields & !FIELD_UNIQUE_ID != 0 {
            self.pos = fields_at;
            return Err(self.err(ErrorKind::UnknownConnFields(fields)));
        }
        let in_len = self.u16("in-data-len")?;
        let resp_at = self.pos;
        let out_resp_len = self.u16("out-resp-len")?;
        let out_len = self.u32("out-data-len")?;
        if u32::from(out_resp_len) > out_len {
            self.pos = resp_at;
            return Err(self.err(ErrorKind::RespLongerThanOut));
        }
        let in_data = self.take(usize::from(in_len), "data")?.to_vec();
        let out_len = usize::try_from(out_len).unwrap_or(usize::MAX);
        let out_data = self.take(out_len, "data")?.to_vec();
        let unique_id = if fields & FIELD_UNIQUE_ID != 0 {
            self.pad8("unique-id")?;
            Some(self.u64("unique-id")?)
        } else {
            None
        };
        Ok(Connection { id, spec, in_data, out_resp_len, out_data, unique_id })
    }

    fn watch(&mut self, extended: bool) -> Result<Watch, Error> {
        let conn_id = self.u32("conn-id")?;
        let path_len = self.u16("wpath-len")?;
        let token_len = self.u16("token-len")?;
        let depth = if extended {
            let depth = self.u16("depth")?;
            self.take(2, "pad")?;
            Some(depth)
        } else {
            None
        };
        let path = self.path(path_len, "wpath")?;
        let token = self.cstr(token_len, "token")?.to_vec();
        Ok(Watch { conn_id, path, token, depth })
    }

    fn node(&mut self) -> Result<Node, Error> {
        let conn_id = self.u32("conn-id")?;
        let tx_id = self.u32("tx-id")?;
        let path_len = self.u16("path-len")?;
        let value_len = self.u16("value-len")?;
        let access = self.u16("access")?;
        let perm_count = self.u16("perm-count")?;
        let mut perms = Vec::with_capacity(usize::from(perm_count).min(self.bytes.len() / 4));
        for _ in 0..perm_count {
            let letter = self.u8("perm")?;
            let kind = PermKind::from_letter(letter).ok_or_else(|| Error {
                at: Location { offset: Some(self.base + self.pos - 1), record: Some(self.index) },
                kind: ErrorKind::BadPermKind(letter),
            })?;
            let flags = self.u8("flags")?;
            if flags & !PERM_STALE != 0 {
                self.pos -= 1;
                return Err(self.err(ErrorKind::BadPermFlags(flags)));
            }
            let domid = self.u16("domid")?;
            perms.push(Perm { kind, stale: flags & PERM_STALE != 0, domid });
        }
        let path = self.path(path_len, "path")?;
        let value = self.take(usize::from(value_len), "value")?.to_vec();
        // tx-id and access are to be ignored for a committed node.
        let pending = (conn_id != 0).then_some(Pending { conn_id, tx_id, access });
        Ok(Node { pending, path, value, perms })
    }

    /// `count` values then `count` NUL-terminated names.
    fn quotas(&mut self, values: &[u32]) -> Result<Vec<Quota>, Error> {
        let mut out = Vec::with_capacity(values.len());
        for &value in values {
            let rest = &self.bytes[self.pos..];
            let name =
                rest.iter().position(|&b| b == 0).filter(|&n| n > 0).and_then(|n| std::str::from_utf8(&rest[..n]).ok());
            let Some(name) = name else {
                return Err(self.err(ErrorKind::BadQuotaName));
            };
            self.pos += name.len() + 1;
            out.push(Quota { name: name.to_owned(), value });
        }
        Ok(out)
    }

    fn values(&mut self, count: usize) -> Result<Vec<u32>, Error> {
        if count.saturating_mul(4) > self.bytes.len() - self.pos {
            return Err(self.err(ErrorKind::BodyTooShort { field: "quota-val" }));
        }
        (0..count).map(|_| self.u32("quota-val")).collect()
    }

    fn global_quota(&mut self) -> Result<GlobalQuota, Error> {
        let n_dom = self.u16("n-dom-quota")?;
        let n_glob = self.u16("n-glob-quota")?;
        let dom = self.values(usize::from(n_dom))?;
        let glob = self.values(usize::from(n_glob))?;
        Ok(GlobalQuota { per_domain: self.quotas(&dom)?, global: self.quotas(&glob)? })
    }

    fn domain(&mut self, version: Version) -> Result<DomainData, Error> {
        let domid = self.u16("domain-id")?;
        let n = self.u16("n-quota")?;
        let features = self.u32("features")?;
        let values = self.values(usize::from(n))?;
        Ok(DomainData {
            domid,
            // Not valid in version 1: ignored.
            features: if version == Version::V1 { 0 } else { features },
            quotas: self.quotas(&values)?,
        })
    }
}
