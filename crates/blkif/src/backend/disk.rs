//! The image a backend serves: a file (or a block device) read and
//! written at byte offsets, flushed with `fdatasync`, discarded by
//! punching holes.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

use rustix::fs::{fallocate, FallocateFlags};

use crate::abi::SECTOR_SIZE;
use crate::validate::Geometry;

/// An open image and what the frontend is told about it.
#[derive(Debug)]
pub struct Disk {
    file: File,
    geometry: Geometry,
}

impl Disk {
    /// Opens the image at `path`, read-only if `readonly` (the backend's
    /// `mode` is `r`). Its size is rounded down to whole sectors. Discard
    /// is offered for writable images.
    pub fn open(path: &Path, readonly: bool) -> io::Result<Disk> {
        let mut file = OpenOptions::new().read(true).write(!readonly).open(path)?;
        // Seeking finds a block device's size too, where the metadata says 0.
        let bytes = file.seek(SeekFrom::End(0))?;
        let geometry = Geometry { sectors: bytes / SECTOR_SIZE, readonly, discard: !readonly };
        Ok(Disk { file, geometry })
    }

    /// The same image without discard offered (the toolstack's
    /// `discard-enable` is 0).
    pub fn without_discard(mut self) -> Disk {
        self.geometry.discard = false;
        self
    }

    /// Size, read-only, discard.
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// Fills `buf` from byte `offset`.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    /// Writes `buf` at byte `offset`.
    pub fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    /// Makes every completed write durable (`fdatasync`).
    pub fn flush(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Frees `count` sectors from `sector` (they read as zeros after):
    /// `fallocate(PUNCH_HOLE | KEEP_SIZE)`.
    pub fn discard(&self, sector: u64, count: u64) -> io::Result<()> {
        if count == 0 {
            return Ok(());
        }
        let offset = sector.checked_mul(SECTOR_SIZE).ok_or(io::ErrorKind::InvalidInput)?;
        let len = count.checked_mul(SECTOR_SIZE).ok_or(io::ErrorKind::InvalidInput)?;
        fallocate(&self.file, FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE, offset, len)?;
        Ok(())
    }
}
