//! The relayed share on the in-process twin: dom0's service and guest
//! members, each on its own grants and event-channel handles.

use std::time::{Duration, Instant};

use rustix::io::Errno;

use super::layout::{Answer, ANSWER, ANSWERED, ANSWER_LEN, ASKED, RAISED, REQUEST, REQUEST_LEN};
use super::*;
use crate::share::{Segment, Share, Shares, TRIGGER_CHANGED, TRIGGER_TRANSFERRED};
use crate::testing::TestHypervisor;
use crate::{DomId, DomainConfig, EventChannels, Grants, MappedPages, Toolstack, PAGE_SIZE};

const PATIENCE: Duration = Duration::from_secs(10);

fn seg(offset: u64, len: u32) -> Segment {
    Segment { offset, len }
}

fn errno<T: std::fmt::Debug>(result: std::io::Result<T>) -> Errno {
    Errno::from_io_error(&result.expect_err("should fail")).expect("an errno")
}

struct Host {
    hv: TestHypervisor,
    service: RelayShares,
}

impl Host {
    fn new(page_limit: usize) -> Host {
        let hv = TestHypervisor::new();
        let service =
            RelayShares::start(Box::new(hv.grants(0)), Box::new(hv.event_channels(0).unwrap()), page_limit).unwrap();
        Host { hv, service }
    }

    fn guest(&self, name: &str) -> DomId {
        let config = DomainConfig {
            name: name.into(),
            program: Vec::new(),
            env: Vec::new(),
            cwd: None,
            netns: false,
            fuse: false,
        };
        self.hv.toolstack().create(&config).unwrap().domid
    }

    fn accept(&self, share: u32, domid: DomId) -> RelayMember {
        let offer = self.service.offer(share, domid).unwrap();
        let offer = RelayOffer::parse(&offer.to_text()).unwrap();
        RelayMember::accept(
            &mut self.hv.grants(domid),
            Box::new(self.hv.event_channels(domid).unwrap()),
            Box::new(self.hv.event_channels(domid).unwrap()),
            &offer,
        )
        .unwrap()
    }
}

/// Waits until `bits` were all raised in `member`; returns what was.
fn await_bits(member: &mut dyn Share, bits: u32) -> u32 {
    let deadline = Instant::now() + PATIENCE;
    let mut seen = 0;
    while seen & bits != bits {
        assert!(Instant::now() < deadline, "triggers {bits:#x} not raised (saw {seen:#x})");
        member.wait(Some(Duration::from_millis(50))).unwrap();
        seen |= member.take_pending().unwrap();
    }
    seen
}

fn write(pages: &MappedPages, at: usize, bytes: &[u8]) {
    pages.shared_mem().write_bytes(at, bytes);
}

fn read(pages: &MappedPages, at: usize, len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    pages.shared_mem().read_bytes(at, &mut bytes);
    bytes
}

#[test]
fn guests_and_dom0_trade_triggers_and_transfers_through_the_service() {
    let host = Host::new(GNTALLOC_LIMIT);
    let (a, b) = (host.guest("a"), host.guest("b"));
    let share = host.service.create(4, &[0, a, b]).unwrap();
    assert_eq!(host.service.granted_pages(), 10, "each guest: 4 pages and its control page");
    let mut dom0 = host.service.attach_local(share).unwrap();
    let mut ga = host.accept(share, a);
    let mut gb = host.accept(share, b);
    assert_eq!(ga.members(), [0, a, b]);
    assert_eq!((dom0.me(), ga.me(), gb.me()), (0, 1, 2));
    assert_eq!(ga.generation(), dom0.generation());

    // A trigger reaches every other member, through the service.
    ga.trigger(3).unwrap();
    assert_eq!(await_bits(&mut dom0, 1 << 3), 1 << 3);
    assert_eq!(await_bits(&mut gb, 1 << 3), 1 << 3);
    dom0.trigger(4).unwrap();
    await_bits(&mut ga, 1 << 4);
    await_bits(&mut gb, 1 << 4);
    assert_eq!(ga.take_pending().unwrap(), 0, "not raised in the raiser");
    assert_eq!(errno(ga.trigger(USER_TRIGGERS_PAST)), Errno::INVAL);

    // Each guest has its own copy: bytes cross only by transfer.
    write(ga.pages(), 3 * PAGE_SIZE + 100, b"hello from a");
    assert_eq!(read(gb.pages(), 3 * PAGE_SIZE + 100, 5), [0; 5]);
    let id = gb.register(1, &[seg(0, 8), seg(PAGE_SIZE as u64, 100)]).unwrap();
    assert_eq!(errno(gb.transfer(1, &[seg(0, 4)])), Errno::AGAIN, "not into its own buffer");
    assert_eq!(ga.transfer(1, &[seg(3 * PAGE_SIZE as u64 + 100, 12)]).unwrap(), 12);
    assert_eq!(errno(ga.transfer(1, &[seg(0, 4)])), Errno::AGAIN, "the only buffer is full");
    await_bits(&mut gb, 1 << TRIGGER_TRANSFERRED);
    assert_eq!(gb.take_completed().unwrap(), [crate::share::Completed { buffer: id, len: 12 }]);
    assert_eq!(read(gb.pages(), 0, 8), b"hello fr");
    assert_eq!(read(gb.pages(), PAGE_SIZE, 4), b"om a");
    // Free again at the next take; dom0 sends into it.
    assert_eq!(gb.take_completed().unwrap(), []);
    write(dom0.pages(), 0, b"dom0");
    assert_eq!(dom0.transfer(1, &[seg(0, 4)]).unwrap(), 4);
    await_bits(&mut gb, 1 << TRIGGER_TRANSFERRED);
    assert_eq!(gb.take_completed().unwrap()[0].len, 4);
    assert_eq!(read(gb.pages(), 0, 4), b"dom0");
    // And dom0 receives.
    dom0.register(2, &[seg(PAGE_SIZE as u64, 64)]).unwrap();
    write(gb.pages(), 0, b"to dom0");
    assert_eq!(gb.transfer(2, &[seg(0, 7)]).unwrap(), 7);
    await_bits(&mut dom0, 1 << TRIGGER_TRANSFERRED);
    assert_eq!(dom0.take_completed().unwrap()[0].len, 7);
    assert_eq!(read(dom0.pages(), PAGE_SIZE, 7), b"to dom0");
    // Bad segments are refused before anything is copied.
    assert_eq!(errno(ga.transfer(2, &[seg(4 * PAGE_SIZE as u64 - 1, 2)])), Errno::FAULT);
    assert_eq!(errno(ga.register(2, &[])), Errno::INVAL);
    assert_eq!(errno(ga.transfer(2, &[seg(0, 1); 17])), Errno::INVAL);
}

const USER_TRIGGERS_PAST: u32 = crate::share::USER_TRIGGERS;

#[test]
fn a_non_member_is_refused_and_a_removed_member_is_cut_off() {
    let host = Host::new(GNTALLOC_LIMIT);
    let (a, b, c) = (host.guest("a"), host.guest("b"), host.guest("c"));
    let share = host.service.create(2, &[a, b]).unwrap();
    assert_eq!(errno(host.service.offer(share, c)), Errno::PERM);
    assert_eq!(errno(host.service.attach_local(share)), Errno::PERM, "dom0 is not a member");
    assert_eq!(errno(host.service.offer(99, a)), Errno::NOENT);
    // c shown a's offer: the grants are a's.
    let offer = host.service.offer(share, a).unwrap();
    let stolen = RelayMember::accept(
        &mut host.hv.grants(c),
        Box::new(host.hv.event_channels(c).unwrap()),
        Box::new(host.hv.event_channels(c).unwrap()),
        &offer,
    );
    assert_eq!(errno(stolen), Errno::PERM);

    let mut ga = host.accept(share, a);
    let mut gb = host.accept(share, b);
    gb.register(1, &[seg(0, 64)]).unwrap();
    host.service.remove_member(share, a).unwrap();
    assert_eq!(host.service.granted_pages(), 3, "a's grants ended");
    await_bits(&mut ga, 1 << TRIGGER_CHANGED);
    assert_eq!(errno(ga.refresh()), Errno::PERM);
    assert_eq!(errno(ga.trigger(1)), Errno::PERM);
    assert_eq!(errno(ga.transfer(1, &[seg(0, 4)])), Errno::PERM);
    // b moved from index 1 to 0: its buffers went, its calls are stale
    // until it refreshes.
    await_bits(&mut gb, 1 << TRIGGER_CHANGED);
    assert_eq!(errno(gb.register(1, &[seg(0, 64)])), Errno::STALE);
    gb.refresh().unwrap();
    assert_eq!((gb.members(), gb.me()), (&[b][..], 0));
    // Alone, b's trigger wakes itself.
    gb.trigger(2).unwrap();
    await_bits(&mut gb, 1 << 2);

    // A member added sees the share; the others are told.
    host.service.add_member(share, c).unwrap();
    assert_eq!(errno(host.service.add_member(share, c)), Errno::EXIST);
    await_bits(&mut gb, 1 << TRIGGER_CHANGED);
    gb.refresh().unwrap();
    let mut gc = host.accept(share, c);
    assert_eq!(gc.members(), [b, c]);
    gc.register(5, &[seg(0, 16)]).unwrap();
    write(gb.pages(), 0, b"welcome");
    assert_eq!(gb.transfer(5, &[seg(0, 7)]).unwrap(), 7);
    await_bits(&mut gc, 1 << TRIGGER_TRANSFERRED);

    host.service.destroy(share).unwrap();
    await_bits(&mut gc, 1 << TRIGGER_CHANGED);
    assert_eq!(errno(gc.refresh()), Errno::NOENT);
    assert_eq!(errno(gb.transfer(5, &[seg(0, 1)])), Errno::NOENT);
    assert_eq!(host.service.granted_pages(), 0);
}

#[test]
fn a_domain_that_is_gone_leaves_its_shares() {
    let host = Host::new(GNTALLOC_LIMIT);
    let (a, b) = (host.guest("a"), host.guest("b"));
    let one = host.service.create(1, &[0, a, b]).unwrap();
    let two = host.service.create(1, &[a]).unwrap();
    let mut dom0 = host.service.attach_local(one).unwrap();
    host.service.domain_gone(a);
    await_bits(&mut dom0, 1 << TRIGGER_CHANGED);
    dom0.refresh().unwrap();
    assert_eq!(dom0.members(), [0, b]);
    assert_eq!(errno(host.service.offer(two, a)), Errno::PERM, "a left its only share too");
    assert_eq!(host.service.granted_pages(), 2);
}

#[test]
fn shares_are_bounded() {
    let host = Host::new(10);
    let a = host.guest("a");
    assert_eq!(errno(host.service.create(0, &[a])), Errno::INVAL);
    assert_eq!(errno(host.service.create(1, &[])), Errno::INVAL);
    assert_eq!(errno(host.service.create(1, &[a, a])), Errno::INVAL);
    assert_eq!(errno(host.service.create(crate::share::MAX_SHARE_PAGES + 1, &[a])), Errno::INVAL);
    let share = host.service.create(9, &[a]).unwrap();
    let full = host.service.create(1, &[a]).unwrap_err();
    assert_eq!(full.kind(), std::io::ErrorKind::StorageFull, "{full}");
    host.service.destroy(share).unwrap();
    host.service.create(4, &[0, a]).unwrap();
    assert_eq!(host.service.vdevice(a).unwrap_err().kind(), std::io::ErrorKind::Unsupported);
}

/// A guest that writes what it likes in its control page and rings as
/// often as it likes gets errors; the service and the other members go
/// on.
#[test]
fn hostile_requests_get_errors_and_the_service_goes_on() {
    let host = Host::new(GNTALLOC_LIMIT);
    let (evil, good) = (host.guest("evil"), host.guest("good"));
    let share = host.service.create(2, &[0, evil, good]).unwrap();
    let mut dom0 = host.service.attach_local(share).unwrap();
    let mut gg = host.accept(share, good);
    gg.register(1, &[seg(0, 64)]).unwrap();

    // The hostile guest maps its control page itself and binds its ports
    // raw.
    let offer = host.service.offer(share, evil).unwrap();
    let control = host.hv.grants(evil).map_grants(0, &[offer.control], true).unwrap();
    let mut channels = host.hv.event_channels(evil).unwrap();
    let trigger = channels.bind_interdomain(0, offer.trigger).unwrap();
    let request = channels.bind_interdomain(0, offer.request).unwrap();
    let mem = control.shared_mem();
    let mut asked = 0u32;
    let mut ask = |raw: &[u8; REQUEST_LEN]| -> Answer {
        asked = asked.wrapping_add(1);
        mem.write_bytes(REQUEST, raw);
        mem.store_u32(ASKED, asked, std::sync::atomic::Ordering::Release);
        channels.notify(request).unwrap();
        let deadline = Instant::now() + PATIENCE;
        while mem.load_u32(ANSWERED, std::sync::atomic::Ordering::Acquire) != asked {
            assert!(Instant::now() < deadline, "no answer");
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut bytes = [0u8; ANSWER_LEN];
        mem.read_bytes(ANSWER, &mut bytes);
        Answer::decode(&bytes).unwrap()
    };
    let raw = |op: u32, count: u32, generation: u64, segments: &[(u64, u32)]| {
        let mut bytes = [0u8; REQUEST_LEN];
        bytes[0..4].copy_from_slice(&op.to_le_bytes());
        bytes[4..8].copy_from_slice(&1u32.to_le_bytes());
        bytes[8..16].copy_from_slice(&generation.to_le_bytes());
        bytes[16..20].copy_from_slice(&count.to_le_bytes());
        for (i, (offset, len)) in segments.iter().enumerate() {
            bytes[24 + 16 * i..32 + 16 * i].copy_from_slice(&offset.to_le_bytes());
            bytes[32 + 16 * i..36 + 16 * i].copy_from_slice(&len.to_le_bytes());
        }
        bytes
    };
    let einval = Errno::INVAL.raw_os_error();
    assert_eq!(ask(&raw(99, 0, 1, &[])).errno, einval, "an unknown operation");
    assert_eq!(ask(&raw(3, u32::MAX, 1, &[])).errno, einval, "a segment count past the slot");
    assert_eq!(ask(&raw(3, 1, 1, &[(u64::MAX, u32::MAX)])).errno, Errno::FAULT.raw_os_error());
    assert_eq!(ask(&raw(3, 1, 1, &[(2 * PAGE_SIZE as u64 - 2, 4)])).errno, Errno::FAULT.raw_os_error());
    assert_eq!(ask(&raw(3, 1, 1, &[(0, 0)])).errno, Errno::FAULT.raw_os_error());
    assert_eq!(ask(&raw(3, 1, 7, &[(0, 4)])).errno, Errno::STALE.raw_os_error(), "a generation it never saw");
    assert_eq!(ask(&raw(2, 1, 1, &[(0, 1 << 20)])).errno, Errno::FAULT.raw_os_error(), "a buffer past the share");
    let refresh = ask(&raw(1, 0, 0, &[]));
    assert_eq!((refresh.errno, refresh.me, refresh.members), (0, 1, vec![0, evil, good]));
    // It fills its quota of buffers and no more.
    let mut registered = 0;
    while ask(&raw(2, 1, 1, &[(0, 8)])).errno == 0 {
        registered += 1;
        assert!(registered <= crate::share::MAX_BUFFERS, "no bound on buffers");
    }
    assert_eq!(registered, crate::share::MAX_BUFFERS);
    // The service's own triggers are not the guest's to raise, and a
    // flood of rings costs nobody else their triggers.
    for _ in 0..1000 {
        mem.fetch_or_u32(RAISED, u32::MAX, std::sync::atomic::Ordering::Release);
        channels.notify(trigger).unwrap();
    }
    let seen = await_bits(&mut dom0, 1);
    assert_eq!(seen & (1 << TRIGGER_CHANGED | 1 << TRIGGER_TRANSFERRED), 0, "{seen:#x}");
    // The others go on: dom0 still transfers to the good guest.
    write(dom0.pages(), 0, b"still here");
    assert_eq!(dom0.transfer(1, &[seg(0, 10)]).unwrap(), 10);
    let seen = await_bits(&mut gg, 1 << TRIGGER_TRANSFERRED);
    assert_eq!(seen & (1 << TRIGGER_CHANGED), 0, "{seen:#x}");
    assert_eq!(gg.take_completed().unwrap()[0].len, 10);
    assert_eq!(read(gg.pages(), 0, 10), b"still here");
}

/// The fuzz target's harness runs, on requests of every kind.
#[test]
fn the_fuzz_harness_serves_hostile_requests() {
    let mut data = Vec::new();
    for op in 0u32..8 {
        let mut request = [0u8; REQUEST_LEN];
        request[0..4].copy_from_slice(&op.to_le_bytes());
        request[8] = 1;
        request[16] = 1;
        request[24 + 8] = 16;
        data.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0]);
        data.extend_from_slice(&request);
    }
    super::fuzz_hostile_guest(&data);
}
