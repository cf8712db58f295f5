//! Persistent grants (`feature-persistent`): with both ends offering it
//! the backend maps each data page once and keeps it until disconnect;
//! with either end not, it maps per request; a frontend that grants fresh
//! pages for ever, or read-only ones, gets correct answers and costs the
//! backend a bounded number of mappings.

// Test data: small counters turned into byte patterns and sizes.
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

mod support;

use blkif::abi::{OP_READ, OP_WRITE, RSP_ERROR, RSP_OKAY};
use blkif::backend::persistent::MAX_PERSISTENT_GRANTS;
use blkif::{FrontConfig, Request, Segment, SegmentRequest};
use support::hostile::{Hostile, Lies};
use support::{Rig, Rng};
use xen_platform::Grants;
use xenbus::toolstack;

const DEVID: u32 = 51712;

/// Writes random runs (across the split into 88-sector requests), reads
/// each back, and checks the image holds exactly what was written.
fn random_writes_read_back(rig: &mut Rig, fe: u16, image: &std::path::Path, sectors: u64, seed: u64) {
    let mut model = std::fs::read(image).unwrap();
    let mut rng = Rng(seed);
    for _ in 0..40 {
        let count = 1 + rng.below(200);
        let sector = rng.below(sectors - count + 1);
        let data = rng.bytes((count * 512) as usize);
        let ticket = rig.front(fe).write(DEVID, sector, data.clone()).unwrap();
        assert_eq!(rig.finish(fe, DEVID, ticket), Ok(Vec::new()));
        model[(sector * 512) as usize..((sector + count) * 512) as usize].copy_from_slice(&data);
        let ticket = rig.front(fe).read(DEVID, sector, count).unwrap();
        assert_eq!(rig.finish(fe, DEVID, ticket).unwrap(), data, "sectors {sector}+{count} read back");
    }
    assert!(std::fs::read(image).unwrap() == model, "the image holds exactly what was written");
}

#[test]
fn with_both_ends_offering_it_pages_are_mapped_once_and_the_data_is_intact() {
    let mut rig = Rig::new();
    let fe = rig.guest("guest", FrontConfig::default());
    let sectors = 1024;
    let image = rig.image("disk.img", sectors);
    let spec = rig.attach(fe, DEVID, &image, "w");
    assert_eq!(rig.read(&format!("{}/feature-persistent", spec.backend_dir())).as_deref(), Some("1"));
    assert_eq!(rig.read(&format!("{}/feature-persistent", spec.frontend_dir())).as_deref(), Some("1"));
    assert!(rig.front(fe).info(DEVID).unwrap().persistent);

    random_writes_read_back(&mut rig, fe, &image, sectors, 0x5eed);
    let kept = rig.backend().cached_grants(&spec.backend_dir()).unwrap();
    // One ring of 32 slots, 11 pages each: the pool the frontend reuses.
    assert!(kept > 0 && kept <= 32 * 11, "{kept} pages kept mapped");

    // Once the pages in use are mapped, more of the same costs no mapping.
    let maps = rig.maps();
    for round in 0..50u64 {
        let ticket = rig.front(fe).write(DEVID, round % 8, vec![round as u8; 512]).unwrap();
        assert_eq!(rig.finish(fe, DEVID, ticket), Ok(Vec::new()));
        let ticket = rig.front(fe).read(DEVID, round % 8, 1).unwrap();
        assert_eq!(rig.finish(fe, DEVID, ticket).unwrap(), vec![round as u8; 512]);
    }
    assert_eq!(rig.maps(), maps, "100 requests on pages already mapped map nothing");
}

#[test]
fn a_frontend_without_the_feature_has_its_pages_mapped_per_request() {
    let mut rig = Rig::new();
    let fe = rig.guest("guest", FrontConfig { no_persistent: true, ..FrontConfig::default() });
    let sectors = 1024;
    let image = rig.image("disk.img", sectors);
    let spec = rig.attach(fe, DEVID, &image, "w");
    assert_eq!(rig.read(&format!("{}/feature-persistent", spec.frontend_dir())).as_deref(), Some("0"));
    assert!(!rig.front(fe).info(DEVID).unwrap().persistent);

    random_writes_read_back(&mut rig, fe, &image, sectors, 0xfeed);
    assert_eq!(rig.backend().cached_grants(&spec.backend_dir()), Some(0));
    let maps = rig.maps();
    for round in 0..10u64 {
        let ticket = rig.front(fe).write(DEVID, round, vec![round as u8; 512]).unwrap();
        assert_eq!(rig.finish(fe, DEVID, ticket), Ok(Vec::new()));
    }
    assert_eq!(rig.maps(), maps + 10, "one mapping per request");
}

#[test]
fn disconnect_unmaps_the_kept_pages_and_a_new_connection_maps_its_own() {
    let mut rig = Rig::new();
    let fe = rig.guest("guest", FrontConfig::default());
    let image = rig.image("disk.img", 256);
    let spec = rig.attach(fe, DEVID, &image, "w");
    let ticket = rig.front(fe).write(DEVID, 8, vec![0xab; 8 * 4096]).unwrap();
    assert_eq!(rig.finish(fe, DEVID, ticket), Ok(Vec::new()));
    assert_eq!(rig.backend().cached_grants(&spec.backend_dir()), Some(8));

    toolstack::begin_detach(&rig.toolstack, &spec).unwrap();
    rig.settle();
    assert_eq!(rig.backend().cached_grants(&spec.backend_dir()), None, "the kept pages went with the ring");
    toolstack::remove_dirs(&rig.toolstack, &spec).unwrap();
    rig.settle();

    // The new connection's pool has new references: mapped afresh.
    rig.attach(fe, DEVID, &image, "w");
    assert_eq!(rig.backend().cached_grants(&spec.backend_dir()), Some(0));
    let maps = rig.maps();
    let ticket = rig.front(fe).read(DEVID, 8, 64).unwrap();
    assert_eq!(rig.finish(fe, DEVID, ticket).unwrap(), vec![0xab; 8 * 4096]);
    assert_eq!(rig.maps(), maps + 8, "each page of the new pool mapped once");
    assert_eq!(rig.backend().cached_grants(&spec.backend_dir()), Some(8));
}

/// A one-sector request of `operation` on data page `gref`, tagged `id`.
fn one_sector(operation: u8, id: u64, sector: u64, gref: u32) -> Request {
    let mut r = SegmentRequest { operation, nr_segments: 1, id, sector_number: sector, ..Default::default() };
    r.segments[0] = Segment { gref, first_sect: 0, last_sect: 0 };
    Request::Segments(r)
}

#[test]
fn fresh_grant_references_for_every_request_keep_at_most_the_bound_mapped() {
    let mut rig = Rig::new();
    let persistent = Lies { feature_persistent: Some("1".into()), ..Lies::default() };
    let mut hostile = Hostile::new(&mut rig, "hostile", DEVID, persistent);
    let dir = hostile.spec.backend_dir();
    let total = MAX_PERSISTENT_GRANTS + 1500;
    let fresh = hostile.grants.grant_pages(0, total, true).unwrap();
    let mut sent = 0;
    while sent < total {
        let batch: Vec<Request> =
            (sent..total.min(sent + 32)).map(|i| one_sector(OP_READ, i as u64, 0, fresh.refs()[i])).collect();
        assert_eq!(hostile.send(&batch), batch.len());
        rig.settle();
        let statuses = hostile.responses();
        assert_eq!(statuses.len(), batch.len());
        assert!(statuses.values().all(|&s| s == RSP_OKAY), "every read answered OKAY");
        sent += batch.len();
        let kept = rig.backend().cached_grants(&dir).unwrap();
        assert!(kept <= MAX_PERSISTENT_GRANTS, "{kept} kept after {sent} fresh references");
    }
    assert_eq!(rig.backend().cached_grants(&dir), Some(MAX_PERSISTENT_GRANTS));
    assert_eq!(rig.state(&dir), "4", "still connected");
}

#[test]
fn a_read_only_grant_serves_writes_to_the_disk_and_refuses_reads_into_it() {
    let mut rig = Rig::new();
    let persistent = Lies { feature_persistent: Some("1".into()), ..Lies::default() };
    let mut hostile = Hostile::new(&mut rig, "hostile", DEVID, persistent);
    let dir = hostile.spec.backend_dir();
    let readonly = hostile.grants.grant_pages(0, 1, false).unwrap();
    readonly.pages().shared_mem().write_bytes(0, &[0x5a; 512]);
    let gref = readonly.refs()[0];
    for round in 0..3 {
        let requests = [one_sector(OP_WRITE, 1, 3, gref), one_sector(OP_READ, 2, 3, gref)];
        assert_eq!(hostile.send(&requests), 2);
        rig.settle();
        let statuses = hostile.responses();
        assert_eq!(statuses.get(&1), Some(&RSP_OKAY), "round {round}: the page is read to write the disk");
        assert_eq!(statuses.get(&2), Some(&RSP_ERROR), "round {round}: a read-only page is not read into");
    }
    assert_eq!(rig.backend().cached_grants(&dir), Some(0), "a read-only page is never kept");
    let image = std::fs::read(rig.dir.path().join("hostile.img")).unwrap();
    assert_eq!(&image[3 * 512..4 * 512], &[0x5a; 512][..]);
}

#[test]
fn a_feature_value_other_than_1_is_off() {
    let mut rig = Rig::new();
    let lies = Lies { feature_persistent: Some("yes".into()), ..Lies::default() };
    let mut hostile = Hostile::new(&mut rig, "hostile", DEVID, lies);
    let dir = hostile.spec.backend_dir();
    let read = Request::Segments(hostile.read(1, 0));
    assert_eq!(hostile.send(&[read]), 1);
    rig.settle();
    assert_eq!(hostile.responses().get(&1), Some(&RSP_OKAY));
    assert_eq!(rig.backend().cached_grants(&dir), Some(0));
}
