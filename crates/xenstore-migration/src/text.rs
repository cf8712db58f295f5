//! A readable text form of a stream, for `xenstore-state dump` and `load`:
//! an administrator can dump a stream, edit it and load it back.
//!
//! One line per record, `kind key=value ...`, after a `header` line.
//! Strings and octet fields are quoted and escaped as `xenstore-ls` does
//! (`\\`, `\"`, `\n`, `\t`, and `\xNN` for other octets outside printable
//! ASCII). Permissions are `"b0 r5"` (letter and domain; a trailing `!`
//! marks a stale one); quota lists are `"name=value ..."`. Extension
//! records carry their body in hex, after a `#` comment line summarising
//! ours. Blank lines and lines
//! starting with `#` are ignored by [`from_text`].
//!
//! [`to_text`] of a stream then [`from_text`] gives the same [`Stream`] and
//! header, so writing it again gives the same octets for every stream this
//! crate writes. Records of types the reader skips are not shown (the
//! dump says how many octets the stream has, not what was skipped).

use std::fmt::Write as _;

use crate::daemon::{EXT_ENGINE, EXT_TRANSACTION};
use crate::{
    ConnSpec, Connection, DomainData, Endian, GlobalData, GlobalQuota, Header, Node, Pending, Perm, PermKind, Quota,
    Record, Stream, Transaction, Version, Watch,
};

/// The text of a stream with its header.
#[must_use]
pub fn to_text(header: Header, stream: &Stream) -> String {
    let mut out = String::new();
    let endian = match header.endian {
        Endian::Little => "little",
        Endian::Big => "big",
    };
    let _ = writeln!(out, "header version={} endian={endian}", header.version.number());
    for r in stream.records() {
        if let Record::Extension { kind, body } = r {
            if let Some(summary) = crate::daemon::summarize_extension(*kind, body) {
                let _ = writeln!(out, "# {summary}");
            }
        }
        line(&mut out, r);
        out.push('\n');
    }
    out
}

fn line(out: &mut String, r: &Record) {
    let _ = match r {
        Record::Global(g) => write!(out, "global rw-socket-fd={} evtchn-fd={}", g.rw_socket_fd, g.evtchn_fd),
        Record::Connection(c) => {
            let _ = write!(out, "connection id={} ", c.id);
            let _ = match c.spec {
                ConnSpec::Ring { domid, tdomid, evtchn } => {
                    write!(out, "ring domid={domid} tdomid={tdomid} evtchn={evtchn}")
                }
                ConnSpec::Socket { fd } => write!(out, "socket fd={fd}"),
            };
            let _ = write!(out, " in={} out-resp-len={} out={}", quote(&c.in_data), c.out_resp_len, quote(&c.out_data));
            match c.unique_id {
                Some(u) => write!(out, " unique-id={u}"),
                None => Ok(()),
            }
        }
        Record::Watch(w) => {
            let depth = w.depth.map_or_else(|| "none".to_owned(), |d| d.to_string());
            write!(
                out,
                "watch conn={} path={} token={} depth={depth}",
                w.conn_id,
                quote(w.path.as_bytes()),
                quote(&w.token)
            )
        }
        Record::Transaction(t) => write!(out, "transaction conn={} tx={}", t.conn_id, t.tx_id),
        Record::Node(n) => {
            let _ = write!(
                out,
                "node path={} value={} perms={}",
                quote(n.path.as_bytes()),
                quote(&n.value),
                perms(&n.perms)
            );
            match n.pending {
                Some(p) => write!(out, " conn={} tx={} access={}", p.conn_id, p.tx_id, p.access),
                None => Ok(()),
            }
        }
        Record::GlobalQuota(q) => {
            write!(out, "global-quota per-domain={} global={}", quotas(&q.per_domain), quotas(&q.global))
        }
        Record::Domain(d) => {
            write!(out, "domain domid={} features={} quotas={}", d.domid, d.features, quotas(&d.quotas))
        }
        Record::Extension { kind, body } => {
            let what = match *kind {
                EXT_ENGINE => "engine-extras",
                EXT_TRANSACTION => "transaction",
                _ => "unknown",
            };
            let hex: String = body.iter().map(|b| format!("{b:02x}")).collect();
            write!(out, "extension kind={kind:#x} what={what} len={} body={hex}", body.len())
        }
    };
}

fn quote(bytes: &[u8]) -> String {
    let mut s = String::from("\"");
    for &b in bytes {
        match b {
            b'\\' => s.push_str("\\\\"),
            b'"' => s.push_str("\\\""),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            0x20..=0x7e => s.push(char::from(b)),
            _ => {
                let _ = write!(s, "\\x{b:02x}");
            }
        }
    }
    s.push('"');
    s
}

fn perms(list: &[Perm]) -> String {
    let items: Vec<String> = list
        .iter()
        .map(|p| format!("{}{}{}", char::from(p.kind.letter()), p.domid, if p.stale { "!" } else { "" }))
        .collect();
    quote(items.join(" ").as_bytes())
}

fn quotas(list: &[Quota]) -> String {
    let items: Vec<String> = list.iter().map(|q| format!("{}={}", quota_name(&q.name), q.value)).collect();
    quote(items.join(" ").as_bytes())
}

/// A quota name inside a list: escaped as a quoted string is, and its
/// spaces and `=` too, so the list splits unambiguously.
fn quota_name(name: &str) -> String {
    let quoted = quote(name.as_bytes());
    quoted[1..quoted.len() - 1].replace(' ', "\\x20").replace('=', "\\x3d")
}

/// Text that is not a dump: the line (from 1) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextError {
    /// The line, counted from 1.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for TextError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for TextError {}

/// The header and stream of a dump (see the module docs).
pub fn from_text(text: &str) -> Result<(Header, Stream), TextError> {
    let mut header = None;
    let mut records = Vec::new();
    let mut lines = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let raw = raw.trim();
        if raw.is_empty() || raw.starts_with('#') {
            continue;
        }
        let err = |message: String| TextError { line: n, message };
        let mut f = Fields::parse(raw).map_err(err)?;
        let kind = f.kind.clone();
        if kind == "header" {
            if header.is_some() {
                return Err(err("a second header".into()));
            }
            let version = match f.num::<u32>("version").map_err(err)? {
                1 => Version::V1,
                2 => Version::V2,
                v => return Err(err(format!("unsupported version {v}"))),
            };
            let endian = match f.word("endian").map_err(err)?.as_str() {
                "little" => Endian::Little,
                "big" => Endian::Big,
                e => return Err(err(format!("endian must be little or big, not {e}"))),
            };
            f.done().map_err(err)?;
            header = Some(Header { version, endian });
            continue;
        }
        if header.is_none() {
            return Err(err("records before the header line".into()));
        }
        let record = f.record(&kind).map_err(err)?;
        f.done().map_err(err)?;
        records.push(record);
        lines.push(n);
    }
    let header = header.ok_or(TextError { line: 0, message: "no header line".into() })?;
    let stream = Stream::new(records).map_err(|e| TextError {
        line: e.at.record.and_then(|r| lines.get(r).copied()).unwrap_or(0),
        message: e.kind.to_string(),
    })?;
    Ok((header, stream))
}

/// The `key=value` fields of one line, after its kind.
struct Fields {
    kind: String,
    /// Bare words (the connection's `ring` or `socket`).
    words: Vec<String>,
    pairs: Vec<(String, Vec<u8>)>,
}

impl Fields {
    fn parse(line: &str) -> Result<Fields, String> {
        let bytes = line.as_bytes();
        let mut i = 0;
        let mut tokens: Vec<(String, Option<Vec<u8>>)> = Vec::new();
        while i < bytes.len() {
            if bytes[i] == b' ' {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && bytes[i] != b' ' && bytes[i] != b'=' {
                i += 1;
            }
            let key = line[start..i].to_owned();
            if i < bytes.len() && bytes[i] == b'=' {
                i += 1;
                let value = if bytes.get(i) == Some(&b'"') {
                    let (v, next) = unquote(bytes, i + 1).map_err(|e| format!("{key}: {e}"))?;
                    i = next;
                    v
                } else {
                    let s = i;
                    while i < bytes.len() && bytes[i] != b' ' {
                        i += 1;
                    }
                    bytes[s..i].to_vec()
                };
                tokens.push((key, Some(value)));
            } else {
                tokens.push((key, None));
            }
        }
        let mut tokens = tokens.into_iter();
        let Some((kind, None)) = tokens.next() else { return Err("a line starts with its record kind".into()) };
        let mut f = Fields { kind, words: Vec::new(), pairs: Vec::new() };
        for (k, v) in tokens {
            match v {
                Some(v) => {
                    if f.pairs.iter().any(|(key, _)| *key == k) {
                        return Err(format!("{k} given twice"));
                    }
                    f.pairs.push((k, v));
                }
                None => f.words.push(k),
            }
        }
        Ok(f)
    }

    fn take(&mut self, key: &str) -> Option<Vec<u8>> {
        let i = self.pairs.iter().position(|(k, _)| k == key)?;
        Some(self.pairs.remove(i).1)
    }

    fn bytes(&mut self, key: &str) -> Result<Vec<u8>, String> {
        self.take(key).ok_or_else(|| format!("{} needs {key}=", self.kind))
    }

    fn word(&mut self, key: &str) -> Result<String, String> {
        String::from_utf8(self.bytes(key)?).map_err(|_| format!("{key} is not UTF-8"))
    }

    fn num<T: std::str::FromStr>(&mut self, key: &str) -> Result<T, String> {
        let w = self.word(key)?;
        let parsed = match w.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok().and_then(|v| v.to_string().parse().ok()),
            None => w.parse().ok(),
        };
        parsed.ok_or_else(|| format!("{key}={w} is not a number in range"))
    }

    fn done(&self) -> Result<(), String> {
        if let Some((k, _)) = self.pairs.first() {
            return Err(format!("unknown field {k}= for {}", self.kind));
        }
        if let Some(w) = self.words.first() {
            return Err(format!("unexpected word {w}"));
        }
        Ok(())
    }

    fn record(&mut self, kind: &str) -> Result<Record, String> {
        Ok(match kind {
            "global" => Record::Global(GlobalData {
                rw_socket_fd: self.num("rw-socket-fd")?,
                evtchn_fd: self.num("evtchn-fd")?,
            }),
            "connection" => {
                let id = self.num("id")?;
                let spec = match self.words.pop().as_deref() {
                    Some("ring") => ConnSpec::Ring {
                        domid: self.num("domid")?,
                        tdomid: self.num("tdomid")?,
                        evtchn: self.num("evtchn")?,
                    },
                    Some("socket") => ConnSpec::Socket { fd: self.num("fd")? },
                    _ => return Err("connection needs the word ring or socket".into()),
                };
                let unique_id =
                    if self.pairs.iter().any(|(k, _)| k == "unique-id") { Some(self.num("unique-id")?) } else { None };
                Record::Connection(Connection {
                    id,
                    spec,
                    in_data: self.bytes("in")?,
                    out_resp_len: self.num("out-resp-len")?,
                    out_data: self.bytes("out")?,
                    unique_id,
                })
            }
            "watch" => {
                let conn_id = self.num("conn")?;
                let path = self.word("path")?;
                let token = self.bytes("token")?;
                let depth = match self.word("depth")?.as_str() {
                    "none" => None,
                    d => Some(d.parse().map_err(|_| format!("depth={d} is not a number or none"))?),
                };
                Record::Watch(Watch { conn_id, path, token, depth })
            }
            "transaction" => Record::Transaction(Transaction { conn_id: self.num("conn")?, tx_id: self.num("tx")? }),
            "node" => {
                let path = self.word("path")?;
                let value = self.bytes("value")?;
                let perms = parse_perms(&self.word("perms")?)?;
                let pending = if self.pairs.iter().any(|(k, _)| k == "tx") {
                    Some(Pending { conn_id: self.num("conn")?, tx_id: self.num("tx")?, access: self.num("access")? })
                } else {
                    None
                };
                Record::Node(Node { pending, path, value, perms })
            }
            "global-quota" => Record::GlobalQuota(GlobalQuota {
                per_domain: parse_quotas(&self.word("per-domain")?)?,
                global: parse_quotas(&self.word("global")?)?,
            }),
            "domain" => Record::Domain(DomainData {
                domid: self.num("domid")?,
                features: self.num("features")?,
                quotas: parse_quotas(&self.word("quotas")?)?,
            }),
            "extension" => {
                let kind = self.num("kind")?;
                let _ = self.take("what");
                let len: usize = self.num("len")?;
                let hex = self.word("body")?;
                let body = parse_hex(&hex)?;
                if body.len() != len {
                    return Err(format!("len={len} but the body has {} octets", body.len()));
                }
                Record::Extension { kind, body }
            }
            other => return Err(format!("unknown record kind {other}")),
        })
    }
}

fn unquote(bytes: &[u8], mut i: usize) -> Result<(Vec<u8>, usize), String> {
    let mut out = Vec::new();
    loop {
        match bytes.get(i) {
            None => return Err("unterminated string".into()),
            Some(b'"') => return Ok((out, i + 1)),
            Some(b'\\') => {
                let (b, n) = match bytes.get(i + 1) {
                    Some(b'\\') => (b'\\', 2),
                    Some(b'"') => (b'"', 2),
                    Some(b'n') => (b'\n', 2),
                    Some(b't') => (b'\t', 2),
                    Some(b'x') => {
                        let hex = bytes.get(i + 2..i + 4).ok_or("short \\x escape")?;
                        let hex = std::str::from_utf8(hex).map_err(|_| "bad \\x escape")?;
                        (u8::from_str_radix(hex, 16).map_err(|_| "bad \\x escape")?, 4)
                    }
                    _ => return Err("unknown escape".into()),
                };
                out.push(b);
                i += n;
            }
            Some(&b) => {
                out.push(b);
                i += 1;
            }
        }
    }
}

fn parse_hex(hex: &str) -> Result<Vec<u8>, String> {
    if hex.len() % 2 != 0 {
        return Err("odd number of hex digits".into());
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("?"), 16).map_err(|_| "bad hex digit".to_owned()))
        .collect()
}

fn parse_perms(s: &str) -> Result<Vec<Perm>, String> {
    s.split_whitespace()
        .map(|item| {
            let (item, stale) = match item.strip_suffix('!') {
                Some(i) => (i, true),
                None => (item, false),
            };
            let kind = item.bytes().next().and_then(PermKind::from_letter).ok_or(format!("bad permission {item}"))?;
            let domid = item[1..].parse().map_err(|_| format!("bad permission {item}"))?;
            Ok(Perm { kind, stale, domid })
        })
        .collect()
}

fn parse_quotas(s: &str) -> Result<Vec<Quota>, String> {
    s.split_whitespace()
        .map(|item| {
            let (name, value) = item.split_once('=').ok_or(format!("bad quota {item}"))?;
            let (name, _) = unquote(format!("{name}\"").as_bytes(), 0).map_err(|e| format!("quota {item}: {e}"))?;
            let name = String::from_utf8(name).map_err(|_| format!("quota {item}: not UTF-8"))?;
            Ok(Quota { name, value: value.parse().map_err(|_| format!("bad quota {item}"))? })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{read, read_header, write_with};

    #[test]
    fn bad_text_names_the_line() {
        let e = from_text("header version=2 endian=little\n\nnode path=\"/\" value=\"\" perms=\"q0\"\n").unwrap_err();
        assert_eq!(e.line, 3);
        let e =
            from_text("header version=2 endian=little\nwatch conn=1 path=\"/a\" token=\"t\" depth=none\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert_eq!(from_text("node").unwrap_err().line, 1);
    }

    #[test]
    fn escapes_round_trip() {
        let bytes = b"a\\b\"c\n\t\x00\xff z".to_vec();
        let q = quote(&bytes);
        assert_eq!(unquote(q.as_bytes(), 1).unwrap(), (bytes, q.len()));
    }

    #[test]
    fn every_record_kind_round_trips() {
        let records = vec![
            Record::Global(GlobalData { rw_socket_fd: -1, evtchn_fd: 4 }),
            Record::Connection(Connection {
                id: 1,
                spec: ConnSpec::Ring { domid: 3, tdomid: 0x7ff4, evtchn: 9 },
                in_data: b"x\0y".to_vec(),
                out_resp_len: 1,
                out_data: b"zz".to_vec(),
                unique_id: Some(77),
            }),
            Record::Connection(Connection {
                id: 2,
                spec: ConnSpec::Socket { fd: 5 },
                in_data: vec![],
                out_resp_len: 0,
                out_data: vec![],
                unique_id: None,
            }),
            Record::Watch(Watch {
                conn_id: 1,
                path: "a b".replace(' ', "/"),
                token: b"t =\"".to_vec(),
                depth: Some(3),
            }),
            Record::Transaction(Transaction { conn_id: 2, tx_id: 4 }),
            Record::Node(Node {
                pending: None,
                path: "/".into(),
                value: vec![],
                perms: vec![Perm { kind: PermKind::Both, stale: false, domid: 0 }],
            }),
            Record::Node(Node {
                pending: Some(Pending { conn_id: 2, tx_id: 4, access: 3 }),
                path: "/x".into(),
                value: b"v".to_vec(),
                perms: vec![
                    Perm { kind: PermKind::None, stale: false, domid: 3 },
                    Perm { kind: PermKind::Read, stale: true, domid: 9 },
                ],
            }),
            Record::GlobalQuota(GlobalQuota {
                per_domain: vec![
                    Quota { name: "nodes".into(), value: 3 },
                    Quota { name: "a b=\\\"c".into(), value: 4 },
                ],
                global: vec![],
            }),
            Record::Domain(DomainData { domid: 3, features: 1, quotas: vec![Quota { name: "a".into(), value: 1 }] }),
            Record::Extension { kind: EXT_ENGINE, body: vec![1, 2, 255] },
        ];
        let stream = Stream::new(records).unwrap();
        let header = Header { version: Version::V2, endian: Endian::Big };
        let bytes = write_with(&stream, header).unwrap();
        let text = to_text(read_header(&bytes).unwrap(), &read(&bytes).unwrap());
        let (h, s) = from_text(&text).unwrap();
        assert_eq!(write_with(&s, h).unwrap(), bytes);
    }
}
