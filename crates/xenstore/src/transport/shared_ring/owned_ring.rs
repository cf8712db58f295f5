//! The guest end of the ring over the mapping this transport owns, with
//! the ring crate's infallible notifications and index errors turned into
//! `io::Error`s.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use xen_platform::{MappedPages, Notifier};
use xenstore_ring::{MappedGuest, Notify, RingError};

/// The first notification failure since it was last taken. The ring's
/// [`Notify`] cannot fail, so [`Signal`] parks the error here for the
/// operation that caused it to return.
type Failure = Arc<Mutex<Option<io::Error>>>;

/// Signals the server through the event channel.
#[derive(Debug)]
struct Signal {
    notifier: Notifier,
    failure: Failure,
}

impl Notify for Signal {
    fn notify(&mut self) {
        if let Err(err) = self.notifier.notify() {
            self.failure.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(err);
        }
    }
}

/// A [`MappedGuest`] (the ring end and the mapping its page lives in, tied
/// together by the ring crate so that no `unsafe` is needed here) whose
/// operations fail with `io::Error`s.
#[derive(Debug)]
pub(super) struct OwnedRing {
    ring: MappedGuest<MappedPages, Signal>,
    failure: Failure,
}

impl OwnedRing {
    /// The guest end of the ring in the first page of `mapping`, signalling
    /// the server with `notifier`.
    pub(super) fn new(mapping: MappedPages, notifier: Notifier) -> OwnedRing {
        let failure = Failure::default();
        let ring = MappedGuest::new(mapping, Signal { notifier, failure: Arc::clone(&failure) });
        OwnedRing { ring, failure }
    }

    /// Copies response bytes into `buf` (0: none pending).
    pub(super) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.ring.read(buf).map_err(bad_index)?;
        self.take_failure()?;
        Ok(n)
    }

    /// Copies as much of `bytes` as fits into the request queue (0: full).
    pub(super) fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let n = self.ring.write(bytes).map_err(bad_index)?;
        self.take_failure()?;
        Ok(n)
    }

    /// Asks the server to reset both queues.
    pub(super) fn request_reconnect(&mut self) -> io::Result<()> {
        self.ring.request_reconnect();
        self.take_failure()
    }

    /// The server's error indicator.
    pub(super) fn error(&self) -> u32 {
        self.ring.error()
    }

    /// The server's feature bits.
    pub(super) fn server_features(&self) -> u32 {
        self.ring.server_features()
    }

    /// The connection state field.
    pub(super) fn connection_state(&self) -> u32 {
        self.ring.connection_state()
    }

    fn take_failure(&self) -> io::Result<()> {
        match self.failure.lock().unwrap_or_else(PoisonError::into_inner).take() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

/// The server's indices are inconsistent: nothing was copied; the ring is
/// unusable until a reconnection.
fn bad_index(err: RingError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, err)
}
