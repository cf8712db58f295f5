//! Ring ends that own the memory their page lives in.
//!
//! A [`RingPage`] borrows its memory for a lifetime, which suits a page
//! owned by a caller's stack frame. A daemon keeps one ring per domain in
//! a table for as long as the domain lives, next to the mapping that backs
//! it; [`MappedServer`] and [`MappedGuest`] hold both, so that no caller
//! needs `unsafe` to tie them together.

use std::ptr::NonNull;

use crate::connection::{ConnectionError, Incoming, ServerConnection};
use crate::{GuestRing, Notify, RingError, RingPage, ServerRing};

/// Memory that holds one ring page for as long as the value lives (a
/// foreign or shared mapping, owned by the platform layer).
///
/// # Safety
///
/// Implementors guarantee that [`PageMemory::page_base`] returns the same
/// pointer every time it is called on a value, and that for the whole life
/// of that value it points to 4096 page-aligned bytes that stay mapped,
/// readable and writable, and that nothing in this process reads or writes
/// except atomically (through [`RingPage`]); the value unmaps them only
/// when dropped.
pub unsafe trait PageMemory: Send {
    /// The page's first byte.
    fn page_base(&self) -> NonNull<u8>;
}

/// Reads one field of the page in `memory` before any ring end is made
/// for it: the event channel Xen filled in for a dom0less domain
/// ([`crate::Field::EvtchnPort`]), which decides what to bind.
pub fn read_field<M: PageMemory>(memory: &M, field: crate::Field) -> u32 {
    // SAFETY: `PageMemory` guarantees the page stays mapped and is only
    // accessed atomically while `memory` lives; the view is dropped at the
    // end of this call, while `memory` is borrowed.
    let page = unsafe { RingPage::new(memory.page_base()) };
    page.field(field)
}

/// The server end of a ring ([`ServerConnection`]) together with the
/// memory of its page.
#[derive(Debug)]
pub struct MappedServer<M: PageMemory, N> {
    // Declared before `memory`, so dropped before it: the page view inside
    // never outlives the mapping. No method hands the view (or anything
    // holding it) out.
    conn: ServerConnection<'static, N>,
    memory: M,
}

impl<M: PageMemory, N: Notify> MappedServer<M, N> {
    /// Serves the ring in `memory`, signalling the guest through `notify`.
    pub fn new(memory: M, notify: N) -> MappedServer<M, N> {
        // SAFETY: `PageMemory` guarantees the page stays mapped and is only
        // accessed atomically for as long as `memory` lives. The view is
        // stored only in `conn`, which is dropped before `memory` (field
        // order) and never exposed, so the `'static` is never observable
        // beyond the mapping's life.
        let page = unsafe { RingPage::new(memory.page_base()) };
        MappedServer { conn: ServerConnection::new(ServerRing::new(page, notify)), memory }
    }

    /// See [`ServerConnection::poll`].
    pub fn poll(&mut self) -> Result<Option<Incoming>, ConnectionError> {
        self.conn.poll()
    }

    /// See [`ServerConnection::take_input`].
    pub fn take_input(&mut self) -> Vec<u8> {
        self.conn.take_input()
    }

    /// See [`ServerConnection::restore_input`].
    pub fn restore_input(&mut self, bytes: &[u8]) -> Result<(), xenstore_wire::FrameError> {
        self.conn.restore_input(bytes)
    }

    /// See [`ServerConnection::write`].
    pub fn write(&mut self, bytes: &[u8]) -> Result<usize, ConnectionError> {
        self.conn.write(bytes)
    }

    /// See [`ServerConnection::write_vectored`].
    pub fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> Result<usize, ConnectionError> {
        self.conn.write_vectored(bufs)
    }

    /// Whether the guest asks for a reconnection ([`ServerRing::reconnect_requested`]):
    /// a server that stopped reading a connection still honours it.
    pub fn reconnect_requested(&self) -> bool {
        self.conn.ring().reconnect_requested()
    }

    /// See [`ServerConnection::failure`].
    pub fn failure(&self) -> Option<ConnectionError> {
        self.conn.failure()
    }

    /// See [`ServerRing::set_features`].
    pub fn set_features(&mut self, features: u32) {
        self.conn.ring_mut().set_features(features)
    }

    /// See [`ServerRing::features`].
    pub fn features(&self) -> u32 {
        self.conn.ring().features()
    }

    /// Stops serving for an error found outside the ring (a broken event
    /// channel: [`crate::ERROR_COMM`]); see [`ServerRing::set_error`].
    pub fn set_error(&mut self, value: u32) {
        self.conn.ring_mut().set_error(value)
    }

    /// See [`ServerRing::error`].
    pub fn error(&self) -> u32 {
        self.conn.ring().error()
    }

    /// The memory (to compare mappings, or report them).
    pub fn memory(&self) -> &M {
        &self.memory
    }
}

/// The guest end of a ring ([`GuestRing`]) together with the memory of its
/// page.
#[derive(Debug)]
pub struct MappedGuest<M: PageMemory, N> {
    // Dropped before `memory`; never exposed (see MappedServer).
    ring: GuestRing<'static, N>,
    memory: M,
}

impl<M: PageMemory, N: Notify> MappedGuest<M, N> {
    /// The guest end of the ring in `memory`.
    pub fn new(memory: M, notify: N) -> MappedGuest<M, N> {
        // SAFETY: as in MappedServer::new: the view lives only in `ring`,
        // dropped before `memory`, and is never exposed.
        let page = unsafe { RingPage::new(memory.page_base()) };
        MappedGuest { ring: GuestRing::new(page, notify), memory }
    }

    /// See [`GuestRing::write`].
    pub fn write(&mut self, bytes: &[u8]) -> Result<usize, RingError> {
        self.ring.write(bytes)
    }

    /// See [`GuestRing::read`].
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, RingError> {
        self.ring.read(buf)
    }

    /// See [`GuestRing::server_features`].
    pub fn server_features(&self) -> u32 {
        self.ring.server_features()
    }

    /// See [`GuestRing::connection_state`].
    pub fn connection_state(&self) -> u32 {
        self.ring.connection_state()
    }

    /// See [`GuestRing::request_reconnect`].
    pub fn request_reconnect(&mut self) {
        self.ring.request_reconnect()
    }

    /// See [`GuestRing::error`].
    pub fn error(&self) -> u32 {
        self.ring.error()
    }

    /// Reads any field of the page as it is now.
    pub fn raw_field(&self, field: crate::Field) -> u32 {
        self.ring.page().field(field)
    }

    /// Writes any field of the page, as a misbehaving guest could (for
    /// tests of a server's defences, not for normal use).
    pub fn set_raw_field(&self, field: crate::Field, value: u32) {
        self.ring.page().set_field(field, value)
    }

    /// The memory.
    pub fn memory(&self) -> &M {
        &self.memory
    }
}

// SAFETY: an OwnedPage is a 4096-byte, 4096-aligned heap allocation that is
// freed only when the OwnedPage is dropped, and whose base never changes;
// it is only accessed through RingPage views.
unsafe impl PageMemory for crate::OwnedPage {
    fn page_base(&self) -> NonNull<u8> {
        match NonNull::new(self.page().as_ptr()) {
            Some(base) => base,
            None => unreachable!("an OwnedPage is never null"),
        }
    }
}
