//! The front end: pushes requests, takes responses (`FRONT_RING_*`,
//! `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`, `RING_FINAL_CHECK_FOR_RESPONSES`).

#![forbid(unsafe_code)]

use core::marker::PhantomData;

use xen_shared_mem::{fence, Ordering, SharedMem};

use crate::error::{LayoutError, RingError, RingFull};
use crate::event::needs_notify;
use crate::layout::{Index, RingLayout};
use crate::message::Message;
use crate::shared_ring::{init_shared_ring, SharedRing};

/// The front end of a ring: the side that issues requests (blkfront,
/// netfront).
///
/// # Call order
///
/// 1. [`FrontRing::new`] initialises the shared ring (or
///    [`FrontRing::attach`] to one already in use), then the ring is
///    advertised to the back (grant references and event channel in
///    xenstore).
/// 2. [`FrontRing::push_request`] as many requests as there are free slots
///    ([`FrontRing::free_requests`]); they are invisible to the back until
///    [`FrontRing::publish_requests`], which publishes the whole batch with
///    one index store and says whether to notify the back's event channel.
/// 3. On an event (or after publishing): [`FrontRing::take_response`] until
///    `None`, then [`FrontRing::final_check_for_responses`]; if it says
///    `true`, take again, else wait for the next event.
///
/// The back's indices are never trusted: `rsp_prod` is read once per call,
/// checked against the requests in flight, and a bad value is a
/// [`RingError`] that sticks. Our own published `req_prod` is remembered
/// here, never read back from the shared ring (which the back could
/// rewrite).
#[derive(Debug)]
pub struct FrontRing<'a, Req, Rsp> {
    ring: SharedRing<'a>,
    /// Next slot to fill (`req_prod_pvt`).
    req_prod_pvt: u32,
    /// The `req_prod` we last stored in the shared ring.
    req_prod_published: u32,
    /// Next response to take (`rsp_cons`).
    rsp_cons: u32,
    scratch: Vec<u8>,
    broken: Option<RingError>,
    _messages: PhantomData<fn(Req) -> Rsp>,
}

/// A [`FrontRing`]'s private indices and failure, without the memory:
/// what [`FrontRing::resume`] needs to go on where the end left off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrontCursors {
    req_prod_pvt: u32,
    req_prod_published: u32,
    rsp_cons: u32,
    broken: Option<RingError>,
}

impl<'a, Req: Message, Rsp: Message> FrontRing<'a, Req, Rsp> {
    /// Initialises the shared ring in `mem` (`XEN_FRONT_RING_INIT`: indices
    /// 0, event indices 1) and returns its front end.
    pub fn new(mem: SharedMem<'a>) -> Result<FrontRing<'a, Req, Rsp>, LayoutError> {
        let ring = FrontRing::attach(mem, 0)?;
        init_shared_ring(mem, 0);
        Ok(ring)
    }

    /// The front end of a ring already initialised, whose indices are all
    /// `start` (`FRONT_RING_ATTACH`; see [`init_shared_ring`]).
    pub fn attach(mem: SharedMem<'a>, start: u32) -> Result<FrontRing<'a, Req, Rsp>, LayoutError> {
        let layout = RingLayout::of::<Req, Rsp>(mem.len())?;
        Ok(FrontRing {
            ring: SharedRing::new(mem, layout),
            req_prod_pvt: start,
            req_prod_published: start,
            rsp_cons: start,
            scratch: vec![0; Req::SIZE.max(Rsp::SIZE)],
            broken: None,
            _messages: PhantomData,
        })
    }

    /// Rebuilds the front end from the [`FrontCursors`] of an earlier one
    /// over the same memory ([`FrontRing::cursors`]). The ring borrows its
    /// memory, so an owner that keeps the mapping in the same struct (a
    /// driver holding its granted ring pages) keeps the cursors instead and
    /// rebuilds the end for each burst of work. Nothing in the shared ring
    /// is written; a stopped end stays stopped.
    pub fn resume(mem: SharedMem<'a>, cursors: FrontCursors) -> Result<FrontRing<'a, Req, Rsp>, LayoutError> {
        let mut ring = FrontRing::attach(mem, cursors.rsp_cons)?;
        ring.req_prod_pvt = cursors.req_prod_pvt;
        ring.req_prod_published = cursors.req_prod_published;
        ring.broken = cursors.broken;
        Ok(ring)
    }

    /// This end's private state, for [`FrontRing::resume`].
    pub fn cursors(&self) -> FrontCursors {
        FrontCursors {
            req_prod_pvt: self.req_prod_pvt,
            req_prod_published: self.req_prod_published,
            rsp_cons: self.rsp_cons,
            broken: self.broken,
        }
    }

    /// The ring's geometry.
    pub fn layout(&self) -> RingLayout {
        self.ring.layout()
    }

    /// Entries in the ring (`RING_SIZE`).
    pub fn size(&self) -> u32 {
        self.ring.layout().entries()
    }

    /// Slots free for requests (`RING_FREE_REQUESTS`): every slot whose
    /// response has been taken.
    pub fn free_requests(&self) -> u32 {
        self.size() - self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// Whether no request can be pushed (`RING_FULL`).
    pub fn is_full(&self) -> bool {
        self.free_requests() == 0
    }

    /// Requests published whose responses have not been taken yet.
    pub fn in_flight(&self) -> u32 {
        self.req_prod_published.wrapping_sub(self.rsp_cons)
    }

    /// Requests pushed but not yet published.
    pub fn unpublished(&self) -> u32 {
        self.req_prod_pvt.wrapping_sub(self.req_prod_published)
    }

    /// Copies `req` into the next free slot. The back does not see it
    /// until [`FrontRing::publish_requests`].
    pub fn push_request(&mut self, req: &Req) -> Result<(), RingFull> {
        if self.is_full() {
            return Err(RingFull);
        }
        let bytes = &mut self.scratch[..Req::SIZE];
        req.encode(bytes);
        // No ordering needed for the copy itself: the slot is ours (its
        // response was taken, which the Acquire on rsp_prod ordered after
        // the back's last use of it), and the Release in publish_requests
        // orders these bytes before the index that exposes them.
        self.ring.write_entry(self.req_prod_pvt, bytes);
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// Publishes every pushed request and says whether the back must be
    /// notified (`RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`).
    pub fn publish_requests(&mut self) -> bool {
        let old = self.req_prod_published;
        let new = self.req_prod_pvt;
        if old == new {
            return false;
        }
        // Release (ring.h's xen_wmb before the store): the back, loading
        // req_prod with Acquire, sees the requests before the index.
        self.ring.store(Index::ReqProd, new, Ordering::Release);
        self.req_prod_published = new;
        // SeqCst fence (ring.h's xen_mb): our req_prod store is ordered
        // before the req_event load below. With the fence in the back's
        // final check (req_event store, fence, req_prod load), either the
        // back sees our requests or we see its new req_event: no lost
        // wake-up.
        fence(Ordering::SeqCst);
        // Relaxed: the fence orders it; the value only picks a boolean.
        let event = self.ring.load(Index::ReqEvent, Ordering::Relaxed);
        needs_notify(old, new, event)
    }

    /// Responses waiting to be taken (`RING_HAS_UNCONSUMED_RESPONSES`),
    /// after checking the back's `rsp_prod`.
    pub fn unconsumed_responses(&mut self) -> Result<u32, RingError> {
        self.checked_rsp_prod().map(|prod| prod.wrapping_sub(self.rsp_cons))
    }

    /// Takes the next response, copied out of its slot, or `None` if the
    /// back has published none.
    pub fn take_response(&mut self) -> Result<Option<Rsp>, RingError> {
        let prod = self.checked_rsp_prod()?;
        if prod == self.rsp_cons {
            return Ok(None);
        }
        let bytes = &mut self.scratch[..Rsp::SIZE];
        self.ring.read_entry(self.rsp_cons, bytes);
        let rsp = Rsp::decode(bytes);
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
        Ok(Some(rsp))
    }

    /// Before waiting for an event: whether responses are waiting, after
    /// asking to be notified of the next one (`RING_FINAL_CHECK_FOR_RESPONSES`).
    /// `true` means take again rather than wait.
    pub fn final_check_for_responses(&mut self) -> Result<bool, RingError> {
        if self.unconsumed_responses()? > 0 {
            return Ok(true);
        }
        // Relaxed store, then the SeqCst fence (ring.h's xen_mb): the new
        // rsp_event is ordered before our re-read of rsp_prod; paired with
        // the fence in the back's publish (rsp_prod store, fence, rsp_event
        // load), either we see its responses or it sees our rsp_event.
        self.ring.store(Index::RspEvent, self.rsp_cons.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::SeqCst);
        Ok(self.unconsumed_responses()? > 0)
    }

    /// The error this end stopped for, if any.
    pub fn failure(&self) -> Option<RingError> {
        self.broken
    }

    /// Reads the back's `rsp_prod` once and checks it: it may not claim
    /// more responses than requests in flight, nor fall behind the
    /// responses already taken (both make `rsp_prod - rsp_cons` exceed the
    /// in-flight count, in wrapping arithmetic). Stricter than ring.h's
    /// `RING_RESPONSE_PROD_OVERFLOW`, which allows up to `RING_SIZE`: a
    /// response can only go in the slot of a request we published.
    fn checked_rsp_prod(&mut self) -> Result<u32, RingError> {
        if let Some(err) = self.broken {
            return Err(err);
        }
        // Acquire (ring.h's xen_rmb after reading rsp_prod): the response
        // bytes the back wrote before its Release store are visible to the
        // copies that follow.
        let prod = self.ring.load(Index::RspProd, Ordering::Acquire);
        if prod.wrapping_sub(self.rsp_cons) > self.in_flight() {
            let err = RingError::BogusResponses {
                rsp_prod: prod,
                rsp_cons: self.rsp_cons,
                req_prod: self.req_prod_published,
            };
            self.broken = Some(err);
            return Err(err);
        }
        Ok(prod)
    }
}
