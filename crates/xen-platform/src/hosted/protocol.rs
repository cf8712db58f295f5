//! What processes and the hosted hypervisor say to each other, and how it
//! travels.
//!
//! One request, then one response, per connection at a time. A message is
//! JSON ([`Request`] or [`Response`]) carried in one or more
//! `SOCK_SEQPACKET` records: each record is one flag byte ([`LAST`] on the
//! final record) and a piece of the JSON. File descriptors a message
//! carries ride, as `SCM_RIGHTS`, on its first record; the response names
//! what each one is.
//!
//! The receiver distrusts everything: a record that is truncated, a
//! message over [`MAX_MESSAGE`], JSON that does not parse or descriptors
//! nobody asked for are errors, never panics.

use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::io::Errno;
use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde::{Deserialize, Serialize};

use crate::share::{BufferId, Completed, Segment, ShareRef};
use crate::{DomId, DomainConfig, DomainInfo, DomainState, GrantRef, NewDomain, Port, ShutdownReason, Virq};

/// The flag byte of a message's final record.
pub(crate) const LAST: u8 = 1;

/// The most JSON bytes one record carries.
pub(crate) const CHUNK: usize = 32 * 1024;

/// The longest message either side accepts (a `list` of thousands of
/// domains fits easily).
pub(crate) const MAX_MESSAGE: usize = 8 * 1024 * 1024;

/// The most descriptors one message carries (the kernel's `SCM_MAX_FD`
/// is 253).
pub(crate) const MAX_FDS: usize = 250;

/// A request to the hypervisor. The caller's domain is the connection's,
/// never a field: a guest cannot claim to be someone else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Request {
    /// A guest asks for its start information; the store page comes as a
    /// descriptor.
    GuestStart,
    /// SCHEDOP_shutdown: the calling guest shuts itself down.
    ShutdownSelf { reason: ShutdownReason },
    /// EVTCHNOP_alloc_unbound.
    AllocUnbound { remote: DomId },
    /// EVTCHNOP_bind_interdomain.
    BindInterdomain { remote: DomId, remote_port: Port },
    /// EVTCHNOP_bind_virq.
    BindVirq { virq: Virq },
    /// Hosted only: bind a port of the caller's domain that nobody holds.
    Claim { port: Port },
    /// EVTCHNOP_close.
    Unbind { port: Port },
    /// Hosted only: a private connection for the calling process, of the
    /// same domain; one descriptor in [`Response::Done`]. A guest's
    /// inherited socket is shared by every process the guest starts, so
    /// each process takes its own first and talks over that.
    OwnConnection,
    /// Hosted only: stop holding a claimed port but keep it, so that the
    /// next process of the domain can claim it (a shell running one
    /// `xenstore` command after another).
    Release { port: Port },
    /// Map another domain's frames (privcmd).
    MapForeign { domid: DomId, gfn: u64, count: usize },
    /// Allocate and grant pages (gntalloc).
    GrantPages { remote: DomId, count: usize, writable: bool },
    /// End grants the caller made.
    EndGrants { refs: Vec<GrantRef> },
    /// Map pages granted to the caller (gntdev).
    MapGrants { remote: DomId, refs: Vec<GrantRef>, writable: bool },
    /// XEN_DOMCTL_createdomain, and start the domain's process paused.
    Create { config: DomainConfig },
    /// XEN_DOMCTL_unpausedomain.
    Unpause { domid: DomId },
    /// XEN_DOMCTL_pausedomain.
    Pause { domid: DomId },
    /// Shut a domain down for a reason.
    Shutdown { domid: DomId, reason: ShutdownReason },
    /// XEN_DOMCTL_destroydomain.
    Destroy { domid: DomId },
    /// XEN_SYSCTL_getdomaininfolist.
    List,
    /// XEN_DOMCTL_getdomaininfo: one domain, so that asking about one
    /// does not list them all.
    Info { domid: DomId },
    /// Xen 4.21's XEN_DOMCTL_get_domain_state: the domains whose state
    /// changed since this connection last asked ([`Response::Changed`]);
    /// with `fresh`, or on a connection that never asked, every domain
    /// ([`Response::Domains`]) and tracking from now on.
    ChangedDomains { fresh: bool },
    /// Xen Share: dom0 makes a share.
    ShareCreate { pages: usize, members: Vec<DomId> },
    /// Xen Share: dom0 lets a domain attach a share.
    ShareAdd { share: ShareRef, domid: DomId },
    /// Xen Share: dom0 cuts a domain off a share.
    ShareRemove { share: ShareRef, domid: DomId },
    /// Xen Share: dom0 ends a share.
    ShareDestroy { share: ShareRef },
    /// Xen Share: a member maps a share (and again after a change).
    ShareAttach { share: ShareRef },
    /// Xen Share: a member offers a receive buffer on a key. Like every
    /// request that reads or writes the pages, it names the generation
    /// the member mapped, and is refused (`ESTALE`) on another.
    ShareRegister { share: ShareRef, generation: u64, key: u32, segments: Vec<Segment> },
    /// Xen Share: a member copies into another's buffer on a key.
    ShareTransfer { share: ShareRef, generation: u64, key: u32, segments: Vec<Segment> },
    /// Xen Share: several transfers in one request, each a key and its
    /// segments.
    ShareTransferMany { share: ShareRef, generation: u64, transfers: Vec<(u32, Vec<Segment>)> },
    /// Xen Share: a member takes its filled buffers.
    ShareCompleted { share: ShareRef, generation: u64 },
    /// Xen Share: a member withdraws every buffer it registered.
    ShareUnregister { share: ShareRef },
    /// The share of a domain's vdevice page, made on first use.
    VdeviceShare { domid: DomId },
}

/// The hypervisor's answer; descriptors, if any, in the order each
/// variant documents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Response {
    /// Done; nothing to return.
    Done,
    /// Failed with a Xen-like errno (EPERM, ESRCH, EINVAL, EBUSY...).
    Error { errno: i32, message: String },
    /// For [`Request::GuestStart`]; one descriptor: the store page.
    Start { domid: DomId, store_port: Port },
    /// A port bound locally; descriptors: the eventfd to poll, then the
    /// eventfd that signals the peer.
    Port { port: Port },
    /// A virq port; one descriptor: the eventfd to poll.
    Virq { port: Port },
    /// For [`Request::MapForeign`]; one descriptor: the file holding the
    /// frames, mapped from its first page.
    Pages,
    /// For [`Request::GrantPages`]; one descriptor: the pages, one ref
    /// each in order.
    Granted { refs: Vec<GrantRef> },
    /// For [`Request::MapGrants`]: per ref, the index of its descriptor
    /// and its page in that file.
    Segments { pages: Vec<(usize, u64)> },
    /// For [`Request::Create`].
    Created { domain: NewDomain },
    /// For [`Request::List`] (and a fresh [`Request::ChangedDomains`]).
    Domains { domains: Vec<DomainInfo> },
    /// For [`Request::Info`]: the domain, if there is one.
    Info { domain: Option<DomainInfo> },
    /// For [`Request::ChangedDomains`]: per changed domain in id order,
    /// its state, `None` if gone (a domain destroyed and made again comes
    /// twice).
    Changed { changes: Vec<(DomId, Option<DomainState>)> },
    /// For [`Request::ShareCreate`] and [`Request::VdeviceShare`].
    Share { share: ShareRef },
    /// For [`Request::ShareAttach`]; descriptors: the pages, the trigger
    /// table (one page), the caller's wake-up, then every other member's
    /// wake-up in member order.
    ShareAttached { generation: u64, pages: usize, me: usize, members: Vec<DomId> },
    /// For [`Request::ShareRegister`].
    Buffer { id: BufferId },
    /// For [`Request::ShareTransfer`]: the bytes copied.
    Transferred { len: usize },
    /// For [`Request::ShareTransferMany`]: per transfer, the bytes copied
    /// or the errno.
    TransferredMany { results: Vec<Result<usize, i32>> },
    /// For [`Request::ShareCompleted`].
    Completed { completed: Vec<Completed> },
}

#[cfg(feature = "hosted-hypervisor")]
impl Response {
    /// An error reply carrying `errno`.
    pub(crate) fn error(errno: Errno, message: impl Into<String>) -> Response {
        Response::Error { errno: errno.raw_os_error(), message: message.into() }
    }
}

/// One record ready to send: its bytes and the descriptors it carries.
#[derive(Debug)]
pub(crate) struct Record {
    pub(crate) bytes: Vec<u8>,
    pub(crate) fds: Vec<OwnedFd>,
}

/// Splits a message into records; `fds` ride on the first.
pub(crate) fn encode<T: Serialize>(message: &T, fds: Vec<OwnedFd>) -> io::Result<VecDeque<Record>> {
    let json = serde_json::to_vec(message).map_err(io::Error::other)?;
    if json.len() > MAX_MESSAGE || fds.len() > MAX_FDS {
        return Err(io::Error::from(Errno::TOOBIG));
    }
    let mut records = VecDeque::new();
    let mut fds = Some(fds);
    let mut pieces = json.chunks(CHUNK).peekable();
    while let Some(piece) = pieces.next() {
        let flag = if pieces.peek().is_none() { LAST } else { 0 };
        let mut bytes = Vec::with_capacity(piece.len() + 1);
        bytes.push(flag);
        bytes.extend_from_slice(piece);
        records.push_back(Record { bytes, fds: fds.take().unwrap_or_default() });
    }
    Ok(records)
}

/// Sends one record. `Err(WouldBlock)` when `nonblocking` and the socket
/// is full; the record is then unsent.
pub(crate) fn send_record(socket: BorrowedFd<'_>, record: &Record, nonblocking: bool) -> io::Result<()> {
    let borrowed: Vec<BorrowedFd<'_>> = record.fds.iter().map(|fd| fd.as_fd()).collect();
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !borrowed.is_empty() && !control.push(SendAncillaryMessage::ScmRights(&borrowed)) {
        return Err(io::Error::from(Errno::TOOBIG));
    }
    let mut flags = SendFlags::NOSIGNAL;
    if nonblocking {
        flags |= SendFlags::DONTWAIT;
    }
    loop {
        match sendmsg(socket, &[IoSlice::new(&record.bytes)], &mut control, flags) {
            Ok(_) => return Ok(()),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// What receiving one record gave.
#[derive(Debug)]
pub(crate) enum Received {
    /// The peer closed the connection.
    Closed,
    /// Nothing to read now (non-blocking sockets only).
    Empty,
    /// A record: whether it is the last of its message, its payload and
    /// any descriptors it carried (close-on-exec).
    Record { last: bool, payload: Vec<u8>, fds: Vec<OwnedFd> },
}

/// Receives one record. A truncated record or a bad flag byte is
/// `InvalidData`.
pub(crate) fn recv_record(socket: BorrowedFd<'_>, nonblocking: bool) -> io::Result<Received> {
    let mut buf = vec![0u8; CHUNK + 1];
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut flags = RecvFlags::CMSG_CLOEXEC;
    if nonblocking {
        flags |= RecvFlags::DONTWAIT;
    }
    let got = loop {
        match recvmsg(socket, &mut [IoSliceMut::new(&mut buf)], &mut control, flags) {
            Ok(got) => break got,
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return Ok(Received::Empty),
            Err(e) => return Err(e.into()),
        }
    };
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    if got.bytes == 0 {
        return Ok(Received::Closed);
    }
    if got.flags.intersects(ReturnFlags::TRUNC | ReturnFlags::CTRUNC) || got.bytes > buf.len() {
        return Err(invalid("truncated record"));
    }
    let last = match buf[0] {
        0 => false,
        LAST => true,
        _ => return Err(invalid("bad record flag")),
    };
    buf.truncate(got.bytes);
    buf.remove(0);
    Ok(Received::Record { last, payload: buf, fds })
}

/// Gathers records into whole messages, within [`MAX_MESSAGE`] and
/// [`MAX_FDS`].
#[derive(Debug, Default)]
pub(crate) struct Assembler {
    json: Vec<u8>,
    fds: Vec<OwnedFd>,
}

impl Assembler {
    /// Adds a record; returns the message's JSON and descriptors when the
    /// record was its last.
    pub(crate) fn push(
        &mut self,
        last: bool,
        payload: &[u8],
        fds: Vec<OwnedFd>,
    ) -> io::Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
        if self.json.len() + payload.len() > MAX_MESSAGE || self.fds.len() + fds.len() > MAX_FDS {
            return Err(invalid("message too long"));
        }
        self.json.extend_from_slice(payload);
        self.fds.extend(fds);
        if last {
            Ok(Some((std::mem::take(&mut self.json), std::mem::take(&mut self.fds))))
        } else {
            Ok(None)
        }
    }
}

/// An `InvalidData` error: the peer broke the protocol.
pub(crate) fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_message_splits_into_records_with_last_flag_on_the_final_one() {
        let domains = (0..5000)
            .map(|i| DomainInfo { domid: i, name: format!("guest-{i}"), state: crate::DomainState::Running, pid: None })
            .collect();
        let records = encode(&Response::Domains { domains }, Vec::new()).unwrap();
        assert!(records.len() > 1);
        let flags: Vec<u8> = records.iter().map(|r| r.bytes[0]).collect();
        assert!(flags[..flags.len() - 1].iter().all(|&f| f == 0));
        assert_eq!(flags[flags.len() - 1], LAST);
    }

    #[test]
    fn assembler_refuses_message_over_limit() {
        let mut assembler = Assembler::default();
        let piece = vec![b' '; CHUNK];
        let mut result = Ok(None);
        for _ in 0..=MAX_MESSAGE / CHUNK {
            result = assembler.push(false, &piece, Vec::new());
            if result.is_err() {
                break;
            }
        }
        assert!(result.is_err());
    }
}
