//! The two ends of the ring: [`ServerRing`] (xenstored's side) and
//! [`GuestRing`] (the domain's side).
//!
//! Both move bytes with the same two operations, one per direction:
//!
//! - *consume* (server reads requests, guest reads responses): load our
//!   consumer index (`Relaxed`: only we write it; if the peer scribbled on
//!   it the check below catches it), load the peer's producer index **once**
//!   with `Acquire`, check `prod - cons <= 1024`, copy the bytes out, store
//!   the new consumer index with `Release`, then a `SeqCst` fence;
//! - *produce* (server writes responses, guest writes requests): load our
//!   producer index (`Relaxed`), load the peer's consumer index **once**
//!   with `Acquire`, check, copy the bytes in, store the new producer index
//!   with `Release`, then a `SeqCst` fence.
//!
//! Each ordering is commented where it is used.

#![forbid(unsafe_code)]

use core::sync::atomic::Ordering;

use crate::layout::{Field, Queue, CONNECTED, ERROR_NONE, FEATURE_RECONNECTION, RECONNECT, RING_MASK, RING_SIZE_U32};
use crate::page::{fence, RingPage};
use crate::{Notify, RingError};

/// What one consume or produce did.
struct Moved {
    /// Bytes copied.
    len: u32,
    /// Our index before the operation.
    ours_before: u32,
}

/// Checks a (consumer, producer) pair read from the page.
fn check(cons: u32, prod: u32) -> Result<u32, RingError> {
    let used = prod.wrapping_sub(cons);
    if used > RING_SIZE_U32 {
        return Err(RingError::BadIndex { cons, prod });
    }
    Ok(used)
}

/// `usize` to `u32` for lengths already bounded by the ring size.
fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

fn consume(page: &RingPage<'_>, queue: Queue, buf: &mut [u8]) -> Result<Moved, RingError> {
    // Relaxed: the consumer index is ours; nobody else legitimately writes
    // it, so there is nothing to synchronise with.
    let cons = page.load(queue.cons(), Ordering::Relaxed);
    // Acquire: pairs with the producer's Release store of this index, so
    // the bytes it wrote before publishing are visible to the copy below.
    // Read once: the copy uses only this snapshot, whatever the peer does.
    let prod = page.load(queue.prod(), Ordering::Acquire);
    let avail = check(cons, prod)?;
    let len = avail.min(len_u32(buf.len()));
    if len > 0 {
        let start = (cons & RING_MASK) as usize;
        let len_usize = len as usize;
        let first = len_usize.min(RING_SIZE_U32 as usize - start);
        page.read_data(queue, start, &mut buf[..first]);
        page.read_data(queue, 0, &mut buf[first..len_usize]);
        // Release: our reads of those bytes happen before the producer can
        // see the space as free (it Acquire-loads this index) and overwrite
        // them.
        page.store(queue.cons(), cons.wrapping_add(len), Ordering::Release);
    }
    // SeqCst fence, as the C code's xen_mb() after updating an index: the
    // store above must be visible before any later load of the peer's
    // index (the re-check "did more arrive?" / "was it waiting?"), or a
    // store-load reordering loses a wake-up: we would miss new data while the
    // peer, seeing our stale index, thinks we are still busy and does not
    // notify.
    fence(Ordering::SeqCst);
    Ok(Moved { len, ours_before: cons })
}

fn produce(page: &RingPage<'_>, queue: Queue, bytes: &[u8]) -> Result<Moved, RingError> {
    // Relaxed: the producer index is ours.
    let prod = page.load(queue.prod(), Ordering::Relaxed);
    // Acquire: pairs with the consumer's Release store, so its reads of the
    // bytes we are about to overwrite are complete. Read once.
    let cons = page.load(queue.cons(), Ordering::Acquire);
    let used = check(cons, prod)?;
    let len = (RING_SIZE_U32 - used).min(len_u32(bytes.len()));
    if len > 0 {
        let start = (prod & RING_MASK) as usize;
        let len_usize = len as usize;
        let first = len_usize.min(RING_SIZE_U32 as usize - start);
        page.write_data(queue, start, &bytes[..first]);
        page.write_data(queue, 0, &bytes[first..len_usize]);
        // Release: the bytes are visible before the new producer index
        // (the consumer Acquire-loads it before copying).
        page.store(queue.prod(), prod.wrapping_add(len), Ordering::Release);
    }
    // SeqCst fence: as in `consume`, publish before re-checking the peer.
    fence(Ordering::SeqCst);
    Ok(Moved { len, ours_before: prod })
}

/// The server (xenstored) end of a ring: reads requests, writes responses.
///
/// Call order:
///
/// 1. [`ServerRing::set_features`] before moving any data (the
///    specification requires reconnection to be advertised before the
///    server produces or consumes anything);
/// 2. on every event-channel notification (and whenever convenient): if
///    [`ServerRing::reconnect_requested`], drop the connection's state and
///    call [`ServerRing::complete_reconnect`]; otherwise call
///    [`ServerRing::read`] until it returns 0 and [`ServerRing::write`]
///    while output is pending and it makes progress;
/// 3. on any error (a [`RingError`], or a protocol violation found above
///    this layer) call [`ServerRing::set_error`] and stop serving the ring.
///
/// The server notifies the guest whenever it moved any bytes, as the C
/// daemon does: guests in the wild may wait for an event after each reply
/// without re-checking the ring, so the server does not suppress
/// notifications.
#[derive(Debug)]
pub struct ServerRing<'a, N> {
    page: RingPage<'a>,
    notify: N,
    features: u32,
}

impl<'a, N: Notify> ServerRing<'a, N> {
    /// The server end of `page`, signalling the guest through `notify`.
    /// Advertises no features until [`ServerRing::set_features`].
    pub fn new(page: RingPage<'a>, notify: N) -> ServerRing<'a, N> {
        ServerRing { page, notify, features: 0 }
    }

    /// The page.
    pub fn page(&self) -> RingPage<'a> {
        self.page
    }

    /// Drains up to `buf.len()` request bytes into `buf`, returning how many
    /// were copied (0: nothing pending). Notifies the guest if it copied
    /// anything (the guest may be waiting for space).
    ///
    /// A [`RingError::BadIndex`] means the guest corrupted the indices;
    /// nothing was copied and nothing changed. Set
    /// [`crate::ERROR_RINGIDX`] and stop serving the ring.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, RingError> {
        let moved = consume(&self.page, Queue::Req, buf)?;
        if moved.len > 0 {
            self.notify.notify();
        }
        Ok(moved.len as usize)
    }

    /// Writes as much of `bytes` as fits into the response queue,
    /// returning how many were written (0: the queue is full). Notifies the
    /// guest if it wrote anything. Errors as for [`ServerRing::read`].
    pub fn write(&mut self, bytes: &[u8]) -> Result<usize, RingError> {
        let moved = produce(&self.page, Queue::Rsp, bytes)?;
        if moved.len > 0 {
            self.notify.notify();
        }
        Ok(moved.len as usize)
    }

    /// Request bytes pending (validated indices).
    pub fn readable(&self) -> Result<usize, RingError> {
        let cons = self.page.load(Field::ReqCons, Ordering::Relaxed);
        // Acquire: as in a read; the caller is likely to read next.
        let prod = self.page.load(Field::ReqProd, Ordering::Acquire);
        check(cons, prod).map(|n| n as usize)
    }

    /// Free space in the response queue (validated indices).
    pub fn writable(&self) -> Result<usize, RingError> {
        let prod = self.page.load(Field::RspProd, Ordering::Relaxed);
        // Acquire: as in a write.
        let cons = self.page.load(Field::RspCons, Ordering::Acquire);
        check(cons, prod).map(|used| (RING_SIZE_U32 - used) as usize)
    }

    /// Advertises `features` (bits of [`crate::FEATURE_RECONNECTION`],
    /// [`crate::FEATURE_ERROR`], [`crate::FEATURE_WATCH_DEPTH`]) in addition
    /// to those already advertised: the specification never clears a bit.
    pub fn set_features(&mut self, features: u32) {
        self.features |= features;
        // Release: anything the server set up before advertising (for
        // instance resetting the connection state) is visible to a guest
        // that sees the bit.
        self.page.store(Field::ServerFeatures, self.features, Ordering::Release);
    }

    /// The features this end advertised (its own record, not the page,
    /// which the guest may overwrite).
    pub fn features(&self) -> u32 {
        self.features
    }

    /// The connection state field as the guest left it
    /// ([`crate::CONNECTED`] or [`crate::RECONNECT`]; anything else is the
    /// guest's nonsense).
    pub fn connection_state(&self) -> u32 {
        // Acquire: when the guest asks for a reconnection, what it did
        // before is visible; nothing depends on it, but it costs nothing.
        self.page.load(Field::Connection, Ordering::Acquire)
    }

    /// Whether the guest asked for a reconnection, and we advertised the
    /// feature (otherwise the field has no meaning and is ignored).
    pub fn reconnect_requested(&self) -> bool {
        self.features & FEATURE_RECONNECTION != 0 && self.connection_state() == RECONNECT
    }

    /// Server side of the reconnection handshake (xenstore-ring.txt, "The
    /// ring reconnection feature"), once the caller has dropped the
    /// connection's partial packets, in-flight requests, watches and
    /// transactions: empties both queues (request consumer := request
    /// producer; response producer := response consumer), clears the error
    /// indicator, sets the connection state to [`crate::CONNECTED`] and
    /// notifies the guest.
    ///
    /// Clearing the error makes a ring stopped for an error usable again
    /// after a reconnection, which the specification allows ("it might be
    /// possible that a reconnect ... can be performed").
    pub fn complete_reconnect(&mut self) {
        // Acquire on the guest-written indices: nothing is copied, but the
        // snapshot is as fresh as a data operation's would be. The guest
        // ignores every field but the connection state until we publish
        // CONNECTED, so these plain stores cannot confuse it.
        let req_prod = self.page.load(Field::ReqProd, Ordering::Acquire);
        self.page.store(Field::ReqCons, req_prod, Ordering::Relaxed);
        let rsp_cons = self.page.load(Field::RspCons, Ordering::Acquire);
        self.page.store(Field::RspProd, rsp_cons, Ordering::Relaxed);
        self.page.store(Field::Error, ERROR_NONE, Ordering::Relaxed);
        // Release: a guest that Acquire-loads CONNECTED sees the emptied
        // queues and the cleared error.
        self.page.store(Field::Connection, CONNECTED, Ordering::Release);
        // SeqCst fence: the state change is visible before the notification
        // (and before any later check of the guest's fields).
        fence(Ordering::SeqCst);
        self.notify.notify();
    }

    /// Sets the error indicator (one of [`crate::ERROR_COMM`],
    /// [`crate::ERROR_RINGIDX`], [`crate::ERROR_PROTO`]) and notifies the
    /// guest. The caller stops serving the ring afterwards; the field has a
    /// meaning for the guest only if [`crate::FEATURE_ERROR`] is advertised.
    pub fn set_error(&mut self, value: u32) {
        // Release, then a fence before the notification: the guest woken by
        // it sees the value.
        self.page.store(Field::Error, value, Ordering::Release);
        fence(Ordering::SeqCst);
        self.notify.notify();
    }

    /// The error indicator as on the page.
    pub fn error(&self) -> u32 {
        self.page.load(Field::Error, Ordering::Relaxed)
    }
}

/// The guest end of a ring: writes requests, reads responses.
///
/// Call order: check [`GuestRing::server_features`] and
/// [`GuestRing::connection_state`] (wait while it is
/// [`crate::RECONNECT`]); then [`GuestRing::write`] requests and
/// [`GuestRing::read`] responses, waiting for an event whenever neither
/// makes progress (after a call that returned 0: the fence in it makes the
/// check race-free). [`GuestRing::request_reconnect`] resets the ring.
///
/// The guest suppresses notifications the server cannot need, as Linux's
/// xenbus driver does: after writing it notifies only if the server had
/// consumed everything written before (so it may be asleep); after reading
/// it notifies only if the queue had been full (so the server may be
/// waiting for space). The `SeqCst` fence between publishing an index and
/// re-reading the server's makes this safe.
#[derive(Debug)]
pub struct GuestRing<'a, N> {
    page: RingPage<'a>,
    notify: N,
}

impl<'a, N: Notify> GuestRing<'a, N> {
    /// The guest end of `page`, signalling the server through `notify`.
    pub fn new(page: RingPage<'a>, notify: N) -> GuestRing<'a, N> {
        GuestRing { page, notify }
    }

    /// The page.
    pub fn page(&self) -> RingPage<'a> {
        self.page
    }

    /// Writes as much of `bytes` as fits into the request queue, returning
    /// how many were written (0: full). A [`RingError::BadIndex`] means the
    /// server's indices are inconsistent; nothing was written.
    pub fn write(&mut self, bytes: &[u8]) -> Result<usize, RingError> {
        let moved = produce(&self.page, Queue::Req, bytes)?;
        if moved.len > 0 {
            // Relaxed: ordered after our producer store by the fence in
            // `produce` (check-after-publish).
            let cons_now = self.page.load(Field::ReqCons, Ordering::Relaxed);
            let new_prod = moved.ours_before.wrapping_add(moved.len);
            let in_flight = new_prod.wrapping_sub(cons_now);
            // The server still had older bytes to consume: it is awake and
            // will find ours when it re-checks. Otherwise (or if its index
            // is nonsense) wake it.
            let server_busy = in_flight > moved.len && in_flight <= RING_SIZE_U32;
            if !server_busy {
                self.notify.notify();
            }
        }
        Ok(moved.len as usize)
    }

    /// Copies up to `buf.len()` response bytes into `buf`, returning how
    /// many (0: nothing pending). Errors as for [`GuestRing::write`].
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, RingError> {
        let moved = consume(&self.page, Queue::Rsp, buf)?;
        if moved.len > 0 {
            // Relaxed: ordered after our consumer store by the fence.
            let prod_now = self.page.load(Field::RspProd, Ordering::Relaxed);
            // The queue was full before our read (from our old index): the
            // server may be waiting for space.
            if prod_now.wrapping_sub(moved.ours_before) >= RING_SIZE_U32 {
                self.notify.notify();
            }
        }
        Ok(moved.len as usize)
    }

    /// The server's feature bitmap.
    pub fn server_features(&self) -> u32 {
        // Acquire: pairs with the server's Release in `set_features`.
        self.page.load(Field::ServerFeatures, Ordering::Acquire)
    }

    /// The connection state ([`crate::CONNECTED`] or [`crate::RECONNECT`]).
    pub fn connection_state(&self) -> u32 {
        // Acquire: pairs with the server's Release of CONNECTED in
        // `complete_reconnect`, so the emptied queues are visible.
        self.page.load(Field::Connection, Ordering::Acquire)
    }

    /// Asks the server to reset the ring: sets the connection state to
    /// [`crate::RECONNECT`] and notifies. Only meaningful if the server
    /// advertises [`crate::FEATURE_RECONNECTION`]. Until
    /// [`GuestRing::connection_state`] is back to [`crate::CONNECTED`], the
    /// guest must ignore every other field (do not read or write).
    pub fn request_reconnect(&mut self) {
        // Release + fence: the request is visible before the notification.
        self.page.store(Field::Connection, RECONNECT, Ordering::Release);
        fence(Ordering::SeqCst);
        self.notify.notify();
    }

    /// The server's error indicator ([`crate::ERROR_NONE`] if none; a
    /// client must accept values it does not know).
    pub fn error(&self) -> u32 {
        // Acquire: pairs with the server's Release in `set_error`.
        self.page.load(Field::Error, Ordering::Acquire)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::layout::{ERROR_PROTO, ERROR_RINGIDX, FEATURE_ERROR, RING_SIZE};
    use crate::page::OwnedPage;

    fn counter() -> (std::rc::Rc<Cell<usize>>, impl FnMut()) {
        let count = std::rc::Rc::new(Cell::new(0));
        let c = count.clone();
        (count, move || c.set(c.get() + 1))
    }

    fn set_indices(page: RingPage<'_>, req: u32, rsp: u32) {
        for (f, v) in [(Field::ReqCons, req), (Field::ReqProd, req), (Field::RspCons, rsp), (Field::RspProd, rsp)] {
            page.set_field(f, v);
        }
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0u8..=255).cycle().take(len).map(|b| b.wrapping_mul(31).wrapping_add(seed)).collect()
    }

    #[test]
    fn request_round_trip_at_arbitrary_start_arrives_intact() {
        for start in [0, 1, 1000, 0x8000_0000, u32::MAX - 5, u32::MAX] {
            let owned = OwnedPage::new();
            set_indices(owned.page(), start, start);
            let mut guest = GuestRing::new(owned.page(), || {});
            let mut server = ServerRing::new(owned.page(), || {});
            let msg = pattern(300, 7);
            assert_eq!(guest.write(&msg).unwrap(), 300);
            let mut buf = [0u8; 512];
            assert_eq!(server.read(&mut buf).unwrap(), 300);
            assert_eq!(&buf[..300], &msg[..]);
            assert_eq!(owned.page().field(Field::ReqCons), start.wrapping_add(300));
        }
    }

    #[test]
    fn message_split_across_wrap_arrives_intact() {
        let owned = OwnedPage::new();
        // Requests start 3 bytes before the end of the queue (and of the
        // u32 range); responses 10 bytes before the end of the queue.
        let start = u32::MAX - 2;
        assert_eq!(start & RING_MASK, 1021);
        set_indices(owned.page(), start, 1014);
        let mut guest = GuestRing::new(owned.page(), || {});
        let mut server = ServerRing::new(owned.page(), || {});
        let msg = pattern(100, 3);
        assert_eq!(guest.write(&msg).unwrap(), 100);
        let mut buf = [0u8; 100];
        assert_eq!(server.read(&mut buf).unwrap(), 100);
        assert_eq!(buf.to_vec(), msg);
        // And responses, starting 10 bytes before the end of the queue.
        assert_eq!(server.write(&msg).unwrap(), 100);
        let mut back = [0u8; 100];
        assert_eq!(guest.read(&mut back).unwrap(), 100);
        assert_eq!(back.to_vec(), msg);
    }

    #[test]
    fn write_to_full_ring_stops_at_exactly_1024() {
        let owned = OwnedPage::new();
        set_indices(owned.page(), u32::MAX - 100, 5);
        let mut guest = GuestRing::new(owned.page(), || {});
        let mut server = ServerRing::new(owned.page(), || {});
        let msg = pattern(1500, 1);
        assert_eq!(guest.write(&msg).unwrap(), RING_SIZE);
        assert_eq!(guest.write(&msg).unwrap(), 0);
        assert_eq!(server.readable().unwrap(), RING_SIZE);
        let mut buf = vec![0u8; 2000];
        assert_eq!(server.read(&mut buf).unwrap(), RING_SIZE);
        assert_eq!(&buf[..RING_SIZE], &msg[..RING_SIZE]);
        assert_eq!(server.read(&mut buf).unwrap(), 0);
        assert_eq!(server.write(&msg).unwrap(), RING_SIZE);
        assert_eq!(server.writable().unwrap(), 0);
        assert_eq!(server.write(&msg).unwrap(), 0);
    }

    #[test]
    fn read_with_corrupt_indices_returns_bad_index_and_copies_nothing() {
        let owned = OwnedPage::new();
        let page = owned.page();
        page.set_field(Field::ReqCons, 10);
        page.set_field(Field::ReqProd, 10 + 1025);
        let mut server = ServerRing::new(page, || {});
        let mut buf = [0xAAu8; 64];
        let err = server.read(&mut buf).unwrap_err();
        assert_eq!(err, RingError::BadIndex { cons: 10, prod: 1035 });
        assert_eq!(err.indicator(), ERROR_RINGIDX);
        assert!(buf.iter().all(|&b| b == 0xAA));
        assert_eq!(page.field(Field::ReqCons), 10);
        // Producer behind the consumer is the same corruption.
        page.set_field(Field::ReqProd, 9);
        assert!(matches!(server.read(&mut buf), Err(RingError::BadIndex { .. })));
    }

    #[test]
    fn write_with_corrupt_indices_returns_bad_index_and_writes_nothing() {
        let owned = OwnedPage::new();
        let page = owned.page();
        page.set_field(Field::RspProd, 5000);
        page.set_field(Field::RspCons, 0);
        let mut server = ServerRing::new(page, || {});
        assert!(matches!(server.write(b"abc"), Err(RingError::BadIndex { .. })));
        assert_eq!(page.field(Field::RspProd), 5000);
        let mut buf = [0u8; 3];
        page.read_data(Queue::Rsp, 5000 & 1023, &mut buf);
        assert_eq!(buf, [0, 0, 0]);
    }

    #[test]
    fn reconnect_drops_partial_data_and_restores_connected() {
        let owned = OwnedPage::new();
        let page = owned.page();
        set_indices(page, 77, u32::MAX - 3);
        let (notified, notify) = counter();
        let mut server = ServerRing::new(page, notify);
        server.set_features(crate::layout::FEATURE_RECONNECTION);
        let mut guest = GuestRing::new(page, || {});
        guest.write(b"partial request").unwrap();
        server.write(b"partial reply").unwrap();
        let before = notified.get();
        assert!(!server.reconnect_requested());
        guest.request_reconnect();
        assert_eq!(server.connection_state(), RECONNECT);
        assert!(server.reconnect_requested());
        server.complete_reconnect();
        assert_eq!(notified.get(), before + 1);
        assert_eq!(guest.connection_state(), CONNECTED);
        assert_eq!(page.field(Field::ReqCons), page.field(Field::ReqProd));
        assert_eq!(page.field(Field::RspCons), page.field(Field::RspProd));
        let mut buf = [0u8; 64];
        assert_eq!(server.read(&mut buf).unwrap(), 0);
        assert_eq!(guest.read(&mut buf).unwrap(), 0);
    }

    #[test]
    fn reconnect_request_without_feature_is_ignored() {
        let owned = OwnedPage::new();
        let mut server = ServerRing::new(owned.page(), || {});
        let mut guest = GuestRing::new(owned.page(), || {});
        guest.request_reconnect();
        assert!(!server.reconnect_requested());
        // A guest cannot grant itself the feature by writing the bitmap.
        owned.page().set_field(Field::ServerFeatures, 1);
        assert!(!server.reconnect_requested());
        server.set_features(FEATURE_ERROR);
        assert_eq!(owned.page().field(Field::ServerFeatures), FEATURE_ERROR);
    }

    #[test]
    fn set_error_is_visible_to_guest_and_notifies() {
        let owned = OwnedPage::new();
        let (notified, notify) = counter();
        let mut server = ServerRing::new(owned.page(), notify);
        server.set_features(FEATURE_ERROR);
        let guest = GuestRing::new(owned.page(), || {});
        assert_eq!(guest.error(), ERROR_NONE);
        server.set_error(ERROR_PROTO);
        assert_eq!(guest.error(), ERROR_PROTO);
        assert_eq!(server.error(), ERROR_PROTO);
        assert_eq!(notified.get(), 1);
        assert_eq!(guest.server_features(), FEATURE_ERROR);
    }

    #[test]
    fn server_notifies_on_every_progress() {
        let owned = OwnedPage::new();
        let (notified, notify) = counter();
        let mut server = ServerRing::new(owned.page(), notify);
        let mut guest = GuestRing::new(owned.page(), || {});
        let mut buf = [0u8; 8];
        assert_eq!(server.read(&mut buf).unwrap(), 0);
        assert_eq!(notified.get(), 0);
        guest.write(b"abcd").unwrap();
        server.read(&mut buf).unwrap();
        server.write(b"x").unwrap();
        assert_eq!(notified.get(), 2);
    }

    #[test]
    fn guest_write_notifies_only_when_server_caught_up() {
        let owned = OwnedPage::new();
        let (notified, notify) = counter();
        let mut guest = GuestRing::new(owned.page(), notify);
        let mut server = ServerRing::new(owned.page(), || {});
        guest.write(b"one").unwrap();
        assert_eq!(notified.get(), 1);
        // The server has not consumed "one": it is still busy.
        guest.write(b"two").unwrap();
        assert_eq!(notified.get(), 1);
        let mut buf = [0u8; 16];
        assert_eq!(server.read(&mut buf).unwrap(), 6);
        guest.write(b"three").unwrap();
        assert_eq!(notified.get(), 2);
    }

    #[test]
    fn guest_read_notifies_only_when_queue_was_full() {
        let owned = OwnedPage::new();
        let (notified, notify) = counter();
        let mut guest = GuestRing::new(owned.page(), notify);
        let mut server = ServerRing::new(owned.page(), || {});
        let mut buf = [0u8; 2048];
        server.write(&[1; 10]).unwrap();
        guest.read(&mut buf[..5]).unwrap();
        assert_eq!(notified.get(), 0);
        guest.read(&mut buf).unwrap();
        server.write(&[2; RING_SIZE]).unwrap();
        guest.read(&mut buf[..1]).unwrap();
        assert_eq!(notified.get(), 1);
    }
}
