//! Linux 6.1's blkfront (modelled by `support::linux::LinuxFront`, which
//! does what `xen-blkfront.c` does at the protocol level) against the
//! backend serving disks as libxl 4.17 writes them for a userspace
//! backend (`backend/qdisk`, `params` `aio:<path>`): the handshake in
//! Linux's order, what Linux learns, the operations it then sends, its
//! checks of every response, persistent grants on and off, a multi-page
//! ring, and `xl block-detach`.

// Test data: small counters turned into byte patterns and sizes.
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

mod support;

use blkif::{BackendType, ServeConfig};
use support::linux::{LinuxParams, Negotiated, Op};
use support::{Rig, Rng};
use xenbus::toolstack;

const DEVID: u32 = 51712;

fn qdisk() -> ServeConfig {
    ServeConfig { backend_type: BackendType::Qdisk, frontend: None }
}

/// A qdisk backend, a guest with Linux's blkfront, a disk of `sectors`
/// attached as libxl attaches it; settled.
fn linux_with_disk(params: LinuxParams, sectors: u64, mode: &str) -> (Rig, u16, toolstack::DeviceSpec) {
    let mut rig = Rig::serving(qdisk());
    let fe = rig.linux_guest("guest", DEVID, params);
    let image = rig.image("disk.img", sectors);
    let spec = rig.qdisk_spec(fe, DEVID, &image, mode);
    rig.attach_spec(&spec);
    (rig, fe, spec)
}

fn image(rig: &Rig) -> Vec<u8> {
    std::fs::read(rig.dir.path().join("disk.img")).unwrap()
}

/// Submits `ops`, settles, and returns their results in order.
fn run(rig: &mut Rig, fe: u16, ops: Vec<Op>) -> Vec<Result<Vec<u8>, i16>> {
    let tickets: Vec<u64> = ops.into_iter().map(|op| rig.linux(fe).submit(op)).collect();
    rig.settle();
    tickets.into_iter().map(|t| rig.linux(fe).take(t).expect("done once settled")).collect()
}

fn write(sector: u64, data: Vec<u8>) -> Op {
    Op::Write { sector, data, first_sect: 0 }
}

fn read(sector: u64, count: u64) -> Op {
    Op::Read { sector, count, first_sect: 0 }
}

/// 64 operations, twice the ring's 32 slots at once: 4 KiB writes and
/// reads of 1 to 88 sectors, alternating, at random sectors of a 4096-sector
/// disk.
fn mixed_ops(rng: &mut Rng) -> Vec<Op> {
    (0..64)
        .map(|i| {
            let sector = rng.below(4000);
            if i % 2 == 0 {
                write(sector, rng.bytes(8 * 512))
            } else {
                read(sector, 1 + rng.below(88))
            }
        })
        .collect()
}

#[test]
fn linux_connects_to_a_qdisk_disk_written_as_libxl_writes_it_and_learns_what_is_offered() {
    let (mut rig, fe, spec) = linux_with_disk(LinuxParams::default(), 2048, "w");
    let be_dir = spec.backend_dir();
    assert_eq!(be_dir, format!("/local/domain/0/backend/qdisk/{fe}/{DEVID}"));
    assert_eq!((rig.state(&spec.frontend_dir()), rig.state(&be_dir)), ("4".into(), "4".into()));
    let linux = rig.linux(fe);
    assert!(linux.alerts.is_empty(), "{:?}", linux.alerts);
    assert_eq!(linux.writes, ["ring-ref", "event-channel", "protocol", "feature-persistent", "state=3", "state=4"]);
    let expected = Negotiated {
        nr_ring_pages: 1,
        nr_rings: 1,
        sectors: 2048,
        sector_size: 512,
        physical_sector_size: 512,
        info: 0,
        flush: true,
        fua: false,
        discard: true,
        discard_granularity: 512,
        discard_alignment: 0,
        secdiscard: false,
        persistent: true,
        max_indirect_segments: 0,
    };
    assert_eq!(linux.negotiated.as_ref(), Some(&expected));
    // Nothing is advertised that the backend does not do.
    for key in ["feature-barrier", "feature-max-indirect-segments", "multi-queue-max-queues", "discard-secure"] {
        assert!(rig.read(&format!("{be_dir}/{key}")).is_none(), "{key} is not offered");
    }
    assert_eq!(rig.backend().connected(), [be_dir]);
}

#[test]
fn linux_writes_flushes_reads_and_discards_and_the_image_holds_what_it_wrote() {
    let (mut rig, fe, _spec) = linux_with_disk(LinuxParams::default(), 2048, "w");
    let mut rng = Rng(61);
    let eleven_pages = rng.bytes(88 * 512);
    let unaligned = rng.bytes(5 * 512);
    let results = run(
        &mut rig,
        fe,
        vec![
            Op::Flush,
            write(0, eleven_pages.clone()),
            Op::Write { sector: 100, data: unaligned.clone(), first_sect: 3 },
            Op::Flush,
        ],
    );
    assert_eq!(results, vec![Ok(Vec::new()); 4]);
    let results = run(&mut rig, fe, vec![read(0, 88), Op::Read { sector: 100, count: 5, first_sect: 6 }, read(96, 16)]);
    assert_eq!(results[0].as_deref(), Ok(&eleven_pages[..]));
    assert_eq!(results[1].as_deref(), Ok(&unaligned[..]));
    let mut around = vec![0u8; 16 * 512];
    around[4 * 512..9 * 512].copy_from_slice(&unaligned);
    assert_eq!(results[2].as_deref(), Ok(&around[..]));

    let results = run(&mut rig, fe, vec![Op::Discard { sector: 8, count: 16, secure: false }, read(0, 32)]);
    assert_eq!(results[0], Ok(Vec::new()));
    let mut expected = eleven_pages[..32 * 512].to_vec();
    expected[8 * 512..24 * 512].fill(0);
    assert_eq!(results[1].as_deref(), Ok(&expected[..]), "discarded sectors read as zeros");

    let bytes = image(&rig);
    assert_eq!(&bytes[..8 * 512], &eleven_pages[..8 * 512]);
    assert!(bytes[8 * 512..24 * 512].iter().all(|&b| b == 0));
    assert_eq!(&bytes[24 * 512..88 * 512], &eleven_pages[24 * 512..]);
    assert_eq!(&bytes[100 * 512..105 * 512], &unaligned[..]);
    assert!(rig.linux(fe).alerts.is_empty(), "{:?}", rig.linux(fe).alerts);
}

#[test]
fn without_persistent_grants_every_data_grant_is_unmapped_before_its_response() {
    let params = LinuxParams { feature_persistent: false, ..LinuxParams::default() };
    let (mut rig, fe, spec) = linux_with_disk(params, 4096, "w");
    assert_eq!(rig.read(&format!("{}/feature-persistent", spec.frontend_dir())).as_deref(), Some("0"));
    assert!(!rig.linux(fe).negotiated.as_ref().unwrap().persistent);
    let mut rng = Rng(7);
    for _ in 0..20 {
        let ops = mixed_ops(&mut rng);
        assert!(run(&mut rig, fe, ops).iter().all(Result::is_ok));
    }
    // Linux ends each grant at its response and alerts if the backend
    // still maps it: none did.
    assert!(rig.linux(fe).alerts.is_empty(), "{:?}", rig.linux(fe).alerts);
    assert_eq!(rig.mapped_count(), 1, "only the ring page stays mapped");
    assert_eq!(rig.backend().cached_grants(&spec.backend_dir()), Some(0));
}

#[test]
fn with_persistent_grants_linux_reuses_the_grants_the_backend_keeps_mapped() {
    let (mut rig, fe, spec) = linux_with_disk(LinuxParams::default(), 4096, "w");
    let mut rng = Rng(11);
    let mut maps_after = Vec::new();
    for _ in 0..20 {
        let ops = mixed_ops(&mut rng);
        assert!(run(&mut rig, fe, ops).iter().all(Result::is_ok));
        maps_after.push(rig.maps());
    }
    assert!(rig.linux(fe).alerts.is_empty(), "{:?}", rig.linux(fe).alerts);
    // Linux's list holds at most 32 slots of 11 grants; once they are all
    // granted and mapped, nothing more is mapped.
    let kept = rig.backend().cached_grants(&spec.backend_dir()).unwrap();
    assert!(kept > 0 && kept <= 32 * 11, "{kept}");
    assert_eq!(rig.linux(fe).persistent_gnts, kept, "Linux reuses exactly the grants the backend keeps");
    assert_eq!(maps_after[19], maps_after[10], "no mapping once the working set is kept: {maps_after:?}");
}

#[test]
fn a_multi_page_ring_when_linux_is_told_to_use_one() {
    let params = LinuxParams { max_ring_page_order: 2, ..LinuxParams::default() };
    let (mut rig, fe, spec) = linux_with_disk(params, 4096, "w");
    let linux = rig.linux(fe);
    assert_eq!(
        linux.writes,
        [
            "ring-page-order",
            "ring-ref0",
            "ring-ref1",
            "ring-ref2",
            "ring-ref3",
            "event-channel",
            "protocol",
            "feature-persistent",
            "state=3",
            "state=4"
        ]
    );
    assert_eq!(linux.negotiated.as_ref().unwrap().nr_ring_pages, 4);
    let data: Vec<Vec<u8>> = (0..200).map(|i| vec![i as u8; 4096]).collect();
    let tickets: Vec<u64> =
        data.iter().enumerate().map(|(i, d)| rig.linux(fe).submit(write(i as u64 * 8, d.clone()))).collect();
    rig.linux(fe).step();
    assert_eq!(rig.linux(fe).in_flight(), 128, "four pages hold 128 requests");
    rig.settle();
    for ticket in tickets {
        assert_eq!(rig.linux(fe).take(ticket), Some(Ok(Vec::new())));
    }
    let bytes = image(&rig);
    for (i, d) in data.iter().enumerate() {
        assert_eq!(&bytes[i * 4096..(i + 1) * 4096], &d[..], "write {i}");
    }
    assert_eq!(rig.backend().connected(), [spec.backend_dir()]);
}

#[test]
fn xl_block_detach_closes_linux_and_the_backend_unmaps_everything() {
    let (mut rig, fe, spec) = linux_with_disk(LinuxParams::default(), 2048, "w");
    assert!(run(&mut rig, fe, vec![write(0, vec![7; 44 * 512])]).iter().all(Result::is_ok));
    assert!(rig.mapped_count() > 1, "the ring and the data pages kept");
    // libxl__initiate_device_generic_remove: online 0 and the backend's
    // state 5 in one transaction, then a wait for the backend's 6.
    toolstack::begin_detach(&rig.toolstack, &spec).unwrap();
    rig.settle();
    assert_eq!((rig.state(&spec.frontend_dir()), rig.state(&spec.backend_dir())), ("6".into(), "6".into()));
    assert_eq!(rig.mapped_count(), 0, "ring and kept pages unmapped");
    assert!(rig.backend().connected().is_empty());
    assert!(rig.backend().ports().is_empty());
    assert!(rig.backend().bus().device(&spec.backend_dir()).is_none(), "unregistered: online is 0");
    toolstack::remove_dirs(&rig.toolstack, &spec).unwrap();
    rig.settle();
}

#[test]
fn xl_block_detach_of_a_disk_no_frontend_ever_used_completes_at_once() {
    let mut rig = Rig::serving(qdisk());
    let (fe, _conn) = rig.raw_guest("no-blkfront");
    let image = rig.image("disk.img", 64);
    let spec = rig.qdisk_spec(fe, DEVID, &image, "w");
    rig.attach_spec(&spec);
    assert_eq!(rig.state(&spec.backend_dir()), "2");
    toolstack::begin_detach(&rig.toolstack, &spec).unwrap();
    rig.settle();
    assert_eq!(rig.state(&spec.backend_dir()), "6", "as QEMU: libxl's wait for Closed ends at once");
    assert!(rig.backend().bus().device(&spec.backend_dir()).is_none());
}

#[test]
fn a_read_only_disk_says_so_and_offers_no_discard() {
    let (mut rig, fe, spec) = linux_with_disk(LinuxParams::default(), 64, "r");
    assert_eq!(rig.read(&format!("{}/discard-enable", spec.backend_dir())).as_deref(), Some("0"));
    let negotiated = rig.linux(fe).negotiated.clone().unwrap();
    assert_eq!((negotiated.info, negotiated.discard), (blkif::abi::VDISK_READONLY, false));
    assert_eq!(run(&mut rig, fe, vec![read(0, 8), Op::Flush]), vec![Ok(vec![0; 4096]), Ok(Vec::new())]);
}

#[test]
fn discard_enable_0_turns_discard_off_on_a_writable_disk() {
    let mut rig = Rig::serving(qdisk());
    let fe = rig.linux_guest("guest", DEVID, LinuxParams::default());
    let image = rig.image("disk.img", 64);
    let mut spec = rig.qdisk_spec(fe, DEVID, &image, "w");
    for (key, value) in &mut spec.backend_keys {
        if key == "discard-enable" {
            *value = "0".into();
        }
    }
    rig.attach_spec(&spec);
    assert_eq!(rig.read(&format!("{}/feature-discard", spec.backend_dir())).as_deref(), Some("0"));
    assert!(!rig.linux(fe).negotiated.as_ref().unwrap().discard);
}

#[test]
fn a_cdrom_is_read_only_with_vdisk_cdrom_set() {
    let mut rig = Rig::serving(qdisk());
    let fe = rig.linux_guest("guest", DEVID, LinuxParams::default());
    let image = rig.image("disk.img", 64);
    let mut spec = rig.qdisk_spec(fe, DEVID, &image, "r");
    for (key, value) in spec.backend_keys.iter_mut().chain(spec.frontend_keys.iter_mut()) {
        if key == "device-type" {
            *value = "cdrom".into();
        }
    }
    rig.attach_spec(&spec);
    let info = rig.linux(fe).negotiated.as_ref().unwrap().info;
    assert_eq!(info, blkif::abi::VDISK_CDROM | blkif::abi::VDISK_READONLY);
}

#[test]
fn a_qcow2_disk_is_refused_with_an_error_node_and_linux_never_connects() {
    let mut rig = Rig::serving(qdisk());
    let fe = rig.linux_guest("guest", DEVID, LinuxParams::default());
    let image = rig.image("disk.qcow2", 64);
    let mut spec = rig.qdisk_spec(fe, DEVID, &image, "w");
    spec.backend_keys[0].1 = format!("qcow2:{}", image.display());
    rig.attach_spec(&spec);
    assert_eq!(rig.state(&spec.backend_dir()), "6");
    let error = rig.backend_error(&spec).unwrap();
    assert!(error.starts_with("95 ") && error.contains("qcow2") && error.contains("raw images only"), "{error}");
    assert_eq!(rig.state(&spec.frontend_dir()), "6", "Linux closes its end when the backend closes");
    assert!(rig.linux(fe).negotiated.is_none(), "and never connected");
    assert!(rig.backend().connected().is_empty());
}

#[test]
fn a_backend_serving_one_domain_leaves_another_domains_disk_alone() {
    let mut rig = Rig::serving(qdisk());
    let mine = rig.linux_guest("mine", DEVID, LinuxParams::default());
    let other = rig.linux_guest("other", DEVID, LinuxParams::default());
    rig.kill_backend();
    rig.config.frontend = Some(mine);
    rig.start_backend();
    let (mine_image, other_image) = (rig.image("mine.img", 64), rig.image("other.img", 64));
    let mine_spec = rig.qdisk_spec(mine, DEVID, &mine_image, "w");
    let other_spec = rig.qdisk_spec(other, DEVID, &other_image, "w");
    rig.attach_spec(&mine_spec);
    rig.attach_spec(&other_spec);
    assert_eq!(rig.state(&mine_spec.backend_dir()), "4");
    assert_eq!(rig.state(&other_spec.backend_dir()), "1", "left for the other domain's backend");
    assert_eq!(rig.state(&other_spec.frontend_dir()), "1");
}
