//! The uids a hypervisor's guests run as under a uid per guest: a range
//! of [`RANGE_LEN`] ids (one per possible domid) that no other hypervisor
//! on the machine uses at the same time. Several hosts run side by side
//! (one per test, in CI); were their domain 1s the same user, they could
//! reach each other, and destroying one would kill the other.
//!
//! A hypervisor claims range `r` by holding an exclusive `flock` on
//! `<LOCK_DIR>/<r>` for as long as it lives (the kernel lets go when it
//! exits, however it exits); the first range not held is taken. The
//! directory is root's (this needs root anyway), so no one else can hold
//! a range to deny it.

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;

use rustix::fs::{flock, open, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use crate::DomId;

/// The first uid of range 0. Far above the ids distributions give people
/// (1000...) and rootless containers (100000... in `/etc/subuid`).
pub const GUEST_UID_BASE: u32 = 0x7853_0000;

/// Uids per range: one per domid below DOMID_FIRST_RESERVED.
const RANGE_LEN: u32 = 0x8000;

/// Ranges there are (hosts that can run at once).
const RANGES: u32 = 1024;

/// Where the range locks are.
const LOCK_DIR: &str = "/run/xsim-uid-ranges";

/// A claimed range of guest uids.
#[derive(Debug)]
pub(super) struct UidRange {
    /// Its first uid.
    base: u32,
    /// Held locked while the range is ours.
    _lock: OwnedFd,
}

impl UidRange {
    /// Claims the first free range.
    pub(super) fn claim() -> io::Result<UidRange> {
        let dir = Path::new(LOCK_DIR);
        fs::DirBuilder::new().mode(0o700).recursive(true).create(dir)?;
        let meta = fs::metadata(dir)?;
        if meta.uid() != 0 || meta.mode() & 0o022 != 0 {
            return Err(io::Error::other(format!("{LOCK_DIR} is not root's alone")));
        }
        for range in 0..RANGES {
            let path = dir.join(range.to_string());
            let lock = open(&path, OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC, Mode::from_raw_mode(0o600))?;
            match flock(&lock, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(UidRange { base: GUEST_UID_BASE + range * RANGE_LEN, _lock: lock }),
                Err(Errno::WOULDBLOCK) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(io::Error::other(format!("all {RANGES} guest uid ranges are in use")))
    }

    /// The uid (and gid) of guest `domid`.
    pub(super) fn uid(&self, domid: DomId) -> u32 {
        self.base + u32::from(domid)
    }

    /// Its first uid.
    pub(super) fn base(&self) -> u32 {
        self.base
    }
}
