//! xensnet over a relayed share (`xen_platform::relay_share`, what a LAN
//! of several guests is on Xen) on the in-process twin: each guest holds
//! its own copy of the pages, and every frame crosses as a transfer the
//! dom0 service copies.

use std::time::{Duration, Instant};

use xen_platform::relay_share::{RelayMember, RelayShares, GNTALLOC_LIMIT};
use xen_platform::share::{Share, Shares};
use xen_platform::testing::TestHypervisor;
use xen_platform::{DomId, DomainConfig, Toolstack};
use xen_share::net::{mac_of, LanPort, LAN_PAGES};

const PATIENCE: Duration = Duration::from_secs(10);

fn guest(hv: &TestHypervisor, name: &str) -> DomId {
    let config =
        DomainConfig { name: name.into(), program: Vec::new(), env: Vec::new(), cwd: None, netns: false, fuse: false };
    hv.toolstack().create(&config).unwrap().domid
}

fn member(hv: &TestHypervisor, service: &RelayShares, share: u32, domid: DomId) -> Box<dyn Share> {
    let offer = service.offer(share, domid).unwrap();
    Box::new(
        RelayMember::accept(
            &mut hv.grants(domid),
            Box::new(hv.event_channels(domid).unwrap()),
            Box::new(hv.event_channels(domid).unwrap()),
            &offer,
        )
        .unwrap(),
    )
}

fn frame(dst: [u8; 6], src: [u8; 6], payload: &str) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend_from_slice(payload.as_bytes());
    f
}

/// The payloads `port` receives until one is `last` (or the patience
/// runs out: then what came).
fn receive_until(port: &mut LanPort, last: &str) -> Vec<String> {
    let deadline = Instant::now() + PATIENCE;
    let mut got = Vec::new();
    let mut frames = Vec::new();
    while Instant::now() < deadline && !got.iter().any(|p| p == last) {
        port.share().wait(Some(Duration::from_millis(20))).unwrap();
        frames.clear();
        port.receive(&mut frames).unwrap();
        got.extend(frames.iter().map(|f| String::from_utf8_lossy(&f[14..]).into_owned()));
    }
    got
}

#[test]
fn a_lan_over_a_relayed_share_delivers_by_address_and_follows_its_members() {
    let hv = TestHypervisor::new();
    let service =
        RelayShares::start(Box::new(hv.grants(0)), Box::new(hv.event_channels(0).unwrap()), GNTALLOC_LIMIT).unwrap();
    let (a, b) = (guest(&hv, "a"), guest(&hv, "b"));
    let share = service.create(LAN_PAGES, &[0, a, b]).unwrap();
    let mut dom0 = LanPort::join(service.attach(share).unwrap()).unwrap();
    let mut pa = LanPort::join(member(&hv, &service, share, a)).unwrap();
    let mut pb = LanPort::join(member(&hv, &service, share, b)).unwrap();

    // Unicast reaches its member only; broadcast everyone else.
    let sent = pa.send(&frame(mac_of(b), mac_of(a), "a to b")).unwrap();
    assert_eq!((sent.delivered, sent.dropped), (1, 0));
    pa.send(&frame([0xff; 6], mac_of(a), "a to all")).unwrap();
    assert_eq!(receive_until(&mut pb, "a to all"), ["a to b", "a to all"]);
    assert_eq!(receive_until(&mut dom0, "a to all"), ["a to all"]);
    dom0.send(&frame(mac_of(a), mac_of(0), "dom0 to a")).unwrap();
    assert_eq!(receive_until(&mut pa, "dom0 to a"), ["dom0 to a"]);

    // A burst larger than one send's batch arrives whole and in order.
    let burst: Vec<Vec<u8>> = (0..20).map(|i| frame(mac_of(0), mac_of(b), &format!("b {i}"))).collect();
    let refs: Vec<&[u8]> = burst.iter().map(Vec::as_slice).collect();
    assert_eq!(pb.send_many(&refs).unwrap().delivered, 20);
    let want: Vec<String> = (0..20).map(|i| format!("b {i}")).collect();
    assert_eq!(receive_until(&mut dom0, "b 19"), want);

    // a leaves: b moves down an index and keeps talking to dom0; a hears
    // that it was removed.
    service.remove_member(share, a).unwrap();
    let sent = pb.send(&frame(mac_of(0), mac_of(b), "after")).unwrap();
    assert_eq!(sent.delivered, 1, "b follows the change and sends its new frame");
    assert_eq!(receive_until(&mut dom0, "after"), ["after"]);
    assert_eq!(pb.peers(), [0]);
    // b's buffers went with its old index: its next receive registers
    // them again at the new one.
    pb.receive(&mut Vec::new()).unwrap();
    assert_eq!(dom0.send(&frame(mac_of(b), mac_of(0), "reply")).unwrap().delivered, 1);
    assert_eq!(receive_until(&mut pb, "reply"), ["reply"]);
    let mut frames = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    let removed = loop {
        pa.share().wait(Some(Duration::from_millis(20))).unwrap();
        match pa.receive(&mut frames) {
            Err(e) => break e,
            Ok(_) => assert!(Instant::now() < deadline, "a never heard it was removed"),
        }
    };
    assert_eq!(removed.raw_os_error(), Some(1), "EPERM: {removed}");
}
