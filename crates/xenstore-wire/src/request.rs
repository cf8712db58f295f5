//! Typed requests: what each operation's payload carries
//! (`docs/misc/xenstore.txt`, "Xenstore protocol details").
//!
//! [`Request::parse`] is strict: a payload that lacks its terminating nul,
//! has too few or too many fields, an illegal path or an unparsable number is
//! `EINVAL`, and an operation a client may not send is `ENOSYS`. Requests
//! borrow from the payload, so parsing copies nothing.

use crate::error::ErrorCode;
use crate::fields::{self, exact, head, parse_u32, text, up_to};
use crate::header::Header;
use crate::op::Op;
use crate::path;
use crate::perms::{parse_domid, PermList};
use crate::DomId;

/// A request from a client, borrowing its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    /// `CONTROL <command>|[<parameters>|]*`: the raw payload (parameters
    /// may be binary, as in live-update chunks); see [`Request::control_args`].
    Control(&'a [u8]),
    /// `DIRECTORY <path>|`
    Directory(&'a str),
    /// `DIRECTORY_PART <path>|<offset>|`: `offset` counts bytes into the
    /// nul-separated list of child names.
    DirectoryPart {
        /// The directory.
        path: &'a str,
        /// Byte offset into the children list.
        offset: u32,
    },
    /// `READ <path>|`
    Read(&'a str),
    /// `GET_PERMS <path>|` (special `@` paths allowed)
    GetPerms(&'a str),
    /// `WATCH <wpath>|<token>|[<depth>|]`
    Watch {
        /// Watched path, possibly relative or special.
        path: &'a str,
        /// Opaque token echoed in events.
        token: &'a [u8],
        /// How many levels below `path` still match; `None` for all.
        depth: Option<u32>,
    },
    /// `UNWATCH <wpath>|<token>|`
    Unwatch {
        /// Watched path as registered.
        path: &'a str,
        /// Token as registered.
        token: &'a [u8],
    },
    /// `TRANSACTION_START |`
    TransactionStart,
    /// `TRANSACTION_END T|` (commit) or `F|` (abort)
    TransactionEnd {
        /// `true` for `T`.
        commit: bool,
    },
    /// `INTRODUCE <domid>|<gfn>|<evtchn>|`
    Introduce {
        /// The new domain.
        domid: DomId,
        /// Its xenstore ring page (guest frame number).
        gfn: u64,
        /// Its unbound event channel port.
        port: u32,
    },
    /// `RELEASE <domid>|`
    Release(DomId),
    /// `GET_DOMAIN_PATH <domid>|`
    GetDomainPath(DomId),
    /// `WRITE <path>|<value|>`
    Write {
        /// Node to write.
        path: &'a str,
        /// New value: any bytes, nul included, no terminator.
        value: &'a [u8],
    },
    /// `MKDIR <path>|`
    Mkdir(&'a str),
    /// `RM <path>|`
    Rm(&'a str),
    /// `SET_PERMS <path>|<perm>|+` (special `@` paths allowed)
    SetPerms {
        /// Node whose permissions change.
        path: &'a str,
        /// New permissions, owner first.
        perms: PermList,
    },
    /// `IS_DOMAIN_INTRODUCED <domid>|`
    IsDomainIntroduced(DomId),
    /// `RESUME <domid>|`
    Resume(DomId),
    /// `SET_TARGET <domid>|<tdomid>|`
    SetTarget {
        /// The controlling domain (e.g. a device model stub domain).
        domid: DomId,
        /// The domain it acts for.
        target: DomId,
    },
    /// `RESET_WATCHES |`
    ResetWatches,
    /// `GET_FEATURE [<domid>|]`
    GetFeature(Option<DomId>),
    /// `SET_FEATURE <domid>|<value>|`
    SetFeature {
        /// Domain not yet introduced.
        domid: DomId,
        /// Feature bits.
        value: u32,
    },
    /// `GET_QUOTA [[<domid>|]<quota>|]`
    GetQuota {
        /// Domain, or `None` for the global value.
        domid: Option<DomId>,
        /// Quota name, or `None` to list the names.
        quota: Option<&'a str>,
    },
    /// `SET_QUOTA [<domid>|]<quota>|<value>|`
    SetQuota {
        /// Domain, or `None` for the global value.
        domid: Option<DomId>,
        /// Quota name.
        quota: &'a str,
        /// New value; 0 disables the check.
        value: u32,
    },
}

impl<'a> Request<'a> {
    /// Parses the payload of a request whose header carries `op`.
    pub fn parse(op: u32, payload: &'a [u8]) -> Result<Request<'a>, ErrorCode> {
        let op = Op::from_u32(op).ok_or(ErrorCode::ENOSYS)?;
        Ok(match op {
            Op::Control => {
                if !payload.contains(&0) || payload.first() == Some(&0) {
                    return Err(ErrorCode::EINVAL);
                }
                Request::Control(payload)
            }
            Op::Directory => Request::Directory(one_path(payload, false)?),
            Op::Read => Request::Read(one_path(payload, false)?),
            Op::GetPerms => Request::GetPerms(one_path(payload, true)?),
            Op::Mkdir => Request::Mkdir(one_path(payload, false)?),
            Op::Rm => Request::Rm(one_path(payload, false)?),
            Op::DirectoryPart => {
                let [p, off] = exact::<2>(payload)?;
                Request::DirectoryPart { path: checked_path(p, false)?, offset: parse_u32(off)? }
            }
            Op::Watch => {
                let (count, [p, token, depth]) = up_to::<3>(payload)?;
                let depth = match count {
                    2 => None,
                    3 => Some(parse_u32(depth)?),
                    _ => return Err(ErrorCode::EINVAL),
                };
                Request::Watch { path: checked_path(p, true)?, token, depth }
            }
            Op::Unwatch => {
                let [p, token] = exact::<2>(payload)?;
                Request::Unwatch { path: checked_path(p, true)?, token }
            }
            Op::TransactionStart => Request::TransactionStart,
            Op::TransactionEnd => match exact::<1>(payload)? {
                [b"T"] => Request::TransactionEnd { commit: true },
                [b"F"] => Request::TransactionEnd { commit: false },
                _ => return Err(ErrorCode::EINVAL),
            },
            Op::Introduce => {
                let (count, [d, gfn, port, _]) = up_to::<4>(payload)?;
                if count < 3 {
                    return Err(ErrorCode::EINVAL);
                }
                Request::Introduce { domid: parse_domid(d)?, gfn: fields::parse_decimal(gfn)?, port: parse_u32(port)? }
            }
            Op::Release => Request::Release(one_domid(payload)?),
            Op::GetDomainPath => Request::GetDomainPath(one_domid(payload)?),
            Op::IsDomainIntroduced => Request::IsDomainIntroduced(one_domid(payload)?),
            Op::Resume => Request::Resume(one_domid(payload)?),
            Op::Write => {
                let (p, value) = head(payload)?;
                Request::Write { path: checked_path(p, false)?, value }
            }
            Op::SetPerms => {
                let (p, rest) = head(payload)?;
                Request::SetPerms { path: checked_path(p, true)?, perms: PermList::parse_nul_list(rest)? }
            }
            Op::SetTarget => {
                let [d, t] = exact::<2>(payload)?;
                Request::SetTarget { domid: parse_domid(d)?, target: parse_domid(t)? }
            }
            Op::ResetWatches => Request::ResetWatches,
            Op::GetFeature => match up_to::<1>(payload)? {
                (0, _) => Request::GetFeature(None),
                (_, [d]) => Request::GetFeature(Some(parse_domid(d)?)),
            },
            Op::SetFeature => {
                let [d, v] = exact::<2>(payload)?;
                Request::SetFeature { domid: parse_domid(d)?, value: parse_u32(v)? }
            }
            Op::GetQuota => match up_to::<2>(payload)? {
                (0, _) => Request::GetQuota { domid: None, quota: None },
                (1, [q, _]) => Request::GetQuota { domid: None, quota: Some(text(q)?) },
                (_, [d, q]) => Request::GetQuota { domid: Some(parse_domid(d)?), quota: Some(text(q)?) },
            },
            Op::SetQuota => match up_to::<3>(payload)? {
                (2, [q, v, _]) => Request::SetQuota { domid: None, quota: text(q)?, value: parse_u32(v)? },
                (3, [d, q, v]) => {
                    Request::SetQuota { domid: Some(parse_domid(d)?), quota: text(q)?, value: parse_u32(v)? }
                }
                _ => return Err(ErrorCode::EINVAL),
            },
            Op::WatchEvent | Op::Error | Op::Invalid => return Err(ErrorCode::ENOSYS),
        })
    }

    /// The operation this request is.
    pub fn op(&self) -> Op {
        match self {
            Request::Control(_) => Op::Control,
            Request::Directory(_) => Op::Directory,
            Request::DirectoryPart { .. } => Op::DirectoryPart,
            Request::Read(_) => Op::Read,
            Request::GetPerms(_) => Op::GetPerms,
            Request::Watch { .. } => Op::Watch,
            Request::Unwatch { .. } => Op::Unwatch,
            Request::TransactionStart => Op::TransactionStart,
            Request::TransactionEnd { .. } => Op::TransactionEnd,
            Request::Introduce { .. } => Op::Introduce,
            Request::Release(_) => Op::Release,
            Request::GetDomainPath(_) => Op::GetDomainPath,
            Request::Write { .. } => Op::Write,
            Request::Mkdir(_) => Op::Mkdir,
            Request::Rm(_) => Op::Rm,
            Request::SetPerms { .. } => Op::SetPerms,
            Request::IsDomainIntroduced(_) => Op::IsDomainIntroduced,
            Request::Resume(_) => Op::Resume,
            Request::SetTarget { .. } => Op::SetTarget,
            Request::ResetWatches => Op::ResetWatches,
            Request::GetFeature(_) => Op::GetFeature,
            Request::SetFeature { .. } => Op::SetFeature,
            Request::GetQuota { .. } => Op::GetQuota,
            Request::SetQuota { .. } => Op::SetQuota,
        }
    }

    /// The nul-separated arguments of a `CONTROL` request (command first).
    pub fn control_args(payload: &[u8]) -> impl Iterator<Item = &[u8]> {
        payload.strip_suffix(b"\0").unwrap_or(payload).split(|b| *b == 0)
    }

    /// Appends the payload (no header).
    pub fn encode_payload(&self, out: &mut Vec<u8>) {
        fn s(out: &mut Vec<u8>, bytes: &[u8]) {
            out.extend_from_slice(bytes);
            out.push(0);
        }
        fn n(out: &mut Vec<u8>, value: impl std::fmt::Display) {
            s(out, value.to_string().as_bytes());
        }
        match self {
            Request::Control(raw) => out.extend_from_slice(raw),
            Request::Directory(p) | Request::Read(p) | Request::GetPerms(p) | Request::Mkdir(p) | Request::Rm(p) => {
                s(out, p.as_bytes())
            }
            Request::DirectoryPart { path, offset } => {
                s(out, path.as_bytes());
                n(out, offset);
            }
            Request::Watch { path, token, depth } => {
                s(out, path.as_bytes());
                s(out, token);
                if let Some(depth) = depth {
                    n(out, depth);
                }
            }
            Request::Unwatch { path, token } => {
                s(out, path.as_bytes());
                s(out, token);
            }
            Request::TransactionStart | Request::ResetWatches => out.push(0),
            Request::TransactionEnd { commit } => s(out, if *commit { b"T" } else { b"F" }),
            Request::Introduce { domid, gfn, port } => {
                n(out, domid);
                n(out, gfn);
                n(out, port);
            }
            Request::Release(d) | Request::GetDomainPath(d) | Request::IsDomainIntroduced(d) | Request::Resume(d) => {
                n(out, d)
            }
            Request::Write { path, value } => {
                s(out, path.as_bytes());
                out.extend_from_slice(value);
            }
            Request::SetPerms { path, perms } => {
                s(out, path.as_bytes());
                perms.write_nul_list(out);
            }
            Request::SetTarget { domid, target } => {
                n(out, domid);
                n(out, target);
            }
            Request::GetFeature(domid) => {
                if let Some(d) = domid {
                    n(out, d);
                }
            }
            Request::SetFeature { domid, value } => {
                n(out, domid);
                n(out, value);
            }
            Request::GetQuota { domid, quota } => {
                if let Some(d) = domid {
                    n(out, d);
                }
                if let Some(q) = quota {
                    s(out, q.as_bytes());
                }
            }
            Request::SetQuota { domid, quota, value } => {
                if let Some(d) = domid {
                    n(out, d);
                }
                s(out, quota.as_bytes());
                n(out, value);
            }
        }
    }

    /// Appends the whole message, header included. Fails with `E2BIG`
    /// (appending nothing) if the payload would exceed [`crate::PAYLOAD_MAX`].
    pub fn encode(&self, req_id: u32, tx_id: u32, out: &mut Vec<u8>) -> Result<(), ErrorCode> {
        let start = out.len();
        out.extend_from_slice(&[0u8; crate::HEADER_LEN]);
        self.encode_payload(out);
        let len = out.len() - start - crate::HEADER_LEN;
        if len > crate::PAYLOAD_MAX {
            out.truncate(start);
            return Err(ErrorCode::E2BIG);
        }
        let header = Header { op: self.op() as u32, req_id, tx_id, len: u32::try_from(len).unwrap_or(u32::MAX) };
        if let Some(slot) = out.get_mut(start..start + crate::HEADER_LEN) {
            slot.copy_from_slice(&header.encode());
        }
        Ok(())
    }
}

/// A payload that is exactly one path and its nul.
fn one_path(payload: &[u8], allow_special: bool) -> Result<&str, ErrorCode> {
    let [p] = exact::<1>(payload)?;
    checked_path(p, allow_special)
}

/// A payload that is exactly one domid and its nul.
fn one_domid(payload: &[u8]) -> Result<DomId, ErrorCode> {
    let [d] = exact::<1>(payload)?;
    parse_domid(d)
}

fn checked_path(bytes: &[u8], allow_special: bool) -> Result<&str, ErrorCode> {
    path::check(bytes, allow_special)?;
    text(bytes)
}
