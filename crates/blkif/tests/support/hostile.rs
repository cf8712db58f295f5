//! A frontend written by hand, that publishes whatever a test wants and
//! puts any bytes on its ring: what a hostile guest can do.

use std::collections::BTreeMap;

use blkif::abi::{OP_READ, PROTOCOL_X86_64};
use blkif::{Request, Response, Segment, SegmentRequest};
use xen_ioring::{FrontCursors, FrontRing, Index};
use xen_platform::testing::{TestEventChannels, TestGrants};
use xen_platform::{EventChannels, GrantedPages, Grants, Notifier};
use xenbus::toolstack::{self, DeviceSpec};
use xenstore::Store;

use super::{Rig, WorldConn};

/// What the hostile frontend publishes instead of the truth.
#[derive(Debug, Default, Clone)]
pub struct Lies {
    pub ring_ref: Option<String>,
    pub event_channel: Option<String>,
    pub protocol: Option<String>,
    pub ring_page_order: Option<String>,
    /// `feature-persistent`, written only if set.
    pub feature_persistent: Option<String>,
    /// `multi-queue-num-queues`, written only if set.
    pub multi_queue_num_queues: Option<String>,
}

pub struct Hostile {
    pub domid: u16,
    pub spec: DeviceSpec,
    conn: WorldConn,
    /// The guest's grant handle (to grant more pages).
    pub grants: TestGrants,
    _events: TestEventChannels,
    pub ring: GrantedPages,
    pub data: GrantedPages,
    notifier: Notifier,
    cursors: FrontCursors,
}

impl Hostile {
    /// A guest with a device whose frontend publishes `lies` (or the
    /// truth) and says Initialised; settled.
    pub fn new(rig: &mut Rig, name: &str, devid: u32, lies: Lies) -> Hostile {
        let (domid, conn) = rig.raw_guest(name);
        let image = rig.image(&format!("{name}.img"), 64);
        let spec = rig.spec(domid, devid, &image, "w");
        toolstack::attach(&rig.toolstack, &spec).unwrap();
        rig.settle();
        let mut grants = rig.hv.grants(domid);
        let mut events = rig.hv.event_channels(domid).unwrap();
        let ring = grants.grant_pages(0, 1, true).unwrap();
        let front = FrontRing::<Request, Response>::new(ring.pages().shared_mem()).unwrap();
        let cursors = front.cursors();
        let data = grants.grant_pages(0, 4, true).unwrap();
        let port = events.alloc_unbound(0).unwrap();
        let notifier = events.notifier(port).unwrap();
        let dir = spec.frontend_dir();
        let keys = [
            ("ring-ref", lies.ring_ref.unwrap_or(ring.refs()[0].to_string())),
            ("event-channel", lies.event_channel.unwrap_or(port.to_string())),
            ("protocol", lies.protocol.unwrap_or(PROTOCOL_X86_64.into())),
        ];
        for (key, value) in keys {
            conn.write(&format!("{dir}/{key}"), value.as_bytes()).unwrap();
        }
        if let Some(order) = lies.ring_page_order {
            conn.write(&format!("{dir}/ring-page-order"), order.as_bytes()).unwrap();
        }
        if let Some(queues) = lies.multi_queue_num_queues {
            conn.write(&format!("{dir}/multi-queue-num-queues"), queues.as_bytes()).unwrap();
        }
        if let Some(persistent) = lies.feature_persistent {
            conn.write(&format!("{dir}/feature-persistent"), persistent.as_bytes()).unwrap();
        }
        conn.write(&format!("{dir}/state"), b"3").unwrap();
        rig.settle();
        Hostile { domid, spec, conn, grants, _events: events, ring, data, notifier, cursors }
    }

    /// A valid one-sector read into data page `page`, tagged `id`.
    pub fn read(&self, id: u64, sector: u64) -> SegmentRequest {
        let mut r =
            SegmentRequest { operation: OP_READ, nr_segments: 1, id, sector_number: sector, ..Default::default() };
        r.segments[0] = Segment { gref: self.data.refs()[0], first_sect: 0, last_sect: 0 };
        r
    }

    /// Puts `requests` on the ring (as many as fit), publishes and
    /// notifies; returns how many went.
    pub fn send(&mut self, requests: &[Request]) -> usize {
        let mut ring = FrontRing::<Request, Response>::resume(self.ring.pages().shared_mem(), self.cursors).unwrap();
        let sent = requests.iter().take_while(|r| ring.push_request(r).is_ok()).count();
        ring.publish_requests();
        self.notifier.notify().unwrap();
        self.cursors = ring.cursors();
        sent
    }

    /// Free slots on the ring (after taking the responses).
    pub fn free(&mut self) -> u32 {
        let ring = FrontRing::<Request, Response>::resume(self.ring.pages().shared_mem(), self.cursors).unwrap();
        ring.free_requests()
    }

    /// Takes every response: status by id.
    pub fn responses(&mut self) -> BTreeMap<u64, i16> {
        self.answers().into_iter().map(|(id, (_, status))| (id, status)).collect()
    }

    /// Takes every response: operation and status by id.
    pub fn answers(&mut self) -> BTreeMap<u64, (u8, i16)> {
        let mut ring = FrontRing::<Request, Response>::resume(self.ring.pages().shared_mem(), self.cursors).unwrap();
        let mut out = BTreeMap::new();
        while let Some(rsp) = ring.take_response().unwrap() {
            out.insert(rsp.id, (rsp.operation, rsp.status));
        }
        self.cursors = ring.cursors();
        out
    }

    /// Writes `req_prod` straight into the shared ring and notifies.
    pub fn scribble_req_prod(&self, value: u32) {
        let mem = self.ring.pages().shared_mem();
        mem.store_u32(Index::ReqProd.offset(), value, std::sync::atomic::Ordering::Release);
        self.notifier.notify().unwrap();
    }

    /// The frontend's connection (to write more lies).
    pub fn conn(&self) -> &WorldConn {
        &self.conn
    }
}
