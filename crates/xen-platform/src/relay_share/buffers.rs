//! The receive buffers of one relayed share: which member registered
//! each, on which key, and where it is in its cycle (free, filled, taken
//! by its owner), as the hosted hypervisor keeps them. Pure bookkeeping:
//! the service does the copying.

use rustix::io::Errno;

use crate::share::{check_segments, BufferId, Completed, Segment, MAX_BUFFERS};
use crate::DomId;

/// A share's buffers, oldest first (a transfer fills the oldest free one).
#[derive(Debug)]
pub(super) struct Buffers {
    list: Vec<Buffer>,
    next: BufferId,
}

#[derive(Debug)]
struct Buffer {
    id: BufferId,
    owner: DomId,
    key: u32,
    segments: Vec<Segment>,
    capacity: usize,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Free,
    /// A transfer wrote this many bytes.
    Filled(usize),
    /// Its owner took it and reads it: free at its next take.
    Taken,
}

impl Default for Buffers {
    fn default() -> Buffers {
        Buffers { list: Vec::new(), next: 1 }
    }
}

impl Buffers {
    /// `owner` offers `segments` (of a share of `share_len` bytes) on
    /// `key`: `EINVAL`/`EFAULT` for bad segments, `ENOSPC` past
    /// [`MAX_BUFFERS`] for the member.
    pub(super) fn register(
        &mut self,
        owner: DomId,
        key: u32,
        segments: &[Segment],
        share_len: usize,
    ) -> Result<BufferId, Errno> {
        let capacity = check_segments(segments, share_len)?;
        if self.list.iter().filter(|b| b.owner == owner).count() >= MAX_BUFFERS {
            return Err(Errno::NOSPC);
        }
        let id = self.next;
        self.next += 1;
        self.list.push(Buffer { id, owner, key, segments: segments.to_vec(), capacity, state: State::Free });
        Ok(id)
    }

    /// The oldest free buffer on `key` of a member other than `sender`
    /// that holds `len` bytes: its owner and segments. `EAGAIN` if none is
    /// free, `EMSGSIZE` if the first free one is too small.
    pub(super) fn free_for(&self, key: u32, sender: DomId, len: usize) -> Result<(usize, DomId, &[Segment]), Errno> {
        let index = self
            .list
            .iter()
            .position(|b| b.key == key && b.owner != sender && b.state == State::Free)
            .ok_or(Errno::AGAIN)?;
        let buffer = &self.list[index];
        if len > buffer.capacity {
            return Err(Errno::MSGSIZE);
        }
        Ok((index, buffer.owner, &buffer.segments))
    }

    /// Buffer `index` (from [`Buffers::free_for`]) holds `len` bytes.
    pub(super) fn fill(&mut self, index: usize, len: usize) {
        if let Some(buffer) = self.list.get_mut(index) {
            buffer.state = State::Filled(len);
        }
    }

    /// `owner`'s filled buffers, now taken; those it took last time are
    /// free again.
    pub(super) fn take(&mut self, owner: DomId) -> Vec<Completed> {
        let mut completed = Vec::new();
        for buffer in self.list.iter_mut().filter(|b| b.owner == owner) {
            match buffer.state {
                State::Taken => buffer.state = State::Free,
                State::Filled(len) => {
                    buffer.state = State::Taken;
                    completed.push(Completed { buffer: buffer.id, len });
                }
                State::Free => {}
            }
        }
        completed
    }

    /// Keeps only the buffers of the owners `keep` says.
    pub(super) fn retain_owners(&mut self, keep: impl Fn(DomId) -> bool) {
        self.list.retain(|b| keep(b.owner));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(offset: u64, len: u32) -> Segment {
        Segment { offset, len }
    }

    #[test]
    fn a_buffer_goes_free_filled_taken_free() {
        let mut buffers = Buffers::default();
        let id = buffers.register(5, 1, &[seg(0, 100)], 4096).unwrap();
        assert_eq!(buffers.free_for(1, 5, 10).unwrap_err(), Errno::AGAIN, "not to its own owner");
        assert_eq!(buffers.free_for(2, 0, 10).unwrap_err(), Errno::AGAIN, "not on another key");
        assert_eq!(buffers.free_for(1, 0, 101).unwrap_err(), Errno::MSGSIZE);
        let (index, owner, _) = buffers.free_for(1, 0, 10).unwrap();
        assert_eq!(owner, 5);
        buffers.fill(index, 10);
        assert_eq!(buffers.free_for(1, 0, 10).unwrap_err(), Errno::AGAIN, "filled is not free");
        assert_eq!(buffers.take(5), [Completed { buffer: id, len: 10 }]);
        assert_eq!(buffers.free_for(1, 0, 10).unwrap_err(), Errno::AGAIN, "taken is not free");
        assert_eq!(buffers.take(5), []);
        assert!(buffers.free_for(1, 0, 10).is_ok());
    }

    #[test]
    fn registration_is_checked_and_bounded_per_member() {
        let mut buffers = Buffers::default();
        assert_eq!(buffers.register(5, 1, &[seg(4000, 100)], 4096), Err(Errno::FAULT));
        assert_eq!(buffers.register(5, 1, &[], 4096), Err(Errno::INVAL));
        for _ in 0..MAX_BUFFERS {
            buffers.register(5, 1, &[seg(0, 1)], 4096).unwrap();
        }
        assert_eq!(buffers.register(5, 1, &[seg(0, 1)], 4096), Err(Errno::NOSPC));
        assert!(buffers.register(6, 1, &[seg(0, 1)], 4096).is_ok(), "another member's count is its own");
        buffers.retain_owners(|owner| owner != 5);
        assert!(buffers.register(5, 1, &[seg(0, 1)], 4096).is_ok());
    }
}
