//! The back end: takes requests, pushes responses (`BACK_RING_*`,
//! `RING_FINAL_CHECK_FOR_REQUESTS`, `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`).

#![forbid(unsafe_code)]

use core::marker::PhantomData;

use xen_shared_mem::{fence, Ordering, SharedMem};

use crate::error::{LayoutError, RingError, RingFull};
use crate::event::needs_notify;
use crate::layout::{Index, RingLayout};
use crate::message::Message;
use crate::shared_ring::SharedRing;

/// The back end of a ring: the side that serves requests (blkback,
/// netback), usually in the more privileged domain, facing a front that
/// may be hostile.
///
/// # Call order
///
/// 1. [`BackRing::new`] (or [`BackRing::attach`]) once the front's ring is
///    mapped; the front has initialised it, the back does not touch it.
/// 2. On an event: [`BackRing::take_request`] until `None`, serving each.
///    For each request taken, [`BackRing::push_response`] in its slot,
///    in order, and [`BackRing::publish_responses`] once per batch; notify
///    the front when it says so.
/// 3. Then [`BackRing::final_check_for_requests`]: `true` means take
///    again, else wait for the next event.
///
/// The front's `req_prod` is never trusted: read once per call, checked
/// against what the ring can hold, and a bad value is a [`RingError`] that
/// sticks (blkback: "Frontend provided bogus ring requests", then it stops
/// serving the ring). Slots are found by masking, so no index reaches
/// outside the ring. The `rsp_prod` we published is remembered here, never
/// read back.
#[derive(Debug)]
pub struct BackRing<'a, Req, Rsp> {
    ring: SharedRing<'a>,
    /// Next response slot to fill (`rsp_prod_pvt`).
    rsp_prod_pvt: u32,
    /// The `rsp_prod` we last stored in the shared ring.
    rsp_prod_published: u32,
    /// Next request to take (`req_cons`).
    req_cons: u32,
    scratch: Vec<u8>,
    broken: Option<RingError>,
    _messages: PhantomData<fn(Req) -> Rsp>,
}

/// A [`BackRing`]'s private indices and failure, without the memory:
/// what [`BackRing::resume`] needs to go on where the end left off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackCursors {
    rsp_prod_pvt: u32,
    rsp_prod_published: u32,
    req_cons: u32,
    broken: Option<RingError>,
}

impl<'a, Req: Message, Rsp: Message> BackRing<'a, Req, Rsp> {
    /// The back end of the ring in `mem`, freshly initialised by the front
    /// (`BACK_RING_INIT`: indices 0).
    pub fn new(mem: SharedMem<'a>) -> Result<BackRing<'a, Req, Rsp>, LayoutError> {
        BackRing::attach(mem, 0)
    }

    /// The back end of a ring whose indices are all `start`
    /// (`BACK_RING_ATTACH`).
    pub fn attach(mem: SharedMem<'a>, start: u32) -> Result<BackRing<'a, Req, Rsp>, LayoutError> {
        let layout = RingLayout::of::<Req, Rsp>(mem.len())?;
        Ok(BackRing {
            ring: SharedRing::new(mem, layout),
            rsp_prod_pvt: start,
            rsp_prod_published: start,
            req_cons: start,
            scratch: vec![0; Req::SIZE.max(Rsp::SIZE)],
            broken: None,
            _messages: PhantomData,
        })
    }

    /// Rebuilds the back end from the [`BackCursors`] of an earlier one
    /// over the same memory ([`BackRing::cursors`]), for an owner that
    /// keeps the mapping and the cursors in one struct (see
    /// [`crate::FrontRing::resume`]). Nothing in the shared ring is
    /// written; a stopped end stays stopped.
    pub fn resume(mem: SharedMem<'a>, cursors: BackCursors) -> Result<BackRing<'a, Req, Rsp>, LayoutError> {
        let mut ring = BackRing::attach(mem, cursors.req_cons)?;
        ring.rsp_prod_pvt = cursors.rsp_prod_pvt;
        ring.rsp_prod_published = cursors.rsp_prod_published;
        ring.broken = cursors.broken;
        Ok(ring)
    }

    /// This end's private state, for [`BackRing::resume`].
    pub fn cursors(&self) -> BackCursors {
        BackCursors {
            rsp_prod_pvt: self.rsp_prod_pvt,
            rsp_prod_published: self.rsp_prod_published,
            req_cons: self.req_cons,
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

    /// Requests taken and not answered yet (responses pushed count as
    /// answered, published or not).
    pub fn unanswered(&self) -> u32 {
        self.req_cons.wrapping_sub(self.rsp_prod_pvt)
    }

    /// Requests waiting to be taken (`RING_HAS_UNCONSUMED_REQUESTS`), after
    /// checking the front's `req_prod`.
    pub fn unconsumed_requests(&mut self) -> Result<u32, RingError> {
        self.checked_req_prod().map(|prod| prod.wrapping_sub(self.req_cons))
    }

    /// Takes the next request, copied out of its slot, or `None` if the
    /// front has published none.
    pub fn take_request(&mut self) -> Result<Option<Req>, RingError> {
        let prod = self.checked_req_prod()?;
        if prod == self.req_cons {
            return Ok(None);
        }
        let bytes = &mut self.scratch[..Req::SIZE];
        // One copy, then decode from our copy (RING_COPY_REQUEST): the
        // front may rewrite the slot meanwhile, but never our copy.
        self.ring.read_entry(self.req_cons, bytes);
        let req = Req::decode(bytes);
        self.req_cons = self.req_cons.wrapping_add(1);
        Ok(Some(req))
    }

    /// Before waiting for an event: whether requests are waiting, after
    /// asking to be notified of the next one (`RING_FINAL_CHECK_FOR_REQUESTS`).
    /// `true` means take again rather than wait.
    pub fn final_check_for_requests(&mut self) -> Result<bool, RingError> {
        if self.unconsumed_requests()? > 0 {
            return Ok(true);
        }
        // Relaxed store, then the SeqCst fence (ring.h's xen_mb): the new
        // req_event is ordered before our re-read of req_prod; paired with
        // the fence in the front's publish (req_prod store, fence,
        // req_event load), either we see its requests or it sees our
        // req_event and notifies.
        self.ring.store(Index::ReqEvent, self.req_cons.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::SeqCst);
        Ok(self.unconsumed_requests()? > 0)
    }

    /// Copies `rsp` into the slot of the oldest unanswered request. The
    /// front does not see it until [`BackRing::publish_responses`].
    /// [`RingFull`] if every request taken has been answered.
    pub fn push_response(&mut self, rsp: &Rsp) -> Result<(), RingFull> {
        if self.unanswered() == 0 {
            return Err(RingFull);
        }
        let bytes = &mut self.scratch[..Rsp::SIZE];
        rsp.encode(bytes);
        // The slot is ours: we copied its request out already, and the
        // front will not reuse it before it takes this response. The
        // Release in publish_responses orders these bytes (and our earlier
        // copy of the request) before the index.
        self.ring.write_entry(self.rsp_prod_pvt, bytes);
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// Publishes every pushed response and says whether the front must be
    /// notified (`RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`).
    pub fn publish_responses(&mut self) -> bool {
        let old = self.rsp_prod_published;
        let new = self.rsp_prod_pvt;
        if old == new {
            return false;
        }
        // Release (ring.h's xen_wmb): the front, loading rsp_prod with
        // Acquire, sees the responses before the index, and our reads of
        // the requests in those slots are done before it may reuse them.
        self.ring.store(Index::RspProd, new, Ordering::Release);
        self.rsp_prod_published = new;
        // SeqCst fence (ring.h's xen_mb): rsp_prod store before rsp_event
        // load; pairs with the fence in the front's final check.
        fence(Ordering::SeqCst);
        // Relaxed: ordered by the fence; the value only picks a boolean.
        let event = self.ring.load(Index::RspEvent, Ordering::Relaxed);
        needs_notify(old, new, event)
    }

    /// The error this end stopped for, if any.
    pub fn failure(&self) -> Option<RingError> {
        self.broken
    }

    /// Reads the front's `req_prod` once and checks it. The front may have
    /// at most `RING_SIZE` requests unanswered as far as it can know (since
    /// our published `rsp_prod`), and may not move back behind requests we
    /// took. As unsigned distances from the published `rsp_prod`:
    /// `taken <= prod - rsp_prod <= RING_SIZE`. ring.h's
    /// `RING_REQUEST_PROD_OVERFLOW` checks the upper bound from
    /// `rsp_prod_pvt`; the published value is the stricter, correct base
    /// (the front cannot reuse a slot whose response it has not seen).
    /// Within these bounds a request always has a response slot, so
    /// `RING_REQUEST_CONS_OVERFLOW` cannot happen.
    fn checked_req_prod(&mut self) -> Result<u32, RingError> {
        if let Some(err) = self.broken {
            return Err(err);
        }
        // Acquire (ring.h's xen_rmb after reading req_prod): the request
        // bytes the front wrote before its Release store are visible to
        // the copies that follow.
        let prod = self.ring.load(Index::ReqProd, Ordering::Acquire);
        let base = self.rsp_prod_published;
        let claimed = prod.wrapping_sub(base);
        let taken = self.req_cons.wrapping_sub(base);
        if claimed > self.size() || claimed < taken {
            let err =
                RingError::BogusRequests { req_prod: prod, req_cons: self.req_cons, rsp_prod: base, size: self.size() };
            self.broken = Some(err);
            return Err(err);
        }
        Ok(prod)
    }
}
