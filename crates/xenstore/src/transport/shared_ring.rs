//! A guest's own xenstore ring as a [`Transport`]: what a domain without a
//! xenbus driver in its kernel (a hosted guest process) talks through.
//!
//! # Waiting without losing a wake-up
//!
//! A reader waits for responses and a writer for space in the request
//! queue, and both are signalled by the one event channel. The state (the
//! ring, a `polling` flag, the shutdown flag) sits behind one mutex. A
//! thread that cannot make progress either becomes *the poller* (when
//! nobody is polling) or sleeps on a condition variable (when somebody
//! is). The poller, with the lock held:
//!
//! 1. *arms*: takes the pending events off the handle, so that the
//!    handle's fd becomes readable only for notifications sent after this;
//! 2. *re-checks* the ring (the caller's attempt to read or write);
//! 3. only if that made no progress, sets `polling`, drops the lock and
//!    polls the event-channel fd (and the shutdown eventfd);
//! 4. on return re-locks, clears `polling` and wakes every sleeper, which
//!    all re-check the ring (one of them becomes the next poller).
//!
//! Every thread first tries once without arming (most tries succeed: no
//! system call at all); arming is for a thread about to sleep.
//!
//! Where the platform lets the port be polled on its own
//! ([`EventChannels::poll_directly`]: hosted), the poller waits in an
//! epoll set of its own holding that descriptor (edge-triggered, as the
//! platform asks: it is never read) and the shutdown wake: arming is one
//! `epoll_wait` that takes the edges already there, waiting is another.
//! No handle's shared set sits between the notification and the waiting
//! thread, and no look says which port fired.
//!
//! Any change the server makes after step 2 is followed by a notification
//! (the server notifies whenever it moves bytes or sets the error
//! indicator), which step 3 sees because step 1 came first. A sleeper
//! checked the ring under the lock while the poller was armed, and the
//! poller's broadcast also happens under the lock, so whatever the sleeper
//! missed wakes the poller, which wakes the sleeper. Only the poller takes
//! pending events, since taking them is what re-arms the fd; a second
//! thread doing it could swallow the poller's notification.

mod indicator;
mod owned_ring;
mod wake;

use std::fmt;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use xen_platform::{EventChannels, MappedPages, Port};
use xenstore_ring::{CONNECTED, ERROR_NONE, FEATURE_RECONNECTION};

pub use indicator::ServerRingError;
use owned_ring::OwnedRing;
use wake::Wake;

use super::Transport;

/// The guest end of its xenstore ring page, driven directly (no kernel
/// driver in between).
///
/// Writes copy whole messages into the request queue, waiting for the
/// server to make room when it is full; reads come from the response queue.
/// The ring crate ([`xenstore_ring::MappedGuest`]) does the memory
/// ordering, keeps the mapping alive as long as its view of the page, and
/// notifies the server. If the server sets the ring's error indicator,
/// reads and writes fail with a [`ServerRingError`] instead of waiting,
/// until [`SharedRing::reconnect`]; a [`Client`](crate::Client) does that
/// by itself ([`Transport::resume`]) when the server supports it.
pub struct SharedRing {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Broadcast when the poller stops polling, and on shutdown.
    changed: Condvar,
    /// Used only by the poller (one thread at a time), so never contended;
    /// the mutex is for `take_pending`'s `&mut` and for `Sync`.
    events: Mutex<Box<dyn EventChannels>>,
    /// Interrupts the poller on shutdown.
    wake: Wake,
    port: Port,
    /// Where the platform has a descriptor for the port alone: an epoll
    /// set of the port's descriptor (edge-triggered) and the wake, which
    /// the poller waits in instead of the handle.
    direct: Option<DirectWait>,
}

/// [`Shared::direct`]: the set, and the port's descriptor it watches
/// (kept open for as long as the watch is wanted).
struct DirectWait {
    set: OwnedFd,
    _port: OwnedFd,
}

struct State {
    ring: OwnedRing,
    /// A thread is polling the event channel and will broadcast `changed`
    /// when it stops.
    polling: bool,
    /// Threads waiting on `changed`: the poller broadcasts only if there
    /// are any (a broadcast is a system call even to nobody).
    sleepers: usize,
    shut_down: bool,
    /// Scratch space for `take_pending`.
    pending: Vec<Port>,
}

/// Locks, ignoring poisoning: the state is a few flags and the ring, which
/// a panicking thread cannot leave half-updated in a way that matters.
fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SharedRing {
    /// The guest end of the ring in `store_page` (its first page), whose
    /// server is signalled through `port` of `events`. The port must
    /// already be bound or claimed on that handle; the transport takes the
    /// handle over (and so its other ports: any of them firing makes it
    /// re-check the ring, which is harmless).
    pub fn new(store_page: MappedPages, mut events: Box<dyn EventChannels>, port: Port) -> io::Result<SharedRing> {
        let notifier = events.notifier(port)?;
        let wake = Wake::new()?;
        let direct = match events.poll_directly(port)? {
            Some(fd) => Some(direct_set(fd, &wake)?),
            None => None,
        };
        let ring = OwnedRing::new(store_page, notifier);
        let state = State { ring, polling: false, sleepers: 0, shut_down: false, pending: Vec::new() };
        let shared = Shared {
            state: Mutex::new(state),
            changed: Condvar::new(),
            events: Mutex::new(events),
            wake,
            port,
            direct,
        };
        Ok(SharedRing { shared: Arc::new(shared) })
    }

    /// Asks the server to reset the ring (both queues emptied; the server
    /// drops this domain's watches, transactions and requests in flight)
    /// and waits until it has, if the server supports reconnection
    /// (otherwise does nothing). For a fresh start when an earlier user of
    /// the same page may have left partial messages behind; call it before
    /// handing the transport to a client.
    pub fn reconnect(&self) -> io::Result<()> {
        {
            let mut state = self.shared.lock();
            if state.ring.server_features() & FEATURE_RECONNECTION == 0 {
                return Ok(());
            }
            state.ring.request_reconnect()?;
        }
        self.shared.until(|state| {
            if state.shut_down {
                return Err(shut_down());
            }
            Ok((state.ring.connection_state() == CONNECTED).then_some(()))
        })
    }
}

impl fmt::Debug for SharedRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedRing").field("port", &self.shared.port).finish_non_exhaustive()
    }
}

impl Transport for SharedRing {
    fn reader(&self) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(SharedRingReader { shared: Arc::clone(&self.shared) }))
    }

    fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        self.shared.write_all(bytes)
    }

    fn shutdown(&self) {
        self.shared.shutdown();
    }

    /// The server set the error indicator (any value: `ERROR_COMM` after a
    /// daemon restart, or a fault it blames on this guest) and supports
    /// reconnection.
    fn can_resume(&self, err: &io::Error) -> bool {
        let indicator = err.get_ref().is_some_and(|inner| inner.is::<ServerRingError>());
        indicator && self.shared.lock().ring.server_features() & FEATURE_RECONNECTION != 0
    }

    /// [`SharedRing::reconnect`]: the server empties both queues and clears
    /// the error indicator.
    fn resume(&self) -> io::Result<()> {
        self.reconnect()
    }
}

/// The response side of a [`SharedRing`], for the client's reader thread:
/// blocks until response bytes arrive; end of file after
/// [`Transport::shutdown`].
struct SharedRingReader {
    shared: Arc<Shared>,
}

impl Read for SharedRingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.shared.until(|state| {
            if state.shut_down {
                return Ok(Some(0));
            }
            if !state.usable()? {
                return Ok(None);
            }
            let n = state.ring.read(buf)?;
            Ok((n > 0).then_some(n))
        })
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        let mut rest = bytes;
        self.until(|state| {
            if state.shut_down {
                return Err(shut_down());
            }
            if !state.usable()? {
                return Ok(None);
            }
            while !rest.is_empty() {
                let n = state.ring.write(rest)?;
                if n == 0 {
                    return Ok(None);
                }
                rest = rest.get(n..).unwrap_or_default();
            }
            Ok(Some(()))
        })
    }

    fn shutdown(&self) {
        let mut state = self.lock();
        state.shut_down = true;
        self.wake.fire();
        self.changed.notify_all();
    }

    /// Calls `attempt` with the lock held until it returns `Some` (or an
    /// error), waiting for the server between attempts (see the module
    /// docs for why no notification is lost).
    ///
    /// The first attempt comes before any arming: most succeed (a reply
    /// is often in by the time its caller looks, the daemon having run
    /// when notified), and then the event channel is never touched.
    /// Notifications left pending make a later poll return at once, which
    /// costs that one call an extra look.
    fn until<T>(&self, mut attempt: impl FnMut(&mut State) -> io::Result<Option<T>>) -> io::Result<T> {
        let mut state = self.lock();
        loop {
            if let Some(done) = attempt(&mut state)? {
                return Ok(done);
            }
            if state.polling {
                state.sleepers += 1;
                state = self.changed.wait(state).unwrap_or_else(PoisonError::into_inner);
                state.sleepers -= 1;
                continue;
            }
            // The poller. Arm, then look again: what came before the arming
            // this look sees, what comes after it wakes the poll.
            match &self.direct {
                Some(direct) => take_edges(&direct.set, false)?,
                None => {
                    let pending = &mut state.pending;
                    pending.clear();
                    lock(&self.events).take_pending(pending)?;
                }
            }
            if let Some(done) = attempt(&mut state)? {
                return Ok(done);
            }
            state.polling = true;
            drop(state);
            let polled = match &self.direct {
                Some(direct) => take_edges(&direct.set, true),
                None => {
                    let events = lock(&self.events);
                    self.wake.wait(events.as_fd())
                }
            };
            state = self.lock();
            state.polling = false;
            if state.sleepers > 0 {
                self.changed.notify_all();
            }
            polled?;
        }
    }
}

impl State {
    /// Whether the ring may be used now: an error if the server has stopped
    /// serving it, `false` while a reconnection is in progress.
    fn usable(&self) -> io::Result<bool> {
        let indicator = self.ring.error();
        if indicator != ERROR_NONE {
            return Err(ServerRingError { indicator }.into());
        }
        // The connection field means something only with the feature;
        // while it says RECONNECT the guest must leave the queues alone.
        let reconnecting =
            self.ring.server_features() & FEATURE_RECONNECTION != 0 && self.ring.connection_state() != CONNECTED;
        Ok(!reconnecting)
    }
}

/// The poller's own epoll set: the port's descriptor, edge-triggered, and
/// the shutdown wake.
fn direct_set(port_fd: OwnedFd, wake: &Wake) -> io::Result<DirectWait> {
    use rustix::event::epoll;
    let set = epoll::create(epoll::CreateFlags::CLOEXEC)?;
    epoll::add(&set, &port_fd, epoll::EventData::new_u64(0), epoll::EventFlags::IN | epoll::EventFlags::ET)?;
    wake.watch_in(&set, 1)?;
    Ok(DirectWait { set, _port: port_fd })
}

/// Takes what the direct set has; with `wait`, waits until something
/// comes. Taking the port's edges is what arms it.
fn take_edges(set: &OwnedFd, wait: bool) -> io::Result<()> {
    use rustix::event::epoll;
    let mut events = [std::mem::MaybeUninit::<epoll::Event>::uninit(); 4];
    let now = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
    let timeout = (!wait).then_some(&now);
    loop {
        match epoll::wait(set, &mut events, timeout) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

fn shut_down() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the xenstore ring transport was shut down")
}
