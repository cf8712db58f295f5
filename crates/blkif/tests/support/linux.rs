//! A frontend that behaves, at the protocol level, as Linux 6.1's
//! `drivers/block/xen-blkfront.c` does: what it reads of the backend and
//! when, what it writes and in which order, which operations it sends
//! given what the backend advertised, and how it checks each response.
//! Written from that driver, function by function (named in the
//! comments), without its block layer: operations come from the test.
//!
//! What Linux treats as a broken backend (`pr_alert` and the disk
//! disabled, or `xenbus_dev_fatal`) is recorded in [`LinuxFront::alerts`]
//! and fails the operation: a test asserts there are none.

use std::collections::{BTreeMap, VecDeque};

use blkif::abi::{
    DISCARD_SECURE, MAX_SEGMENTS, OP_FLUSH_DISKCACHE, OP_READ, OP_WRITE, OP_WRITE_BARRIER, PROTOCOL_X86_64,
    RSP_EOPNOTSUPP, RSP_ERROR, RSP_OKAY,
};
use blkif::{DiscardRequest, Request, Response, Segment, SegmentRequest};
use xen_ioring::{FrontCursors, FrontRing};
use xen_platform::testing::{TestEventChannels, TestGrants};
use xen_platform::{DomId, EventChannels, GrantedPages, Grants, Notifier, Port, PAGE_SIZE};
use xenbus::{switch, Conn, XenbusState};
use xenstore::Store;

use super::{Live, WorldConn};

/// blkfront's module parameters.
#[derive(Debug, Clone, Copy)]
pub struct LinuxParams {
    /// `max_ring_page_order` (default 0: one page, whatever the backend
    /// offers).
    pub max_ring_page_order: u32,
    /// `max_queues` (default 4; used only if the backend offers
    /// `multi-queue-max-queues`).
    pub max_queues: u32,
    /// `feature_persistent` (default true).
    pub feature_persistent: bool,
    /// `max_indirect_segments` (default 32; used only if the backend
    /// offers `feature-max-indirect-segments`).
    pub max_indirect_segments: u32,
}

impl Default for LinuxParams {
    fn default() -> LinuxParams {
        LinuxParams { max_ring_page_order: 0, max_queues: 4, feature_persistent: true, max_indirect_segments: 32 }
    }
}

/// What blkfront learnt from the backend (`talk_to_blkback`,
/// `blkfront_connect`, `blkfront_gather_backend_features`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Negotiated {
    pub nr_ring_pages: u32,
    pub nr_rings: u32,
    pub sectors: u64,
    pub sector_size: u64,
    pub physical_sector_size: u64,
    pub info: u32,
    pub flush: bool,
    pub fua: bool,
    pub discard: bool,
    pub discard_granularity: u64,
    pub discard_alignment: u64,
    pub secdiscard: bool,
    pub persistent: bool,
    pub max_indirect_segments: u32,
}

/// What the block layer asks of blkfront.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `count` sectors from `sector`, into memory starting `first_sect`
    /// sectors into its first page (0 for page-aligned buffers).
    Read { sector: u64, count: u64, first_sect: u8 },
    /// `data` (whole sectors) at `sector`, from memory starting
    /// `first_sect` sectors into its first page.
    Write { sector: u64, data: Vec<u8>, first_sect: u8 },
    /// `REQ_OP_FLUSH`.
    Flush,
    /// `REQ_OP_DISCARD` (`secure`: `REQ_OP_SECURE_ERASE`).
    Discard { sector: u64, count: u64, secure: bool },
}

/// One entry of blkfront's `rinfo->grants`: a granted page, or a slot
/// whose grant was ended (`INVALID_GRANT_REF`).
type GrantSlot = Option<GrantedPages>;

/// A request in flight (`struct blk_shadow`).
struct Shadow {
    ticket: u64,
    request: Request,
    /// The data pages, one per segment.
    grants: Vec<GrantedPages>,
    /// For a read: the bytes wanted and where they start in the first page.
    read: Option<(usize, usize)>,
}

/// One connection's ring (`blkfront_ring_info`).
struct Ring {
    ring: GrantedPages,
    cursors: FrontCursors,
    port: Port,
    notifier: Notifier,
    size: u32,
}

pub struct LinuxFront {
    pub domid: DomId,
    pub conn: WorldConn,
    /// The frontend directory.
    pub dir: String,
    grants: TestGrants,
    events: TestEventChannels,
    params: LinuxParams,
    /// The backend's grant mappings, to answer
    /// `gnttab_try_end_foreign_access`.
    backend_live: Live,
    /// `dev->state`.
    pub state: XenbusState,
    last_backend: Option<XenbusState>,
    ring: Option<Ring>,
    pub negotiated: Option<Negotiated>,
    /// `rinfo->grants`: reusable granted pages first (persistent grants
    /// the backend still maps), ended slots last.
    free_grants: VecDeque<GrantSlot>,
    /// Grant references kept for reuse and still mapped by the backend
    /// (`persistent_gnts_c`).
    pub persistent_gnts: usize,
    shadow: BTreeMap<u64, Shadow>,
    next_ticket: u64,
    queue: VecDeque<(u64, Op)>,
    done: BTreeMap<u64, Result<Vec<u8>, i16>>,
    /// The frontend's own nodes, in the order written.
    pub writes: Vec<String>,
    /// What Linux would report as a broken backend (and then disable the
    /// disk, or close the device).
    pub alerts: Vec<String>,
}

impl LinuxFront {
    /// blkfront's probe of device `dir` of domain `domid` (its grant and
    /// event-channel handles given).
    pub fn new(
        domid: DomId,
        conn: WorldConn,
        dir: String,
        grants: TestGrants,
        events: TestEventChannels,
        params: LinuxParams,
        backend_live: Live,
    ) -> LinuxFront {
        LinuxFront {
            domid,
            conn,
            dir,
            grants,
            events,
            params,
            backend_live,
            state: XenbusState::Initialising,
            last_backend: None,
            ring: None,
            negotiated: None,
            free_grants: VecDeque::new(),
            persistent_gnts: 0,
            shadow: BTreeMap::new(),
            next_ticket: 0,
            queue: VecDeque::new(),
            done: BTreeMap::new(),
            writes: Vec::new(),
            alerts: Vec::new(),
        }
    }

    fn backend_dir(&self) -> Option<String> {
        self.conn.read(&format!("{}/backend", self.dir)).ok().map(|v| String::from_utf8(v).unwrap())
    }

    fn backend_read(&self, key: &str) -> Option<String> {
        let dir = self.backend_dir()?;
        self.conn.read(&format!("{dir}/{key}")).ok().map(|v| String::from_utf8(v).unwrap().trim().to_owned())
    }

    /// `xenbus_read_unsigned(otherend, key, default)`.
    fn read_unsigned(&self, key: &str, default: u64) -> u64 {
        self.backend_read(key).and_then(|v| v.parse().ok()).unwrap_or(default)
    }

    fn switch(&mut self, state: XenbusState) {
        switch::switch_state(&self.conn, &self.dir, state).unwrap();
        self.state = state;
    }

    /// The device's own `xenbus_dev_fatal`: the error, then Closing.
    fn fatal(&mut self, what: String) {
        self.alerts.push(format!("xenbus_dev_fatal: {what}"));
        self.switch(XenbusState::Closing);
    }

    /// Queues an operation; its ticket.
    pub fn submit(&mut self, op: Op) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.queue.push_back((ticket, op));
        ticket
    }

    /// An operation's result once done: a read's bytes, or the status.
    pub fn take(&mut self, ticket: u64) -> Option<Result<Vec<u8>, i16>> {
        self.done.remove(&ticket)
    }

    /// Requests in flight on the ring.
    pub fn in_flight(&self) -> usize {
        self.shadow.len()
    }

    /// Reacts to the backend's state (`blkback_changed`), takes responses
    /// (`blkif_interrupt`) and issues what is queued (`blkif_queue_rq`).
    /// Returns the work done.
    pub fn step(&mut self) -> usize {
        let mut work = 0;
        let backend = self.backend_dir().and_then(|dir| switch::read_state(self.conn.store(), &dir).ok());
        let backend = backend.unwrap_or(XenbusState::Unknown);
        // The watch on the backend's state: a reaction per change.
        if self.last_backend != Some(backend) {
            work += 1;
            self.last_backend = Some(backend);
            self.blkback_changed(backend);
        }
        let mut pending = Vec::new();
        self.events.take_pending(&mut pending).unwrap();
        work += self.interrupt();
        if self.state == XenbusState::Connected {
            work += self.queue_requests();
        }
        work
    }

    fn blkback_changed(&mut self, backend: XenbusState) {
        let own = self.state;
        match backend {
            XenbusState::InitWait if own == XenbusState::Initialising => self.talk_to_blkback(),
            XenbusState::Connected => {
                if own != XenbusState::Initialised && own != XenbusState::Connected {
                    self.talk_to_blkback();
                }
                if self.state == XenbusState::Initialised {
                    self.blkfront_connect();
                }
            }
            XenbusState::Closed if own == XenbusState::Closed => {}
            // blkfront_closing (returns at once if already Closing): the
            // disk is marked dead, then xenbus_frontend_closed. The ring's
            // grants end here (Linux keeps them until the device is
            // removed).
            XenbusState::Closing | XenbusState::Closed if own != XenbusState::Closing && own != XenbusState::Closed => {
                self.ring = None;
                self.shadow.clear();
                self.switch(XenbusState::Closed);
            }
            _ => {}
        }
    }

    /// `talk_to_blkback`: one ring (unless the backend offers queues),
    /// its pages and event channel, published in one transaction, then
    /// Initialised.
    fn talk_to_blkback(&mut self) {
        let max_page_order = self.read_unsigned("max-ring-page-order", 0) as u32;
        let ring_page_order = self.params.max_ring_page_order.min(max_page_order);
        let nr_ring_pages = 1u32 << ring_page_order;
        // negotiate_mq
        let backend_max_queues = self.read_unsigned("multi-queue-max-queues", 1) as u32;
        let nr_rings = backend_max_queues.min(self.params.max_queues).max(1);
        assert_eq!(
            nr_rings, 1,
            "the backend offered {backend_max_queues} queues: not modelled (and not offered by ours)"
        );
        // setup_blkring
        let backend_id: DomId = self.read_backend_id();
        let ring = self.grants.grant_pages(backend_id, nr_ring_pages as usize, true).unwrap();
        let front = FrontRing::<Request, Response>::new(ring.pages().shared_mem()).unwrap();
        let (cursors, size) = (front.cursors(), front.size());
        let port = self.events.alloc_unbound(backend_id).unwrap();
        let notifier = self.events.notifier(port).unwrap();
        let mut keys: Vec<(String, String)> = Vec::new();
        if nr_ring_pages > 1 {
            keys.push(("ring-page-order".into(), ring_page_order.to_string()));
            for (i, gref) in ring.refs().iter().enumerate() {
                keys.push((format!("ring-ref{i}"), gref.to_string()));
            }
        } else {
            keys.push(("ring-ref".into(), ring.refs()[0].to_string()));
        }
        keys.push(("event-channel".into(), port.to_string()));
        keys.push(("protocol".into(), PROTOCOL_X86_64.into()));
        keys.push(("feature-persistent".into(), u8::from(self.params.feature_persistent).to_string()));
        let dir = self.dir.clone();
        xenbus::conn::transaction(&self.conn, |tx| {
            for (key, value) in &keys {
                tx.write(&format!("{dir}/{key}"), value.as_bytes())?;
            }
            Ok(())
        })
        .unwrap();
        self.writes.extend(keys.iter().map(|(k, _)| k.clone()));
        self.ring = Some(Ring { ring, cursors, port, notifier, size });
        self.negotiated = Some(Negotiated { nr_ring_pages, nr_rings, ..Negotiated::default() });
        self.writes.push("state=3".into());
        self.switch(XenbusState::Initialised);
    }

    fn read_backend_id(&self) -> DomId {
        let id = self.conn.read(&format!("{}/backend-id", self.dir)).unwrap();
        String::from_utf8(id).unwrap().trim().parse().unwrap()
    }

    /// `blkfront_connect`: the disk's details (sectors, info and
    /// sector-size are required), the features, then Connected.
    fn blkfront_connect(&mut self) {
        let gathered = (self.backend_read("sectors"), self.backend_read("info"), self.backend_read("sector-size"));
        let (Some(sectors), Some(info), Some(sector_size)) = gathered else {
            return self.fatal(format!("reading backend fields: {gathered:?}"));
        };
        let (Ok(sectors), Ok(info), Ok(sector_size)) =
            (sectors.parse::<u64>(), info.parse::<u32>(), sector_size.parse::<u64>())
        else {
            return self.fatal("backend fields are not numbers".into());
        };
        let physical_sector_size = self.read_unsigned("physical-sector-size", sector_size);
        let mut negotiated = self.negotiated.clone().unwrap_or_default();
        negotiated.sectors = sectors;
        negotiated.info = info;
        negotiated.sector_size = sector_size;
        negotiated.physical_sector_size = physical_sector_size;
        // blkfront_gather_backend_features
        if self.read_unsigned("feature-barrier", 0) != 0 {
            negotiated.flush = true;
            negotiated.fua = true;
        }
        if self.read_unsigned("feature-flush-cache", 0) != 0 {
            negotiated.flush = true;
            negotiated.fua = false;
        }
        if self.read_unsigned("feature-discard", 0) != 0 {
            negotiated.discard = true;
            negotiated.discard_granularity = self.read_unsigned("discard-granularity", 0);
            negotiated.discard_alignment = self.read_unsigned("discard-alignment", 0);
            negotiated.secdiscard = self.read_unsigned("discard-secure", 0) != 0;
        }
        negotiated.persistent = self.params.feature_persistent && self.read_unsigned("feature-persistent", 0) != 0;
        let indirect =
            (self.read_unsigned("feature-max-indirect-segments", 0) as u32).min(self.params.max_indirect_segments);
        negotiated.max_indirect_segments = if indirect <= MAX_SEGMENTS as u32 { 0 } else { indirect };
        // blkfront_setup_indirect: the grants list, all slots ungranted.
        let size = self.ring.as_ref().map_or(0, |r| r.size) as usize;
        self.free_grants = (0..MAX_SEGMENTS * size).map(|_| None).collect();
        self.persistent_gnts = 0;
        self.negotiated = Some(negotiated);
        self.writes.push("state=4".into());
        self.switch(XenbusState::Connected);
    }

    /// `get_grant`: with persistent grants, the first entry of the list
    /// if it is still granted; else a fresh grant (of a new page: the twin
    /// grants pages, not frames), writable either way, as Linux grants.
    fn get_grant(&mut self) -> GrantedPages {
        if self.persistent() {
            if let Some(Some(grant)) = self.free_grants.pop_front() {
                self.persistent_gnts -= 1;
                return grant;
            }
        }
        let backend_id = self.read_backend_id();
        self.grants.grant_pages(backend_id, 1, true).unwrap()
    }

    fn persistent(&self) -> bool {
        self.negotiated.as_ref().is_some_and(|n| n.persistent)
    }

    /// `blkif_queue_rq` for each queued operation while the ring has room.
    fn queue_requests(&mut self) -> usize {
        let mut issued = 0;
        let Some(negotiated) = self.negotiated.clone() else { return 0 };
        while let Some((ticket, op)) = self.queue.front().cloned() {
            let ring = self.ring.as_ref().unwrap();
            let front = FrontRing::<Request, Response>::resume(ring.ring.pages().shared_mem(), ring.cursors).unwrap();
            if front.is_full() {
                break;
            }
            self.queue.pop_front();
            let id = (0..u64::from(ring.size)).find(|id| !self.shadow.contains_key(id)).unwrap();
            let shadow = match op {
                Op::Flush if !negotiated.flush => {
                    // "While the block layer won't send us flushes if we
                    // don't claim to support them": done at once.
                    self.done.insert(ticket, Ok(Vec::new()));
                    continue;
                }
                Op::Flush => {
                    let operation = if negotiated.fua { OP_WRITE_BARRIER } else { OP_FLUSH_DISKCACHE };
                    let r = SegmentRequest { operation, nr_segments: 0, id, ..Default::default() };
                    Shadow { ticket, request: Request::Segments(r), grants: Vec::new(), read: None }
                }
                Op::Discard { sector, count, secure } => {
                    assert!(negotiated.discard, "the block layer sends no discard to a disk without it");
                    let flag = if secure && negotiated.secdiscard { DISCARD_SECURE } else { 0 };
                    let r = DiscardRequest { flag, id, sector_number: sector, nr_sectors: count, ..Default::default() };
                    Shadow { ticket, request: Request::Discard(r), grants: Vec::new(), read: None }
                }
                Op::Read { sector, count, first_sect } => {
                    let (request, grants) = self.rw_request(OP_READ, id, sector, count, first_sect, None);
                    let read = Some((usize::from(first_sect) * 512, (count * 512) as usize));
                    Shadow { ticket, request, grants, read }
                }
                Op::Write { sector, data, first_sect } => {
                    let count = data.len() as u64 / 512;
                    let (request, grants) = self.rw_request(OP_WRITE, id, sector, count, first_sect, Some(&data));
                    Shadow { ticket, request, grants, read: None }
                }
            };
            let ring = self.ring.as_mut().unwrap();
            let mut front =
                FrontRing::<Request, Response>::resume(ring.ring.pages().shared_mem(), ring.cursors).unwrap();
            front.push_request(&shadow.request).unwrap();
            // flush_requests: RING_PUSH_REQUESTS_AND_CHECK_NOTIFY.
            if front.publish_requests() {
                ring.notifier.notify().unwrap();
            }
            ring.cursors = front.cursors();
            self.shadow.insert(id, shadow);
            issued += 1;
        }
        issued
    }

    /// `blkif_queue_rw_req` without indirect segments: one segment per
    /// page, the first starting `first_sect` sectors into its page; a
    /// write's data copied into the granted pages (blkfront's bounce
    /// buffers, used with persistent grants).
    fn rw_request(
        &mut self,
        operation: u8,
        id: u64,
        sector: u64,
        count: u64,
        first_sect: u8,
        data: Option<&[u8]>,
    ) -> (Request, Vec<GrantedPages>) {
        assert!(count > 0 && first_sect < 8);
        let mut r = SegmentRequest { operation, id, sector_number: sector, ..Default::default() };
        let mut grants = Vec::new();
        let mut left = count;
        let mut start = u64::from(first_sect);
        let mut offset = 0usize;
        while left > 0 {
            let n = left.min(8 - start);
            let grant = self.get_grant();
            if let Some(data) = data {
                let bytes = &data[offset..offset + (n * 512) as usize];
                grant.pages().shared_mem().write_bytes((start * 512) as usize, bytes);
                offset += bytes.len();
            }
            let i = grants.len();
            assert!(i < MAX_SEGMENTS, "more than {MAX_SEGMENTS} segments: the block layer's max_segments");
            r.segments[i] =
                Segment { gref: grant.refs()[0], first_sect: start as u8, last_sect: (start + n - 1) as u8 };
            grants.push(grant);
            left -= n;
            start = 0;
        }
        r.nr_segments = grants.len() as u8;
        (Request::Segments(r), grants)
    }

    /// `blkif_interrupt`: every response, checked as Linux checks it.
    fn interrupt(&mut self) -> usize {
        let Some(ring) = self.ring.as_mut() else { return 0 };
        let mut front = FrontRing::<Request, Response>::resume(ring.ring.pages().shared_mem(), ring.cursors).unwrap();
        let mut responses = Vec::new();
        loop {
            match front.take_response() {
                Ok(Some(rsp)) => responses.push(rsp),
                Ok(None) => {
                    if !front.final_check_for_responses().unwrap() {
                        break;
                    }
                }
                Err(err) => {
                    self.alerts.push(format!("illegal number of responses: {err}"));
                    break;
                }
            }
        }
        ring.cursors = front.cursors();
        let size = u64::from(ring.size);
        let answered = responses.len();
        for rsp in responses {
            if rsp.id >= size {
                self.alerts.push(format!("response has incorrect id ({})", rsp.id));
                continue;
            }
            let Some(shadow) = self.shadow.remove(&rsp.id) else {
                self.alerts.push("response references no pending request".into());
                continue;
            };
            let expected = match shadow.request {
                Request::Indirect(r) => r.indirect_op,
                other => other.operation(),
            };
            if rsp.operation != expected {
                self.alerts.push(format!("response has wrong operation ({} instead of {expected})", rsp.operation));
                continue;
            }
            let result = self.complete(shadow.grants, shadow.read, &rsp, &shadow.request);
            self.done.insert(shadow.ticket, result);
        }
        answered
    }

    /// `blkif_completion` and the status handling of `blkif_interrupt`.
    fn complete(
        &mut self,
        grants: Vec<GrantedPages>,
        read: Option<(usize, usize)>,
        rsp: &Response,
        request: &Request,
    ) -> Result<Vec<u8>, i16> {
        let mut bytes = Vec::new();
        if let (Some((start, len)), true) = (read, rsp.status == RSP_OKAY) {
            // Copied from the granted pages, segment after segment.
            let mut at = start;
            for grant in &grants {
                let take = (PAGE_SIZE - at).min(len - bytes.len());
                let mut buf = vec![0; take];
                grant.pages().shared_mem().read_bytes(at, &mut buf);
                bytes.extend_from_slice(&buf);
                at = 0;
            }
        }
        let persistent = self.persistent();
        for grant in grants {
            let gref = grant.refs()[0];
            let mapped = self.backend_live.lock().unwrap().contains_key(&(self.domid, gref));
            if mapped {
                // gnttab_try_end_foreign_access fails: the backend keeps it.
                if !persistent {
                    self.alerts.push(format!("backed has not unmapped grant: {gref}"));
                    return Err(RSP_ERROR);
                }
                self.free_grants.push_front(Some(grant));
                self.persistent_gnts += 1;
            } else if persistent {
                // Ended; the slot gets a fresh grant when next used.
                drop(grant);
                self.free_grants.push_back(None);
            }
        }
        match (rsp.status, request) {
            (RSP_OKAY, _) => Ok(bytes),
            (RSP_EOPNOTSUPP, Request::Discard(_)) => {
                // Discard is disabled from now on.
                if let Some(n) = self.negotiated.as_mut() {
                    n.discard = false;
                    n.secdiscard = false;
                }
                Err(RSP_EOPNOTSUPP)
            }
            (status, Request::Segments(r)) if matches!(r.operation, OP_FLUSH_DISKCACHE | OP_WRITE_BARRIER) => {
                // A flush the backend refuses (EOPNOTSUPP, or an empty one
                // failing) turns flushes off and completes as done.
                if status == RSP_EOPNOTSUPP || status == RSP_ERROR && r.nr_segments == 0 {
                    if let Some(n) = self.negotiated.as_mut() {
                        n.flush = false;
                        n.fua = false;
                    }
                    return Ok(bytes);
                }
                Err(status)
            }
            (status, _) => Err(status),
        }
    }
}
