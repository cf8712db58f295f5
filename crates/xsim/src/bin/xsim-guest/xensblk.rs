//! `xsim-guest xensblk`: the guest's xensblk driver, hosted and on real
//! Xen (where the page and the disk's offer come from `vdeviced` through
//! the store, and the driver mounts its own FUSE filesystem at `/mnt`).
//! Runs the domain's
//! vdevice bus with a driver for block devices; the disk is exported as
//! the file `/mnt/disk` of the FUSE filesystem the hypervisor mounted for
//! the guest (`xsim create --fuse`), so ordinary tools (`dd`, `mkfs`,
//! `fsck`, `debugfs`) use it. One disk per guest. Runs until the domain
//! is destroyed. With `--no-export` the driver opens the disk and holds
//! it without exporting it (no FUSE mount needed): the probe's work
//! alone, for measuring the device's setup.

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, Generation, INodeNo, LockOwner, OpenFlags, ReplyAttr, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyWrite, Request, SessionACL, WriteFlags,
};
use xen_platform::hosted::{Host, ENV_FUSE_FD};
use xen_platform::pair_share::{PairOffer, PairShare};
use xen_platform::share::{Share, ShareRef, Shares};
use xen_platform::xen::{XenEventChannels, XenGrants};
use xen_share::blk::{Disk, SECTOR};
use xen_share::{kind, Device, Driver};

/// The disk's inode.
const DISK: INodeNo = INodeNo(2);
/// How long the kernel may cache names and attributes.
const TTL: Duration = Duration::from_secs(1);

/// Runs the bus until the domain goes.
pub fn run(args: &[String]) -> Result<()> {
    let export = match args {
        [] => true,
        [flag] if flag == "--no-export" => false,
        _ => anyhow::bail!("usage: xsim-guest xensblk [--no-export]"),
    };
    let (page, driver) = match Host::from_guest_env() {
        Ok((host, _)) => {
            let page = crate::vdevice_bus::page(&host)?;
            let fuse = crate::handed::take_char_device(ENV_FUSE_FD);
            let attach: Attach = Box::new(move |share| host.shares().attach(share));
            (page, BlockDriver { attach, export, fuse, mount: false, removed: None, held: None })
        }
        Err(_) if crate::vdevice_bus::on_xen() => {
            let client = xenstore::Client::open().context("connecting to xenstored")?;
            let me = crate::vdevice_bus::xen_domid(&client)?;
            let page = crate::vdevice_bus::xen_page(&client)?;
            let attach: Attach = Box::new(move |share| {
                let offer = PairOffer::parse(crate::vdevice_bus::xen_offer(share)?.trim())?;
                let channels = Box::new(XenEventChannels::open()?);
                let disk = PairShare::accept(share, &mut XenGrants::open()?, channels, me, &offer)?;
                Ok(Box::new(disk) as Box<dyn Share>)
            });
            (page, BlockDriver { attach, export, fuse: None, mount: true, removed: None, held: None })
        }
        Err(e) => return Err(e).context("neither a hosted guest nor a Xen guest"),
    };
    crate::vdevice_bus::serve(page, Box::new(driver), "xensblk", "waiting for a block device")
}

/// How a block device attaches its share.
type Attach = Box<dyn FnMut(ShareRef) -> std::io::Result<Box<dyn Share>> + Send>;

/// Where the disk is exported on real Xen, where nobody mounted a FUSE
/// filesystem for the guest (it is root and mounts its own).
const XEN_MOUNT: &str = "/mnt";

/// Mounts a FUSE filesystem at [`XEN_MOUNT`] for this (root) process;
/// its `/dev/fuse` descriptor.
fn mount_fuse() -> std::io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    std::fs::create_dir_all(XEN_MOUNT)?;
    let device = rustix::fs::open(
        "/dev/fuse",
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let data = std::ffi::CString::new(format!("fd={},rootmode=40000,user_id=0,group_id=0", device.as_raw_fd()))
        .map_err(std::io::Error::other)?;
    rustix::mount::mount(
        "xensblk",
        XEN_MOUNT,
        "fuse.xensblk",
        rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV,
        Some(data.as_c_str()),
    )?;
    Ok(device)
}

/// Drives the guest's one block device.
struct BlockDriver {
    attach: Attach,
    /// Whether to export the disk on the FUSE mount (else hold it).
    export: bool,
    fuse: Option<OwnedFd>,
    /// Whether to mount the FUSE filesystem at the probe (real Xen).
    mount: bool,
    /// The disk, opened and not exported (`--no-export`).
    held: Option<Disk>,
    /// Set when the device goes: the filesystem then answers EIO.
    removed: Option<Arc<AtomicBool>>,
}

impl Driver for BlockDriver {
    fn name(&self) -> &str {
        "xensblk"
    }

    fn kind(&self) -> u16 {
        kind::BLOCK
    }

    fn probe(&mut self, device: &Device) -> Result<(), String> {
        if !self.export {
            if self.held.is_some() {
                return Err("one disk per guest".into());
            }
            let share = (self.attach)(device.entry.share).map_err(|e| format!("attaching the disk: {e}"))?;
            let disk = Disk::open(share, Duration::from_secs(10)).map_err(|e| format!("the disk's server: {e}"))?;
            println!("xensblk: disk of share {} opened ({} bytes)", device.entry.share, disk.len());
            self.held = Some(disk);
            return Ok(());
        }
        let share = (self.attach)(device.entry.share).map_err(|e| format!("attaching the disk: {e}"))?;
        let fuse = match self.fuse.take() {
            Some(fuse) => fuse,
            None if self.mount => {
                mount_fuse().map_err(|e| format!("mounting FUSE at {XEN_MOUNT} (is fuse loaded?): {e}"))?
            }
            None => return Err("no FUSE mount to export the disk on (xsim create --fuse), or in use".into()),
        };
        let disk = Disk::open(share, Duration::from_secs(10)).map_err(|e| format!("the disk's server: {e}"))?;
        let removed = Arc::new(AtomicBool::new(false));
        let fs = DiskFs {
            size: disk.len(),
            disk: Mutex::new(disk),
            uid: rustix::process::getuid().as_raw(),
            gid: rustix::process::getgid().as_raw(),
            removed: Arc::clone(&removed),
        };
        let session = fuser::Session::from_fd(fs, fuse, SessionACL::Owner, fuser::Config::default())
            .map_err(|e| format!("the FUSE session: {e}"))?;
        std::thread::spawn(move || {
            if let Err(e) = session.run() {
                println!("xensblk: the FUSE session ended: {e}");
            }
        });
        self.removed = Some(removed);
        println!("xensblk: disk of share {} on /mnt/disk", device.entry.share);
        Ok(())
    }

    fn remove(&mut self, _: &Device) {
        self.held = None;
        if let Some(removed) = self.removed.take() {
            removed.store(true, Ordering::Relaxed);
        }
    }
}

/// `/mnt`: a directory holding `disk`, the block device as a file.
struct DiskFs {
    disk: Mutex<Disk>,
    size: u64,
    uid: u32,
    gid: u32,
    removed: Arc<AtomicBool>,
}

impl DiskFs {
    fn attr(&self, ino: INodeNo) -> Option<FileAttr> {
        let (kind, perm, size, nlink) = match ino {
            INodeNo::ROOT => (FileType::Directory, 0o755, 0, 2),
            DISK => (FileType::RegularFile, 0o600, self.size, 1),
            _ => return None,
        };
        let now = SystemTime::now();
        Some(FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            kind,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    /// The sector-aligned span covering `len` bytes at `offset`, cut at
    /// the disk's end.
    fn span(&self, offset: u64, len: u64) -> (u64, u64) {
        let end = offset.saturating_add(len).min(self.size);
        let start = offset / SECTOR * SECTOR;
        (start, end.div_ceil(SECTOR) * SECTOR)
    }

    fn gone(&self) -> bool {
        self.removed.load(Ordering::Relaxed)
    }
}

/// An I/O error's errno for FUSE.
fn errno(e: &std::io::Error) -> Errno {
    Errno::from_i32(e.raw_os_error().unwrap_or(5))
}

impl Filesystem for DiskFs {
    fn init(&mut self, _: &Request, config: &mut fuser::KernelConfig) -> std::io::Result<()> {
        // O_TRUNC comes with the open, where it is ignored as a block
        // device ignores it (`dd of=/mnt/disk` works); a truncate of its
        // own is refused (setattr).
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_ATOMIC_O_TRUNC);
        Ok(())
    }

    fn lookup(&self, _: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match (parent, name.to_str()) {
            (INodeNo::ROOT, Some("disk")) => match self.attr(DISK) {
                Some(attr) => reply.entry(&TTL, &attr, Generation(0)),
                None => reply.error(Errno::ENOENT),
            },
            _ => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _: &Request, ino: INodeNo, _: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr(ino) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn setattr(
        &self,
        _: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // A disk's size is the server's: only "no change" is accepted
        // (an O_TRUNC open does not come here: see init).
        if size.is_some_and(|s| s != self.size) {
            return reply.error(Errno::EINVAL);
        }
        match self.attr(ino) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn read(
        &self,
        _: &Request,
        ino: INodeNo,
        _: FileHandle,
        offset: u64,
        size: u32,
        _: OpenFlags,
        _: Option<LockOwner>,
        reply: ReplyData,
    ) {
        if ino != DISK {
            return reply.error(Errno::EISDIR);
        }
        if self.gone() {
            return reply.error(Errno::EIO);
        }
        if offset >= self.size {
            return reply.data(&[]);
        }
        let (start, end) = self.span(offset, u64::from(size));
        let mut buf = vec![0u8; usize::try_from(end - start).unwrap_or(0)];
        let mut disk = self.disk.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match disk.read_at(&mut buf, start) {
            Ok(()) => {
                let from = usize::try_from(offset - start).unwrap_or(0);
                let to = (from + size as usize).min(usize::try_from(self.size.min(end) - start).unwrap_or(0));
                reply.data(&buf[from..to.max(from)]);
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        _: &Request,
        ino: INodeNo,
        _: FileHandle,
        offset: u64,
        data: &[u8],
        _: WriteFlags,
        _: OpenFlags,
        _: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        if ino != DISK {
            return reply.error(Errno::EISDIR);
        }
        if self.gone() {
            return reply.error(Errno::EIO);
        }
        if offset.saturating_add(data.len() as u64) > self.size {
            return reply.error(Errno::from_i32(libc_enospc()));
        }
        let (start, end) = self.span(offset, data.len() as u64);
        let mut buf = vec![0u8; usize::try_from(end - start).unwrap_or(0)];
        let mut disk = self.disk.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Whole sectors: read what the write covers only in part.
        let from = usize::try_from(offset - start).unwrap_or(0);
        if from != 0 || data.len() != buf.len() {
            if let Err(e) = disk.read_at(&mut buf, start) {
                return reply.error(errno(&e));
            }
        }
        buf[from..from + data.len()].copy_from_slice(data);
        match disk.write_at(&buf, start) {
            Ok(()) => reply.written(u32::try_from(data.len()).unwrap_or(u32::MAX)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn flush(&self, _: &Request, _: INodeNo, _: FileHandle, _: LockOwner, reply: ReplyEmpty) {
        reply.ok();
    }

    fn fsync(&self, _: &Request, _: INodeNo, _: FileHandle, _: bool, reply: ReplyEmpty) {
        if self.gone() {
            return reply.error(Errno::EIO);
        }
        let mut disk = self.disk.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match disk.flush() {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readdir(&self, _: &Request, ino: INodeNo, _: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        if ino != INodeNo::ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        let entries = [
            (INodeNo::ROOT, FileType::Directory, "."),
            (INodeNo::ROOT, FileType::Directory, ".."),
            (DISK, FileType::RegularFile, "disk"),
        ];
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(usize::try_from(offset).unwrap_or(usize::MAX)) {
            if reply.add(*ino, i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }
}

/// ENOSPC: a write past the disk's end.
fn libc_enospc() -> i32 {
    rustix::io::Errno::NOSPC.raw_os_error()
}
