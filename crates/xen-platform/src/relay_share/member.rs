//! A guest's membership of a relayed share: its copy of the pages and
//! the control page, mapped from dom0's grants, and two channels to the
//! service: one its triggers come and go on (the one it polls), one its
//! requests are answered on (so that waiting for an answer never eats a
//! trigger's wake-up).

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustix::io::Errno;

use super::layout::{
    Answer, Op, Request, Standing, ANSWER, ANSWERED, ANSWER_LEN, ASKED, PENDING, RAISED, REQUEST, STATE,
};
use super::RelayOffer;
use crate::share::{BufferId, Completed, Segment, Share, ShareRef, MAX_SHARE_PAGES, MAX_TRANSFER_BATCH, USER_TRIGGERS};
use crate::{DomId, EventChannels, Grants, MappedPages, Port};

/// How long a member waits for the service's answer.
pub const ANSWER_PATIENCE: Duration = Duration::from_secs(10);

/// A guest member of a relayed share (see the module).
#[derive(Debug)]
pub struct RelayMember {
    share: ShareRef,
    pages: MappedPages,
    control: MappedPages,
    triggers: Box<dyn EventChannels>,
    trigger_port: Port,
    requests: Mutex<Requests>,
    generation: u64,
    members: Vec<DomId>,
    me: usize,
}

/// The request side: one request at a time.
#[derive(Debug)]
struct Requests {
    channels: Box<dyn EventChannels>,
    port: Port,
    scratch: Vec<Port>,
}

impl RelayMember {
    /// Accepts dom0's offer: maps this guest's copy and control page,
    /// binds the two channels (each on a handle of its own) and asks the
    /// service for the membership. A domain the offer was not made to is
    /// refused by the grants.
    pub fn accept(
        grants: &mut dyn Grants,
        mut triggers: Box<dyn EventChannels>,
        mut requests: Box<dyn EventChannels>,
        offer: &RelayOffer,
    ) -> io::Result<RelayMember> {
        if offer.refs.is_empty() || offer.refs.len() > MAX_SHARE_PAGES {
            return Err(Errno::INVAL.into());
        }
        let pages = grants.map_grants(0, &offer.refs, true)?;
        let control = grants.map_grants(0, &[offer.control], true)?;
        let trigger_port = triggers.bind_interdomain(0, offer.trigger)?;
        let request_port = requests.bind_interdomain(0, offer.request)?;
        let requests = Mutex::new(Requests { channels: requests, port: request_port, scratch: Vec::new() });
        let mut member = RelayMember {
            share: offer.share,
            pages,
            control,
            triggers,
            trigger_port,
            requests,
            generation: 0,
            members: Vec::new(),
            me: 0,
        };
        member.refresh()?;
        Ok(member)
    }

    /// Where the service says this member stands: `EPERM` once removed,
    /// `ENOENT` once the share is gone.
    fn standing(&self) -> Result<(), Errno> {
        match Standing::from_word(self.control.shared_mem().load_u32(STATE, Ordering::Acquire)) {
            Standing::Member => Ok(()),
            Standing::Removed => Err(Errno::PERM),
            Standing::Destroyed => Err(Errno::NOENT),
        }
    }

    /// Asks the service and waits for its answer (up to
    /// [`ANSWER_PATIENCE`]: `ETIMEDOUT`, the service is gone or stuck).
    fn ask(&self, op: Op, key: u32, segments: &[Segment]) -> io::Result<Answer> {
        self.ask_request(&Request {
            op,
            key,
            generation: self.generation,
            segments: segments.to_vec(),
            keys: Vec::new(),
        })
    }

    /// Asks `request`, as [`RelayMember::ask`].
    fn ask_request(&self, request: &Request) -> io::Result<Answer> {
        self.standing()?;
        let bytes = request.encode()?;
        let mut side = self.requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let control = self.control.shared_mem();
        let asked = control.load_u32(ASKED, Ordering::Relaxed).wrapping_add(1);
        control.write_bytes(REQUEST, &bytes);
        control.store_u32(ASKED, asked, Ordering::Release);
        side.channels.notify(side.port)?;
        let deadline = Instant::now() + ANSWER_PATIENCE;
        while control.load_u32(ANSWERED, Ordering::Acquire) != asked {
            self.standing()?;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "the share service did not answer"));
            }
            side.channels.wait(Some(left))?;
            let Requests { channels, scratch, .. } = &mut *side;
            scratch.clear();
            channels.take_pending(scratch)?;
        }
        let mut bytes = [0u8; ANSWER_LEN];
        control.read_bytes(ANSWER, &mut bytes);
        let answer = Answer::decode(&bytes)?;
        if answer.errno != 0 {
            return Err(io::Error::from_raw_os_error(answer.errno));
        }
        Ok(answer)
    }
}

impl AsFd for RelayMember {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.triggers.as_fd()
    }
}

impl Share for RelayMember {
    fn share_ref(&self) -> ShareRef {
        self.share
    }

    fn pages(&self) -> &MappedPages {
        &self.pages
    }

    fn members(&self) -> &[DomId] {
        &self.members
    }

    fn me(&self) -> usize {
        self.me
    }

    fn generation(&self) -> u64 {
        self.generation
    }

    fn trigger(&self, n: u32) -> io::Result<()> {
        if n >= USER_TRIGGERS {
            return Err(Errno::INVAL.into());
        }
        self.standing()?;
        // The word first, so the service finds the bit.
        self.control.shared_mem().fetch_or_u32(RAISED, 1 << n, Ordering::Release);
        self.triggers.notify(self.trigger_port)
    }

    fn take_pending(&mut self) -> io::Result<u32> {
        // The channel's events first: a trigger raised after the swap
        // below notifies again, so none is missed.
        let mut ports = Vec::new();
        self.triggers.take_pending(&mut ports)?;
        Ok(self.control.shared_mem().swap_u32(PENDING, 0, Ordering::Acquire))
    }

    fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
        self.triggers.wait(timeout)
    }

    /// The membership and this member's index may be new; the pages are
    /// not (each guest has its own copy, which a removal leaves alone).
    fn refresh(&mut self) -> io::Result<()> {
        let answer = self.ask(Op::Refresh, 0, &[])?;
        self.generation = answer.generation;
        self.me = usize::try_from(answer.me).map_err(|_| Errno::IO)?;
        self.members = answer.members;
        Ok(())
    }

    fn register(&mut self, key: u32, segments: &[Segment]) -> io::Result<BufferId> {
        Ok(self.ask(Op::Register, key, segments)?.value)
    }

    fn transfer(&self, key: u32, segments: &[Segment]) -> io::Result<usize> {
        usize::try_from(self.ask(Op::Transfer, key, segments)?.value).map_err(|_| Errno::IO.into())
    }

    /// One request for a batch of one-segment transfers (a LAN's frames),
    /// checked against the generation once: a change makes the whole call
    /// `ESTALE`, never a part of it. A batch with a transfer of several
    /// segments goes one request each.
    fn transfer_many(&self, transfers: &[(u32, &[Segment])]) -> io::Result<Vec<Result<usize, Errno>>> {
        if transfers.len() > MAX_TRANSFER_BATCH {
            return Err(Errno::INVAL.into());
        }
        if transfers.iter().all(|(_, segments)| segments.len() == 1) {
            let request = Request {
                op: Op::TransferMany,
                key: 0,
                generation: self.generation,
                segments: transfers.iter().map(|(_, segments)| segments[0]).collect(),
                keys: transfers.iter().map(|&(key, _)| key).collect(),
            };
            let answer = self.ask_request(&request)?;
            if answer.results.len() != transfers.len() {
                return Err(Errno::IO.into());
            }
            return Ok(answer.results);
        }
        crate::share::transfer_each(self, transfers)
    }

    fn take_completed(&mut self) -> io::Result<Vec<Completed>> {
        Ok(self.ask(Op::Completed, 0, &[])?.completed)
    }

    fn unregister_all(&mut self) -> io::Result<()> {
        self.ask(Op::Unregister, 0, &[]).map(drop)
    }
}
