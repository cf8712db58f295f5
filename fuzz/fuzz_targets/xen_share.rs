//! Xen Share's device layer against a hostile peer: any bytes as a
//! guest's vdevice page, scanned by the guest's bus (as the toolstack
//! wrote it, or a guest rewrote it) and read by the toolstack; and any
//! bytes as a xensblk share (ring page, description, data windows),
//! served against a small disk. Nothing panics, and the server never
//! grows the disk or answers more than a ring's worth in one call.

#![no_main]

use libfuzzer_sys::fuzz_target;
use xen_share::blk::{serve_pending, BLK_PAGES, SECTOR};
use xen_share::{Bus, Device, Driver, Page};
use xen_shared_mem::OwnedMem;

/// Probes every device; fails those of share 13.
struct Any;

impl Driver for Any {
    fn name(&self) -> &str {
        "any"
    }
    fn kind(&self) -> u16 {
        2
    }
    fn probe(&mut self, device: &Device) -> Result<(), String> {
        if device.entry.share == 13 {
            Err("no".into())
        } else {
            Ok(())
        }
    }
    fn remove(&mut self, _: &Device) {}
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, data)) = data.split_first() else { return };
    if which & 1 == 0 {
        let owned = OwnedMem::pages(1);
        owned.mem().write_bytes(0, &data[..data.len().min(4096)]);
        let page = Page::new(owned.mem());
        let mut bus = Bus::new();
        bus.register(Box::new(Any));
        bus.scan(page);
        // The guest rewrites half of it; the bus scans again.
        let half = &data[data.len().min(4096) / 2..data.len().min(4096)];
        owned.mem().write_bytes(0, half);
        bus.scan(page);
        for slot in 0..page.slots() {
            let _ = (page.entry(slot), page.status(slot));
        }
    } else {
        let owned = OwnedMem::pages(BLK_PAGES);
        // The ring page and the first window: where a client's bytes
        // matter.
        owned.mem().write_bytes(0, &data[..data.len().min(4096)]);
        if data.len() > 4096 {
            let rest = &data[4096..data.len().min(4096 + 8192)];
            owned.mem().write_bytes(2 * 4096, rest);
        }
        let file = tempfile::tempfile().expect("a temporary file");
        file.set_len(64 * SECTOR).expect("its size");
        let start = owned.mem().load_u32(8, std::sync::atomic::Ordering::Relaxed);
        let ring = xen_ioring::BackRing::<xen_share::blk::Request, xen_share::blk::Response>::attach(
            owned.mem().slice(0, 4096),
            start,
        )
        .expect("a one-page ring");
        let mut cursors = ring.cursors();
        let _ = serve_pending(owned.mem(), &file, 64, &mut cursors);
        assert_eq!(file.metadata().expect("metadata").len(), 64 * SECTOR, "the disk grew");
    }
});
