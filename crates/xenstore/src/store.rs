//! The node operations, shared by a connection and a transaction.

use xenstore_wire::{ErrorCode, Op, PermList, Reply, Request};

use crate::core::DirectoryListing;
use crate::error::{Error, ProtocolError};

/// Node operations (`docs/misc/xenstore.txt`, "Xenstore protocol details"),
/// implemented by [`Client`](crate::Client) (outside any transaction) and
/// by [`Transaction`](crate::Transaction) (inside it). Generic code written
/// against `Store` works either way, as the C tools' `xth` argument does.
pub trait Store {
    /// Sends one typed request and waits for its reply.
    fn request(&self, request: &Request<'_>) -> Result<Reply, Error>;

    /// Sends a request whose payload the caller built (for payloads the
    /// typed [`Request`] cannot express) and returns the reply's payload.
    fn request_raw(&self, op: Op, payload: &[u8]) -> Result<Vec<u8>, Error>;

    /// `READ <path>|`: the node's value.
    fn read(&self, path: &str) -> Result<Vec<u8>, Error> {
        match self.request(&Request::Read(path))? {
            Reply::Read(value) => Ok(value.to_vec()),
            _ => Err(malformed(Op::Read)),
        }
    }

    /// `WRITE <path>|<value>`: sets the value, creating the node and any
    /// missing parents. The value is sent as is, without a terminator.
    fn write(&self, path: &str, value: &[u8]) -> Result<(), Error> {
        expect_ok(Op::Write, self.request(&Request::Write { path, value })?)
    }

    /// `MKDIR <path>|`: creates the node (empty) and missing parents; an
    /// existing node is left alone.
    fn mkdir(&self, path: &str) -> Result<(), Error> {
        expect_ok(Op::Mkdir, self.request(&Request::Mkdir(path))?)
    }

    /// `RM <path>|`: removes the node and everything below it. A missing
    /// node is fine, a missing parent is `ENOENT`.
    fn rm(&self, path: &str) -> Result<(), Error> {
        expect_ok(Op::Rm, self.request(&Request::Rm(path))?)
    }

    /// `DIRECTORY <path>|`: the children's names in creation order. Falls
    /// back to `DIRECTORY_PART` when the list does not fit in one payload
    /// (see [`DirectoryListing`]).
    fn directory(&self, path: &str) -> Result<Vec<String>, Error> {
        let mut listing = DirectoryListing::new(path);
        loop {
            let reply = self.request(&listing.request());
            if let Some(names) = listing.on_reply(reply)? {
                return Ok(names);
            }
        }
    }

    /// `GET_PERMS <path>|`: the node's permissions, owner first.
    fn get_perms(&self, path: &str) -> Result<PermList, Error> {
        match self.request(&Request::GetPerms(path))? {
            Reply::GetPerms(perms) => Ok(perms),
            _ => Err(malformed(Op::GetPerms)),
        }
    }

    /// `SET_PERMS <path>|<perm>|+`: replaces the node's permissions.
    fn set_perms(&self, path: &str, perms: &PermList) -> Result<(), Error> {
        expect_ok(Op::SetPerms, self.request(&Request::SetPerms { path, perms: perms.clone() })?)
    }

    /// Whether the node exists: a `READ` that succeeds, `false` on `ENOENT`.
    fn exists(&self, path: &str) -> Result<bool, Error> {
        match self.read(path) {
            Ok(_) => Ok(true),
            Err(Error::Xs(ErrorCode::ENOENT)) => Ok(false),
            Err(err) => Err(err),
        }
    }
}

pub(crate) fn malformed(op: Op) -> Error {
    Error::Protocol(ProtocolError::MalformedReply { op })
}

pub(crate) fn expect_ok(op: Op, reply: Reply) -> Result<(), Error> {
    match reply {
        Reply::Ok => Ok(()),
        _ => Err(malformed(op)),
    }
}

pub(crate) fn expect_tx_id(reply: Reply) -> Result<u32, Error> {
    match reply {
        Reply::TransactionStart(id) => Ok(id),
        _ => Err(malformed(Op::TransactionStart)),
    }
}

pub(crate) fn expect_domain_path(reply: Reply) -> Result<String, Error> {
    match reply {
        Reply::DomainPath(path) => Ok(path),
        _ => Err(malformed(Op::GetDomainPath)),
    }
}

pub(crate) fn expect_bool(reply: Reply) -> Result<bool, Error> {
    match reply {
        Reply::Bool(b) => Ok(b),
        _ => Err(malformed(Op::IsDomainIntroduced)),
    }
}

pub(crate) fn expect_text(reply: Reply) -> Result<Vec<u8>, Error> {
    match reply {
        Reply::Text(text) => Ok(text),
        _ => Err(malformed(Op::Control)),
    }
}

/// The `CONTROL` payload for `args` (command first): each argument and its
/// nul, as `xenstore-control` sends them.
pub(crate) fn control_payload(args: &[&[u8]]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(args.iter().map(|a| a.len() + 1).sum());
    for arg in args {
        payload.extend_from_slice(arg);
        payload.push(0);
    }
    payload
}

/// A token must be one nul-free string on the wire.
/// After a WATCH reply, for both the blocking and the async watch handles:
/// remember the registration on success, or undo its event route
/// (`unroute`) on failure.
pub(crate) fn settle_watch(
    result: Result<Reply, Error>,
    registered: &mut Vec<(String, Vec<u8>)>,
    path: &str,
    token: &[u8],
    unroute: impl FnOnce(),
) -> Result<(), Error> {
    match result.and_then(|reply| expect_ok(Op::Watch, reply)) {
        Ok(()) => {
            registered.push((path.to_owned(), token.to_vec()));
            Ok(())
        }
        Err(err) => {
            unroute();
            Err(err)
        }
    }
}

pub(crate) fn check_token(token: &[u8]) -> Result<(), Error> {
    if token.contains(&0) {
        Err(Error::Xs(ErrorCode::EINVAL))
    } else {
        Ok(())
    }
}
