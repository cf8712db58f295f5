//! Typed replies and watch events.
//!
//! A successful reply has the request's operation in its header; an error
//! reply has `ERROR` and the error's name. Most operations answer `OK`.

use std::sync::Arc;

use crate::error::ErrorCode;
use crate::fields::{self, exact, text};
use crate::header::{Header, HEADER_LEN};
use crate::limits::PAYLOAD_MAX;
use crate::op::Op;
use crate::perms::PermList;

/// A successful reply's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `OK|`: the answer of every operation without a result.
    Ok,
    /// `READ`: the value, no terminator.
    Read(Arc<[u8]>),
    /// `DIRECTORY`: child names in creation order, each nul-terminated.
    Directory(Vec<Arc<str>>),
    /// `DIRECTORY_PART`: `<gencnt>|` then a run of nul-terminated names
    /// starting at the requested byte offset; when the run reaches the end
    /// of the list an extra nul (an empty name) marks it, as the C daemon
    /// does.
    DirectoryPart {
        /// Changes whenever the node's children change.
        generation: u64,
        /// Raw nul-terminated names (possibly starting mid-name if the
        /// client asked for such an offset).
        names: Vec<u8>,
        /// Whether this part reaches the end of the list.
        complete: bool,
    },
    /// `GET_PERMS`: the permission list.
    GetPerms(PermList),
    /// `TRANSACTION_START`: the new transaction id, in decimal.
    TransactionStart(u32),
    /// `GET_DOMAIN_PATH`: the domain's home path.
    DomainPath(String),
    /// `IS_DOMAIN_INTRODUCED`: `T` or `F`.
    Bool(bool),
    /// `GET_FEATURE` / `GET_QUOTA` with a name: a decimal number.
    Number(u64),
    /// `GET_QUOTA` without a name: the supported quota names, blank-separated.
    ///
    /// The two `GET_QUOTA` reply forms share a syntax, so [`Reply::parse`]
    /// picks `Number` for anything decimal. A list of exactly one all-digit
    /// name therefore encodes to the bytes of a `Number` and parses back as
    /// one; no real quota name is a number.
    Names(Vec<String>),
    /// `CONTROL`: free text (the command's output).
    Text(Vec<u8>),
}

impl Reply {
    /// Appends the payload (no header).
    pub fn encode_payload(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Ok => out.extend_from_slice(b"OK\0"),
            Reply::Read(value) => out.extend_from_slice(value),
            Reply::Directory(names) => {
                for name in names {
                    out.extend_from_slice(name.as_bytes());
                    out.push(0);
                }
            }
            Reply::DirectoryPart { generation, names, complete } => {
                out.extend_from_slice(generation.to_string().as_bytes());
                out.push(0);
                out.extend_from_slice(names);
                if *complete {
                    out.push(0);
                }
            }
            Reply::GetPerms(perms) => perms.write_nul_list(out),
            Reply::TransactionStart(id) => {
                out.extend_from_slice(id.to_string().as_bytes());
                out.push(0);
            }
            Reply::DomainPath(path) => {
                out.extend_from_slice(path.as_bytes());
                out.push(0);
            }
            Reply::Bool(b) => out.extend_from_slice(if *b { b"T\0" } else { b"F\0" }),
            Reply::Number(n) => {
                out.extend_from_slice(n.to_string().as_bytes());
                out.push(0);
            }
            Reply::Names(names) => {
                out.extend_from_slice(names.join(" ").as_bytes());
                out.push(0);
            }
            Reply::Text(text) => {
                out.extend_from_slice(text);
                out.push(0);
            }
        }
    }

    /// Payload length once encoded, without encoding.
    pub fn payload_len(&self) -> usize {
        match self {
            Reply::Ok => 3,
            Reply::Read(value) => value.len(),
            Reply::Directory(names) => names.iter().map(|n| n.len() + 1).sum(),
            Reply::DirectoryPart { generation, names, complete } => {
                digits(*generation) + 1 + names.len() + usize::from(*complete)
            }
            Reply::GetPerms(perms) => perms.entries().iter().map(|p| 2 + digits(u64::from(p.domid))).sum(),
            Reply::TransactionStart(id) => digits(u64::from(*id)) + 1,
            Reply::DomainPath(path) => path.len() + 1,
            Reply::Bool(_) => 2,
            Reply::Number(n) => digits(*n) + 1,
            Reply::Names(names) => names.iter().map(String::len).sum::<usize>() + names.len().max(1),
            Reply::Text(text) => text.len() + 1,
        }
    }

    /// Appends the whole reply message for a request with these ids. A
    /// payload over [`PAYLOAD_MAX`] is never sent: an `E2BIG` error reply
    /// goes out instead.
    pub fn encode(&self, op: Op, req_id: u32, tx_id: u32, out: &mut Vec<u8>) {
        let len = self.payload_len();
        if len > PAYLOAD_MAX {
            ErrorCode::E2BIG.encode_reply(req_id, tx_id, out);
            return;
        }
        let header = Header { op: op as u32, req_id, tx_id, len: u32::try_from(len).unwrap_or(u32::MAX) };
        out.reserve(HEADER_LEN + len);
        out.extend_from_slice(&header.encode());
        self.encode_payload(out);
    }

    /// Decodes the payload of a reply whose header carries `op`. An `ERROR`
    /// reply comes back as `Err` with its code (`EIO` if the name is unknown).
    pub fn parse(op: u32, payload: &[u8]) -> Result<Reply, ErrorCode> {
        let op = Op::from_u32(op).ok_or(ErrorCode::EIO)?;
        let invalid = |_| ErrorCode::EIO;
        match op {
            Op::Error => Err(ErrorCode::parse(payload).unwrap_or(ErrorCode::EIO)),
            Op::Read => Ok(Reply::Read(Arc::from(payload))),
            Op::Directory => {
                let names = split_names(payload).map_err(invalid)?;
                Ok(Reply::Directory(names))
            }
            Op::DirectoryPart => {
                let (gen, rest) = fields::head(payload).map_err(invalid)?;
                let generation = fields::parse_decimal(gen).map_err(invalid)?;
                // The end marker is an empty name: the run ends in two nuls,
                // or is a lone nul when the offset is past the end.
                let complete = rest == b"\0" || rest.ends_with(b"\0\0");
                let names = if complete { rest.get(..rest.len() - 1).unwrap_or_default() } else { rest };
                Ok(Reply::DirectoryPart { generation, names: names.to_vec(), complete })
            }
            Op::GetPerms => PermList::parse_nul_list(payload).map(Reply::GetPerms).map_err(invalid),
            Op::TransactionStart => {
                let [id] = exact::<1>(payload).map_err(invalid)?;
                Ok(Reply::TransactionStart(fields::parse_u32(id).map_err(invalid)?))
            }
            Op::GetDomainPath => {
                let [p] = exact::<1>(payload).map_err(invalid)?;
                Ok(Reply::DomainPath(text(p).map_err(invalid)?.to_owned()))
            }
            Op::IsDomainIntroduced => match exact::<1>(payload).map_err(invalid)? {
                [b"T"] => Ok(Reply::Bool(true)),
                [b"F"] => Ok(Reply::Bool(false)),
                _ => Err(ErrorCode::EIO),
            },
            Op::GetFeature => {
                let [n] = exact::<1>(payload).map_err(invalid)?;
                Ok(Reply::Number(fields::parse_decimal(n).map_err(invalid)?))
            }
            Op::GetQuota => {
                let [n] = exact::<1>(payload).map_err(invalid)?;
                match fields::parse_decimal(n) {
                    Ok(value) => Ok(Reply::Number(value)),
                    Err(_) => {
                        let list = text(n).map_err(invalid)?;
                        Ok(Reply::Names(list.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect()))
                    }
                }
            }
            Op::Control => Ok(Reply::Text(payload.strip_suffix(b"\0").unwrap_or(payload).to_vec())),
            Op::Write
            | Op::Mkdir
            | Op::Rm
            | Op::SetPerms
            | Op::Watch
            | Op::Unwatch
            | Op::TransactionEnd
            | Op::Introduce
            | Op::Release
            | Op::Resume
            | Op::SetTarget
            | Op::ResetWatches
            | Op::SetFeature
            | Op::SetQuota => {
                if payload == b"OK\0" || payload == b"OK" {
                    Ok(Reply::Ok)
                } else {
                    Err(ErrorCode::EIO)
                }
            }
            Op::WatchEvent | Op::Invalid => Err(ErrorCode::EIO),
        }
    }
}

/// An unsolicited `WATCH_EVENT <epath>|<token>|`, with `req_id` and `tx_id` 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// The changed path as the watcher sees it (relative if it watched a
    /// relative path; the watch path itself for a removed ancestor).
    pub path: String,
    /// The watch's token.
    pub token: Arc<[u8]>,
}

impl WatchEvent {
    /// Payload length once encoded.
    pub fn payload_len(&self) -> usize {
        self.path.len() + 1 + self.token.len() + 1
    }

    /// Appends the whole event message. Returns `false`, appending nothing,
    /// if the payload would exceed [`PAYLOAD_MAX`] (such an event is dropped,
    /// never sent oversize).
    pub fn encode(&self, out: &mut Vec<u8>) -> bool {
        let len = self.payload_len();
        if len > PAYLOAD_MAX {
            return false;
        }
        let header = Header { op: Op::WatchEvent as u32, req_id: 0, tx_id: 0, len: u32::try_from(len).unwrap_or(0) };
        out.extend_from_slice(&header.encode());
        out.extend_from_slice(self.path.as_bytes());
        out.push(0);
        out.extend_from_slice(&self.token);
        out.push(0);
        true
    }

    /// Decodes a `WATCH_EVENT` payload. Tolerates a missing final nul, as
    /// some daemons have sent one.
    pub fn parse(payload: &[u8]) -> Result<WatchEvent, ErrorCode> {
        let (path, rest) = fields::head(payload)?;
        let token = rest.strip_suffix(b"\0").unwrap_or(rest);
        if token.contains(&0) {
            return Err(ErrorCode::EINVAL);
        }
        Ok(WatchEvent { path: text(path)?.to_owned(), token: Arc::from(token) })
    }
}

fn split_names(payload: &[u8]) -> Result<Vec<Arc<str>>, ErrorCode> {
    if payload.is_empty() {
        return Ok(Vec::new());
    }
    let body = payload.strip_suffix(b"\0").ok_or(ErrorCode::EINVAL)?;
    body.split(|b| *b == 0).map(|n| text(n).map(Arc::from)).collect()
}

fn digits(mut n: u64) -> usize {
    let mut count = 1;
    while n >= 10 {
        n /= 10;
        count += 1;
    }
    count
}
