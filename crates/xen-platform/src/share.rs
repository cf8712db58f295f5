//! Xen Share: pages a set of domains may map, triggers that wake the other
//! members, and scatter-gather transfers into buffers a receiver
//! registered (`docs/xen-share.md`).
//!
//! Xen has no share hypercall; the hosted platform implements these
//! traits in its hypervisor process, and on Xen they are built from
//! grants and event channels: [`crate::relay_share`]'s dom0 service for
//! any members (each guest its own copy of the pages, transfers copied
//! by the service), and for dom0 and one guest, pages both map in place,
//! [`crate::pair_share`], which needs no service. Both are written over
//! the platform's traits, so they run hosted too. Callers see the same
//! rules everywhere:
//!
//! - only dom0 makes, changes and destroys shares ([`Shares`]);
//! - only a member attaches (`EPERM` for anyone else, `ENOENT` for a share
//!   that does not exist);
//! - removing a member moves the share to new pages for the others (a
//!   mapping cannot be taken back from a process), so the removed member
//!   keeps only old pages nobody uses and reaches nobody; the others see
//!   [`TRIGGER_CHANGED`] and [`Share::refresh`].

use std::io;
use std::os::fd::AsFd;

use rustix::io::Errno;

use crate::{DomId, MappedPages};

/// A share's reference: what a vdevice entry names. Global on the host.
pub type ShareRef = u32;

/// A registered receive buffer, as its owner knows it.
pub type BufferId = u64;

/// The most pages one share may have.
pub const MAX_SHARE_PAGES: usize = 1024;

/// The most members one share may have (one trigger word each in the
/// share's one-page trigger table).
pub const MAX_MEMBERS: usize = 64;

/// The most segments one buffer or transfer may name.
pub const MAX_SEGMENTS: usize = 16;

/// The most receive buffers one process may have registered on a share
/// (lguest's `LGUEST_MAX_DMA`).
pub const MAX_BUFFERS: usize = 32;

/// The most receive buffers one domain's processes may have registered on
/// a share in all: a guest that opens many connections to the hypervisor
/// still makes it hold a bounded amount.
pub const MAX_DOMAIN_BUFFERS: usize = 8 * MAX_BUFFERS;

/// The most bytes one transfer copies: a jumbo frame, a block request's
/// data.
pub const MAX_TRANSFER: usize = 64 * 1024;

/// The most transfers one [`Share::transfer_many`] call asks for.
pub const MAX_TRANSFER_BATCH: usize = 32;

/// The most shares that may exist at once on a host.
pub const MAX_SHARES: usize = 4096;

/// Triggers 0 to 29 are the users'.
pub const USER_TRIGGERS: u32 = 30;

/// Raised in a member when a transfer filled one of its buffers.
pub const TRIGGER_TRANSFERRED: u32 = 30;

/// Raised in every member when the share's membership or pages changed,
/// or the share was destroyed: [`Share::refresh`].
pub const TRIGGER_CHANGED: u32 = 31;

/// The MAC address of `domid`'s port on a xensnet LAN: locally
/// administered, "XS", then the domid. The hosted hypervisor gives a
/// guest's TAP interface this address, xensnet delivers by it.
pub fn lan_mac(domid: DomId) -> [u8; 6] {
    let [hi, lo] = domid.to_be_bytes();
    [0x02, 0x58, 0x53, 0x00, hi, lo]
}

/// The IPv4 address of `domid` on a hosted xensnet LAN (`10.88.0.0/16`,
/// the domid in the last two bytes), dom0's `10.88.255.254`: the domid's
/// address would be the network's own, and no domain has id 0xfffe.
pub fn lan_ip(domid: DomId) -> std::net::Ipv4Addr {
    let [hi, lo] = if domid == 0 { [0xff, 0xfe] } else { domid.to_be_bytes() };
    std::net::Ipv4Addr::new(10, 88, hi, lo)
}

/// The prefix length of [`lan_ip`]'s network.
pub const LAN_PREFIX: u8 = 16;

/// The name of a hosted guest's TAP interface in its network namespace.
pub const LAN_TAP: &str = "xsn0";

/// A run of bytes inside a share's pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "hosted", derive(serde::Serialize, serde::Deserialize))]
pub struct Segment {
    /// Its first byte, from the share's first page.
    pub offset: u64,
    /// Its length in bytes (not zero).
    pub len: u32,
}

impl Segment {
    /// The bytes the segment covers, if it is not empty and lies within
    /// `share_len` bytes.
    pub fn range_within(&self, share_len: usize) -> Option<std::ops::Range<usize>> {
        let offset = usize::try_from(self.offset).ok()?;
        let len = usize::try_from(self.len).ok()?;
        let end = offset.checked_add(len)?;
        (len > 0 && end <= share_len).then_some(offset..end)
    }
}

/// Checks a segment list against a share of `share_len` bytes: a count
/// of 1 to [`MAX_SEGMENTS`] (`EINVAL`), each segment non-empty and inside
/// the share (`EFAULT`). Returns the total length.
pub fn check_segments(segments: &[Segment], share_len: usize) -> Result<usize, rustix::io::Errno> {
    if segments.is_empty() || segments.len() > MAX_SEGMENTS {
        return Err(rustix::io::Errno::INVAL);
    }
    let mut total = 0usize;
    for segment in segments {
        let range = segment.range_within(share_len).ok_or(rustix::io::Errno::FAULT)?;
        total = total.saturating_add(range.len());
    }
    Ok(total)
}

/// A filled receive buffer, taken by its owner (free again at the owner's
/// next take).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "hosted", derive(serde::Serialize, serde::Deserialize))]
pub struct Completed {
    /// The buffer, as [`Share::register`] named it.
    pub buffer: BufferId,
    /// How many bytes the transfer wrote into it, from its first segment
    /// on.
    pub len: usize,
}

/// The toolstack's side: making and changing shares (dom0 only; others
/// get `EPERM`).
pub trait Shares: Send + std::fmt::Debug {
    /// A zeroed share of `pages` pages that `members` may attach. `EINVAL`
    /// for a page or member count out of bounds or a member named twice,
    /// `ESRCH` for a domain that does not exist, `ENOSPC` when the host
    /// has [`MAX_SHARES`].
    fn create(&self, pages: usize, members: &[DomId]) -> io::Result<ShareRef>;

    /// Lets `domid` attach `share`; the members see [`TRIGGER_CHANGED`].
    /// `EEXIST` if it is a member already, `ENOSPC` at [`MAX_MEMBERS`].
    fn add_member(&self, share: ShareRef, domid: DomId) -> io::Result<()>;

    /// Cuts `domid` off `share`: the share moves to new pages and
    /// triggers for the others, who see [`TRIGGER_CHANGED`]; `domid`'s
    /// buffers go. `ENOENT` if it is not a member.
    fn remove_member(&self, share: ShareRef, domid: DomId) -> io::Result<()>;

    /// Ends `share`: nobody may attach or refresh it; the members see
    /// [`TRIGGER_CHANGED`] and their refresh fails with `ENOENT`.
    fn destroy(&self, share: ShareRef) -> io::Result<()>;

    /// Attaches `share` as this domain, if it is a member.
    fn attach(&self, share: ShareRef) -> io::Result<Box<dyn Share>>;

    /// The share holding `domid`'s vdevice page: one page, with dom0 and
    /// the domain as members (dom0 alone for its own), made on first use
    /// and gone with the domain. dom0 may ask for any domain's, a guest
    /// for its own (`EPERM` otherwise).
    fn vdevice(&self, domid: DomId) -> io::Result<ShareRef>;
}

/// A member's attachment: the pages mapped, its triggers, its buffers
/// (Xen Share's `/dev/xenshare` for a program). Its descriptor is
/// readable while triggers are pending.
pub trait Share: AsFd + Send + std::fmt::Debug {
    /// Which share.
    fn share_ref(&self) -> ShareRef;

    /// The share's pages, mapped writable.
    fn pages(&self) -> &MappedPages;

    /// The members, as of the last attach or refresh, in member order.
    fn members(&self) -> &[DomId];

    /// This member's index in [`Share::members`].
    fn me(&self) -> usize;

    /// Counts the share's changes: a refresh that sees a new value has new
    /// members or new pages.
    fn generation(&self) -> u64;

    /// Raises trigger `n` (below [`USER_TRIGGERS`], else `EINVAL`) in
    /// every other member known at the last refresh; in this member
    /// itself when it is the only one (dom0's own vdevice page, where the
    /// toolstack and dom0's device bus are both dom0).
    fn trigger(&self, n: u32) -> io::Result<()>;

    /// Takes the triggers raised in this member since the last call, as
    /// bits, without blocking (0: none, or a wake-up whose bits another
    /// member cleared: look at everything).
    fn take_pending(&mut self) -> io::Result<u32>;

    /// Waits up to `timeout` (`None`: for ever) until a trigger is
    /// pending. Returns whether one is.
    fn wait(&self, timeout: Option<std::time::Duration>) -> io::Result<bool>;

    /// Attaches again after [`TRIGGER_CHANGED`]: the members, this
    /// member's index and, after a removal, the pages may be new (the old
    /// mapping is dropped). `ENOENT` once the share is destroyed, `EPERM`
    /// once this domain is removed.
    ///
    /// Until a member refreshes, the calls that read or write the pages
    /// for it ([`Share::register`], [`Share::transfer`],
    /// [`Share::take_completed`]) fail with `ESTALE`: made on the old
    /// mapping, they would copy bytes the member never wrote into the
    /// new pages, or point it at buffers in pages it no longer sees.
    /// After a removal, the buffers of every member whose index moved
    /// are withdrawn (they were laid out by index): such a member
    /// registers again.
    fn refresh(&mut self) -> io::Result<()>;

    /// Offers a buffer made of `segments` of the share to transfers on
    /// `key` from other members. `EINVAL`/`EFAULT` for bad segments,
    /// `ENOSPC` past [`MAX_BUFFERS`], `ESTALE` until a refresh after a
    /// change. The buffer is this process's: it goes when the process's
    /// connection does.
    fn register(&mut self, key: u32, segments: &[Segment]) -> io::Result<BufferId>;

    /// Copies the bytes of `segments` into the first free buffer another
    /// member registered on `key`, and raises [`TRIGGER_TRANSFERRED`] in
    /// its owner. Returns the bytes copied. `EAGAIN` when no buffer is
    /// free, `EMSGSIZE` when the data is longer than the buffer or
    /// [`MAX_TRANSFER`]; bad segments as for [`Share::register`];
    /// `ESTALE` until a refresh after a change. Nothing is copied on an
    /// error.
    fn transfer(&self, key: u32, segments: &[Segment]) -> io::Result<usize>;

    /// Several transfers, each as [`Share::transfer`] does it, in order,
    /// in one call (hosted: one request to the hypervisor instead of one
    /// each); each one's bytes copied or its error. `EINVAL` for the
    /// whole call past [`MAX_TRANSFER_BATCH`].
    fn transfer_many(&self, transfers: &[(u32, &[Segment])]) -> io::Result<Vec<Result<usize, Errno>>> {
        if transfers.len() > MAX_TRANSFER_BATCH {
            return Err(Errno::INVAL.into());
        }
        transfer_each(self, transfers)
    }

    /// The buffers of this process that transfers filled since the last
    /// call. Each is the caller's to read until its next call, which
    /// frees it for the next transfer (so no sender overwrites a buffer
    /// being read). `ESTALE` until a refresh after a change.
    fn take_completed(&mut self) -> io::Result<Vec<Completed>>;

    /// Withdraws every buffer this process registered on the share,
    /// filled or not (after a refresh gave the member a new place in it).
    fn unregister_all(&mut self) -> io::Result<()>;
}

/// `transfers` one [`Share::transfer`] at a time: each one's bytes or its
/// errno; an error that is no errno ends the call.
pub(crate) fn transfer_each<S: Share + ?Sized>(
    share: &S,
    transfers: &[(u32, &[Segment])],
) -> io::Result<Vec<Result<usize, Errno>>> {
    transfers
        .iter()
        .map(|&(key, segments)| match share.transfer(key, segments) {
            Ok(n) => Ok(Ok(n)),
            Err(e) => Errno::from_io_error(&e).map(Err).ok_or(e),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::io::Errno;

    #[test]
    fn lan_addresses_carry_the_domid_and_dom0s_is_not_the_networks() {
        assert_eq!(lan_ip(1), std::net::Ipv4Addr::new(10, 88, 0, 1));
        assert_eq!(lan_ip(0x0102), std::net::Ipv4Addr::new(10, 88, 1, 2));
        assert_eq!(lan_ip(0), std::net::Ipv4Addr::new(10, 88, 255, 254));
        assert_eq!(lan_mac(0x0102), [2, 0x58, 0x53, 0, 1, 2]);
    }

    fn seg(offset: u64, len: u32) -> Segment {
        Segment { offset, len }
    }

    #[test]
    fn segments_must_lie_inside_the_share() {
        assert_eq!(check_segments(&[seg(0, 4096), seg(4096, 10)], 8192), Ok(4106));
        assert_eq!(check_segments(&[seg(8190, 2)], 8192), Ok(2));
        assert_eq!(check_segments(&[seg(8190, 3)], 8192), Err(Errno::FAULT));
        assert_eq!(check_segments(&[seg(0, 0)], 8192), Err(Errno::FAULT));
        assert_eq!(check_segments(&[seg(u64::MAX, 1)], 8192), Err(Errno::FAULT));
        assert_eq!(check_segments(&[seg(u64::MAX - 1, u32::MAX)], usize::MAX), Err(Errno::FAULT));
    }

    #[test]
    fn segment_counts_are_bounded() {
        assert_eq!(check_segments(&[], 4096), Err(Errno::INVAL));
        let many = vec![seg(0, 1); MAX_SEGMENTS + 1];
        assert_eq!(check_segments(&many, 4096), Err(Errno::INVAL));
        assert_eq!(check_segments(&many[..MAX_SEGMENTS], 4096), Ok(MAX_SEGMENTS));
    }
}
