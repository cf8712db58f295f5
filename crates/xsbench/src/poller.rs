//! Readiness of many connections at once (epoll), for the workloads that
//! hold hundreds of connections: watch fan-out and many clients.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use anyhow::Result;
use rustix::buffer::spare_capacity;
use rustix::event::epoll;
use rustix::time::Timespec;

/// An epoll set whose entries are indexes into the caller's table.
pub struct Poller {
    ep: OwnedFd,
    events: Vec<epoll::Event>,
}

impl std::fmt::Debug for Poller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poller").field("ep", &self.ep).finish_non_exhaustive()
    }
}

impl Poller {
    /// An empty set.
    pub fn new() -> Result<Poller> {
        Ok(Poller { ep: epoll::create(epoll::CreateFlags::CLOEXEC)?, events: Vec::with_capacity(1024) })
    }

    /// Watches `fd` for input, reporting it as `index`.
    pub fn add(&self, fd: impl AsFd, index: usize) -> Result<()> {
        epoll::add(&self.ep, fd, epoll::EventData::new_u64(index as u64), epoll::EventFlags::IN)?;
        Ok(())
    }

    /// Indexes of the readable entries; empty after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Result<Vec<usize>> {
        self.events.clear();
        let ts = Timespec::try_from(timeout)?;
        loop {
            match epoll::wait(&self.ep, spare_capacity(&mut self.events), Some(&ts)) {
                Ok(_) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        // Indexes were usizes when added.
        #[allow(clippy::cast_possible_truncation)]
        Ok(self.events.iter().map(|e| e.data.u64() as usize).collect())
    }
}
