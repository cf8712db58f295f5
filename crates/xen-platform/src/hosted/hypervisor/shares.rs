//! Xen Share in the hosted hypervisor (`docs/xen-share.md`): each share's
//! pages and trigger table are memfds it maps too, each member has an
//! eventfd; membership is checked on every request, and segments against
//! the share's size before anything is copied.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rustix::event::{eventfd, EventfdFlags};
use rustix::io::Errno;

use super::evtchn::{guarded, watch_edges};
use super::memory::memfd;
use super::{done, dup, Answer, ConnId, State};
use crate::hosted::evtchn::signal;
use crate::hosted::protocol::Response;
use crate::share::{
    check_segments, BufferId, Completed, Segment, ShareRef, MAX_BUFFERS, MAX_DOMAIN_BUFFERS, MAX_MEMBERS, MAX_SHARES,
    MAX_SHARE_PAGES, MAX_TRANSFER, TRIGGER_CHANGED, TRIGGER_TRANSFERRED,
};
use crate::{DomId, MappedPages, PAGE_SIZE};

/// Every share on the host.
#[derive(Debug, Default)]
pub(super) struct ShareTable {
    shares: BTreeMap<ShareRef, Share>,
    /// The next reference to try (references are not reused until the
    /// counter wraps, so a stale one names nothing rather than a stranger).
    next: ShareRef,
    /// Each domain's vdevice page: a one-page share of dom0 and the
    /// domain, made when first asked for, gone with the domain.
    vdevice: BTreeMap<DomId, ShareRef>,
}

/// A share as a member's request names it: the reference and the
/// generation the member mapped.
pub(super) type Viewed = (ShareRef, u64);

/// One share, in its current generation.
#[derive(Debug)]
struct Share {
    pages: usize,
    members: Vec<DomId>,
    generation: u64,
    /// The pages.
    file: Arc<OwnedFd>,
    map: MappedPages,
    /// The trigger table: member `i`'s pending word at `4 * i`.
    words_file: Arc<OwnedFd>,
    words: MappedPages,
    /// Member `i`'s wake-up.
    wakes: Vec<Wake>,
    /// What the members signal each other with.
    links: Links,
    /// Receive buffers, oldest first.
    buffers: Vec<Buffer>,
    next_buffer: BufferId,
}

/// A registered receive buffer.
#[derive(Debug)]
struct Buffer {
    id: BufferId,
    owner: DomId,
    /// The connection (process) that registered it: it goes with it.
    conn: ConnId,
    key: u32,
    segments: Vec<Segment>,
    capacity: usize,
    state: BufferState,
}

/// Where a buffer is in its cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BufferState {
    /// Waiting for a transfer.
    Free,
    /// A transfer wrote this many bytes; its owner has not taken it.
    Filled(usize),
    /// Its owner took it and reads it: free again at the owner's next
    /// take.
    Taken,
}

/// A member's wake-up.
///
/// The member polls `set`, an edge-triggered epoll set holding `own`,
/// which only the hypervisor writes (transfers, membership changes), and
/// one eventfd per other member, which that member alone writes to
/// trigger it ([`Links`]). An open file's `O_NONBLOCK` and counter are
/// shared by all its holders, so an eventfd a guest holds is one it can
/// make blocking and fill: nobody but that guest ever writes one (the
/// writer would block in that `write`: the hypervisor, and every domain
/// with it, or dom0's LAN), and nobody reads one (a guest could empty it
/// between a poll and the `read`). Each signal is a new edge for the set,
/// which the member takes with an `epoll_wait`.
#[derive(Debug, Clone)]
struct Wake {
    own: Arc<OwnedFd>,
    set: Arc<OwnedFd>,
}

/// A fresh eventfd.
fn eventfd_fresh() -> Result<Arc<OwnedFd>, (Errno, &'static str)> {
    eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
        .map(Arc::new)
        .map_err(|_| (Errno::NOMEM, "out of descriptors"))
}

/// A fresh wake-up: its set is made as a guest's port set is.
fn wake() -> Result<Wake, (Errno, &'static str)> {
    let own = eventfd_fresh()?;
    let set = guarded(&own)?;
    Ok(Wake { own, set: Arc::new(set) })
}

/// What each member writes to wake each other member: `by[w][t]`, written
/// by member `w` alone, watched in member `t`'s set (a lone member has
/// `by[0][0]`, to trigger itself). One eventfd per ordered pair: a member
/// can do what it likes to the ones it holds without touching anybody
/// else's `write` (see [`Wake`]). [`MAX_MEMBERS`] bounds a share to
/// 64 × 63 of them.
#[derive(Debug, Default)]
struct Links {
    by: Vec<Vec<Option<Arc<OwnedFd>>>>,
}

impl Links {
    /// The links of members with `wakes`.
    fn new(wakes: &[Wake]) -> Result<Links, (Errno, &'static str)> {
        let mut links = Links::default();
        for n in 0..wakes.len() {
            links.joined(wakes, n)?;
        }
        Ok(links)
    }

    /// Member `n` (the last of `wakes`) joined: the links between it and
    /// each earlier member, both ways (for a lone member, its own).
    fn joined(&mut self, wakes: &[Wake], n: usize) -> Result<(), (Errno, &'static str)> {
        for row in &mut self.by {
            row.resize(n + 1, None);
        }
        self.by.push(vec![None; n + 1]);
        let pairs: Vec<(usize, usize)> =
            if n == 0 { vec![(0, 0)] } else { (0..n).flat_map(|i| [(n, i), (i, n)]).collect() };
        for (w, t) in pairs {
            let fd = eventfd_fresh()?;
            watch_edges(&wakes[t].set, &fd)?;
            self.by[w][t] = Some(fd);
        }
        Ok(())
    }

    /// The one member left makes sure it has its own link.
    fn lone(&mut self, wakes: &[Wake]) -> Result<(), (Errno, &'static str)> {
        if self.by.first().and_then(|row| row.first()).is_some_and(Option::is_some) {
            return Ok(());
        }
        let (Some(wake), Some(row)) = (wakes.first(), self.by.first_mut()) else { return Ok(()) };
        let fd = eventfd_fresh()?;
        watch_edges(&wake.set, &fd)?;
        if row.is_empty() {
            row.push(None);
        }
        row[0] = Some(fd);
        Ok(())
    }

    /// Member `index` leaves: every link it writes goes out of the set it
    /// woke, every link to it out of its set, and the rows and columns
    /// go.
    fn cut(&mut self, index: usize, wakes: &[Wake]) {
        for (w, row) in self.by.iter().enumerate() {
            for (t, link) in row.iter().enumerate() {
                if let (Some(link), Some(wake)) = (link, wakes.get(t)) {
                    if (w == index || t == index) && w != t {
                        // Only fails for a link that is not in the set.
                        let _ = rustix::event::epoll::delete(&*wake.set, &**link);
                    }
                }
            }
        }
        self.left(index);
    }

    /// Drops member `index`'s row and column (a join undone, or
    /// [`Links::cut`]).
    fn left(&mut self, index: usize) {
        if index < self.by.len() {
            self.by.remove(index);
        }
        for row in &mut self.by {
            if index < row.len() {
                row.remove(index);
            }
        }
    }

    /// What member `me` of `members` members signals, in member order (a
    /// lone member: itself).
    fn written_by(&self, me: usize, members: usize) -> Result<Vec<Arc<OwnedFd>>, (Errno, &'static str)> {
        (0..members)
            .filter(|&t| t != me || members == 1)
            .map(|t| {
                self.by.get(me).and_then(|row| row.get(t)).cloned().flatten().ok_or((Errno::NOENT, "a missing link"))
            })
            .collect()
    }
}

/// A memfd of `pages` pages and the hypervisor's mapping of it.
fn pages(name: &str, pages: usize) -> Result<(Arc<OwnedFd>, MappedPages), (Errno, &'static str)> {
    let file = memfd(name, pages)?;
    let map = MappedPages::map(file.as_fd(), 0, pages, true).map_err(|_| (Errno::NOMEM, "mapping the share"))?;
    Ok((Arc::new(file), map))
}

impl Share {
    fn new(pages_count: usize, members: Vec<DomId>) -> Result<Share, (Errno, &'static str)> {
        let (file, map) = pages("xsim-share", pages_count)?;
        let (words_file, words) = pages("xsim-share-triggers", 1)?;
        let wakes = members.iter().map(|_| wake()).collect::<Result<Vec<_>, _>>()?;
        let links = Links::new(&wakes)?;
        Ok(Share {
            pages: pages_count,
            members,
            generation: 1,
            file,
            map,
            words_file,
            words,
            wakes,
            links,
            buffers: Vec::new(),
            next_buffer: 1,
        })
    }

    fn index_of(&self, domid: DomId) -> Option<usize> {
        self.members.iter().position(|&m| m == domid)
    }

    /// Keeps the buffers of the members before `index` alone (the member
    /// at `index` is going, and those after it move).
    fn keep_buffers_before(&mut self, index: usize) {
        let kept = &self.members[..index.min(self.members.len())];
        self.buffers.retain(|b| kept.contains(&b.owner));
    }

    /// Raises trigger `n` in member `index`.
    fn raise(&self, index: usize, n: u32) {
        if let Some(wake) = self.wakes.get(index) {
            self.words.shared_mem().fetch_or_u32(4 * index, 1 << n, Ordering::Release);
            let _ = signal(wake.own.as_fd());
        }
    }

    /// Raises [`TRIGGER_CHANGED`] in every member.
    fn changed(&self) {
        for index in 0..self.members.len() {
            self.raise(index, TRIGGER_CHANGED);
        }
    }

    /// Moves the share away from member `index`: new pages (a copy of the
    /// old) and a new trigger table, so what the removed member still
    /// maps is nobody's; the others are told on the old table, which they
    /// map until they refresh, and their wake-ups, which they keep. Then
    /// the member [leaves](Share::leave).
    fn remove(&mut self, index: usize) -> Result<(), (Errno, &'static str)> {
        let (file, map) = pages("xsim-share", self.pages)?;
        let (words_file, words) = pages("xsim-share-triggers", 1)?;
        // Nothing can fail from here: the old generation is told and
        // replaced as one step.
        let mut bounce = vec![0u8; self.pages * PAGE_SIZE];
        self.map.shared_mem().read_bytes(0, &mut bounce);
        map.shared_mem().write_bytes(0, &bounce);
        let old_words = std::mem::replace(&mut self.words, words);
        for (i, wake) in self.wakes.iter().enumerate() {
            if i != index {
                old_words.shared_mem().fetch_or_u32(4 * i, 1 << TRIGGER_CHANGED, Ordering::Release);
                let _ = signal(wake.own.as_fd());
            }
        }
        self.leave(index);
        self.file = file;
        self.map = map;
        self.words_file = words_file;
        Ok(())
    }

    /// Member `index` leaves the membership. Its links, both ways, go out
    /// of the sets they wake: what it still holds wakes nobody, and
    /// nothing wakes it. The others keep their wake-ups: a new one would
    /// lose the signal just given (closing an eventfd takes its pending
    /// edge out of the set before a member polled it). Its buffers go,
    /// and so do those of every member after it: their index moves down,
    /// and a member lays its buffers out by its index (the LAN's region),
    /// so left in place they would overlap another member's.
    fn leave(&mut self, index: usize) {
        self.keep_buffers_before(index);
        self.links.cut(index, &self.wakes);
        self.wakes.remove(index);
        self.members.remove(index);
        if self.members.len() == 1 {
            // Out of descriptors: the lone member's attach fails until the
            // share is remade.
            let _ = self.links.lone(&self.wakes);
        }
        self.generation += 1;
    }
}

impl ShareTable {
    /// Adds `share` under a fresh reference.
    fn insert(&mut self, share: Share) -> ShareRef {
        let reference = loop {
            let candidate = self.next.max(1);
            self.next = candidate.checked_add(1).unwrap_or(1);
            if !self.shares.contains_key(&candidate) {
                break candidate;
            }
        };
        self.shares.insert(reference, share);
        reference
    }

    fn get(&self, share: ShareRef) -> Result<&Share, (Errno, &'static str)> {
        self.shares.get(&share).ok_or((Errno::NOENT, "no such share"))
    }

    fn get_mut(&mut self, share: ShareRef) -> Result<&mut Share, (Errno, &'static str)> {
        self.shares.get_mut(&share).ok_or((Errno::NOENT, "no such share"))
    }

    /// The share, if `caller` is a member, and its index.
    fn member(&self, share: ShareRef, caller: DomId) -> Result<(&Share, usize), (Errno, &'static str)> {
        let s = self.get(share)?;
        let index = s.index_of(caller).ok_or((Errno::PERM, "not a member of the share"))?;
        Ok((s, index))
    }

    /// The share, if `caller` is a member that mapped its present
    /// generation: after a removal the pages are new, so a request made
    /// on an older mapping would copy bytes its maker never wrote, or
    /// hand it buffers it would read in the wrong pages (`ESTALE`:
    /// refresh, then ask again).
    fn current(&mut self, (share, generation): Viewed, caller: DomId) -> Result<&mut Share, (Errno, &'static str)> {
        self.member(share, caller)?;
        let s = self.get_mut(share)?;
        if s.generation != generation {
            return Err((Errno::STALE, "the share changed since the caller mapped it"));
        }
        Ok(s)
    }

    /// Drops the buffers a connection registered (its process is gone).
    pub(super) fn connection_gone(&mut self, conn: ConnId) {
        for share in self.shares.values_mut() {
            share.buffers.retain(|b| b.conn != conn);
        }
    }

    /// Removes a domain that is gone from every share it was in, and ends
    /// its vdevice page.
    pub(super) fn domain_gone(&mut self, domid: DomId) {
        if let Some(share) = self.vdevice.remove(&domid).and_then(|r| self.shares.remove(&r)) {
            share.changed();
        }
        for share in self.shares.values_mut() {
            if let Some(index) = share.index_of(domid) {
                if share.remove(index).is_err() {
                    // Out of memory for the move: the member list still
                    // must not name a dead domain (its id may be reused).
                    share.leave(index);
                    share.changed();
                }
            }
        }
    }
}

impl State {
    /// dom0 makes a share.
    pub(super) fn share_create(&mut self, caller: DomId, pages: usize, members: &[DomId]) -> Answer {
        self.privileged(caller)?;
        if pages == 0 || pages > MAX_SHARE_PAGES {
            return Err((Errno::INVAL, "bad page count"));
        }
        if members.is_empty() || members.len() > MAX_MEMBERS {
            return Err((Errno::INVAL, "bad member count"));
        }
        for (i, domid) in members.iter().enumerate() {
            if members[..i].contains(domid) {
                return Err((Errno::INVAL, "a member named twice"));
            }
            if !self.domains.contains_key(domid) {
                return Err((Errno::SRCH, "no such domain"));
            }
        }
        if self.shares.shares.len() >= MAX_SHARES {
            return Err((Errno::NOSPC, "too many shares"));
        }
        let share = Share::new(pages, members.to_vec())?;
        let reference = self.shares.insert(share);
        Ok((Response::Share { share: reference }, Vec::new()))
    }

    /// The share holding `domid`'s vdevice page (one page; members dom0
    /// and the domain, or dom0 alone for its own), made on first use.
    /// dom0 may ask for any domain's, a guest for its own only.
    pub(super) fn vdevice_share(&mut self, caller: DomId, domid: DomId) -> Answer {
        if caller != 0 && caller != domid {
            return Err((Errno::PERM, "another domain's vdevice page"));
        }
        if !self.domains.contains_key(&domid) {
            return Err((Errno::SRCH, "no such domain"));
        }
        if let Some(&share) = self.shares.vdevice.get(&domid) {
            return Ok((Response::Share { share }, Vec::new()));
        }
        if self.shares.shares.len() >= MAX_SHARES {
            return Err((Errno::NOSPC, "too many shares"));
        }
        let members = if domid == 0 { vec![0] } else { vec![0, domid] };
        let share = self.shares.insert(Share::new(1, members)?);
        self.shares.vdevice.insert(domid, share);
        Ok((Response::Share { share }, Vec::new()))
    }

    /// dom0 adds a member.
    pub(super) fn share_add(&mut self, caller: DomId, share: ShareRef, domid: DomId) -> Answer {
        self.privileged(caller)?;
        if !self.domains.contains_key(&domid) {
            return Err((Errno::SRCH, "no such domain"));
        }
        let s = self.shares.get_mut(share)?;
        if s.index_of(domid).is_some() {
            return Err((Errno::EXIST, "already a member"));
        }
        if s.members.len() >= MAX_MEMBERS {
            return Err((Errno::NOSPC, "too many members"));
        }
        s.wakes.push(wake()?);
        if let Err(e) = s.links.joined(&s.wakes, s.members.len()) {
            s.wakes.pop();
            s.links.left(s.members.len());
            return Err(e);
        }
        s.changed();
        s.members.push(domid);
        s.generation += 1;
        done()
    }

    /// dom0 removes a member: the share moves away from it.
    pub(super) fn share_remove(&mut self, caller: DomId, share: ShareRef, domid: DomId) -> Answer {
        self.privileged(caller)?;
        let s = self.shares.get_mut(share)?;
        let index = s.index_of(domid).ok_or((Errno::NOENT, "not a member"))?;
        s.remove(index)?;
        done()
    }

    /// dom0 ends a share.
    pub(super) fn share_destroy(&mut self, caller: DomId, share: ShareRef) -> Answer {
        self.privileged(caller)?;
        let s = self.shares.shares.remove(&share).ok_or((Errno::NOENT, "no such share"))?;
        self.shares.vdevice.retain(|_, r| *r != share);
        s.changed();
        done()
    }

    /// A member maps the share: the pages, the trigger table, the set it
    /// polls for its wake-up, then what it signals the other members with
    /// in member order (a lone member: its own, to trigger itself).
    pub(super) fn share_attach(&self, caller: DomId, share: ShareRef) -> Answer {
        let (s, me) = self.shares.member(share, caller)?;
        let mut fds = vec![dup(&s.file)?, dup(&s.words_file)?, dup(&s.wakes[me].set)?];
        for link in s.links.written_by(me, s.members.len())? {
            fds.push(dup(&link)?);
        }
        let response =
            Response::ShareAttached { generation: s.generation, pages: s.pages, me, members: s.members.clone() };
        Ok((response, fds))
    }

    /// A member offers a receive buffer.
    pub(super) fn share_register(
        &mut self,
        conn: ConnId,
        caller: DomId,
        share: Viewed,
        key: u32,
        segments: Vec<Segment>,
    ) -> Answer {
        let s = self.shares.current(share, caller)?;
        let capacity = check_segments(&segments, s.pages * PAGE_SIZE).map_err(|e| (e, "bad segments"))?;
        if s.buffers.iter().filter(|b| b.conn == conn).count() >= MAX_BUFFERS
            || s.buffers.iter().filter(|b| b.owner == caller).count() >= MAX_DOMAIN_BUFFERS
        {
            return Err((Errno::NOSPC, "too many buffers"));
        }
        let id = s.next_buffer;
        s.next_buffer += 1;
        s.buffers.push(Buffer { id, owner: caller, conn, key, segments, capacity, state: BufferState::Free });
        Ok((Response::Buffer { id }, Vec::new()))
    }

    /// A member copies into the first free buffer another registered on
    /// `key`.
    pub(super) fn share_transfer(&mut self, caller: DomId, share: Viewed, key: u32, segments: &[Segment]) -> Answer {
        let s = self.shares.current(share, caller)?;
        let len = check_segments(segments, s.pages * PAGE_SIZE).map_err(|e| (e, "bad segments"))?;
        if len > MAX_TRANSFER {
            return Err((Errno::MSGSIZE, "transfer too long"));
        }
        let index = s
            .buffers
            .iter()
            .position(|b| b.key == key && b.owner != caller && b.state == BufferState::Free)
            .ok_or((Errno::AGAIN, "no free buffer on the key"))?;
        if len > s.buffers[index].capacity {
            return Err((Errno::MSGSIZE, "buffer too small"));
        }
        let mem = s.map.shared_mem();
        let share_len = mem.len();
        // Every range is inside the share: checked above (the buffer's
        // when it was registered; the share's size never changes).
        let mut data = Vec::with_capacity(len);
        for range in segments.iter().filter_map(|seg| seg.range_within(share_len)) {
            let start = data.len();
            data.resize(start + range.len(), 0);
            mem.read_bytes(range.start, &mut data[start..]);
        }
        let mut written = 0;
        for range in s.buffers[index].segments.iter().filter_map(|seg| seg.range_within(share_len)) {
            if written == len {
                break;
            }
            let n = range.len().min(len - written);
            mem.write_bytes(range.start, &data[written..written + n]);
            written += n;
        }
        let buffer = &mut s.buffers[index];
        buffer.state = BufferState::Filled(len);
        let owner = buffer.owner;
        if let Some(owner_index) = s.index_of(owner) {
            s.raise(owner_index, TRIGGER_TRANSFERRED);
        }
        Ok((Response::Transferred { len }, Vec::new()))
    }

    /// Each of `transfers` as [`State::share_transfer`] does it; one
    /// failing does not stop the others. At most
    /// [`crate::share::MAX_TRANSFER_BATCH`] (the request's size is
    /// bounded by the socket's message size too).
    pub(super) fn share_transfer_many(
        &mut self,
        caller: DomId,
        share: Viewed,
        transfers: &[(u32, Vec<Segment>)],
    ) -> Answer {
        if transfers.len() > crate::share::MAX_TRANSFER_BATCH {
            return Err((Errno::INVAL, "too many transfers in one request"));
        }
        self.shares.current(share, caller)?;
        let results = transfers
            .iter()
            .map(|(key, segments)| match self.share_transfer(caller, share, *key, segments) {
                Ok((Response::Transferred { len }, _)) => Ok(len),
                Ok(_) => Err(Errno::INVAL.raw_os_error()),
                Err((errno, _)) => Err(errno.raw_os_error()),
            })
            .collect();
        Ok((Response::TransferredMany { results }, Vec::new()))
    }

    /// A member withdraws every buffer its connection registered (filled
    /// or not).
    pub(super) fn share_unregister(&mut self, conn: ConnId, caller: DomId, share: ShareRef) -> Answer {
        self.shares.member(share, caller)?;
        self.shares.get_mut(share)?.buffers.retain(|b| b.conn != conn);
        done()
    }

    /// A member takes its filled buffers, to read until its next take;
    /// those it took last time are free again.
    pub(super) fn share_completed(&mut self, conn: ConnId, caller: DomId, share: Viewed) -> Answer {
        let s = self.shares.current(share, caller)?;
        let mut completed = Vec::new();
        for buffer in s.buffers.iter_mut().filter(|b| b.conn == conn) {
            match buffer.state {
                BufferState::Taken => buffer.state = BufferState::Free,
                BufferState::Filled(len) => {
                    buffer.state = BufferState::Taken;
                    completed.push(Completed { buffer: buffer.id, len });
                }
                BufferState::Free => {}
            }
        }
        Ok((Response::Completed { completed }, Vec::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removal_moves_the_pages_and_tells_the_others_on_the_old_triggers() {
        let mut share = Share::new(2, vec![0, 5, 7]).unwrap();
        share.map.shared_mem().write_bytes(100, b"kept");
        let old_file = Arc::clone(&share.file);
        let old_words = MappedPages::map(share.words_file.as_fd(), 0, 1, true).unwrap();
        // What each member holds of its wake-up: the set alone (the
        // hypervisor's own eventfd in it is the hypervisor's).
        let held: Vec<OwnedFd> = share.wakes.iter().map(|w| rustix::io::dup(&*w.set).unwrap()).collect();
        let own0 = Arc::clone(&share.wakes[0].own);
        // What member 5 writes to wake member 0.
        let from_removed = share.links.by[1][0].clone().unwrap();
        share.remove(1).unwrap();
        assert_eq!(share.members, [0, 7]);
        assert_eq!(share.generation, 2);
        assert!(!Arc::ptr_eq(&old_file, &share.file), "new pages");
        let mut copied = [0u8; 4];
        share.map.shared_mem().read_bytes(100, &mut copied);
        assert_eq!(&copied, b"kept");
        // The others were told on what they poll now; the removed was not.
        let word = |i: usize| old_words.shared_mem().load_u32(4 * i, Ordering::Acquire);
        assert_eq!(word(0), 1 << TRIGGER_CHANGED);
        assert_eq!(word(1), 0);
        assert_eq!(word(2), 1 << TRIGGER_CHANGED);
        let edges = |set: &OwnedFd| {
            let mut events = [std::mem::MaybeUninit::<rustix::event::epoll::Event>::uninit(); 4];
            let zero = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
            rustix::event::epoll::wait(set, &mut events, Some(&zero)).unwrap().0.len()
        };
        // The signal is pending in what each other member polls (the
        // hypervisor kept their wake-ups: had it closed the eventfds it
        // signalled, their edges would have left the sets unseen).
        assert_eq!(edges(&held[0]), 1);
        assert_eq!(edges(&held[1]), 0, "the removed member is not told");
        assert_eq!(edges(&held[2]), 1);
        assert!(Arc::ptr_eq(&share.wakes[0].own, &own0));
        // What the removed member writes wakes nobody now.
        signal(from_removed.as_fd()).unwrap();
        assert_eq!(edges(&held[0]), 0);
        // The links between those left still work.
        signal(share.links.by[1][0].as_ref().unwrap().as_fd()).unwrap();
        assert_eq!(edges(&held[0]), 1);
    }

    /// A member left alone by a removal gets its own link, to trigger
    /// itself.
    #[test]
    fn a_member_left_alone_can_trigger_itself() {
        let mut share = Share::new(1, vec![0, 5]).unwrap();
        share.remove(1).unwrap();
        assert_eq!(share.links.written_by(0, 1).unwrap().len(), 1);
    }
}
