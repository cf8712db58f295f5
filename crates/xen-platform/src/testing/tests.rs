//! The twin's own behaviour.

use std::time::Duration;

use super::*;
use crate::{Binding, BoundPort, EventChannels, Virq};

const EPERM: i32 = 1;
const ESRCH: i32 = 3;
const EINVAL: i32 = 22;
const EPIPE: i32 = 32;
const EBUSY: i32 = 16;
const EIO: i32 = 5;

fn config(name: &str) -> DomainConfig {
    DomainConfig { name: name.to_owned(), program: Vec::new(), env: Vec::new(), cwd: None, netns: false, fuse: false }
}

fn errno<T: std::fmt::Debug>(result: io::Result<T>) -> i32 {
    result.expect_err("should fail").raw_os_error().expect("an errno")
}

fn pending(events: &mut impl EventChannels) -> Vec<Port> {
    let mut out = Vec::new();
    events.take_pending(&mut out).unwrap();
    out
}

fn readable(events: &impl EventChannels) -> bool {
    events.wait(Some(Duration::ZERO)).unwrap()
}

/// A guest introduced to dom0: dom0's handle with the store port bound
/// (its bind-time event taken), and the guest side.
fn introduced(hv: &TestHypervisor) -> (NewDomain, TestEventChannels, Port, TestGuest) {
    let new = hv.toolstack().create(&config("guest")).unwrap();
    let guest = hv.guest(new.domid).unwrap();
    let mut dom0 = hv.event_channels(0).unwrap();
    let port = dom0.bind_interdomain(new.domid, new.store_port).unwrap();
    assert_eq!(pending(&mut dom0), [port], "a new binding starts pending");
    (new, dom0, port, guest)
}

#[test]
fn notify_reaches_peer_both_ways_and_take_pending_lowers_fd() {
    let hv = TestHypervisor::new();
    let (_, mut dom0, port, mut guest) = introduced(&hv);
    assert!(!readable(&guest.events));

    dom0.notify(port).unwrap();
    assert!(readable(&guest.events));
    assert_eq!(pending(&mut guest.events), [guest.store_port]);
    assert!(!readable(&guest.events));
    assert!(pending(&mut guest.events).is_empty());

    let notifier = guest.events.notifier(guest.store_port).unwrap();
    notifier.notify().unwrap();
    notifier.notify().unwrap();
    assert!(readable(&dom0));
    assert_eq!(pending(&mut dom0), [port], "a level, not a queue");
}

#[test]
fn store_page_is_shared_between_guest_and_dom0_mapping() {
    let hv = TestHypervisor::new();
    let (new, _dom0, _port, guest) = introduced(&hv);
    let dom0_page = hv.foreign_memory().map_foreign(new.domid, new.store_gfn, 1).unwrap();
    // SAFETY: both mappings are one live page; offset 100 is inside it.
    unsafe { guest.store_page.as_ptr().add(100).write_volatile(7) };
    // SAFETY: as above.
    assert_eq!(unsafe { dom0_page.as_ptr().add(100).read_volatile() }, 7);
}

#[test]
fn destroy_raises_virq_dom_exc_and_domain_leaves_states() {
    let hv = TestHypervisor::new();
    let mut dom0 = hv.event_channels(0).unwrap();
    let virq = dom0.bind_virq(Virq::DomExc).unwrap();
    let new = hv.toolstack().create(&config("doomed")).unwrap();
    assert!(pending(&mut dom0).is_empty());
    hv.toolstack().destroy(new.domid).unwrap();
    assert_eq!(pending(&mut dom0), [virq]);
    assert_eq!(hv.domain_states().state(new.domid).unwrap(), None);
    assert_eq!(errno(hv.toolstack().destroy(new.domid)), ESRCH);
}

#[test]
fn shutdown_raises_virq_and_records_reason() {
    let hv = TestHypervisor::new();
    let mut dom0 = hv.event_channels(0).unwrap();
    let virq = dom0.bind_virq(Virq::DomExc).unwrap();
    let new = hv.toolstack().create(&config("crasher")).unwrap();
    hv.toolstack().unpause(new.domid).unwrap();
    assert_eq!(hv.domain_states().state(new.domid).unwrap(), Some(DomainState::Running));
    hv.toolstack().shutdown(new.domid, ShutdownReason::Crash).unwrap();
    assert_eq!(pending(&mut dom0), [virq]);
    assert_eq!(hv.domain_states().state(new.domid).unwrap(), Some(DomainState::Shutdown(ShutdownReason::Crash)));
    assert_eq!(errno(hv.toolstack().unpause(new.domid)), EINVAL);
}

#[test]
fn guest_cannot_bind_virq() {
    let hv = TestHypervisor::new();
    let new = hv.toolstack().create(&config("guest")).unwrap();
    assert_eq!(errno(hv.event_channels(new.domid).unwrap().bind_virq(Virq::DomExc)), EPERM);
}

#[test]
fn map_foreign_of_unknown_domain_is_esrch_and_wrong_frame_einval() {
    let hv = TestHypervisor::new();
    let new = hv.toolstack().create(&config("guest")).unwrap();
    let mut memory = hv.foreign_memory();
    assert_eq!(errno(memory.map_foreign(99, STORE_GFN, 1)), ESRCH);
    assert_eq!(errno(memory.map_foreign(new.domid, STORE_GFN + 1, 1)), EINVAL);
    assert_eq!(errno(memory.map_foreign(new.domid, STORE_GFN, 2)), EINVAL);
    assert_eq!(errno(hv.event_channels(99)), ESRCH);
}

#[test]
fn fail_next_map_foreign_fails_once() {
    let hv = TestHypervisor::new();
    let new = hv.toolstack().create(&config("guest")).unwrap();
    hv.fail_next_map_foreign(EIO);
    assert_eq!(errno(hv.foreign_memory().map_foreign(new.domid, STORE_GFN, 1)), EIO);
    hv.foreign_memory().map_foreign(new.domid, STORE_GFN, 1).unwrap();
}

#[test]
fn fail_next_bind_interdomain_fails_once() {
    let hv = TestHypervisor::new();
    let new = hv.toolstack().create(&config("guest")).unwrap();
    let mut dom0 = hv.event_channels(0).unwrap();
    hv.fail_next_bind_interdomain(EBUSY);
    assert_eq!(errno(dom0.bind_interdomain(new.domid, new.store_port)), EBUSY);
    dom0.bind_interdomain(new.domid, new.store_port).unwrap();
    assert_eq!(errno(hv.event_channels(0).unwrap().bind_interdomain(new.domid, new.store_port)), EINVAL);
}

#[test]
fn broken_port_fails_notifications_until_repaired() {
    let hv = TestHypervisor::new();
    let (_, mut dom0, port, mut guest) = introduced(&hv);
    let notifier = dom0.notifier(port).unwrap();
    hv.break_port(0, port).unwrap();
    assert_eq!(errno(notifier.notify()), EPIPE);
    assert_eq!(errno(dom0.notify(port)), EPIPE);
    assert!(pending(&mut guest.events).is_empty());
    // The other direction still works.
    guest.events.notify(guest.store_port).unwrap();
    assert_eq!(pending(&mut dom0), [port]);
    hv.repair_port(0, port).unwrap();
    notifier.notify().unwrap();
    assert_eq!(pending(&mut guest.events), [guest.store_port]);
}

#[test]
fn dropped_handle_frees_the_guest_port_for_a_new_binding() {
    let hv = TestHypervisor::new();
    let (new, dom0, _port, guest) = introduced(&hv);
    drop(dom0);
    // The guest's sends go nowhere now, without error.
    guest.events.notify(guest.store_port).unwrap();
    let mut again = hv.event_channels(0).unwrap();
    let port = again.bind_interdomain(new.domid, new.store_port).unwrap();
    pending(&mut again);
    guest.events.notify(guest.store_port).unwrap();
    assert_eq!(pending(&mut again), [port]);
    assert_eq!(errno(hv.guest(new.domid)), EBUSY, "the store port is claimed");
}

#[test]
fn granted_pages_map_for_the_grantee_only() {
    let hv = TestHypervisor::new();
    let new = hv.toolstack().create(&config("granter")).unwrap();
    let third = hv.toolstack().create(&config("third")).unwrap();
    let granted = hv.grants(new.domid).grant_pages(0, 2, false).unwrap();
    // SAFETY: offset PAGE_SIZE + 1 is inside the two granted pages.
    unsafe { granted.pages().as_ptr().add(crate::PAGE_SIZE + 1).write_volatile(9) };
    let mapped = hv.grants(0).map_grants(new.domid, granted.refs(), false).unwrap();
    // SAFETY: the mapping is two pages long.
    assert_eq!(unsafe { mapped.as_ptr().add(crate::PAGE_SIZE + 1).read_volatile() }, 9);
    assert_eq!(errno(hv.grants(0).map_grants(new.domid, granted.refs(), true)), EPERM, "read-only grant");
    assert_eq!(errno(hv.grants(third.domid).map_grants(new.domid, granted.refs(), false)), EPERM);
    let refs = granted.refs().to_vec();
    drop(granted);
    assert_eq!(errno(hv.grants(0).map_grants(new.domid, &refs, false)), EINVAL, "grants ended");
}

#[test]
fn adopted_handle_keeps_ports_pending_events_and_notify() {
    let hv = TestHypervisor::new();
    let (new, mut dom0, port, mut guest) = introduced(&hv);
    let virq = dom0.bind_virq(Virq::DomExc).unwrap();
    let bindings = dom0.bindings();
    assert_eq!(
        bindings,
        [
            BoundPort { port, binding: Binding::Interdomain { remote: new.domid, remote_port: new.store_port } },
            BoundPort { port: virq, binding: Binding::Virq(Virq::DomExc) },
        ]
    );
    let parts = Box::new(dom0).into_parts().unwrap();
    // While nobody owns the handle, the guest signals and a domain dies.
    guest.events.notify(guest.store_port).unwrap();
    let other = hv.toolstack().create(&config("other")).unwrap();
    hv.toolstack().destroy(other.domid).unwrap();

    let mut adopted = hv.adopt_event_channels(0, parts).unwrap();
    assert_eq!(adopted.bindings(), bindings);
    assert!(readable(&adopted));
    assert_eq!(pending(&mut adopted), [port, virq]);
    adopted.notify(port).unwrap();
    assert_eq!(pending(&mut guest.events), [guest.store_port]);
    // Dropping the adopted handle closes the ports as usual.
    drop(adopted);
    hv.event_channels(0).unwrap().bind_interdomain(new.domid, new.store_port).unwrap();
}

#[test]
fn adopt_refuses_parts_that_do_not_match() {
    let hv = TestHypervisor::new();
    let (new, dom0, _port, _guest) = introduced(&hv);
    let mut parts = Box::new(dom0).into_parts().unwrap();
    parts.ports[0].binding = Binding::Unbound { remote: new.domid };
    assert_eq!(errno(hv.adopt_event_channels(0, parts)), EINVAL);
    let live = hv.event_channels(0).unwrap();
    let parts = EventChannelParts {
        fds: vec![live.as_fd().try_clone_to_owned().unwrap()],
        ports: vec![BoundPort { port: 99, binding: Binding::Claimed }],
    };
    assert_eq!(errno(hv.adopt_event_channels(0, parts)), EINVAL);
}

#[test]
fn ring_crate_runs_over_the_twin_store_page_and_port() {
    use xenstore_ring::{Incoming, MappedGuest, MappedServer};
    let hv = TestHypervisor::new();
    let (new, mut dom0, port, mut guest) = introduced(&hv);
    let page = hv.foreign_memory().map_foreign(new.domid, new.store_gfn, 1).unwrap();
    let to_guest = dom0.notifier(port).unwrap();
    let to_server = guest.events.notifier(guest.store_port).unwrap();
    let mut server = MappedServer::new(page, move || to_guest.notify().unwrap());
    let mut ring = MappedGuest::new(guest.store_page, move || to_server.notify().unwrap());

    // A READ of "/x" (xs_wire.h: type, req_id, tx_id, len, payload).
    let mut request = Vec::new();
    for field in [2u32, 7, 0, 3] {
        request.extend_from_slice(&field.to_le_bytes());
    }
    request.extend_from_slice(b"/x\0");
    assert_eq!(ring.write(&request).unwrap(), request.len());
    assert_eq!(pending(&mut dom0), [port]);
    assert!(matches!(server.poll().unwrap(), Some(Incoming::Packet(_))));

    server.write(b"reply").unwrap();
    assert_eq!(pending(&mut guest.events), [guest.store_port]);
    let mut buf = [0u8; 16];
    let got = ring.read(&mut buf).unwrap();
    assert_eq!(&buf[..got], b"reply");
}
