//! One connected device's ring, served: take each request, check it,
//! map its grants (or find them kept mapped, with persistent grants:
//! [`DataPages`]), move its data between the pages and the image, answer.
//!
//! Requests are served in ring order, at most a budget per call, so that
//! a frontend that floods its ring shares the backend with the others
//! (the caller calls again while [`Served::serve`] says there is more).
//! Every request taken in a call is answered in the same call, so
//! between calls the ring's cursors are all equal. Each response is
//! published as soon as it is pushed (with its notify decision), as
//! Linux's `make_response` does: a frontend on another CPU then takes it
//! and refills the slot while the next request is served. Published once
//! per call instead, the two ends took turns a ring-load at a time, and
//! 64 KiB reads at queue depth 32 ran 2–3× slower (docs/benchmarks.md).
//! The event indices keep the notifications few: after the first, the
//! frontend asks for another only once it has caught up.

use std::rc::Rc;

use xen_ioring::{BackCursors, BackRing, RingError};
use xen_platform::{Grants, MappedPages, Notifier, Port, PAGE_SIZE};

use crate::abi::{RSP_ERROR, RSP_OKAY, SECTOR_SIZE};
use crate::backend::data_pages::DataPages;
use crate::backend::disk::Disk;
use crate::request::Request;
use crate::response::Response;
use crate::validate::{check, Plan, Segments};

/// What one call of [`Served::serve`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    /// Requests answered.
    pub answered: usize,
    /// Whether requests are left (the budget ran out, or one came in
    /// during the final check): call again.
    pub more: bool,
}

/// A device whose ring is mapped and whose event channel is bound.
#[derive(Debug)]
pub struct Served {
    /// The backend directory.
    pub dir: String,
    /// The backend's port of the device's event channel.
    pub port: Port,
    notifier: Notifier,
    ring: MappedPages,
    cursors: BackCursors,
    /// Why the ring stopped, once it has.
    failed: Option<RingError>,
    work: Work,
}

/// What carrying out a request needs, apart from the ring.
#[derive(Debug)]
struct Work {
    dir: String,
    disk: Rc<Disk>,
    /// The data pages: mapped per request, or kept mapped until the
    /// device is dropped (disconnect unmaps them with the ring).
    pages: DataPages,
    /// One page of bounce buffer.
    buf: Vec<u8>,
}

impl Served {
    /// A device over its mapped `ring` (checked by the caller to hold a
    /// blkif ring) whose event channel is `port`, mapping its data pages
    /// with `pages`.
    pub(crate) fn new(
        dir: &str,
        port: Port,
        notifier: Notifier,
        ring: MappedPages,
        cursors: BackCursors,
        disk: Rc<Disk>,
        pages: DataPages,
    ) -> Served {
        let work = Work { dir: dir.to_owned(), disk, pages, buf: vec![0; PAGE_SIZE] };
        Served { dir: dir.to_owned(), port, notifier, ring, cursors, failed: None, work }
    }

    /// The ring's starting cursors over freshly mapped memory, or why the
    /// memory holds no blkif ring.
    pub(crate) fn fresh_cursors(ring: &MappedPages) -> Result<BackCursors, xen_ioring::LayoutError> {
        BackRing::<Request, Response>::new(ring.shared_mem()).map(|r| r.cursors())
    }

    /// Data pages kept mapped now (persistent grants).
    pub fn cached_grants(&self) -> usize {
        self.work.pages.cached()
    }

    /// Why the ring stopped, if it has.
    pub fn failure(&self) -> Option<RingError> {
        self.failed
    }

    /// Serves at most `budget` requests. A [`RingError`] (the frontend's
    /// indices are impossible) stops the ring for good: the caller closes
    /// the device.
    pub fn serve(&mut self, grants: &mut dyn Grants, budget: usize) -> Result<Round, RingError> {
        if let Some(err) = self.failed {
            return Err(err);
        }
        let mem = self.ring.shared_mem();
        // The layout was checked at connect; the memory has not changed.
        let Ok(mut ring) = BackRing::<Request, Response>::resume(mem, self.cursors) else {
            unreachable!("a ring whose layout was checked at connect")
        };
        let mut answered = 0;
        let mut outcome = Ok(false);
        while answered < budget {
            match ring.take_request() {
                Ok(Some(request)) => {
                    let response = self.work.answer(&request, grants);
                    // Cannot fail: the request just taken has a slot.
                    let _ = ring.push_response(&response);
                    answered += 1;
                    // Published at once, as Linux's make_response does: a
                    // frontend on another CPU takes this one (and refills
                    // its slot) while the next is served.
                    if ring.publish_responses() {
                        notify(&self.notifier, &self.dir);
                    }
                }
                Ok(None) => match ring.final_check_for_requests() {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(err) => {
                        outcome = Err(err);
                        break;
                    }
                },
                Err(err) => {
                    outcome = Err(err);
                    break;
                }
            }
        }
        let more = answered == budget;
        if ring.publish_responses() {
            notify(&self.notifier, &self.dir);
        }
        self.cursors = ring.cursors();
        match outcome {
            Ok(_) => Ok(Round { answered, more }),
            Err(err) => {
                tracing::warn!(device = self.dir, %err, "ring stopped");
                self.failed = Some(err);
                Err(err)
            }
        }
    }
}

/// Notifies the frontend; a failure is only logged (the frontend finds
/// the responses at its next look).
fn notify(notifier: &Notifier, dir: &str) {
    if let Err(err) = notifier.notify() {
        tracing::warn!(device = dir, %err, "could not notify the frontend");
    }
}

impl Work {
    /// Carries out one request; every failure is a response status.
    fn answer(&mut self, request: &Request, grants: &mut dyn Grants) -> Response {
        let status = match check(request, &self.disk.geometry()) {
            Err(refusal) => {
                tracing::debug!(device = self.dir, id = request.id(), reason = refusal.reason, "request refused");
                refusal.status
            }
            Ok(plan) => match self.carry_out(plan, grants) {
                Ok(()) => RSP_OKAY,
                Err(err) => {
                    tracing::debug!(device = self.dir, id = request.id(), %err, "request failed");
                    RSP_ERROR
                }
            },
        };
        Response { id: request.id(), operation: request.response_operation(), status }
    }

    fn carry_out(&mut self, plan: Plan, grants: &mut dyn Grants) -> std::io::Result<()> {
        match plan {
            Plan::Read { sector, segments } => self.transfer(grants, sector, &segments, Direction::Read),
            Plan::Write { sector, segments, flush } => {
                self.transfer(grants, sector, &segments, Direction::Write)?;
                if flush {
                    self.disk.flush()?;
                }
                Ok(())
            }
            Plan::Flush => self.disk.flush(),
            Plan::Discard { sector, count } => self.disk.discard(sector, count),
        }
    }

    /// Maps the segments' pages (a reference the frontend did not grant
    /// fails here) and copies each segment's sectors, which follow one
    /// another on the disk from `sector`.
    fn transfer(
        &mut self,
        grants: &mut dyn Grants,
        sector: u64,
        segments: &Segments,
        direction: Direction,
    ) -> std::io::Result<()> {
        // Reading the disk writes the frontend's pages, and only then.
        let pages = self.pages.map(grants, segments.as_slice(), direction == Direction::Read)?;
        let mut at = sector;
        for (i, seg) in segments.as_slice().iter().enumerate() {
            let count = u64::from(seg.last_sect - seg.first_sect) + 1;
            let len = usize::from(seg.last_sect - seg.first_sect + 1) * 512;
            let (mem, page) = pages.page(i);
            let page_offset = page + usize::from(seg.first_sect) * 512;
            let buf = &mut self.buf[..len];
            match direction {
                Direction::Read => {
                    self.disk.read_at(at * SECTOR_SIZE, buf)?;
                    mem.write_bytes(page_offset, buf);
                }
                Direction::Write => {
                    mem.read_bytes(page_offset, buf);
                    self.disk.write_at(at * SECTOR_SIZE, buf)?;
                }
            }
            at += count;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Read,
    Write,
}
