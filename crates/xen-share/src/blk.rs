//! xensblk: a block device on a share, served by a userspace program in
//! the server domain (dom0's `xensblk`), used by the client domain.
//!
//! The share ([`BLK_PAGES`] pages):
//!
//! ```text
//! page 0        the request ring (xen-ioring's, Xen's io/ring.h layout)
//! page 1        the disk's description, written by the server
//! pages 2..     one data window of WINDOW bytes per in-flight request
//! ```
//!
//! A request names its window; the server reads into it or writes from
//! it, and answers in the request's ring slot. Trigger 0 is the ring's
//! notification, both ways. A write is answered after `pwrite` returns
//! and a flush after `fdatasync`: an answered write is in the file's page
//! cache, so it survives the server being killed, and an answered flush
//! is on the disk.
//!
//! A restarted server takes the ring up where the old one stopped: every
//! slot from the published response index to the client's request index
//! is either a request not answered (done again: reads and writes of a
//! window are idempotent) or, if the old server died between writing an
//! answer and publishing it, that answer ([`RESPONSE_MAGIC`] tells them
//! apart), which is published as it is.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rustix::io::Errno;
use xen_ioring::{BackRing, FrontRing, Message};
use xen_platform::share::{Share, TRIGGER_CHANGED};
use xen_platform::PAGE_SIZE;
use xen_shared_mem::SharedMem;

/// The sector size.
pub const SECTOR: u64 = 512;
/// In-flight requests, each with its data window.
pub const WINDOWS: usize = 32;
/// One window's bytes: the most one request moves.
pub const WINDOW: usize = 64 * 1024;
/// The share's pages: the ring, the description, the windows.
pub const BLK_PAGES: usize = 2 + WINDOWS * WINDOW / PAGE_SIZE;

// The layout fits what a share allows.
const _: () = assert!(BLK_PAGES <= xen_platform::share::MAX_SHARE_PAGES);

/// The description page's magic, "XSBK".
const INFO_MAGIC: u32 = u32::from_le_bytes(*b"XSBK");
/// Marks a ring slot that holds an answer.
pub const RESPONSE_MAGIC: u32 = u32::from_le_bytes(*b"xsbR");
/// Marks a ring slot that holds a request.
const REQUEST_MAGIC: u32 = u32::from_le_bytes(*b"xsbQ");

/// The ring's notification trigger.
const RING_TRIGGER: u32 = 0;

/// Operations.
pub mod op {
    /// Read sectors into the window.
    pub const READ: u8 = 0;
    /// Write sectors from the window.
    pub const WRITE: u8 = 1;
    /// Make every answered write durable.
    pub const FLUSH: u8 = 2;
}

/// One request (32 bytes in the ring).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// The client's tag, echoed in the answer.
    pub id: u64,
    /// [`op`].
    pub op: u8,
    /// The data window.
    pub window: u8,
    /// Bytes to move (a multiple of [`SECTOR`], at most [`WINDOW`]).
    pub len: u32,
    /// The first sector.
    pub sector: u64,
    /// Bytes 10 and 11, kept as they were: in a slot holding an answer,
    /// they are part of its status.
    reserved: u16,
    magic: u32,
}

impl Message for Request {
    const SIZE: usize = 32;
    const ALIGN: usize = 8;

    fn encode(&self, out: &mut [u8]) {
        out.fill(0);
        out[0..8].copy_from_slice(&self.id.to_le_bytes());
        out[8] = self.op;
        out[9] = self.window;
        out[10..12].copy_from_slice(&self.reserved.to_le_bytes());
        out[12..16].copy_from_slice(&self.len.to_le_bytes());
        out[16..24].copy_from_slice(&self.sector.to_le_bytes());
        out[24..28].copy_from_slice(&self.magic.to_le_bytes());
    }

    fn decode(bytes: &[u8]) -> Request {
        let u32_at = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let u64_at = |i: usize| u64::from(u32_at(i)) | u64::from(u32_at(i + 4)) << 32;
        Request {
            id: u64_at(0),
            op: bytes[8],
            window: bytes[9],
            reserved: u16::from_le_bytes([bytes[10], bytes[11]]),
            len: u32_at(12),
            sector: u64_at(16),
            magic: u32_at(24),
        }
    }
}

/// One answer (in the request's slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    /// The request's id.
    pub id: u64,
    /// 0, or a negative errno.
    pub status: i32,
    magic: u32,
}

impl Message for Response {
    const SIZE: usize = 32;
    const ALIGN: usize = 8;

    fn encode(&self, out: &mut [u8]) {
        out.fill(0);
        out[0..8].copy_from_slice(&self.id.to_le_bytes());
        out[8..12].copy_from_slice(&self.status.to_le_bytes());
        // Where a request keeps its magic, so a slot tells which it holds.
        out[24..28].copy_from_slice(&self.magic.to_le_bytes());
    }

    fn decode(bytes: &[u8]) -> Response {
        let u32_at = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        Response {
            id: u64::from(u32_at(0)) | u64::from(u32_at(4)) << 32,
            status: i32::from_le_bytes(u32_at(8).to_le_bytes()),
            magic: u32_at(24),
        }
    }
}

fn ring_mem<'a>(share: &'a dyn Share) -> SharedMem<'a> {
    let all = share.pages().shared_mem();
    all.slice(0, PAGE_SIZE)
}

fn window_offset(window: usize) -> usize {
    2 * PAGE_SIZE + window * WINDOW
}

/// What the description page of the share in `mem` says: the disk's
/// size in sectors, once a server runs (a toolstack waits for this before
/// it tells the client).
pub fn disk_sectors(mem: SharedMem<'_>) -> Option<u64> {
    if mem.len() < 2 * PAGE_SIZE {
        return None;
    }
    if mem.load_u32(PAGE_SIZE, Ordering::Acquire) != INFO_MAGIC {
        return None;
    }
    let lo = mem.load_u32(PAGE_SIZE + 4, Ordering::Acquire);
    let hi = mem.load_u32(PAGE_SIZE + 8, Ordering::Acquire);
    Some(u64::from(lo) | u64::from(hi) << 32)
}

/// Describes `file` in `share` for the client (what [`serve`] does first,
/// and what a server that must be running before the client is told
/// does before it serves): its size in sectors. `EINVAL` for a share
/// smaller than [`BLK_PAGES`].
pub fn describe(share: &dyn Share, file: &File) -> io::Result<u64> {
    if share.pages().len() < BLK_PAGES * PAGE_SIZE {
        return Err(Errno::INVAL.into());
    }
    let sectors = file.metadata()?.len() / SECTOR;
    let mem = share.pages().shared_mem();
    // The size first, the magic last (the client reads the magic with
    // Acquire).
    mem.store_u32(PAGE_SIZE + 4, (sectors & 0xffff_ffff) as u32, Ordering::Relaxed);
    mem.store_u32(PAGE_SIZE + 8, (sectors >> 32) as u32, Ordering::Relaxed);
    mem.store_u32(PAGE_SIZE, INFO_MAGIC, Ordering::Release);
    Ok(sectors)
}

/// The server: serves `file` to the client on `share` until `stop`
/// returns true (checked at least every `tick`). Takes up a ring an
/// earlier server left.
pub fn serve(share: &mut dyn Share, file: &File, tick: Duration, stop: &dyn Fn() -> bool) -> io::Result<()> {
    let sectors = describe(share, file)?;
    // Where the last server stopped: its published responses.
    let start = ring_mem(share).load_u32(8, Ordering::Acquire);
    let mut cursors = BackRing::<Request, Response>::attach(ring_mem(share), start)
        .map_err(|e| io::Error::other(format!("{e:?}")))?
        .cursors();
    loop {
        let batch = serve_pending(share.pages().shared_mem(), file, sectors, &mut cursors)?;
        if batch.notify {
            share.trigger(RING_TRIGGER)?;
        }
        if stop() {
            return Ok(());
        }
        if batch.idle {
            share.wait(Some(tick))?;
        }
        // A member added (the client, after the server started) is one
        // the triggers must reach: follow every change.
        if share.take_pending()? & 1 << TRIGGER_CHANGED != 0 {
            share.refresh()?;
        }
    }
}

/// What [`serve_pending`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    /// Answers were published that the client asked to be told of.
    pub notify: bool,
    /// No request is waiting (the client will notify for the next).
    pub idle: bool,
}

/// Answers at most a ring's worth of the requests waiting in the share's
/// memory `mem` (all of it, [`BLK_PAGES`] pages) on `file` of `sectors`
/// sectors, from `cursors` on: the server's whole work between waits,
/// with no I/O on the share itself (so it can be driven over any memory,
/// a fuzzer's included). A ring the client broke is an error.
pub fn serve_pending(
    mem: SharedMem<'_>,
    file: &File,
    sectors: u64,
    cursors: &mut xen_ioring::BackCursors,
) -> io::Result<Batch> {
    if mem.len() < BLK_PAGES * PAGE_SIZE {
        return Err(Errno::INVAL.into());
    }
    let ring_error = |e| io::Error::other(format!("xensblk ring: {e:?}"));
    let mut ring: BackRing<'_, Request, Response> =
        BackRing::resume(mem.slice(0, PAGE_SIZE), *cursors).map_err(|e| io::Error::other(format!("{e:?}")))?;
    let mut notify = false;
    // A ring's worth at most: a client that refills as fast as it is
    // answered does not keep the server from its other duties.
    for _ in 0..ring.size() {
        let Some(request) = ring.take_request().map_err(ring_error)? else { break };
        let response = if request.magic == RESPONSE_MAGIC {
            // Answered by the server before us, not published.
            Response { id: request.id, status: 0, magic: RESPONSE_MAGIC }.with_status_of(&request)
        } else {
            Response { id: request.id, status: execute(mem, file, sectors, &request), magic: RESPONSE_MAGIC }
        };
        ring.push_response(&response).map_err(|_| io::Error::other("response ring full"))?;
        // One at a time, published at once: at most the slot being
        // answered can be left half done by a kill.
        notify |= ring.publish_responses();
    }
    let idle = !ring.final_check_for_requests().map_err(ring_error)?;
    *cursors = ring.cursors();
    Ok(Batch { notify, idle })
}

impl Response {
    /// For a slot that held an answer already: the answer as it was.
    fn with_status_of(self, slot: &Request) -> Response {
        // The answer's status sits where a request keeps op, window and
        // padding; decode it from the same bytes.
        let mut bytes = [0u8; 32];
        slot.encode(&mut bytes);
        Response { status: Response::decode(&bytes).status, ..self }
    }
}

/// Carries out one request: 0 or a negative errno.
fn execute(mem: SharedMem<'_>, file: &File, sectors: u64, r: &Request) -> i32 {
    let bad = -Errno::INVAL.raw_os_error();
    let window = usize::from(r.window);
    let len = r.len as usize;
    if r.magic != REQUEST_MAGIC || window >= WINDOWS {
        return bad;
    }
    let offset = window_offset(window);
    match r.op {
        op::FLUSH => match file.sync_data() {
            Ok(()) => 0,
            Err(e) => -e.raw_os_error().unwrap_or(5),
        },
        op::READ | op::WRITE => {
            if len == 0 || len > WINDOW || len as u64 % SECTOR != 0 {
                return bad;
            }
            let end = r.sector.checked_add(len as u64 / SECTOR);
            if end.is_none_or(|end| end > sectors) {
                return -Errno::IO.raw_os_error();
            }
            let at = r.sector * SECTOR;
            let mut data = vec![0u8; len];
            let result = if r.op == op::READ {
                file.read_exact_at(&mut data, at).map(|()| mem.write_bytes(offset, &data))
            } else {
                mem.read_bytes(offset, &mut data);
                file.write_all_at(&data, at)
            };
            match result {
                Ok(()) => 0,
                Err(e) => -e.raw_os_error().unwrap_or(5),
            }
        }
        _ => bad,
    }
}

/// The client's side: one request at a time.
#[derive(Debug)]
pub struct Disk {
    share: Box<dyn Share>,
    next_id: u64,
    /// Front ring cursors between calls (the ring borrows the share).
    cursors: Option<xen_ioring::FrontCursors>,
    sectors: u64,
}

impl Disk {
    /// Attaches the disk on `share`, waiting up to `timeout` for the
    /// server to describe it. `ETIMEDOUT` if it does not.
    pub fn open(share: Box<dyn Share>, timeout: Duration) -> io::Result<Disk> {
        if share.pages().len() < BLK_PAGES * PAGE_SIZE {
            return Err(Errno::INVAL.into());
        }
        let deadline = std::time::Instant::now() + timeout;
        let sectors = loop {
            if let Some(sectors) = disk_sectors(share.pages().shared_mem()) {
                break sectors;
            }
            if std::time::Instant::now() >= deadline {
                return Err(Errno::TIMEDOUT.into());
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        Ok(Disk { share, next_id: 1, cursors: None, sectors })
    }

    /// The disk's size in bytes.
    pub fn len(&self) -> u64 {
        self.sectors * SECTOR
    }

    /// Whether the disk has no sectors.
    pub fn is_empty(&self) -> bool {
        self.sectors == 0
    }

    /// Reads `buf.len()` bytes (a multiple of [`SECTOR`]) from byte
    /// `offset` (sector-aligned).
    pub fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        for (i, chunk) in buf.chunks_mut(WINDOW).enumerate() {
            let at = offset + (i * WINDOW) as u64;
            self.request(op::READ, at, chunk.len())?;
            self.share.pages().shared_mem().read_bytes(window_offset(0), chunk);
        }
        Ok(())
    }

    /// Writes `data` (a multiple of [`SECTOR`]) at byte `offset`
    /// (sector-aligned). Answered writes survive the server's restart;
    /// [`Disk::flush`] makes them durable.
    pub fn write_at(&mut self, data: &[u8], offset: u64) -> io::Result<()> {
        for (i, chunk) in data.chunks(WINDOW).enumerate() {
            let at = offset + (i * WINDOW) as u64;
            self.share.pages().shared_mem().write_bytes(window_offset(0), chunk);
            self.request(op::WRITE, at, chunk.len())?;
        }
        Ok(())
    }

    /// Makes every write answered so far durable.
    pub fn flush(&mut self) -> io::Result<()> {
        self.request(op::FLUSH, 0, 0)
    }

    /// One request in window 0, waited for (for as long as it takes: a
    /// server that restarts answers it then).
    fn request(&mut self, operation: u8, offset: u64, len: usize) -> io::Result<()> {
        if offset % SECTOR != 0 || len as u64 % SECTOR != 0 {
            return Err(Errno::INVAL.into());
        }
        let id = self.next_id;
        self.next_id += 1;
        let len = u32::try_from(len).map_err(|_| Errno::INVAL)?;
        let request =
            Request { id, op: operation, window: 0, len, sector: offset / SECTOR, reserved: 0, magic: REQUEST_MAGIC };
        let ring_error = |e| io::Error::other(format!("{e:?}"));
        let mut ring: FrontRing<'_, Request, Response> = match self.cursors {
            Some(cursors) => FrontRing::resume(ring_mem(&*self.share), cursors),
            None => FrontRing::new(ring_mem(&*self.share)),
        }
        .map_err(|e| io::Error::other(format!("{e:?}")))?;
        ring.push_request(&request).map_err(|_| io::Error::other("ring full"))?;
        let notify = ring.publish_requests();
        self.cursors = Some(ring.cursors());
        if notify {
            self.share.trigger(RING_TRIGGER)?;
        }
        loop {
            let mut ring: FrontRing<'_, Request, Response> =
                FrontRing::resume(ring_mem(&*self.share), self.cursors.ok_or_else(|| io::Error::other("no ring"))?)
                    .map_err(|e| io::Error::other(format!("{e:?}")))?;
            let response = ring.take_response().map_err(ring_error)?;
            let again = response.is_none() && !ring.final_check_for_responses().map_err(ring_error)?;
            self.cursors = Some(ring.cursors());
            match response {
                Some(r) if r.id == id => {
                    return if r.status == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(-r.status)) };
                }
                Some(_) => {} // a stale answer
                None if again => {
                    self.share.wait(Some(Duration::from_millis(100)))?;
                    if self.share.take_pending()? & 1 << TRIGGER_CHANGED != 0 {
                        self.share.refresh()?;
                    }
                }
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
    use xen_platform::share::{BufferId, Completed, Segment, ShareRef};
    use xen_platform::{DomId, MappedPages};

    /// A share of one member in this process: pages of a memfd, triggers
    /// that go nowhere.
    #[derive(Debug)]
    struct Alone {
        pages: MappedPages,
        wake: OwnedFd,
        /// Triggers the next `take_pending` returns.
        pending: u32,
        /// How many times `refresh` was called.
        refreshes: usize,
    }

    impl Alone {
        fn new() -> Alone {
            let file = rustix::fs::memfd_create("blk-test", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
            rustix::fs::ftruncate(&file, (BLK_PAGES * PAGE_SIZE) as u64).unwrap();
            let pages = MappedPages::map(file.as_fd(), 0, BLK_PAGES, true).unwrap();
            let wake = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).unwrap();
            Alone { pages, wake, pending: 0, refreshes: 0 }
        }
    }

    impl AsFd for Alone {
        fn as_fd(&self) -> BorrowedFd<'_> {
            self.wake.as_fd()
        }
    }

    impl Share for Alone {
        fn share_ref(&self) -> ShareRef {
            1
        }
        fn pages(&self) -> &MappedPages {
            &self.pages
        }
        fn members(&self) -> &[DomId] {
            &[0]
        }
        fn me(&self) -> usize {
            0
        }
        fn generation(&self) -> u64 {
            1
        }
        fn trigger(&self, _: u32) -> io::Result<()> {
            Ok(())
        }
        fn take_pending(&mut self) -> io::Result<u32> {
            Ok(std::mem::take(&mut self.pending))
        }
        fn wait(&self, _: Option<Duration>) -> io::Result<bool> {
            Ok(false)
        }
        fn refresh(&mut self) -> io::Result<()> {
            self.refreshes += 1;
            Ok(())
        }
        fn register(&mut self, _: u32, _: &[Segment]) -> io::Result<BufferId> {
            Err(Errno::NOSYS.into())
        }
        fn transfer(&self, _: u32, _: &[Segment]) -> io::Result<usize> {
            Err(Errno::NOSYS.into())
        }
        fn take_completed(&mut self) -> io::Result<Vec<Completed>> {
            Ok(Vec::new())
        }
        fn unregister_all(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn write_request(id: u64, sector: u64) -> Request {
        Request { id, op: op::WRITE, window: 0, len: 512, sector, reserved: 0, magic: REQUEST_MAGIC }
    }

    #[test]
    fn a_restarted_server_publishes_what_the_last_one_answered_and_does_the_rest() {
        let mut share = Alone::new();
        let image = tempfile::tempfile().unwrap();
        image.set_len(8 * SECTOR).unwrap();
        let mem = share.pages().shared_mem();
        let window = |byte: u8| mem.write_bytes(window_offset(0), &[byte; 512]);
        // The client asks for two writes of window 0, to sectors 1 and 2.
        let mut front: FrontRing<'_, Request, Response> = FrontRing::new(ring_mem(&share)).unwrap();
        front.push_request(&write_request(1, 1)).unwrap();
        front.push_request(&write_request(2, 2)).unwrap();
        front.publish_requests();
        let front_cursors = front.cursors();
        // The last server did the first, wrote its answer in the slot and
        // died before publishing it.
        window(0xaa);
        let mut back: BackRing<'_, Request, Response> = BackRing::new(ring_mem(&share)).unwrap();
        let first = back.take_request().unwrap().unwrap();
        assert_eq!(execute(mem, &image, 8, &first), 0);
        back.push_response(&Response { id: 1, status: 0, magic: RESPONSE_MAGIC }).unwrap();
        // The client's window changed since (it would not, but this shows
        // whether the first write is done again).
        window(0xbb);
        let stops = std::cell::Cell::new(0);
        serve(&mut share, &image, Duration::ZERO, &|| {
            stops.set(stops.get() + 1);
            true
        })
        .unwrap();
        let mut front: FrontRing<'_, Request, Response> = FrontRing::resume(ring_mem(&share), front_cursors).unwrap();
        let answers = [front.take_response().unwrap(), front.take_response().unwrap(), front.take_response().unwrap()];
        assert_eq!(answers.map(|r| r.map(|r| (r.id, r.status))), [Some((1, 0)), Some((2, 0)), None]);
        let mut sector = [0u8; 512];
        image.read_exact_at(&mut sector, SECTOR).unwrap();
        assert_eq!(sector, [0xaa; 512], "the answered write is not done again");
        image.read_exact_at(&mut sector, 2 * SECTOR).unwrap();
        assert_eq!(sector, [0xbb; 512], "the unanswered one is done");
    }

    /// A server attached before its client was added triggered only
    /// itself until it followed the change, and the client waited out
    /// its 100 ms poll on every request (found by the block benchmark:
    /// 10 reads a second).
    #[test]
    fn the_server_follows_a_membership_change() {
        let mut share = Alone::new();
        let image = tempfile::tempfile().unwrap();
        image.set_len(8 * SECTOR).unwrap();
        share.pending = 1 << TRIGGER_CHANGED | 1 << RING_TRIGGER;
        let rounds = std::cell::Cell::new(0);
        serve(&mut share, &image, Duration::ZERO, &|| {
            rounds.set(rounds.get() + 1);
            rounds.get() > 2
        })
        .unwrap();
        assert_eq!(share.refreshes, 1);
    }

    #[test]
    fn requests_out_of_bounds_or_malformed_are_refused_and_nothing_is_done() {
        let share = Alone::new();
        let image = tempfile::tempfile().unwrap();
        image.set_len(8 * SECTOR).unwrap();
        let mem = share.pages().shared_mem();
        let einval = -Errno::INVAL.raw_os_error();
        let eio = -Errno::IO.raw_os_error();
        let base = write_request(1, 0);
        for (request, want) in [
            (Request { sector: 8, ..base }, eio),
            (Request { sector: u64::MAX, ..base }, eio),
            (Request { len: 0, ..base }, einval),
            (Request { len: 100, ..base }, einval),
            (Request { len: u32::try_from(WINDOW).unwrap() + 512, ..base }, einval),
            (Request { window: u8::try_from(WINDOWS).unwrap(), ..base }, einval),
            (Request { op: 9, ..base }, einval),
            (Request { magic: 0, ..base }, einval),
        ] {
            assert_eq!(execute(mem, &image, 8, &request), want, "{request:?}");
        }
        assert_eq!(image.metadata().unwrap().len(), 8 * SECTOR);
    }

    #[test]
    fn a_slot_says_whether_it_holds_a_request_or_an_answer() {
        let request =
            Request { id: 7, op: op::WRITE, window: 3, len: 4096, sector: 9, reserved: 0, magic: REQUEST_MAGIC };
        let mut bytes = [0u8; 32];
        request.encode(&mut bytes);
        assert_eq!(Request::decode(&bytes), request);
        let answer = Response { id: 7, status: -5, magic: RESPONSE_MAGIC };
        answer.encode(&mut bytes);
        let as_request = Request::decode(&bytes);
        assert_eq!(as_request.magic, RESPONSE_MAGIC);
        assert_eq!(as_request.id, 7);
        assert_eq!(Response { id: 7, status: 0, magic: RESPONSE_MAGIC }.with_status_of(&as_request), answer);
    }
}
