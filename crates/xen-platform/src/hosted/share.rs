//! A process's side of hosted Xen Share: requests to the hypervisor for
//! what it must check (membership, transfers), and direct eventfd writes
//! and atomic ORs in the trigger table for triggers, so raising one costs
//! no round trip.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::Duration;

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;

use super::client::Host;
use super::evtchn::signal;
use super::protocol::{invalid, Request, Response};
use crate::share::{BufferId, Completed, Segment, Share, ShareRef, Shares, USER_TRIGGERS};
use crate::{DomId, MappedPages};

/// Making and changing shares, and attaching them, over the hypervisor
/// connection.
#[derive(Debug, Clone)]
pub struct HostedShares {
    host: Host,
}

impl HostedShares {
    pub(crate) fn new(host: Host) -> HostedShares {
        HostedShares { host }
    }

    /// Attaches `share` as this process's domain (any member, not only
    /// dom0).
    pub fn attach_share(&self, share: ShareRef) -> io::Result<HostedShare> {
        let attached = Attached::fetch(&self.host, share)?;
        Ok(HostedShare { host: self.host.clone(), share, attached })
    }
}

impl Shares for HostedShares {
    fn create(&self, pages: usize, members: &[DomId]) -> io::Result<ShareRef> {
        match self.host.request(&Request::ShareCreate { pages, members: members.to_vec() })?.0 {
            Response::Share { share } => Ok(share),
            _ => Err(invalid("unexpected reply to ShareCreate")),
        }
    }

    fn add_member(&self, share: ShareRef, domid: DomId) -> io::Result<()> {
        self.host.request_done(&Request::ShareAdd { share, domid })
    }

    fn remove_member(&self, share: ShareRef, domid: DomId) -> io::Result<()> {
        self.host.request_done(&Request::ShareRemove { share, domid })
    }

    fn destroy(&self, share: ShareRef) -> io::Result<()> {
        self.host.request_done(&Request::ShareDestroy { share })
    }

    fn attach(&self, share: ShareRef) -> io::Result<Box<dyn Share>> {
        Ok(Box::new(self.attach_share(share)?))
    }

    fn vdevice(&self, domid: DomId) -> io::Result<ShareRef> {
        match self.host.request(&Request::VdeviceShare { domid })?.0 {
            Response::Share { share } => Ok(share),
            _ => Err(invalid("unexpected reply to VdeviceShare")),
        }
    }
}

/// One member's attachment of a share (see [`Share`]).
#[derive(Debug)]
pub struct HostedShare {
    host: Host,
    share: ShareRef,
    attached: Attached,
}

/// What one attach returned: a generation of the share.
#[derive(Debug)]
struct Attached {
    generation: u64,
    members: Vec<DomId>,
    me: usize,
    pages: MappedPages,
    /// The trigger table: member `i`'s word at `4 * i`.
    words: MappedPages,
    /// This member's wake-up: an edge-triggered epoll set, polled, its
    /// edges taken with `epoll_wait` (the hypervisor's `Wake`).
    wake: OwnedFd,
    /// The other members' wake-ups with their indices, signalled (a lone
    /// member's own, as index `me`).
    others: Vec<(usize, OwnedFd)>,
}

impl Attached {
    fn fetch(host: &Host, share: ShareRef) -> io::Result<Attached> {
        let (response, fds) = host.request(&Request::ShareAttach { share })?;
        let Response::ShareAttached { generation, pages, me, members } = response else {
            return Err(invalid("unexpected reply to ShareAttach"));
        };
        let signalled = members.len().saturating_sub(1).max(1);
        if me >= members.len() || fds.len() != signalled + 3 {
            return Err(invalid("inconsistent share description"));
        }
        let mut fds = fds.into_iter();
        let (Some(file), Some(words_file), Some(wake)) = (fds.next(), fds.next(), fds.next()) else {
            return Err(invalid("inconsistent share description"));
        };
        let pages = MappedPages::map(file.as_fd(), 0, pages, true)?;
        let words = MappedPages::map(words_file.as_fd(), 0, 1, true)?;
        let others = (0..members.len()).filter(|&i| i != me || members.len() == 1).zip(fds).collect();
        Ok(Attached { generation, members, me, pages, words, wake, others })
    }
}

impl AsFd for HostedShare {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.attached.wake.as_fd()
    }
}

impl Share for HostedShare {
    fn share_ref(&self) -> ShareRef {
        self.share
    }

    fn pages(&self) -> &MappedPages {
        &self.attached.pages
    }

    fn members(&self) -> &[DomId] {
        &self.attached.members
    }

    fn me(&self) -> usize {
        self.attached.me
    }

    fn generation(&self) -> u64 {
        self.attached.generation
    }

    fn trigger(&self, n: u32) -> io::Result<()> {
        if n >= USER_TRIGGERS {
            return Err(Errno::INVAL.into());
        }
        let words = self.attached.words.shared_mem();
        for (index, wake) in &self.attached.others {
            // The word first, so the woken member finds the bit. Always
            // signalled, even if the bit was set: a member that set bits
            // without signalling must not silence the others.
            words.fetch_or_u32(4 * index, 1 << n, Ordering::Release);
            signal(wake.as_fd())?;
        }
        Ok(())
    }

    fn take_pending(&mut self) -> io::Result<u32> {
        // The wake-up's edges first: a trigger raised after the swap below
        // signals again, so none is missed.
        let mut events = [std::mem::MaybeUninit::<rustix::event::epoll::Event>::uninit(); 2];
        let zero = Timespec { tv_sec: 0, tv_nsec: 0 };
        loop {
            match rustix::event::epoll::wait(&self.attached.wake, &mut events, Some(&zero)) {
                Ok(_) => break,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(self.attached.words.shared_mem().swap_u32(4 * self.attached.me, 0, Ordering::Acquire))
    }

    fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let timeout = timeout.map(|t| Timespec {
            tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(t.subsec_nanos()),
        });
        let mut fds = [PollFd::new(&self.attached.wake, PollFlags::IN)];
        loop {
            match poll(&mut fds, timeout.as_ref()) {
                Ok(n) => return Ok(n > 0),
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn refresh(&mut self) -> io::Result<()> {
        self.attached = Attached::fetch(&self.host, self.share)?;
        Ok(())
    }

    fn register(&mut self, key: u32, segments: &[Segment]) -> io::Result<BufferId> {
        let request = Request::ShareRegister {
            share: self.share,
            generation: self.attached.generation,
            key,
            segments: segments.to_vec(),
        };
        match self.host.request(&request)?.0 {
            Response::Buffer { id } => Ok(id),
            _ => Err(invalid("unexpected reply to ShareRegister")),
        }
    }

    fn transfer(&self, key: u32, segments: &[Segment]) -> io::Result<usize> {
        let request = Request::ShareTransfer {
            share: self.share,
            generation: self.attached.generation,
            key,
            segments: segments.to_vec(),
        };
        match self.host.request(&request)?.0 {
            Response::Transferred { len } => Ok(len),
            _ => Err(invalid("unexpected reply to ShareTransfer")),
        }
    }

    fn transfer_many(&self, transfers: &[(u32, &[Segment])]) -> io::Result<Vec<Result<usize, Errno>>> {
        if transfers.len() > crate::share::MAX_TRANSFER_BATCH {
            return Err(Errno::INVAL.into());
        }
        let transfers = transfers.iter().map(|&(key, segments)| (key, segments.to_vec())).collect();
        match self
            .host
            .request(&Request::ShareTransferMany {
                share: self.share,
                generation: self.attached.generation,
                transfers,
            })?
            .0
        {
            Response::TransferredMany { results } => {
                Ok(results.into_iter().map(|r| r.map_err(Errno::from_raw_os_error)).collect())
            }
            _ => Err(invalid("unexpected reply to ShareTransferMany")),
        }
    }

    fn unregister_all(&mut self) -> io::Result<()> {
        self.host.request_done(&Request::ShareUnregister { share: self.share })
    }

    fn take_completed(&mut self) -> io::Result<Vec<Completed>> {
        match self.host.request(&Request::ShareCompleted { share: self.share, generation: self.attached.generation })?.0
        {
            Response::Completed { completed } => Ok(completed),
            _ => Err(invalid("unexpected reply to ShareCompleted")),
        }
    }
}
