//! The vdevice bus over hosted shares: dom0's toolstack (this test)
//! changes a guest's vdevice page one change at a time, and a guest (this
//! binary re-executed as [`guest_entry`]) runs a bus that probes and
//! removes devices.

use std::io;
use std::thread::JoinHandle;
use std::time::Duration;

use xen_platform::hosted::{hypervisor_socket, Confinement, Host, Hypervisor, StopHandle};
use xen_platform::share::{Share, Shares};
use xen_platform::{DomainConfig, NewDomain, Toolstack};
use xen_share::{kind, status, Bus, Device, Driver, Entry, VdeviceError, VdeviceHost};

const ROLE: &str = "XEN_SHARE_TEST_GUEST";

/// Long enough for a loaded CI machine.
const PATIENCE: Duration = Duration::from_secs(20);

struct World {
    _dir: tempfile::TempDir,
    host: Host,
    stop: StopHandle,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let hypervisor = Hypervisor::bind(dir.path(), Confinement::strongest()).unwrap();
        let stop = hypervisor.stop_handle();
        let thread = std::thread::spawn(move || hypervisor.serve());
        let host = Host::connect(&hypervisor_socket(dir.path())).unwrap();
        World { _dir: dir, host, stop, thread: Some(thread) }
    }

    /// A paused guest running the bus.
    fn bus_guest(&self, name: &str) -> NewDomain {
        let exe = std::env::current_exe().unwrap().to_string_lossy().into_owned();
        let config = DomainConfig {
            name: name.to_owned(),
            program: vec![exe, "--exact".into(), "guest_entry".into(), "--nocapture".into()],
            env: vec![(ROLE.to_owned(), "bus".to_owned())],
            cwd: None,
        };
        self.host.toolstack().create(&config).unwrap()
    }

    /// dom0's attachment of `domid`'s vdevice page.
    fn page_of(&self, domid: u16) -> Box<dyn Share> {
        let shares = self.host.shares();
        shares.attach(shares.vdevice(domid).unwrap()).unwrap()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(thread) = self.thread.take() {
            let result = thread.join();
            if !std::thread::panicking() {
                result.unwrap().unwrap();
            }
        }
    }
}

/// Drives net devices; fails those whose share is 13.
struct NetDriver;

impl Driver for NetDriver {
    fn name(&self) -> &str {
        "test-net"
    }
    fn kind(&self) -> u16 {
        kind::NET
    }
    fn probe(&mut self, device: &Device) -> Result<(), String> {
        if device.entry.share == 13 {
            return Err("share 13 refused".into());
        }
        Ok(())
    }
    fn remove(&mut self, _: &Device) {}
}

/// Runs the guest's bus until the domain is destroyed.
#[test]
fn guest_entry() {
    let Ok(role) = std::env::var(ROLE) else { return };
    assert_eq!(role, "bus");
    let (host, _) = Host::from_guest_env().unwrap();
    let shares = host.shares();
    let mut page = shares.attach(shares.vdevice(host.domid()).unwrap()).unwrap();
    let mut bus = Bus::new();
    bus.register(Box::new(NetDriver));
    loop {
        for event in bus.poll(&mut *page).unwrap() {
            println!("{event:?}");
        }
        page.wait(Some(Duration::from_millis(500))).unwrap();
    }
}

fn net(share: u32) -> Entry {
    Entry { kind: kind::NET, numpages: 1, features: 0, share }
}

#[test]
fn changes_are_serial_and_acknowledged_by_the_guests_bus() {
    let world = World::new();
    let guest = world.bus_guest("bus");
    world.host.toolstack().unpause(guest.domid).unwrap();
    let mut page = world.page_of(guest.domid);
    let mut vdevice = VdeviceHost::new(&mut *page);

    let (slot, bits) = vdevice.add(net(5), PATIENCE).unwrap();
    assert_eq!((slot, bits), (0, status::ACKNOWLEDGE | status::DRIVER | status::DRIVER_OK));
    // No driver: seen, not driven.
    let (slot, bits) = vdevice.add(Entry { kind: kind::BLOCK, ..net(6) }, PATIENCE).unwrap();
    assert_eq!((slot, bits), (1, status::ACKNOWLEDGE));
    // A driver that fails: the add ends with its status at once.
    let started = std::time::Instant::now();
    match vdevice.add(net(13), PATIENCE) {
        Ok((2, bits)) => assert_ne!(bits & status::FAILED, 0),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < PATIENCE / 2);

    vdevice.remove(0, PATIENCE).unwrap();
    assert_eq!(vdevice.entries().iter().map(|(slot, ..)| *slot).collect::<Vec<_>>(), [1, 2]);
    // The freed slot is the next device's.
    assert_eq!(vdevice.add(net(7), PATIENCE).unwrap().0, 0);
}

#[test]
fn a_guest_that_does_not_answer_costs_the_timeout_and_the_page_stays_whole() {
    let world = World::new();
    let guest = world.bus_guest("late");
    let mut page = world.page_of(guest.domid);
    let mut vdevice = VdeviceHost::new(&mut *page);
    // Paused: nobody answers.
    let timeout = Duration::from_millis(300);
    let started = std::time::Instant::now();
    match vdevice.add(net(5), timeout) {
        Err(VdeviceError::Timeout { status: 0, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() >= timeout);
    assert_eq!(vdevice.entries(), [(0, net(5), 0)], "the entry is whole, unacknowledged");
    // Once the guest runs, it catches up.
    world.host.toolstack().unpause(guest.domid).unwrap();
    let bits = vdevice.wait_status(0, status::DRIVER_OK, PATIENCE).unwrap();
    assert_ne!(bits & status::DRIVER_OK, 0);

    // Removal waits for the acknowledgement too; a dead guest's page goes
    // with it, which the toolstack is told.
    world.host.toolstack().destroy(guest.domid).unwrap();
    match vdevice.remove(0, PATIENCE) {
        Err(VdeviceError::Gone) => {}
        other => panic!("{other:?}"),
    }
}
