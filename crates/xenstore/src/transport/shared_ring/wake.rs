//! Waiting for the server's event channel, interruptibly.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags};

/// An eventfd that [`Wake::fire`] makes readable for good, so that a thread
/// blocked in [`Wake::wait`] returns (and every later wait returns at
/// once): how `shutdown` reaches the thread polling the event channel.
#[derive(Debug)]
pub(super) struct Wake {
    fd: OwnedFd,
}

impl Wake {
    pub(super) fn new() -> io::Result<Wake> {
        Ok(Wake { fd: eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)? })
    }

    /// Makes the eventfd readable. Nothing ever reads it back.
    pub(super) fn fire(&self) {
        // EAGAIN would mean the counter is at its maximum: readable already.
        let _ = rustix::io::write(&self.fd, &1u64.to_ne_bytes());
    }

    /// Adds the wake to an epoll set (level-triggered: once fired it
    /// reports at every wait), under `data`.
    pub(super) fn watch_in(&self, set: &OwnedFd, data: u64) -> io::Result<()> {
        use rustix::event::epoll;
        Ok(epoll::add(set, &self.fd, epoll::EventData::new_u64(data), epoll::EventFlags::IN)?)
    }

    /// Blocks until `events` (the event-channel handle) is readable or the
    /// wake has fired. Consumes nothing.
    pub(super) fn wait(&self, events: BorrowedFd<'_>) -> io::Result<()> {
        loop {
            let mut fds = [PollFd::new(&events, PollFlags::IN), PollFd::new(&self.fd, PollFlags::IN)];
            match poll(&mut fds, None) {
                Ok(_) => return Ok(()),
                Err(rustix::io::Errno::INTR) => continue,
                Err(err) => return Err(err.into()),
            }
        }
    }
}
