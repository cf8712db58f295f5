//! dom0's share service: shares of any members made of what Xen has
//! (`docs/xen-share.md`, "On Xen"). Each guest member gets its own copy
//! of the pages and a control page, granted to it alone, and two event
//! channels to the service (triggers, requests); dom0's copy is the
//! service's own memory. The service relays triggers, answers requests
//! and copies transfers from the sender's copy into the receiver's.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags, Timespec};
use rustix::io::Errno;

use super::buffers::Buffers;
use super::layout::{
    Answer, Op, Request, Standing, ANSWER, ANSWERED, ASKED, PENDING, RAISED, REQUEST, REQUEST_LEN, STATE,
};
use super::RelayOffer;
use crate::share::{
    check_segments, Segment, Share as _, ShareRef, Shares, MAX_MEMBERS, MAX_SHARES, MAX_SHARE_PAGES, MAX_TRANSFER,
    TRIGGER_CHANGED, TRIGGER_TRANSFERRED, USER_TRIGGERS,
};
use crate::{DomId, EventChannels, GrantedPages, Grants, MappedPages, Port, PAGE_SIZE};

/// The bits of the user triggers: a member raises only those.
const USER_BITS: u32 = (1 << USER_TRIGGERS) - 1;

/// How the service rings a guest's port.
type Notify<'a> = dyn Fn(Port) + 'a;

/// Rings ports on `channels`. A guest whose channel is gone hears
/// nothing; the others still do.
fn notifier(channels: &dyn EventChannels) -> impl Fn(Port) + '_ {
    move |port| {
        let _ = channels.notify(port);
    }
}

/// How often the service thread looks whether it is to stop.
const TICK: Duration = Duration::from_millis(100);

/// `gntalloc`'s default limit on the pages it grants in all
/// (`xen_gntalloc.limit`).
pub const GNTALLOC_LIMIT: usize = 1024;

/// The service (see the module). Made by dom0 on its own grants and an
/// event-channel handle of its own; serves in a thread until dropped.
#[derive(Debug)]
pub struct RelayShares {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    stop: AtomicBool,
}

#[derive(Debug)]
struct State {
    grants: Box<dyn Grants>,
    channels: Box<dyn EventChannels>,
    shares: BTreeMap<ShareRef, RShare>,
    /// Every guest member's two ports: whose they are.
    ports: HashMap<Port, (ShareRef, DomId)>,
    next: ShareRef,
    /// Pages granted, against `page_limit`.
    granted: usize,
    page_limit: usize,
}

/// One share.
#[derive(Debug)]
struct RShare {
    pages: usize,
    members: Vec<Member>,
    generation: u64,
    buffers: Buffers,
}

#[derive(Debug)]
struct Member {
    domid: DomId,
    held: Held,
}

#[derive(Debug)]
enum Held {
    Guest(Guest),
    Dom0(Arc<Local>),
}

/// A guest member's copy, control page and ports.
#[derive(Debug)]
struct Guest {
    pages: GrantedPages,
    control: GrantedPages,
    trigger: Port,
    request: Port,
    /// The request counter last answered.
    answered: u32,
}

/// dom0's copy of a share, and its wake-up: shared with its attachments.
#[derive(Debug)]
struct Local {
    pages: MappedPages,
    pending: AtomicU32,
    /// Readable while triggers are pending; dom0's alone.
    wake: OwnedFd,
}

impl Member {
    fn mem(&self) -> &MappedPages {
        match &self.held {
            Held::Guest(guest) => guest.pages.pages(),
            Held::Dom0(local) => &local.pages,
        }
    }

    /// Raises `bits` in this member.
    fn raise(&self, notify: &Notify<'_>, bits: u32) {
        match &self.held {
            Held::Guest(guest) => {
                guest.control.pages().shared_mem().fetch_or_u32(PENDING, bits, Ordering::Release);
                notify(guest.trigger);
            }
            Held::Dom0(local) => {
                local.pending.fetch_or(bits, Ordering::Release);
                let _ = rustix::io::write(&local.wake, &1u64.to_ne_bytes());
            }
        }
    }

    /// Tells the member where it stands now, and wakes it to look.
    fn stand(&self, notify: &Notify<'_>, standing: Standing) {
        if let Held::Guest(guest) = &self.held {
            guest.control.pages().shared_mem().store_u32(STATE, standing as u32, Ordering::Release);
        }
        self.raise(notify, 1 << TRIGGER_CHANGED);
    }
}

impl RShare {
    fn index_of(&self, domid: DomId) -> Option<usize> {
        self.members.iter().position(|m| m.domid == domid)
    }

    fn domids(&self) -> Vec<DomId> {
        self.members.iter().map(|m| m.domid).collect()
    }

    /// Member `from` raises `bits` in every other member (in itself when
    /// it is alone).
    fn relay(&self, notify: &Notify<'_>, from: usize, bits: u32) {
        for (i, member) in self.members.iter().enumerate() {
            if i != from || self.members.len() == 1 {
                member.raise(notify, bits);
            }
        }
    }

    fn current(&self, generation: u64) -> Result<(), Errno> {
        if generation == self.generation {
            Ok(())
        } else {
            Err(Errno::STALE)
        }
    }

    /// Copies `segments` of member `from`'s copy into the first free
    /// buffer another member registered on `key`, in that member's copy.
    fn transfer(&mut self, notify: &Notify<'_>, from: usize, key: u32, segments: &[Segment]) -> Result<usize, Errno> {
        let share_len = self.pages * PAGE_SIZE;
        let len = check_segments(segments, share_len)?;
        if len > MAX_TRANSFER {
            return Err(Errno::MSGSIZE);
        }
        let sender = self.members.get(from).ok_or(Errno::PERM)?;
        let (index, owner, into) = self.buffers.free_for(key, sender.domid, len)?;
        let receiver = self.index_of(owner).ok_or(Errno::AGAIN)?;
        let mut data = Vec::with_capacity(len);
        let source = sender.mem().shared_mem();
        for range in segments.iter().filter_map(|s| s.range_within(share_len)) {
            let start = data.len();
            data.resize(start + range.len(), 0);
            source.read_bytes(range.start, &mut data[start..]);
        }
        let target = self.members[receiver].mem().shared_mem();
        let mut written = 0;
        for range in into.iter().filter_map(|s| s.range_within(share_len)) {
            if written == len {
                break;
            }
            let n = range.len().min(len - written);
            target.write_bytes(range.start, &data[written..written + n]);
            written += n;
        }
        self.buffers.fill(index, len);
        self.members[receiver].raise(notify, 1 << TRIGGER_TRANSFERRED);
        Ok(len)
    }

    /// Looks at guest member `index`'s control page: relays the triggers
    /// it raised, answers its request if it made a new one.
    fn serve_member(&mut self, notify: &Notify<'_>, index: usize) {
        let Some(Held::Guest(guest)) = self.members.get(index).map(|m| &m.held) else { return };
        let control = guest.control.pages().shared_mem();
        let raised = control.swap_u32(RAISED, 0, Ordering::Acquire) & USER_BITS;
        if raised != 0 {
            self.relay(notify, index, raised);
        }
        let asked = control.load_u32(ASKED, Ordering::Acquire);
        if asked == guest.answered {
            return;
        }
        // Copied out first: what the guest writes from now on is not
        // looked at.
        let mut bytes = [0u8; REQUEST_LEN];
        control.read_bytes(REQUEST, &mut bytes);
        let answer = Request::decode(&bytes)
            .and_then(|request| self.answer(notify, index, request))
            .unwrap_or_else(Answer::failed);
        let Held::Guest(guest) = &mut self.members[index].held else { return };
        let control = guest.control.pages().shared_mem();
        control.write_bytes(ANSWER, &answer.encode());
        control.store_u32(ANSWERED, asked, Ordering::Release);
        guest.answered = asked;
        notify(guest.request);
    }

    /// What member `index` asked.
    fn answer(&mut self, notify: &Notify<'_>, index: usize, request: Request) -> Result<Answer, Errno> {
        let domid = self.members[index].domid;
        let ok = |value: u64| Answer { value, ..Answer::default() };
        match request.op {
            Op::Refresh => Ok(Answer {
                generation: self.generation,
                me: u32::try_from(index).unwrap_or(u32::MAX),
                members: self.domids(),
                ..Answer::default()
            }),
            Op::Register => {
                self.current(request.generation)?;
                let share_len = self.pages * PAGE_SIZE;
                self.buffers.register(domid, request.key, &request.segments, share_len).map(ok)
            }
            Op::Transfer => {
                self.current(request.generation)?;
                self.transfer(notify, index, request.key, &request.segments).map(|n| ok(n as u64))
            }
            Op::Completed => {
                self.current(request.generation)?;
                Ok(Answer { completed: self.buffers.take(domid), ..Answer::default() })
            }
            Op::Unregister => {
                self.buffers.retain_owners(|owner| owner != domid);
                Ok(ok(0))
            }
            Op::TransferMany => {
                self.current(request.generation)?;
                let results = request
                    .segments
                    .iter()
                    .zip(&request.keys)
                    .map(|(segment, &key)| self.transfer(notify, index, key, std::slice::from_ref(segment)))
                    .collect();
                Ok(Answer { results, ..Answer::default() })
            }
        }
    }
}

impl State {
    /// The pages a guest member costs.
    fn cost(pages: usize) -> usize {
        pages + 1
    }

    /// Makes `domid`'s membership of a share of `pages` pages.
    fn join(&mut self, share: ShareRef, pages: usize, domid: DomId) -> io::Result<Member> {
        if domid == 0 {
            return Ok(Member { domid, held: Held::Dom0(Arc::new(Local::new(pages)?)) });
        }
        if self.granted + State::cost(pages) > self.page_limit {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!("granting {} more pages would pass the limit of {}", State::cost(pages), self.page_limit),
            ));
        }
        let copy = self.grants.grant_pages(domid, pages, true)?;
        let control = self.grants.grant_pages(domid, 1, true)?;
        let trigger = self.channels.alloc_unbound(domid)?;
        let request = match self.channels.alloc_unbound(domid) {
            Ok(port) => port,
            Err(e) => {
                let _ = self.channels.unbind(trigger);
                return Err(e);
            }
        };
        self.ports.insert(trigger, (share, domid));
        self.ports.insert(request, (share, domid));
        self.granted += State::cost(pages);
        Ok(Member { domid, held: Held::Guest(Guest { pages: copy, control, trigger, request, answered: 0 }) })
    }

    /// Lets go of a member's grants and ports (after it was told).
    fn release(&mut self, pages: usize, member: Member) {
        if let Held::Guest(guest) = member.held {
            for port in [guest.trigger, guest.request] {
                self.ports.remove(&port);
                let _ = self.channels.unbind(port);
            }
            self.granted -= State::cost(pages);
            // The grants end as `guest` goes: Xen frees the pages once the
            // guest unmaps them.
        }
    }

    fn get(&mut self, share: ShareRef) -> io::Result<&mut RShare> {
        self.shares.get_mut(&share).ok_or_else(|| Errno::NOENT.into())
    }

    /// A guest's port fired: its raised triggers are relayed, its request
    /// (if a new one) answered.
    fn serve_port(&mut self, port: Port) {
        let Some(&(reference, domid)) = self.ports.get(&port) else { return };
        let channels = &*self.channels;
        let Some(share) = self.shares.get_mut(&reference) else { return };
        let Some(index) = share.index_of(domid) else { return };
        share.serve_member(&notifier(channels), index);
    }

    /// Takes `domid` out of share `reference`: it is told, its grants
    /// and ports go, the others see [`TRIGGER_CHANGED`]. The buffers of
    /// it and of every member after it go (their index moves, and a
    /// member lays its buffers out by index), as hosted.
    fn remove(&mut self, reference: ShareRef, domid: DomId) -> io::Result<()> {
        let share = self.get(reference)?;
        let index = share.index_of(domid).ok_or(Errno::NOENT)?;
        let kept: Vec<DomId> = share.members[..index].iter().map(|m| m.domid).collect();
        share.buffers.retain_owners(|owner| kept.contains(&owner));
        let member = share.members.remove(index);
        share.generation += 1;
        let pages = share.pages;
        member.stand(&notifier(&*self.channels), Standing::Removed);
        let share = self.shares.get(&reference).ok_or(Errno::NOENT)?;
        for other in &share.members {
            other.raise(&notifier(&*self.channels), 1 << TRIGGER_CHANGED);
        }
        self.release(pages, member);
        Ok(())
    }
}

/// `pages` zeroed pages of this process's own, mapped.
fn memory(pages: usize) -> io::Result<MappedPages> {
    let file = rustix::fs::memfd_create("xen-share-dom0", rustix::fs::MemfdFlags::CLOEXEC)?;
    rustix::fs::ftruncate(&file, (pages * PAGE_SIZE) as u64)?;
    MappedPages::map(file.as_fd(), 0, pages, true)
}

impl Local {
    fn new(pages: usize) -> io::Result<Local> {
        let pages = memory(pages)?;
        let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(Local { pages, pending: AtomicU32::new(0), wake })
    }
}

impl RelayShares {
    /// Starts the service on dom0's `grants` and a `channels` handle of
    /// its own, granting at most `page_limit` pages in all (guest members
    /// cost a share's pages and one more each; see [`GNTALLOC_LIMIT`]).
    pub fn start(
        grants: Box<dyn Grants>,
        channels: Box<dyn EventChannels>,
        page_limit: usize,
    ) -> io::Result<RelayShares> {
        let poll_fd = rustix::io::fcntl_dupfd_cloexec(channels.as_fd(), 0)?;
        let state =
            State { grants, channels, shares: BTreeMap::new(), ports: HashMap::new(), next: 1, granted: 0, page_limit };
        let inner = Arc::new(Inner { state: Mutex::new(state), stop: AtomicBool::new(false) });
        let serving = Arc::clone(&inner);
        let thread =
            std::thread::Builder::new().name("xen-share-relay".into()).spawn(move || serving.serve(&poll_fd))?;
        Ok(RelayShares { inner, thread: Some(thread) })
    }

    /// What guest `domid` needs to accept its membership of `share`
    /// ([`super::RelayMember::accept`]): `ENOENT` for no such share,
    /// `EPERM` if it is not a member, `EINVAL` for dom0 (which attaches).
    pub fn offer(&self, share: ShareRef, domid: DomId) -> io::Result<RelayOffer> {
        let mut state = self.inner.lock();
        let s = state.get(share)?;
        let index = s.index_of(domid).ok_or(Errno::PERM)?;
        match &s.members[index].held {
            Held::Guest(guest) => Ok(RelayOffer {
                share,
                refs: guest.pages.refs().to_vec(),
                control: guest.control.refs()[0],
                trigger: guest.trigger,
                request: guest.request,
            }),
            Held::Dom0(_) => Err(Errno::INVAL.into()),
        }
    }

    /// A domain that is gone leaves every share it was in.
    pub fn domain_gone(&self, domid: DomId) {
        let mut state = self.inner.lock();
        let shares: Vec<ShareRef> =
            state.shares.iter().filter(|(_, s)| s.index_of(domid).is_some()).map(|(&reference, _)| reference).collect();
        for reference in shares {
            let _ = state.remove(reference, domid);
        }
    }

    /// Pages granted now, in all.
    pub fn granted_pages(&self) -> usize {
        self.inner.lock().granted
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the bookkeeping
        // half-changed in a way later calls trust: go on with it.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn serve(&self, poll_fd: &OwnedFd) {
        let tick = Timespec { tv_sec: 0, tv_nsec: i64::from(TICK.subsec_nanos()) };
        let mut ports = Vec::new();
        while !self.stop.load(Ordering::Acquire) {
            let mut fds = [PollFd::new(poll_fd, PollFlags::IN)];
            match poll(&mut fds, Some(&tick)) {
                Ok(0) | Err(Errno::INTR) => continue,
                Ok(_) => {}
                Err(_) => {
                    std::thread::sleep(TICK);
                    continue;
                }
            }
            let mut state = self.lock();
            ports.clear();
            if state.channels.take_pending(&mut ports).is_err() {
                continue;
            }
            for &port in &ports {
                state.serve_port(port);
            }
        }
    }
}

impl Drop for RelayShares {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let mut state = self.inner.lock();
        let shares = std::mem::take(&mut state.shares);
        for (_, share) in shares {
            for member in share.members {
                member.stand(&notifier(&*state.channels), Standing::Destroyed);
                state.release(share.pages, member);
            }
        }
    }
}

impl Shares for RelayShares {
    fn create(&self, pages: usize, members: &[DomId]) -> io::Result<ShareRef> {
        if pages == 0 || pages > MAX_SHARE_PAGES || members.is_empty() || members.len() > MAX_MEMBERS {
            return Err(Errno::INVAL.into());
        }
        if members.iter().enumerate().any(|(i, m)| members[..i].contains(m)) {
            return Err(Errno::INVAL.into());
        }
        let mut state = self.inner.lock();
        if state.shares.len() >= MAX_SHARES {
            return Err(Errno::NOSPC.into());
        }
        let reference = loop {
            let candidate = state.next.max(1);
            state.next = candidate.checked_add(1).unwrap_or(1);
            if !state.shares.contains_key(&candidate) {
                break candidate;
            }
        };
        let mut made = Vec::with_capacity(members.len());
        for &domid in members {
            match state.join(reference, pages, domid) {
                Ok(member) => made.push(member),
                Err(e) => {
                    for member in made {
                        state.release(pages, member);
                    }
                    return Err(e);
                }
            }
        }
        state.shares.insert(reference, RShare { pages, members: made, generation: 1, buffers: Buffers::default() });
        Ok(reference)
    }

    fn add_member(&self, share: ShareRef, domid: DomId) -> io::Result<()> {
        let mut state = self.inner.lock();
        let s = state.get(share)?;
        if s.index_of(domid).is_some() {
            return Err(Errno::EXIST.into());
        }
        if s.members.len() >= MAX_MEMBERS {
            return Err(Errno::NOSPC.into());
        }
        let pages = s.pages;
        let member = state.join(share, pages, domid)?;
        let State { channels, shares, .. } = &mut *state;
        let s = shares.get_mut(&share).ok_or(Errno::NOENT)?;
        for other in &s.members {
            other.raise(&notifier(&**channels), 1 << TRIGGER_CHANGED);
        }
        s.members.push(member);
        s.generation += 1;
        Ok(())
    }

    fn remove_member(&self, share: ShareRef, domid: DomId) -> io::Result<()> {
        self.inner.lock().remove(share, domid)
    }

    fn destroy(&self, share: ShareRef) -> io::Result<()> {
        let mut state = self.inner.lock();
        let s = state.shares.remove(&share).ok_or(Errno::NOENT)?;
        for member in s.members {
            member.stand(&notifier(&*state.channels), Standing::Destroyed);
            state.release(s.pages, member);
        }
        Ok(())
    }

    fn attach(&self, share: ShareRef) -> io::Result<Box<dyn crate::share::Share>> {
        Ok(Box::new(self.attach_local(share)?))
    }

    fn vdevice(&self, _: DomId) -> io::Result<ShareRef> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "a vdevice page is a two-domain share (xen_platform::pair_share), not the service's",
        ))
    }
}

impl RelayShares {
    /// dom0 attaches `share` (`EPERM` if dom0 is not a member).
    pub fn attach_local(&self, share: ShareRef) -> io::Result<LocalMember> {
        let mut member = LocalMember {
            inner: Arc::clone(&self.inner),
            share,
            local: None,
            generation: 0,
            members: Vec::new(),
            me: 0,
        };
        member.refresh()?;
        Ok(member)
    }
}

/// dom0's attachment of a relayed share: its copy of the pages, its
/// triggers, its buffers, served in-process.
#[derive(Debug)]
pub struct LocalMember {
    inner: Arc<Inner>,
    share: ShareRef,
    /// `None` only before the first refresh.
    local: Option<Arc<Local>>,
    generation: u64,
    members: Vec<DomId>,
    me: usize,
}

impl LocalMember {
    fn local(&self) -> &Local {
        self.local.as_deref().expect("set by attach_local's refresh")
    }

    /// Runs `f` on the share and this member's index, if this member
    /// mapped its present generation.
    fn with_current<T>(&self, f: impl FnOnce(&mut RShare, &Notify<'_>, usize) -> Result<T, Errno>) -> io::Result<T> {
        let mut state = self.inner.lock();
        let State { channels, shares, .. } = &mut *state;
        let share = shares.get_mut(&self.share).ok_or(Errno::NOENT)?;
        let index = share.index_of(0).ok_or(Errno::PERM)?;
        share.current(self.generation)?;
        let notify = notifier(&**channels);
        let result = f(share, &notify, index);
        Ok(result?)
    }
}

impl AsFd for LocalMember {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.local().wake.as_fd()
    }
}

impl crate::share::Share for LocalMember {
    fn share_ref(&self) -> ShareRef {
        self.share
    }

    fn pages(&self) -> &MappedPages {
        &self.local().pages
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
        let state = self.inner.lock();
        let share = state.shares.get(&self.share).ok_or(Errno::NOENT)?;
        let index = share.index_of(0).ok_or(Errno::PERM)?;
        share.relay(&notifier(&*state.channels), index, 1 << n);
        Ok(())
    }

    fn take_pending(&mut self) -> io::Result<u32> {
        let mut counter = [0u8; 8];
        match rustix::io::read(&self.local().wake, &mut counter) {
            Ok(_) | Err(Errno::AGAIN) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(self.local().pending.swap(0, Ordering::Acquire))
    }

    fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
        crate::wait_readable(self.local().wake.as_fd(), timeout)
    }

    fn refresh(&mut self) -> io::Result<()> {
        let state = self.inner.lock();
        let share = state.shares.get(&self.share).ok_or(Errno::NOENT)?;
        let index = share.index_of(0).ok_or(Errno::PERM)?;
        let Held::Dom0(local) = &share.members[index].held else { return Err(Errno::PERM.into()) };
        self.local = Some(Arc::clone(local));
        self.generation = share.generation;
        self.members = share.domids();
        self.me = index;
        Ok(())
    }

    fn register(&mut self, key: u32, segments: &[Segment]) -> io::Result<crate::share::BufferId> {
        self.with_current(|share, _, _| share.buffers.register(0, key, segments, share.pages * PAGE_SIZE))
    }

    fn transfer(&self, key: u32, segments: &[Segment]) -> io::Result<usize> {
        self.with_current(|share, channels, index| share.transfer(channels, index, key, segments))
    }

    /// All under one look at the generation, as a guest's batch: a
    /// change makes the whole call `ESTALE`, never a part of it.
    fn transfer_many(&self, transfers: &[(u32, &[Segment])]) -> io::Result<Vec<Result<usize, Errno>>> {
        if transfers.len() > crate::share::MAX_TRANSFER_BATCH {
            return Err(Errno::INVAL.into());
        }
        self.with_current(|share, channels, index| {
            Ok(transfers.iter().map(|&(key, segments)| share.transfer(channels, index, key, segments)).collect())
        })
    }

    fn take_completed(&mut self) -> io::Result<Vec<crate::share::Completed>> {
        self.with_current(|share, _, _| Ok(share.buffers.take(0)))
    }

    fn unregister_all(&mut self) -> io::Result<()> {
        let mut state = self.inner.lock();
        if let Some(share) = state.shares.get_mut(&self.share) {
            share.buffers.retain_owners(|owner| owner != 0);
        }
        Ok(())
    }
}

/// For `fuzz/`: a share of dom0 and one guest (two pages, dom0 with a
/// buffer on key 1) whose control page the guest fills from `data`,
/// request after request, each served as the service thread serves a
/// ring of the guest's port. Each request's bytes are preceded by 8:
/// the triggers it raises, and whether it counts as a new request. The
/// service must answer each one in a form a member decodes, and never
/// panic.
#[doc(hidden)]
pub fn fuzz_hostile_guest(data: &[u8]) {
    const PAGES: usize = 2;
    let (Ok(copy), Ok(control), Ok(local)) = (memory(PAGES), memory(1), Local::new(PAGES)) else { return };
    let guest = Guest {
        pages: GrantedPages::new(copy, Vec::new(), None),
        control: GrantedPages::new(control, Vec::new(), None),
        trigger: 1,
        request: 2,
        answered: 0,
    };
    let mut share = RShare {
        pages: PAGES,
        members: vec![
            Member { domid: 0, held: Held::Dom0(Arc::new(local)) },
            Member { domid: 1, held: Held::Guest(guest) },
        ],
        generation: 1,
        buffers: Buffers::default(),
    };
    let _ = share.buffers.register(0, 1, &[Segment { offset: 0, len: 64 }], PAGES * PAGE_SIZE);
    let mut asked = 0u32;
    for chunk in data.chunks(8 + REQUEST_LEN) {
        let Some((head, request)) = chunk.split_at_checked(8) else { return };
        let Held::Guest(guest) = &share.members[1].held else { return };
        let control = guest.control.pages().shared_mem();
        control.store_u32(RAISED, u32::from_le_bytes([head[0], head[1], head[2], head[3]]), Ordering::Relaxed);
        control.write_bytes(REQUEST, request);
        if head[4] & 1 == 1 {
            asked = asked.wrapping_add(1);
            control.store_u32(ASKED, asked, Ordering::Release);
        }
        share.serve_member(&|_| {}, 1);
        let Held::Guest(guest) = &share.members[1].held else { return };
        let control = guest.control.pages().shared_mem();
        let mut bytes = [0u8; super::layout::ANSWER_LEN];
        control.read_bytes(ANSWER, &mut bytes);
        assert!(Answer::decode(&bytes).is_ok(), "the service wrote an answer a member cannot read");
        assert_eq!(control.load_u32(ANSWERED, Ordering::Acquire), asked, "a request left unanswered");
        let _ = share.buffers.take(0);
    }
}
