//! The vdevice bus over hosted shares: dom0's toolstack (this test)
//! changes a guest's vdevice page one change at a time, and a guest (this
//! binary re-executed as [`guest_entry`]) runs a bus that probes and
//! removes devices.

use std::io;
use std::thread::JoinHandle;
use std::time::Duration;

use xen_platform::hosted::{hypervisor_socket, Confinement, Host, Hypervisor, StopHandle};
use xen_platform::share::{Share, Shares};
use xen_platform::{DomainConfig, DomainState, NewDomain, ShutdownReason, Toolstack};
use xen_share::net::{mac_of, LanPort, LAN_PAGES};
use xen_share::{kind, status, Bus, Device, Driver, Entry, VdeviceError, VdeviceHost};

const ROLE: &str = "XEN_SHARE_TEST_GUEST";

/// Long enough for a loaded CI machine.
const PATIENCE: Duration = Duration::from_secs(20);

struct World {
    /// The hypervisor's state directory.
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
        self.guest(name, "bus", std::path::Path::new("/nonexistent"))
    }

    /// A paused guest running `role`, told where the share's reference
    /// will be.
    fn guest(&self, name: &str, role: &str, share_file: &std::path::Path) -> NewDomain {
        let exe = std::env::current_exe().unwrap().to_string_lossy().into_owned();
        let config = DomainConfig {
            name: name.to_owned(),
            program: vec![exe, "--exact".into(), "guest_entry".into(), "--nocapture".into()],
            env: vec![
                (ROLE.to_owned(), role.to_owned()),
                ("SHARE_FILE".to_owned(), share_file.to_string_lossy().into_owned()),
            ],
            cwd: None,
            netns: false,
            fuse: false,
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
    if role == "lan" {
        guest_lan();
    }
    if role == "blk-client" {
        guest_blk_client();
    }
    if role == "blk-server" {
        dom0_blk_server();
    }
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

// ------------------------------------------------------------------ LAN

/// An experimental EtherType (IEEE 802 local use).
const ETHERTYPE: [u8; 2] = [0x88, 0xb5];

fn frame(dst: [u8; 6], src: [u8; 6], payload: &str) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ETHERTYPE);
    f.extend_from_slice(payload.as_bytes());
    f
}

fn payload(f: &[u8]) -> String {
    String::from_utf8_lossy(&f[14..]).into_owned()
}

/// A LAN member: answers "ping N" with "pong N" to the sender; exits 0 on
/// "bye", or when removed from the LAN.
fn guest_lan() -> ! {
    let (host, _) = Host::from_guest_env().unwrap();
    let share_file = std::env::var("SHARE_FILE").unwrap();
    let share: u32 = std::fs::read_to_string(share_file).unwrap().trim().parse().unwrap();
    let shares = host.shares();
    let mut port = LanPort::join(shares.attach(share).unwrap()).unwrap();
    let mut frames = Vec::new();
    loop {
        port.share().wait(Some(Duration::from_millis(500))).unwrap();
        frames.clear();
        match port.receive(&mut frames) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(1) => {
                println!("removed from the LAN");
                std::process::exit(0);
            }
            Err(e) => panic!("receive: {e}"),
        }
        for f in &frames {
            let text = payload(f);
            if text == "bye" {
                std::process::exit(0);
            }
            if let Some(n) = text.strip_prefix("ping ") {
                let src: [u8; 6] = f[6..12].try_into().unwrap();
                port.send(&frame(src, port.mac(), &format!("pong {n}"))).unwrap();
            }
        }
    }
}

/// Sends `ping N` to `dst` until a pong came from each of `want`
/// (retrying: a member may not have joined yet); returns who answered.
fn ping(port: &mut LanPort, dst: [u8; 6], n: u32, want: &[u16]) -> Vec<u16> {
    let deadline = std::time::Instant::now() + PATIENCE;
    let mut answered = Vec::new();
    let mut frames = Vec::new();
    while !want.iter().all(|d| answered.contains(d)) {
        assert!(std::time::Instant::now() < deadline, "pongs from {want:?} never came (got {answered:?})");
        port.send(&frame(dst, port.mac(), &format!("ping {n}"))).unwrap();
        port.share().wait(Some(Duration::from_millis(100))).unwrap();
        frames.clear();
        port.receive(&mut frames).unwrap();
        for f in &frames {
            assert_eq!(&f[..6], &port.mac(), "a frame for someone else reached us");
            if payload(f) == format!("pong {n}") {
                let from = xen_share::net::domid_of_mac(&f[6..12]).unwrap();
                if !answered.contains(&from) {
                    answered.push(from);
                }
            }
        }
    }
    // Anything late shows up within a moment: collect it too.
    std::thread::sleep(Duration::from_millis(50));
    frames.clear();
    port.receive(&mut frames).unwrap();
    for f in &frames {
        if payload(f) == format!("pong {n}") {
            answered.push(xen_share::net::domid_of_mac(&f[6..12]).unwrap());
        }
    }
    answered.sort_unstable();
    answered.dedup();
    answered
}

#[test]
fn a_lan_delivers_by_address_broadcasts_to_all_and_follows_its_members() {
    let world = World::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let share_file = dir.path().join("share");
    let guests: Vec<NewDomain> = (0..3).map(|i| world.guest(&format!("lan{i}"), "lan", &share_file)).collect();
    let ids: Vec<u16> = guests.iter().map(|g| g.domid).collect();
    let shares = world.host.shares();
    let share = shares.create(LAN_PAGES, &[0, ids[0], ids[1]]).unwrap();
    std::fs::write(&share_file, share.to_string()).unwrap();
    std::fs::set_permissions(&share_file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    for g in &guests[..2] {
        world.host.toolstack().unpause(g.domid).unwrap();
    }
    let mut port = LanPort::join(shares.attach(share).unwrap()).unwrap();

    // Broadcast reaches both; unicast only the one addressed.
    assert_eq!(ping(&mut port, [0xff; 6], 1, &ids[..2]), ids[..2]);
    assert_eq!(ping(&mut port, mac_of(ids[1]), 2, &ids[1..2]), ids[1..2]);

    // A third joins while the others run.
    shares.add_member(share, ids[2]).unwrap();
    world.host.toolstack().unpause(ids[2]).unwrap();
    assert_eq!(ping(&mut port, [0xff; 6], 3, &ids), ids);

    // One leaves: cut off, the rest keep working.
    shares.remove_member(share, ids[0]).unwrap();
    let state = wait_shutdown(&world, ids[0]);
    assert_eq!(state, Some(DomainState::Shutdown(ShutdownReason::Poweroff)));
    assert_eq!(ping(&mut port, [0xff; 6], 4, &ids[1..]), ids[1..]);

    // Frames that do not fit are refused before anything is sent.
    assert!(port.send(&[0u8; 13]).is_err());
    assert!(port.send(&vec![0u8; xen_share::net::SLOT + 1]).is_err());

    port.send(&frame([0xff; 6], port.mac(), "bye")).unwrap();
    for &id in &ids[1..] {
        assert_eq!(wait_shutdown(&world, id), Some(DomainState::Shutdown(ShutdownReason::Poweroff)));
    }
}

/// A LAN of dom0 and two guests running [`guest_lan`], both answering;
/// the world, the share, dom0's port and the guests' domids.
fn lan_of_two(world: &World, dir: &std::path::Path) -> (u32, LanPort, Vec<u16>) {
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let share_file = dir.join("share");
    let ids: Vec<u16> = (0..2).map(|i| world.guest(&format!("lan{i}"), "lan", &share_file).domid).collect();
    let shares = world.host.shares();
    let share = shares.create(LAN_PAGES, &[0, ids[0], ids[1]]).unwrap();
    std::fs::write(&share_file, share.to_string()).unwrap();
    std::fs::set_permissions(&share_file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    for &id in &ids {
        world.host.toolstack().unpause(id).unwrap();
    }
    let mut port = LanPort::join(shares.attach(share).unwrap()).unwrap();
    assert_eq!(ping(&mut port, [0xff; 6], 1, &ids), ids);
    (share, port, ids)
}

/// Receives until a frame whose payload is `text`, or starts with it and
/// `prefix`, comes (no resending); the frames that came before it.
fn await_payload(port: &mut LanPort, text: &str, prefix: bool) -> Vec<String> {
    let deadline = std::time::Instant::now() + PATIENCE;
    let mut before = Vec::new();
    let mut frames = Vec::new();
    loop {
        assert!(std::time::Instant::now() < deadline, "{text:?} never came; before it: {before:?}");
        port.share().wait(Some(Duration::from_millis(100))).unwrap();
        frames.clear();
        port.receive(&mut frames).unwrap();
        for f in &frames {
            if payload(f) == text || (prefix && payload(f).starts_with(text)) {
                return before;
            }
            before.push(payload(f));
        }
    }
}

/// A port that sends after a member left, before it saw the change,
/// sends what it just wrote: the transport refuses the old mapping's
/// transfer (`ESTALE`) and the port follows and writes again. (Before,
/// the transport copied from the new pages what the sender had written
/// there before the change: an old frame went out in place of the new.)
#[test]
fn a_port_that_sends_before_it_saw_a_change_sends_its_new_frame() {
    let world = World::new();
    let dir = tempfile::tempdir().unwrap();
    let (share, mut port, ids) = lan_of_two(&world, dir.path());
    // The last frame written in our transmit slot before the change: a
    // guest ignores it.
    assert_eq!(port.send(&frame(mac_of(ids[0]), port.mac(), "mark")).unwrap().delivered, 1);
    // The member after the first guest leaves: the first guest keeps its
    // index and its buffers, our mapping is now old.
    world.host.shares().remove_member(share, ids[1]).unwrap();
    let sent = port.send(&frame(mac_of(ids[0]), port.mac(), "ping 5")).unwrap();
    assert_eq!(sent, xen_share::net::Sent { delivered: 1, dropped: 0 });
    await_payload(&mut port, "pong 5", false);
    assert_eq!(port.peers(), [ids[0]]);
}

/// A port that took every buffer in one go frees them at once: the next
/// burst finds room. (Before, taken buffers stayed taken until the next
/// take, which only a delivered frame's wake-up brought: with all of
/// them taken, nothing was delivered and the member was deaf.)
#[test]
fn a_port_that_took_all_its_buffers_at_once_is_not_left_deaf() {
    let world = World::new();
    let dir = tempfile::tempdir().unwrap();
    let (_share, mut port, ids) = lan_of_two(&world, dir.path());
    let rx = xen_share::net::RX_BUFFERS;
    let burst = |port: &mut LanPort, round: usize| {
        let frames: Vec<Vec<u8>> =
            (0..rx).map(|i| frame(mac_of(ids[0]), port.mac(), &format!("ping {}", round * 100 + i))).collect();
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        port.send_many(&refs).unwrap()
    };
    // The guest is stopped while a burst fills every buffer it has; let
    // go, it takes them all in one take.
    world.host.toolstack().pause(ids[0]).unwrap();
    // (All but those its last take got: the one or two of the ping above.)
    let sent = burst(&mut port, 1);
    assert!(sent.delivered > rx / 2, "{sent:?}");
    world.host.toolstack().unpause(ids[0]).unwrap();
    // A pong of the burst: the guest took it (and answers as fast as it
    // can, faster than we take: not every pong finds room with us).
    await_payload(&mut port, "pong 1", true);
    // The next burst finds at least half of them free: in the worst case
    // fewer than half stay taken (what the last take got).
    let sent = burst(&mut port, 2);
    assert!(sent.delivered > rx / 2, "{sent:?}");
    await_payload(&mut port, "pong 2", true);
}

fn wait_shutdown(world: &World, domid: u16) -> Option<DomainState> {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let state = world.host.toolstack().info(domid).unwrap().map(|d| d.state);
        if state.is_some_and(DomainState::is_shutdown_or_dying) || std::time::Instant::now() > deadline {
            return state;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// --------------------------------------------------------------- xensblk

/// Chunks the client writes, and their size.
const CHUNKS: u64 = 400;
const CHUNK: usize = 8192;

/// Chunk `i`'s bytes.
fn chunk(i: u64) -> Vec<u8> {
    (0..CHUNK as u64).map(|j| (i * 31 + j * 7 % 251).to_le_bytes()[0]).collect()
}

/// The client: writes every chunk (each answered before the next), says
/// how far it got as it goes, flushes, reads everything back.
fn guest_blk_client() -> ! {
    let (host, _) = Host::from_guest_env().unwrap();
    let share: u32 = std::fs::read_to_string(std::env::var("SHARE_FILE").unwrap()).unwrap().trim().parse().unwrap();
    let mut disk = xen_share::blk::Disk::open(host.shares().attach(share).unwrap(), PATIENCE).unwrap();
    assert_eq!(disk.len(), CHUNKS * CHUNK as u64 + 4096);
    let dir = std::path::Path::new(&std::env::var("SHARE_FILE").unwrap()).parent().unwrap().to_owned();
    for i in 0..CHUNKS {
        disk.write_at(&chunk(i), i * CHUNK as u64).unwrap();
        if i == 100 || i == 250 {
            // The test kills the server now: the next writes wait for
            // the one it starts again.
            println!("written {i}");
            while !dir.join(format!("killed-{i}")).exists() {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
    disk.flush().unwrap();
    let mut back = vec![0u8; CHUNK];
    for i in 0..CHUNKS {
        disk.read_at(&mut back, i * CHUNK as u64).unwrap();
        assert_eq!(back, chunk(i), "chunk {i}");
    }
    // Past the end, and unaligned: refused, nothing done.
    assert!(disk.read_at(&mut back, CHUNKS * CHUNK as u64).is_err());
    assert!(disk.write_at(&[0u8; 100], 0).is_err());
    println!("READ BACK OK");
    std::process::exit(0);
}

/// Not a guest: dom0's server, serving `IMAGE` on `SHARE` until killed.
fn dom0_blk_server() -> ! {
    let host = Host::connect(std::path::Path::new(&std::env::var("SOCKET").unwrap())).unwrap();
    let share: u32 = std::env::var("SHARE").unwrap().parse().unwrap();
    let file = std::fs::OpenOptions::new().read(true).write(true).open(std::env::var("IMAGE").unwrap()).unwrap();
    let mut attached = host.shares().attach(share).unwrap();
    xen_share::blk::serve(&mut *attached, &file, Duration::from_millis(100), &|| false).unwrap();
    std::process::exit(0);
}

#[test]
fn a_block_device_on_a_share_loses_no_answered_write_when_its_server_is_killed() {
    let world = World::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let share_file = dir.path().join("share");
    let image = dir.path().join("disk.img");
    std::fs::File::create(&image).unwrap().set_len(CHUNKS * CHUNK as u64 + 4096).unwrap();
    let client = world.guest("client", "blk-client", &share_file);
    let shares = world.host.shares();
    let share = shares.create(xen_share::blk::BLK_PAGES, &[0, client.domid]).unwrap();
    std::fs::write(&share_file, share.to_string()).unwrap();
    std::fs::set_permissions(&share_file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let server = || {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "guest_entry", "--nocapture"])
            .env(ROLE, "blk-server")
            .env("SOCKET", hypervisor_socket(world._dir.path()))
            .env("SHARE", share.to_string())
            .env("IMAGE", &image)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut running = server();
    world.host.toolstack().unpause(client.domid).unwrap();
    // Killed twice while the client writes, started again each time.
    let console = || std::fs::read_to_string(world._dir.path().join("console").join(format!("{}.log", client.domid)));
    for at in [100, 250] {
        let deadline = std::time::Instant::now() + PATIENCE;
        while !console().unwrap_or_default().contains(&format!("written {at}")) {
            assert!(std::time::Instant::now() < deadline, "{}", console().unwrap_or_default());
            std::thread::sleep(Duration::from_millis(2));
        }
        running.kill().unwrap();
        running.wait().unwrap();
        std::fs::write(dir.path().join(format!("killed-{at}")), "").unwrap();
        // The client's next write waits in the ring meanwhile.
        std::thread::sleep(Duration::from_millis(100));
        running = server();
    }
    assert_eq!(
        wait_shutdown(&world, client.domid),
        Some(DomainState::Shutdown(ShutdownReason::Poweroff)),
        "{}",
        console().unwrap()
    );
    assert!(console().unwrap().contains("READ BACK OK"));
    running.kill().unwrap();
    running.wait().unwrap();
    // And the file has every chunk.
    let data = std::fs::read(&image).unwrap();
    for i in 0..CHUNKS {
        let at = usize::try_from(i).unwrap() * CHUNK;
        assert_eq!(&data[at..at + CHUNK], chunk(i).as_slice(), "chunk {i} in the image");
    }
}
