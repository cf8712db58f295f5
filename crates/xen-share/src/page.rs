//! The vdevice page's layout: one page per domain, written by the
//! toolstack, acknowledged by the guest (lguest's device page, with
//! virtio's status bits).
//!
//! ```text
//! offset  size  field                                 written by
//! 0       4     magic "VDEV"                          toolstack
//! 4       2     version (1)                           toolstack
//! 6       2     slots in use (entries 0..slots)       toolstack
//! 8       4     change: bumped for each change        toolstack
//! 12      4     acknowledged: `change` when handled   guest
//! 16      16×n  entries:
//!   +0    2     type (0: a free slot)                 toolstack
//!   +2    2     numpages                              toolstack
//!   +4    4     features (the subtype)                toolstack
//!   +8    4     share_ref                             toolstack
//!   +12   4     status bits                           both, only ever OR'ed
//! ```
//!
//! Every field is its own 32-bit word (or a word one side alone writes),
//! accessed atomically: the guest and the toolstack never write the same
//! word except the status, where each only sets bits (the toolstack
//! `REMOVED`, the guest the rest). All values little-endian.
//!
//! The guest is not trusted: the toolstack reads back only `acknowledged`
//! and status bits, and keeps its own record of what it wrote.

use std::sync::atomic::Ordering;

use xen_platform::share::ShareRef;
use xen_shared_mem::SharedMem;

/// "VDEV", little-endian.
pub const MAGIC: u32 = u32::from_le_bytes(*b"VDEV");
/// The layout's version.
pub const VERSION: u16 = 1;
/// The header's size.
pub const HEADER: usize = 16;
/// One entry's size.
pub const ENTRY: usize = 16;
/// Entries in one page.
pub const MAX_SLOTS: usize = (xen_platform::PAGE_SIZE - HEADER) / ENTRY;

/// Device types (lguest's numbering).
pub mod kind {
    /// A free slot.
    pub const FREE: u16 = 0;
    /// A console.
    pub const CONSOLE: u16 = 1;
    /// xensnet: a multi-way LAN.
    pub const NET: u16 = 2;
    /// xensblk: a block device.
    pub const BLOCK: u16 = 3;

    /// The type's name, for listings.
    pub fn name(kind: u16) -> &'static str {
        match kind {
            FREE => "free",
            CONSOLE => "console",
            NET => "net",
            BLOCK => "block",
            _ => "unknown",
        }
    }
}

/// Status bits (lguest's and virtio's values).
pub mod status {
    /// The guest saw the entry.
    pub const ACKNOWLEDGE: u32 = 1;
    /// A driver of the guest's matched it.
    pub const DRIVER: u32 = 2;
    /// The driver is running it.
    pub const DRIVER_OK: u32 = 4;
    /// The toolstack removes the device (the only bit it sets).
    pub const REMOVED: u32 = 8;
    /// The guest let go of a removed device.
    pub const REMOVED_ACK: u32 = 16;
    /// The driver could not run it.
    pub const FAILED: u32 = 128;

    /// The bits as words, for listings.
    pub fn describe(bits: u32) -> String {
        let names = [
            (ACKNOWLEDGE, "acknowledge"),
            (DRIVER, "driver"),
            (DRIVER_OK, "driver-ok"),
            (REMOVED, "removed"),
            (REMOVED_ACK, "removed-ack"),
            (FAILED, "failed"),
        ];
        let words: Vec<&str> = names.iter().filter(|(bit, _)| bits & bit != 0).map(|(_, name)| *name).collect();
        if words.is_empty() {
            "new".to_owned()
        } else {
            words.join(",")
        }
    }
}

/// One entry as the toolstack writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The device type ([`kind`]).
    pub kind: u16,
    /// Pages of the share the device uses.
    pub numpages: u16,
    /// Feature bits: the subtype a driver matches on.
    pub features: u32,
    /// The share the device lives in.
    pub share: ShareRef,
}

/// A vdevice page, seen through a [`SharedMem`] of at least one page.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    mem: SharedMem<'a>,
}

impl<'a> Page<'a> {
    /// The page at the start of `mem`.
    ///
    /// # Panics
    ///
    /// If `mem` is shorter than a page.
    pub fn new(mem: SharedMem<'a>) -> Page<'a> {
        assert!(mem.len() >= xen_platform::PAGE_SIZE, "a vdevice page is one page");
        Page { mem }
    }

    /// Whether the toolstack has set the page up (magic and version).
    pub fn is_set_up(&self) -> bool {
        self.mem.load_u32(0, Ordering::Acquire) == MAGIC && self.version() == VERSION
    }

    /// Toolstack: sets the header up if it is not (a zeroed page).
    pub fn set_up(&self) {
        if !self.is_set_up() {
            self.mem.store_u32(4, u32::from(VERSION), Ordering::Relaxed);
            self.mem.store_u32(8, 0, Ordering::Relaxed);
            self.mem.store_u32(0, MAGIC, Ordering::Release);
        }
    }

    fn version(&self) -> u16 {
        (self.mem.load_u32(4, Ordering::Acquire) & 0xffff) as u16
    }

    /// How many slots the guest should look at (at most [`MAX_SLOTS`],
    /// whatever the page says).
    pub fn slots(&self) -> usize {
        usize::from((self.mem.load_u32(4, Ordering::Acquire) >> 16) as u16).min(MAX_SLOTS)
    }

    fn set_slots(&self, slots: usize) {
        let slots = u32::try_from(slots.min(MAX_SLOTS)).unwrap_or(0);
        self.mem.store_u32(4, u32::from(VERSION) | slots << 16, Ordering::Release);
    }

    /// The toolstack's change counter.
    pub fn change(&self) -> u32 {
        self.mem.load_u32(8, Ordering::Acquire)
    }

    /// Toolstack: announces a change (after writing it): the new counter.
    pub fn bump_change(&self) -> u32 {
        let next = self.change().wrapping_add(1);
        self.mem.store_u32(8, next, Ordering::Release);
        next
    }

    /// The last change the guest handled.
    pub fn acknowledged(&self) -> u32 {
        self.mem.load_u32(12, Ordering::Acquire)
    }

    /// Guest: says every change up to `change` is handled.
    pub fn acknowledge(&self, change: u32) {
        self.mem.store_u32(12, change, Ordering::Release);
    }

    fn at(slot: usize, field: usize) -> usize {
        HEADER + slot * ENTRY + field
    }

    /// The entry in `slot`; `None` for a free slot or one past the page.
    pub fn entry(&self, slot: usize) -> Option<Entry> {
        if slot >= MAX_SLOTS {
            return None;
        }
        let word0 = self.mem.load_u32(Self::at(slot, 0), Ordering::Acquire);
        let kind = (word0 & 0xffff) as u16;
        if kind == kind::FREE {
            return None;
        }
        Some(Entry {
            kind,
            numpages: (word0 >> 16) as u16,
            features: self.mem.load_u32(Self::at(slot, 4), Ordering::Relaxed),
            share: self.mem.load_u32(Self::at(slot, 8), Ordering::Relaxed),
        })
    }

    /// The status bits of `slot` (0 past the page).
    pub fn status(&self, slot: usize) -> u32 {
        if slot >= MAX_SLOTS {
            return 0;
        }
        self.mem.load_u32(Self::at(slot, 12), Ordering::Acquire)
    }

    /// Sets status bits of `slot` (either side; bits are never cleared
    /// while the slot is in use).
    pub fn set_status(&self, slot: usize, bits: u32) {
        if slot < MAX_SLOTS {
            self.mem.fetch_or_u32(Self::at(slot, 12), bits, Ordering::AcqRel);
        }
    }

    /// Toolstack: writes `entry` into `slot` with a clear status (the
    /// type last, so a guest never sees half an entry), growing the slots
    /// in use to cover it.
    pub fn write_entry(&self, slot: usize, entry: Entry) {
        assert!(slot < MAX_SLOTS, "slot {slot} is past the page");
        self.mem.store_u32(Self::at(slot, 12), 0, Ordering::Relaxed);
        self.mem.store_u32(Self::at(slot, 4), entry.features, Ordering::Relaxed);
        self.mem.store_u32(Self::at(slot, 8), entry.share, Ordering::Relaxed);
        let word0 = u32::from(entry.kind) | u32::from(entry.numpages) << 16;
        self.mem.store_u32(Self::at(slot, 0), word0, Ordering::Release);
        if slot >= self.slots() {
            self.set_slots(slot + 1);
        }
    }

    /// Toolstack: frees `slot` (its device is gone), shrinking the slots
    /// in use past free ones at the end.
    pub fn free(&self, slot: usize) {
        if slot >= MAX_SLOTS {
            return;
        }
        self.mem.store_u32(Self::at(slot, 0), 0, Ordering::Release);
        self.mem.store_u32(Self::at(slot, 12), 0, Ordering::Relaxed);
        let mut slots = self.slots();
        while slots > 0 && self.entry(slots - 1).is_none() {
            slots -= 1;
        }
        self.set_slots(slots);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xen_shared_mem::OwnedMem;

    #[test]
    fn entries_round_trip_and_free_slots_shrink_the_page() {
        let owned = OwnedMem::pages(1);
        let page = Page::new(owned.mem());
        assert!(!page.is_set_up());
        page.set_up();
        assert!(page.is_set_up());
        assert_eq!(page.slots(), 0);
        let net = Entry { kind: kind::NET, numpages: 4, features: 0x5, share: 77 };
        page.write_entry(0, net);
        page.write_entry(2, Entry { kind: kind::BLOCK, ..net });
        assert_eq!(page.slots(), 3);
        assert_eq!(page.entry(0), Some(net));
        assert_eq!(page.entry(1), None);
        page.set_status(0, status::ACKNOWLEDGE);
        page.set_status(0, status::REMOVED);
        assert_eq!(page.status(0), status::ACKNOWLEDGE | status::REMOVED);
        page.free(2);
        assert_eq!(page.slots(), 1);
        page.free(0);
        assert_eq!(page.slots(), 0);
        assert_eq!(page.status(0), 0);
    }

    #[test]
    fn a_hostile_slot_count_is_capped_at_the_page() {
        let owned = OwnedMem::pages(1);
        let page = Page::new(owned.mem());
        page.set_up();
        owned.mem().store_u32(4, u32::from(VERSION) | 0xffff << 16, Ordering::Relaxed);
        assert_eq!(page.slots(), MAX_SLOTS);
        assert_eq!(page.entry(MAX_SLOTS), None);
        assert_eq!(page.status(MAX_SLOTS), 0);
        page.set_status(MAX_SLOTS, 1);
    }

    #[test]
    fn the_layout_is_the_documented_one() {
        let owned = OwnedMem::pages(1);
        let page = Page::new(owned.mem());
        page.set_up();
        page.write_entry(1, Entry { kind: 3, numpages: 2, features: 0x0102_0304, share: 9 });
        page.set_status(1, status::FAILED);
        page.bump_change();
        page.acknowledge(1);
        let mut bytes = vec![0u8; 48];
        owned.mem().read_bytes(0, &mut bytes);
        assert_eq!(&bytes[0..4], b"VDEV");
        assert_eq!(&bytes[4..8], &[1, 0, 2, 0], "version 1, 2 slots");
        assert_eq!(&bytes[8..16], &[1, 0, 0, 0, 1, 0, 0, 0], "change, acknowledged");
        assert_eq!(&bytes[32..48], &[3, 0, 2, 0, 4, 3, 2, 1, 9, 0, 0, 0, 128, 0, 0, 0], "entry 1");
        assert_eq!(MAX_SLOTS, 255);
    }
}
