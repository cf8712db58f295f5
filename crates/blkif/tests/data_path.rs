//! A guest's frontend and dom0's backend in the stepped world: the
//! handshake, the ring under load, and the data on the image.

// Test data: small counters turned into byte patterns and sizes.
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

mod support;

use blkif::FrontConfig;
use support::{Rig, Rng};

const DEVID: u32 = 51712;

#[test]
fn handshake_reaches_connected_with_the_disk_details() {
    let mut rig = Rig::new();
    let fe = rig.guest("guest", FrontConfig::default());
    let image = rig.image("disk.img", 2048);
    let spec = rig.attach(fe, DEVID, &image, "w");
    let (fe_dir, be_dir) = (spec.frontend_dir(), spec.backend_dir());
    assert_eq!((rig.state(&fe_dir), rig.state(&be_dir)), ("4".into(), "4".into()));
    for (key, value) in [
        ("sectors", "2048"),
        ("sector-size", "512"),
        ("info", "0"),
        ("feature-flush-cache", "1"),
        ("feature-discard", "1"),
        ("max-ring-page-order", "4"),
    ] {
        assert_eq!(rig.read(&format!("{be_dir}/{key}")).as_deref(), Some(value), "{key}");
    }
    assert_eq!(rig.read(&format!("{fe_dir}/protocol")).as_deref(), Some("x86_64-abi"));
    assert!(rig.read(&format!("{fe_dir}/ring-ref")).is_some());
    assert!(rig.read(&format!("{fe_dir}/event-channel")).is_some());
    let info = rig.front(fe).info(DEVID).unwrap();
    assert_eq!((info.sectors, info.sector_size, info.readonly, info.flush), (2048, 512, false, true));
    assert_eq!(rig.backend().connected(), [be_dir]);
}

#[test]
fn ten_thousand_round_trips_through_the_ring() {
    let mut rig = Rig::new();
    let fe = rig.guest("guest", FrontConfig::default());
    let image = rig.image("disk.img", 4096);
    rig.attach(fe, DEVID, &image, "w");
    let mut rng = Rng(7);
    let mut done = 0;
    while done < 10_000 {
        // Twice the ring's 32 slots at once: many in flight, some waiting.
        let tickets: Vec<_> = (0..64)
            .map(|i| {
                let sector = rng.below(4096);
                let front = rig.front(fe);
                if i % 2 == 0 { front.read(DEVID, sector, 1) } else { front.write(DEVID, sector, vec![i as u8; 512]) }
                    .unwrap()
            })
            .collect();
        rig.settle();
        for ticket in tickets {
            assert!(rig.front(fe).take(DEVID, ticket).unwrap().is_ok());
            done += 1;
        }
    }
    assert_eq!(rig.front(fe).outstanding(DEVID), (0, 0));
}

#[test]
fn random_writes_read_back_and_the_image_holds_exactly_what_was_written() {
    let mut rig = Rig::new();
    let fe = rig.guest("guest", FrontConfig::default());
    let sectors = 1024u64;
    let image = rig.image("disk.img", sectors);
    rig.attach(fe, DEVID, &image, "w");
    let mut model = vec![0u8; (sectors * 512) as usize];
    let mut rng = Rng(0x5eed);
    for _ in 0..60 {
        // Up to 200 sectors: across the split into 88-sector requests.
        let count = 1 + rng.below(200);
        let sector = rng.below(sectors - count + 1);
        let data = rng.bytes((count * 512) as usize);
        let at = (sector * 512) as usize;
        model[at..at + data.len()].copy_from_slice(&data);
        let ticket = rig.front(fe).write(DEVID, sector, data).unwrap();
        assert_eq!(rig.finish(fe, DEVID, ticket), Ok(Vec::new()));

        let count = 1 + rng.below(200);
        let sector = rng.below(sectors - count + 1);
        let ticket = rig.front(fe).read(DEVID, sector, count).unwrap();
        let at = (sector * 512) as usize;
        assert_eq!(rig.finish(fe, DEVID, ticket).unwrap(), &model[at..at + (count * 512) as usize]);
    }
    let ticket = rig.front(fe).flush(DEVID).unwrap();
    assert_eq!(rig.finish(fe, DEVID, ticket), Ok(Vec::new()));
    assert!(std::fs::read(&image).unwrap() == model, "the image holds exactly what was written");
}

#[test]
fn a_multi_page_ring_carries_more_requests_at_once() {
    let mut rig = Rig::new();
    let fe = rig.guest("guest", FrontConfig { ring_page_order: 2, ..FrontConfig::default() });
    let image = rig.image("disk.img", 4096);
    let spec = rig.attach(fe, DEVID, &image, "w");
    let fe_dir = spec.frontend_dir();
    assert_eq!(rig.read(&format!("{fe_dir}/ring-page-order")).as_deref(), Some("2"));
    assert!(rig.read(&format!("{fe_dir}/ring-ref3")).is_some());
    assert!(rig.read(&format!("{fe_dir}/ring-ref")).is_none());
    let tickets: Vec<_> = (0..128).map(|i| rig.front(fe).write(DEVID, i * 8, vec![i as u8; 4096]).unwrap()).collect();
    rig.front(fe).step().unwrap();
    assert_eq!(rig.front(fe).outstanding(DEVID), (128, 0), "a 4-page ring holds 128 requests");
    rig.settle();
    for ticket in tickets {
        assert_eq!(rig.front(fe).take(DEVID, ticket), Some(Ok(Vec::new())));
    }
    let ticket = rig.front(fe).read(DEVID, 127 * 8, 8).unwrap();
    assert_eq!(rig.finish(fe, DEVID, ticket).unwrap(), vec![127u8; 4096]);
}

#[test]
fn a_read_only_disk_says_so_and_refuses_writes() {
    let mut rig = Rig::new();
    let fe = rig.guest("guest", FrontConfig::default());
    let image = rig.image("disk.img", 64);
    std::fs::write(&image, vec![9u8; 64 * 512]).unwrap();
    let spec = rig.attach(fe, DEVID, &image, "r");
    assert_eq!(rig.read(&format!("{}/info", spec.backend_dir())).as_deref(), Some("4"));
    assert_eq!(rig.read(&format!("{}/feature-discard", spec.backend_dir())).as_deref(), Some("0"));
    let info = rig.front(fe).info(DEVID).unwrap();
    assert!(info.readonly);
    assert!(rig.front(fe).write(DEVID, 0, vec![0; 512]).is_err());
    let ticket = rig.front(fe).read(DEVID, 0, 64).unwrap();
    assert_eq!(rig.finish(fe, DEVID, ticket).unwrap(), vec![9u8; 64 * 512]);
}

#[test]
fn a_discard_punches_a_hole_that_reads_back_as_zeros() {
    use blkif::abi::RSP_OKAY;
    use blkif::{DiscardRequest, Request};
    use support::hostile::{Hostile, Lies};

    let mut rig = Rig::new();
    let mut front = Hostile::new(&mut rig, "guest", DEVID, Lies::default());
    let image = rig.dir.path().join("guest.img");
    std::fs::write(&image, vec![0xff; 64 * 512]).unwrap();
    let discard = DiscardRequest { id: 5, sector_number: 8, nr_sectors: 8, ..Default::default() };
    let past_end = DiscardRequest { id: 6, sector_number: 60, nr_sectors: 8, ..Default::default() };
    front.send(&[Request::Discard(discard), Request::Discard(past_end)]);
    rig.settle();
    assert_eq!(front.responses().into_iter().collect::<Vec<_>>(), [(5, RSP_OKAY), (6, blkif::abi::RSP_ERROR)]);
    let bytes = std::fs::read(&image).unwrap();
    assert!(bytes[8 * 512..16 * 512].iter().all(|&b| b == 0), "the discarded sectors read as zeros");
    assert!(bytes[..8 * 512].iter().chain(&bytes[16 * 512..]).all(|&b| b == 0xff), "the others are kept");
}
