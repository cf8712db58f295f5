//! xensnet: a multi-way LAN on one share. Every member is a port of a
//! switch: a frame goes to the member whose MAC address it names, a
//! broadcast or multicast frame (or one for an unknown address) to every
//! other member.
//!
//! The share is cut into one region per member index ([`REGION_PAGES`]
//! pages): [`RX_BUFFERS`] receive buffers of [`SLOT`] bytes, registered
//! on the member's key (its domid), and [`TX_SLOTS`] transmit slots.
//! Sending writes each frame into one of the sender's transmit slots and
//! transfers it to each destination's key, a batch of frames in one call
//! ([`Share::transfer_many`]): the transport copies each into a free
//! receive buffer of that member and wakes it. A member with no free
//! buffer drops the frame, as a full NIC queue does.
//!
//! A member's MAC is [`mac_of`] its domid, so a destination's domid is in
//! its address. After [`xen_platform::share::TRIGGER_CHANGED`] (a member
//! added or removed) a port refreshes, and registers its buffers again if
//! its index, and so its region, moved (the transport withdrew them). A
//! send or take that the transport refuses as made on the old pages
//! (`ESTALE`: the port had not refreshed yet) refreshes and goes again.
//! A change loses the frames already in a moved member's buffers, and
//! those sent to it before it registered again (about a millisecond).
//!
//! A buffer that was taken is free again only at the next take: a port
//! that took many at once takes again at once, so that enough stay free
//! for the next frame, whose wake-up brings the next take. (Left taken,
//! a full set of buffers would refuse every frame, and with no frame
//! delivered no wake-up would come to free them.) Under a flood it
//! stops after [`MAX_TAKES`] takes and says more may wait, so that its
//! caller can send in between and come back without waiting.

use std::collections::HashMap;
use std::io;

use rustix::io::Errno;
use xen_platform::share::{BufferId, Segment, Share, TRIGGER_CHANGED};
use xen_platform::{DomId, PAGE_SIZE};

/// The most members one LAN has.
pub const MAX_LAN_MEMBERS: usize = 16;
/// Pages of one member's region.
pub const REGION_PAGES: usize = 16;
/// Pages of a LAN's share.
pub const LAN_PAGES: usize = MAX_LAN_MEMBERS * REGION_PAGES;
/// One frame's room: an Ethernet frame of a 1500-byte MTU (1514 bytes,
/// 1518 with a VLAN tag) fits.
pub const SLOT: usize = 2048;
/// Transmit slots per member: the most frames one send carries.
pub const TX_SLOTS: usize = 8;
/// Receive buffers per member: every slot of its region but the
/// transmit slots, at its end.
pub const RX_BUFFERS: usize = REGION_PAGES * PAGE_SIZE / SLOT - TX_SLOTS;
/// The shortest frame: an Ethernet header.
pub const MIN_FRAME: usize = 14;

// The layout fits what a share allows.
const _: () = assert!(LAN_PAGES <= xen_platform::share::MAX_SHARE_PAGES);
const _: () = assert!(MAX_LAN_MEMBERS <= xen_platform::share::MAX_MEMBERS);
const _: () = assert!(RX_BUFFERS <= xen_platform::share::MAX_BUFFERS);
const _: () = assert!(SLOT <= xen_platform::share::MAX_TRANSFER);
// A batch's transfers, a frame to every other member at most.
const _: () = assert!(TX_SLOTS <= xen_platform::share::MAX_TRANSFER_BATCH);

/// The MAC address of `domid`'s port: locally administered, "XS", then
/// the domid (the platform's scheme, which the hosted hypervisor gives
/// the guest's TAP interface).
pub fn mac_of(domid: DomId) -> [u8; 6] {
    xen_platform::share::lan_mac(domid)
}

/// The domid a port's MAC address names, if it is one of ours.
pub fn domid_of_mac(mac: &[u8]) -> Option<DomId> {
    match mac {
        [0x02, 0x58, 0x53, 0x00, hi, lo] => Some(DomId::from_be_bytes([*hi, *lo])),
        _ => None,
    }
}

/// The segment of `len` bytes at `offset`.
fn segment(offset: usize, len: usize) -> io::Result<Segment> {
    let offset = u64::try_from(offset).map_err(|_| Errno::INVAL)?;
    let len = u32::try_from(len).map_err(|_| Errno::INVAL)?;
    Ok(Segment { offset, len })
}

/// The key a member's receive buffers are registered on.
fn key_of(domid: DomId) -> u32 {
    u32::from(domid)
}

/// The most takes one [`LanPort::receive`] makes.
pub const MAX_TAKES: usize = 4;

/// How many changes in a row one call follows before it gives up with
/// `ESTALE` (each change is a toolstack's request: more than a few while
/// one call runs is not a LAN at work).
const MAX_FOLLOWS: usize = 8;

/// Whether the transport refused a call made on pages that a change
/// replaced.
fn stale(e: &io::Error) -> bool {
    e.raw_os_error() == Some(Errno::STALE.raw_os_error())
}

/// What one send did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    /// Members the frame reached.
    pub delivered: usize,
    /// Members that had no free buffer for it.
    pub dropped: usize,
}

/// One member's port on a LAN.
#[derive(Debug)]
pub struct LanPort {
    share: Box<dyn Share>,
    /// The index whose region the buffers are registered in.
    registered_at: usize,
    /// Each registered buffer's offset in the share.
    buffers: HashMap<BufferId, usize>,
}

impl LanPort {
    /// Joins the LAN on `share` (this member's attachment): registers the
    /// receive buffers. `EINVAL` if the share is smaller than
    /// [`LAN_PAGES`], `ENOSPC` if this member's index is past
    /// [`MAX_LAN_MEMBERS`].
    pub fn join(share: Box<dyn Share>) -> io::Result<LanPort> {
        if share.pages().len() < LAN_PAGES * PAGE_SIZE {
            return Err(Errno::INVAL.into());
        }
        let mut port = LanPort { share, registered_at: usize::MAX, buffers: HashMap::new() };
        port.register()?;
        Ok(port)
    }

    /// This port's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        mac_of(self.domid())
    }

    fn domid(&self) -> DomId {
        self.share.members()[self.share.me()]
    }

    /// The share, for polling (readable when frames or changes wait).
    pub fn share(&self) -> &dyn Share {
        &*self.share
    }

    /// The other members' domids.
    pub fn peers(&self) -> Vec<DomId> {
        let me = self.share.me();
        self.share.members().iter().enumerate().filter(|(i, _)| *i != me).map(|(_, d)| *d).collect()
    }

    fn region(index: usize) -> usize {
        index * REGION_PAGES * PAGE_SIZE
    }

    fn tx_offset(&self, slot: usize) -> usize {
        Self::region(self.share.me()) + (RX_BUFFERS + slot) * SLOT
    }

    /// (Re)registers the receive buffers in this member's region, unless
    /// they are there. (An index only moves down, so a member whose
    /// index is the one it registered at never moved.)
    fn register(&mut self) -> io::Result<()> {
        let mut follows = 0;
        loop {
            match self.register_once() {
                Err(e) if stale(&e) && follows < MAX_FOLLOWS => {
                    follows += 1;
                    self.registered_at = usize::MAX;
                    self.share.refresh()?;
                }
                result => return result,
            }
        }
    }

    fn register_once(&mut self) -> io::Result<()> {
        let me = self.share.me();
        if me >= MAX_LAN_MEMBERS {
            return Err(Errno::NOSPC.into());
        }
        if self.registered_at == me {
            return Ok(());
        }
        self.share.unregister_all()?;
        self.buffers.clear();
        let key = key_of(self.domid());
        for slot in 0..RX_BUFFERS {
            let offset = Self::region(me) + slot * SLOT;
            let segment = segment(offset, SLOT)?;
            let id = self.share.register(key, &[segment])?;
            self.buffers.insert(id, offset);
        }
        self.registered_at = me;
        Ok(())
    }

    /// Writes `batch` into this member's transmit slots; each frame's
    /// segment.
    fn write_tx(&self, batch: &[&[u8]]) -> io::Result<Vec<Segment>> {
        let mem = self.share.pages().shared_mem();
        let mut segments = Vec::with_capacity(batch.len());
        for (slot, frame) in batch.iter().enumerate() {
            let tx = self.tx_offset(slot);
            mem.write_bytes(tx, frame);
            segments.push(segment(tx, frame.len())?);
        }
        Ok(segments)
    }

    /// Sends one Ethernet frame (destination MAC first). `EINVAL` for a
    /// frame shorter than a header or longer than [`SLOT`].
    pub fn send(&mut self, frame: &[u8]) -> io::Result<Sent> {
        self.send_many(&[frame])
    }

    /// Sends frames, [`TX_SLOTS`] at a time, each as [`LanPort::send`]
    /// does (in one call to the transport per batch whose transfers fit
    /// in one); what they did in all. `EINVAL`, and nothing sent, if one
    /// is not a frame.
    pub fn send_many(&mut self, frames: &[&[u8]]) -> io::Result<Sent> {
        if frames.iter().any(|f| f.len() < MIN_FRAME || f.len() > SLOT) {
            return Err(Errno::INVAL.into());
        }
        let mut sent = Sent::default();
        for batch in frames.chunks(TX_SLOTS) {
            let mut segments = self.write_tx(batch)?;
            let peers = self.peers();
            // Each (frame, destination) to transfer.
            let mut pending: Vec<(usize, DomId)> = Vec::new();
            for (i, frame) in batch.iter().enumerate() {
                let dst = &frame[..6];
                let unicast = (dst[0] & 1 == 0).then(|| domid_of_mac(dst)).flatten().filter(|d| peers.contains(d));
                match unicast {
                    Some(domid) => pending.push((i, domid)),
                    None => pending.extend(peers.iter().map(|&d| (i, d))),
                }
            }
            let mut follows = 0;
            while !pending.is_empty() {
                let n = pending.len().min(xen_platform::share::MAX_TRANSFER_BATCH);
                let results = {
                    let transfers: Vec<(u32, &[Segment])> =
                        pending[..n].iter().map(|&(i, d)| (key_of(d), std::slice::from_ref(&segments[i]))).collect();
                    self.share.transfer_many(&transfers)
                };
                match results {
                    Ok(results) => {
                        for result in results {
                            match result {
                                Ok(_) => sent.delivered += 1,
                                // No free buffer (the member is slow, or
                                // has not joined yet), or the membership
                                // just changed: the frame is lost for that
                                // member, as on a busy wire.
                                Err(Errno::AGAIN | Errno::PERM | Errno::NOENT) => sent.dropped += 1,
                                Err(e) => return Err(e.into()),
                            }
                        }
                        pending.drain(..n);
                    }
                    // The share changed before this port saw it: the
                    // frames were written into pages the transport no
                    // longer reads. Follow, write them again, and send
                    // what is left to those still on the LAN.
                    Err(e) if stale(&e) && follows < MAX_FOLLOWS => {
                        follows += 1;
                        self.share.refresh()?;
                        segments = self.write_tx(batch)?;
                        let peers = self.peers();
                        let before = pending.len();
                        pending.retain(|(_, d)| peers.contains(d));
                        sent.dropped += before - pending.len();
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(sent)
    }

    /// Appends the frames that arrived to `frames`, and follows the LAN's
    /// changes. Does not block (wait on [`LanPort::share`]). Returns
    /// whether more may be waiting: it stopped after [`MAX_TAKES`] full
    /// takes, and the caller should come back without waiting (no wake-up
    /// may come for them). An error `EPERM` or `ENOENT`: this member was
    /// removed or the LAN destroyed.
    pub fn receive(&mut self, frames: &mut Vec<Vec<u8>>) -> io::Result<bool> {
        let pending = self.share.take_pending()?;
        if pending & 1 << TRIGGER_CHANGED != 0 {
            self.share.refresh()?;
        }
        // The frames first, then the buffers again if they were withdrawn
        // (registering anew withdraws the filled ones too).
        let mut follows = 0;
        let mut takes = 0;
        let more = loop {
            let completed = match self.share.take_completed() {
                Err(e) if stale(&e) && follows < MAX_FOLLOWS => {
                    follows += 1;
                    self.share.refresh()?;
                    continue;
                }
                result => result?,
            };
            let mem = self.share.pages().shared_mem();
            for completed in &completed {
                let (Some(&offset), true) = (self.buffers.get(&completed.buffer), completed.len <= SLOT) else {
                    continue;
                };
                let mut frame = vec![0u8; completed.len];
                mem.read_bytes(offset, &mut frame);
                frames.push(frame);
            }
            // Taken buffers are free at the next take: after many, take
            // again now (see the module's notes).
            if completed.len() < RX_BUFFERS / 2 {
                break false;
            }
            takes += 1;
            if takes == MAX_TAKES {
                break true;
            }
        };
        self.register()?;
        Ok(more)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_carry_the_domid() {
        assert_eq!(mac_of(0x1234), [2, 0x58, 0x53, 0, 0x12, 0x34]);
        assert_eq!(domid_of_mac(&mac_of(7)), Some(7));
        assert_eq!(domid_of_mac(&[0xff; 6]), None);
        assert_eq!(domid_of_mac(&[2, 0x58, 0x53, 1, 0, 7]), None);
    }
}
