//! The hosted platform end to end: a hypervisor in a thread on a
//! temporary directory, dom0 as this test process, guests as this test
//! binary re-executed into [`guest_entry`] with a role in the environment.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::io::Errno;
use xen_platform::hosted::{hypervisor_socket, Confinement, Host, HostedEventChannels, Hypervisor, StopHandle};
use xen_platform::pair_share::{PairOffer, PairShare};
use xen_platform::relay_share::{RelayMember, RelayOffer, RelayShares, GNTALLOC_LIMIT};
use xen_platform::share::{
    Segment, Share, ShareRef, Shares, MAX_MEMBERS, MAX_SHARE_PAGES, TRIGGER_CHANGED, TRIGGER_TRANSFERRED, USER_TRIGGERS,
};
use xen_platform::{
    Binding, BoundPort, DomId, DomainChanges, DomainConfig, DomainState, DomainStates, EventChannels, ForeignMemory,
    Grants, MappedPages, Port, ShutdownReason, Toolstack, Virq, PAGE_SIZE,
};

/// Selects a guest role in a re-executed test binary.
const ROLE: &str = "XEN_PLATFORM_TEST_GUEST";

/// Xen-like errnos the hosted platform returns.
const EPERM: i32 = 1;
const ESRCH: i32 = 3;
const EEXIST: i32 = 17;
const EINVAL: i32 = 22;
const ENOENT: i32 = 2;
const EAGAIN: i32 = 11;
const EFAULT: i32 = 14;
const ENOSPC: i32 = 28;
const ESTALE: i32 = 116;

/// Long enough for a loaded CI machine, short enough to fail a hung test.
const PATIENCE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------- world

/// A hypervisor serving in a thread, and dom0's connection to it.
struct World {
    dir: tempfile::TempDir,
    /// A directory every guest may write, whatever user it runs as.
    shared: tempfile::TempDir,
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
        let shared = tempfile::tempdir().unwrap();
        std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        World { dir, shared, host, stop, thread: Some(thread) }
    }

    fn domains(&self) -> impl Toolstack {
        self.host.toolstack()
    }

    /// Creates a paused guest running `role`.
    fn create(&self, name: &str, role: &str, env: &[(&str, String)]) -> xen_platform::NewDomain {
        self.domains().create(&guest_config(name, role, env)).unwrap()
    }

    fn state(&self, domid: DomId) -> Option<DomainState> {
        self.domains().info(domid).unwrap().map(|d| d.state)
    }

    /// Waits until `domid`'s state satisfies `want`.
    fn wait_state(&self, domid: DomId, want: impl Fn(Option<DomainState>) -> bool) -> Option<DomainState> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let state = self.state(domid);
            if want(state) {
                return state;
            }
            assert!(Instant::now() < deadline, "domain {domid} stuck in {state:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn console(&self, domid: DomId) -> String {
        std::fs::read_to_string(self.dir.path().join("console").join(format!("{domid}.log"))).unwrap_or_default()
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

fn guest_config(name: &str, role: &str, env: &[(&str, String)]) -> DomainConfig {
    let exe = std::env::current_exe().unwrap().to_string_lossy().into_owned();
    let mut vars = vec![(ROLE.to_owned(), role.to_owned())];
    vars.extend(env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    DomainConfig {
        name: name.to_owned(),
        program: vec![exe, "--exact".into(), "guest_entry".into(), "--nocapture".into(), "--test-threads=1".into()],
        env: vars,
        cwd: None,
        netns: false,
        fuse: false,
    }
}

thread_local! {
    /// Ports found pending while waiting for another: taking them re-arms
    /// them, so they are remembered for the wait that wants them (a guest
    /// that answers and then exits may raise both before the first wait
    /// looks; under load this lost the VIRQ).
    static SEEN: std::cell::RefCell<Vec<Port>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Waits for an event on `port` of `channels`.
fn await_event(channels: &mut impl EventChannels, port: Port) {
    let seen_before = SEEN.with(|seen| {
        let mut seen = seen.borrow_mut();
        seen.iter().position(|&p| p == port).map(|i| seen.remove(i)).is_some()
    });
    if seen_before {
        return;
    }
    let deadline = Instant::now() + PATIENCE;
    let mut pending = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "no event on port {port}");
        channels.wait(Some(Duration::from_millis(100))).unwrap();
        pending.clear();
        channels.take_pending(&mut pending).unwrap();
        let found = pending.contains(&port);
        SEEN.with(|seen| seen.borrow_mut().extend(pending.iter().filter(|&&p| p != port)));
        if found {
            return;
        }
    }
}

fn peek(pages: &MappedPages, offset: usize) -> u8 {
    assert!(offset < pages.len());
    // SAFETY: `offset` is inside the mapping, which lives as long as
    // `pages`; a volatile read of shared memory creates no reference.
    unsafe { pages.as_ptr().add(offset).read_volatile() }
}

fn poke(pages: &MappedPages, offset: usize, value: u8) {
    assert!(offset < pages.len());
    // SAFETY: as in `peek`; the mapping is writable where we poke.
    unsafe { pages.as_ptr().add(offset).write_volatile(value) }
}

fn errno(result: io::Result<impl std::fmt::Debug>) -> i32 {
    result.expect_err("expected an error").raw_os_error().expect("an errno")
}

// ---------------------------------------------------------------- guests

/// Runs a guest role when re-executed with [`ROLE`] set, then exits with
/// its status; an ordinary no-op test otherwise.
#[test]
fn guest_entry() {
    let Ok(role) = std::env::var(ROLE) else { return };
    let code = match role.as_str() {
        "write-file" => guest_write_file(),
        "ping-pong" => guest_ping_pong(),
        "grant" => guest_grant(),
        "map-grants" => guest_map_grants(),
        "unprivileged" => guest_unprivileged(),
        "misuse-ports-and-grants" => guest_misuse_ports_and_grants(),
        "dom0-bind-and-die" => dom0_bind_and_die(),
        "check-fds" => guest_check_fds(),
        "share-peer" => guest_share_peer(),
        "share-outsider" => guest_share_outsider(),
        "share-jammer" => guest_share_jammer(),
        "pair" => guest_pair(),
        "pair-outsider" => guest_pair_outsider(),
        "relay-member" => guest_relay_member(),
        "exit" => std::env::var("EXIT_CODE").unwrap().parse().unwrap(),
        "shutdown-self" => {
            let (host, _) = Host::from_guest_env().unwrap();
            host.shutdown_self(ShutdownReason::Reboot).unwrap();
            0
        }
        "sleep" => loop {
            std::thread::sleep(Duration::from_secs(60));
        },
        other => panic!("unknown role {other}"),
    };
    std::process::exit(code);
}

/// Writes `GUEST_FILE` as soon as it runs, then idles.
fn guest_write_file() -> i32 {
    std::fs::write(std::env::var("GUEST_FILE").unwrap(), b"ran").unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// Claims the store port, waits for dom0's byte at 0, answers it plus one
/// at 1.
fn guest_ping_pong() -> i32 {
    let (host, start) = Host::from_guest_env().unwrap();
    let mut channels = host.event_channels().unwrap();
    let port = channels.claim(start.store_port).unwrap();
    await_event(&mut channels, port);
    let byte = peek(&start.store_page, 0);
    poke(&start.store_page, 1, byte + 1);
    channels.notify(port).unwrap();
    0
}

/// Grants two read-only pages to dom0 with marker bytes, publishes the
/// refs on the store page, waits for dom0 to say it is done.
fn guest_grant() -> i32 {
    let (host, start) = Host::from_guest_env().unwrap();
    let mut channels = host.event_channels().unwrap();
    let port = channels.claim(start.store_port).unwrap();
    let granted = host.grants().grant_pages(0, 2, false).unwrap();
    poke(granted.pages(), 0, 0xab);
    poke(granted.pages(), PAGE_SIZE, 0xcd);
    for (i, gref) in granted.refs().iter().enumerate() {
        for (j, byte) in gref.to_le_bytes().iter().enumerate() {
            poke(&start.store_page, i * 4 + j, *byte);
        }
    }
    poke(&start.store_page, 8, 1);
    channels.notify(port).unwrap();
    await_event(&mut channels, port);
    drop(granted);
    0
}

/// Tries to map `REFS` of `GRANTER`, which were not granted to it:
/// exits 0 when refused with EPERM.
fn guest_map_grants() -> i32 {
    let (host, _) = Host::from_guest_env().unwrap();
    let granter: DomId = std::env::var("GRANTER").unwrap().parse().unwrap();
    let refs: Vec<u32> = std::env::var("REFS").unwrap().split(',').map(|r| r.parse().unwrap()).collect();
    match host.grants().map_grants(granter, &refs, false) {
        Err(e) if e.raw_os_error() == Some(EPERM) => 0,
        other => {
            eprintln!("third domain mapped or failed oddly: {other:?}");
            1
        }
    }
}

/// The share named in `SHARE_FILE`.
fn share_from_env() -> ShareRef {
    std::fs::read_to_string(std::env::var("SHARE_FILE").unwrap()).unwrap().trim().parse().unwrap()
}

/// Waits until every trigger bit of `want` has been raised on `share`;
/// returns every bit seen.
fn await_triggers(share: &mut dyn Share, want: u32) -> u32 {
    let deadline = Instant::now() + PATIENCE;
    let mut seen = 0;
    while seen & want != want {
        assert!(Instant::now() < deadline, "triggers {want:#x} never came (saw {seen:#x})");
        share.wait(Some(Duration::from_millis(100))).unwrap();
        seen |= share.take_pending().unwrap();
    }
    seen
}

fn write_bytes(pages: &MappedPages, offset: usize, bytes: &[u8]) {
    for (i, b) in bytes.iter().enumerate() {
        poke(pages, offset + i, *b);
    }
}

fn read_bytes(pages: &MappedPages, offset: usize, len: usize) -> Vec<u8> {
    (offset..offset + len).map(|i| peek(pages, i)).collect()
}

fn seg(offset: u64, len: u32) -> Segment {
    Segment { offset, len }
}

/// dom0's offer of a two-domain share, from `SHARE_FILE`.
fn pair_offer_from_env() -> PairOffer {
    PairOffer::parse(std::fs::read_to_string(std::env::var("SHARE_FILE").unwrap()).unwrap().trim()).unwrap()
}

/// Accepts dom0's offer of a two-domain share: reads dom0's bytes at 0,
/// writes its own at the second page and raises 3; exits on dom0's 5.
fn guest_pair() -> i32 {
    let (host, _) = Host::from_guest_env().unwrap();
    let channels = Box::new(host.event_channels().unwrap());
    let mut share = PairShare::accept(7, &mut host.grants(), channels, host.domid(), &pair_offer_from_env()).unwrap();
    assert_eq!(share.members(), [0, host.domid()]);
    assert_eq!(share.me(), 1);
    assert_eq!(read_bytes(share.pages(), 0, 9), b"from dom0");
    write_bytes(share.pages(), PAGE_SIZE, b"from guest");
    share.trigger(3).unwrap();
    await_triggers(&mut share, 1 << 5);
    0
}

/// A guest member of a relayed share (the offer in SHARE_FILE): takes
/// dom0's transfer into its buffer on key 2, sends it back on key 1
/// with " back", raises 4, and exits once it is removed (EPERM).
fn guest_relay_member() -> i32 {
    let (host, _) = Host::from_guest_env().unwrap();
    let offer =
        RelayOffer::parse(std::fs::read_to_string(std::env::var("SHARE_FILE").unwrap()).unwrap().trim()).unwrap();
    let mut share = RelayMember::accept(
        &mut host.grants(),
        Box::new(host.event_channels().unwrap()),
        Box::new(host.event_channels().unwrap()),
        &offer,
    )
    .unwrap();
    assert_eq!(share.members(), [0, host.domid()]);
    share.register(2, &[seg(0, 64)]).unwrap();
    share.trigger(3).unwrap();
    await_triggers(&mut share, 1 << TRIGGER_TRANSFERRED);
    let done = share.take_completed().unwrap();
    assert_eq!(done.len(), 1);
    let mut got = read_bytes(share.pages(), 0, done[0].len);
    got.extend_from_slice(b" back");
    write_bytes(share.pages(), PAGE_SIZE, &got);
    let len = u32::try_from(got.len()).unwrap();
    assert_eq!(share.transfer(1, &[seg(PAGE_SIZE as u64, len)]).unwrap(), got.len());
    share.trigger(4).unwrap();
    await_triggers(&mut share, 1 << TRIGGER_CHANGED);
    assert_eq!(errno(share.refresh()), EPERM);
    0
}

/// Tries to accept an offer made to another domain: exits 0 when the
/// grants refuse it (EPERM).
fn guest_pair_outsider() -> i32 {
    let (host, _) = Host::from_guest_env().unwrap();
    let channels = Box::new(host.event_channels().unwrap());
    match PairShare::accept(7, &mut host.grants(), channels, host.domid(), &pair_offer_from_env()) {
        Err(e) if e.raw_os_error() == Some(EPERM) => 0,
        other => {
            eprintln!("an outsider accepted, or failed oddly: {other:?}");
            1
        }
    }
}

/// A member of a two-page share with dom0: writes "hello" and raises 3;
/// on dom0's 5, transfers "hello" to dom0's buffer on key 7, checks the
/// transfer's refusals, writes "checks-ok" at 16 and raises 3; then
/// refreshes until it is removed, and checks it is cut off.
fn guest_share_peer() -> i32 {
    let (host, _) = Host::from_guest_env().unwrap();
    let mut share = host.shares().attach_share(share_from_env()).unwrap();
    assert_eq!(share.members()[share.me()], host.domid());
    write_bytes(share.pages(), 0, b"hello");
    share.trigger(3).unwrap();
    await_triggers(&mut share, 1 << 5);
    assert_eq!(share.transfer(7, &[seg(0, 5)]).unwrap(), 5);
    // dom0's one buffer is full until dom0 takes it.
    assert_eq!(errno(share.transfer(7, &[seg(0, 5)])), EAGAIN);
    assert_eq!(errno(share.transfer(9, &[seg(0, 5)])), EAGAIN, "nobody registered on 9");
    assert_eq!(errno(share.transfer(7, &[seg(8190, 3)])), EFAULT);
    assert_eq!(errno(share.transfer(7, &[seg(u64::MAX, 1)])), EFAULT);
    assert_eq!(errno(share.transfer(7, &[seg(0, 1); 17])), EINVAL);
    assert_eq!(errno(share.transfer(7, &[])), EINVAL);
    // Several in one request: each done or refused on its own, in order.
    let batch: [(u32, &[Segment]); 4] = [(8, &[seg(0, 5)]), (7, &[seg(0, 5)]), (9, &[seg(0, 5)]), (8, &[seg(8190, 3)])];
    assert_eq!(share.transfer_many(&batch).unwrap(), [Ok(5), Err(Errno::AGAIN), Err(Errno::AGAIN), Err(Errno::FAULT)]);
    let one = [seg(0, 5)];
    let too_many = vec![(8, &one[..]); xen_platform::share::MAX_TRANSFER_BATCH + 1];
    assert_eq!(errno(share.transfer_many(&too_many)), EINVAL);
    assert_eq!(errno(share.register(1, &[seg(4096, 4097)])), EFAULT);
    assert_eq!(errno(share.trigger(30)), EINVAL, "the transport's own trigger");
    write_bytes(share.pages(), 16, b"checks-ok");
    share.trigger(3).unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        match share.refresh() {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(EPERM) => break,
            Err(e) => panic!("refresh: {e}"),
        }
        assert!(Instant::now() < deadline, "never removed");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Cut off: no transfer, and what it writes or raises on what it still
    // has reaches nobody (dom0 checks).
    assert_eq!(errno(share.transfer(7, &[seg(0, 5)])), EPERM);
    assert_eq!(errno(host.shares().attach_share(share_from_env())), EPERM);
    write_bytes(share.pages(), 32, b"stale");
    share.trigger(3).unwrap();
    0
}

/// A member that tries to make the hypervisor block in the wake-ups it
/// sends: every eventfd it holds (what it was given to signal others
/// with, its store port's) is filled to the counter's maximum and made
/// blocking, which is the open file's flag, shared by every holder.
fn guest_share_jammer() -> i32 {
    use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
    let (host, _) = Host::from_guest_env().unwrap();
    let share = host.shares().attach_share(share_from_env()).unwrap();
    let mut jammed = 0;
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let entry = entry.unwrap();
        let Ok(target) = std::fs::read_link(entry.path()) else { continue };
        if target.to_string_lossy() != "anon_inode:[eventfd]" {
            continue;
        }
        let fd: i32 = entry.file_name().to_string_lossy().parse().unwrap();
        // SAFETY: a test guest borrowing its own open descriptor for the
        // duration of two calls; nothing closes it meanwhile.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let _ = rustix::io::write(fd, &(u64::MAX - 1).to_ne_bytes());
        if let Ok(flags) = fcntl_getfl(fd) {
            let _ = fcntl_setfl(fd, flags - OFlags::NONBLOCK);
        }
        jammed += 1;
    }
    println!("jammed {jammed} eventfds");
    assert!(jammed > 0);
    drop(share);
    std::fs::write(std::env::var("GUEST_FILE").unwrap(), b"jammed").unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// Not a member: every share operation is refused.
fn guest_share_outsider() -> i32 {
    let (host, _) = Host::from_guest_env().unwrap();
    let shares = host.shares();
    let share = share_from_env();
    assert_eq!(errno(shares.attach_share(share)), EPERM);
    assert_eq!(errno(shares.attach_share(share + 1000)), ENOENT);
    assert_eq!(errno(shares.create(1, &[host.domid()])), EPERM);
    assert_eq!(errno(shares.add_member(share, host.domid())), EPERM);
    assert_eq!(errno(shares.remove_member(share, 0)), EPERM);
    assert_eq!(errno(shares.destroy(share)), EPERM);
    // Its own vdevice page it may have; dom0's or another's not.
    let page = shares.vdevice(host.domid()).unwrap();
    let attached = shares.attach_share(page).unwrap();
    assert_eq!(attached.members(), [0, host.domid()]);
    assert_eq!(errno(shares.vdevice(0)), EPERM);
    assert_eq!(errno(shares.vdevice(host.domid() + 1)), EPERM);
    0
}

/// Not a guest: a dom0 process that binds a guest's store port and exits
/// without unbinding.
fn dom0_bind_and_die() -> i32 {
    let host = Host::connect(Path::new(&std::env::var("SOCKET").unwrap())).unwrap();
    let domid: DomId = std::env::var("DOMID").unwrap().parse().unwrap();
    let port: Port = std::env::var("PORT").unwrap().parse().unwrap();
    let mut channels = host.event_channels().unwrap();
    channels.bind_interdomain(domid, port).unwrap();
    std::mem::forget(channels);
    0
}

/// Exits 0 if the only descriptors it inherited are stdio and its
/// hypervisor socket.
fn guest_check_fds() -> i32 {
    let socket = std::env::var(xen_platform::hosted::ENV_HYPERVISOR_FD).unwrap();
    // Collect first: the directory handle itself is one of the entries.
    let entries: Vec<String> =
        std::fs::read_dir("/proc/self/fd").unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    let unexpected: Vec<&String> = entries
        .iter()
        .filter(|fd| !["0", "1", "2", socket.as_str()].contains(&fd.as_str()))
        .filter(|fd| std::fs::read_link(format!("/proc/self/fd/{fd}")).is_ok())
        .collect();
    if unexpected.is_empty() {
        0
    } else {
        eprintln!("leaked: {unexpected:?}");
        1
    }
}

/// Every privileged operation must fail with EPERM.
fn guest_unprivileged() -> i32 {
    let (host, start) = Host::from_guest_env().unwrap();
    let results = [
        errno(host.toolstack().create(&guest_config("x", "sleep", &[]))),
        errno(host.toolstack().list()),
        errno(host.toolstack().destroy(start.domid)),
        errno(host.foreign_memory().map_foreign(start.domid, xen_platform::hosted::STORE_GFN, 1)),
        errno(host.event_channels().unwrap().bind_virq(Virq::DomExc)),
    ];
    if results.iter().all(|&e| e == EPERM) {
        0
    } else {
        eprintln!("errnos: {results:?}");
        1
    }
}

/// A guest that uses what is not its own: ports it did not bind (port
/// numbers are per domain, so the victim's number names nothing of its
/// own until bound), a port of another domain's it was not offered, grants
/// nobody made it, another domain's store frame. Every attempt must fail.
fn guest_misuse_ports_and_grants() -> i32 {
    let (host, _) = Host::from_guest_env().unwrap();
    let victim: DomId = std::env::var("VICTIM").unwrap().parse().unwrap();
    let victim_port: Port = std::env::var("VICTIM_PORT").unwrap().parse().unwrap();
    let mut channels = host.event_channels().unwrap();
    let refused = [
        channels.notify(4000).is_err(),
        channels.notify(victim_port).is_err(),
        channels.bind_interdomain(victim, victim_port).is_err(),
        channels.bind_interdomain(0, 4000).is_err(),
        host.grants().map_grants(victim, &[0, 1, 12345], false).is_err(),
        host.grants().map_grants(0, &[0, 1], true).is_err(),
        host.foreign_memory().map_foreign(victim, xen_platform::hosted::STORE_GFN, 1).is_err(),
        channels.unbind(victim_port).is_err(),
    ];
    if refused.iter().all(|&r| r) {
        0
    } else {
        eprintln!("refused: {refused:?}");
        1
    }
}

// ---------------------------------------------------------------- tests

#[test]
fn create_starts_paused_and_program_runs_only_after_unpause() {
    let world = World::new();
    let marker: PathBuf = world.shared.path().join("ran");
    let new = world.create("writer", "write-file", &[("GUEST_FILE", marker.display().to_string())]);
    assert_eq!(new.domid, 1);
    assert_eq!(new.store_gfn, xen_platform::hosted::STORE_GFN);
    assert_eq!(world.state(new.domid), Some(DomainState::Paused));
    std::thread::sleep(Duration::from_millis(300));
    assert!(!marker.exists(), "a paused domain ran");

    world.domains().unpause(new.domid).unwrap();
    assert_eq!(world.state(new.domid), Some(DomainState::Running));
    wait_for_file(&marker);
}

#[test]
fn pause_and_unpause_change_state() {
    let world = World::new();
    let new = world.create("sleeper", "sleep", &[]);
    let mut domains = world.domains();
    domains.unpause(new.domid).unwrap();
    assert_eq!(world.state(new.domid), Some(DomainState::Running));
    domains.pause(new.domid).unwrap();
    assert_eq!(world.state(new.domid), Some(DomainState::Paused));
    domains.unpause(new.domid).unwrap();
    assert_eq!(world.state(new.domid), Some(DomainState::Running));
}

#[test]
fn list_has_dom0_and_guests_by_name() {
    let world = World::new();
    let a = world.create("alpha", "sleep", &[]);
    let b = world.create("beta", "sleep", &[]);
    let list = world.domains().list().unwrap();
    let summary: Vec<(DomId, &str)> = list.iter().map(|d| (d.domid, d.name.as_str())).collect();
    assert_eq!(summary, vec![(0, "Domain-0"), (a.domid, "alpha"), (b.domid, "beta")]);
    assert_eq!(list[0].state, DomainState::Running);
}

#[test]
fn store_page_and_port_carry_events_both_ways() {
    let world = World::new();
    let new = world.create("pinger", "ping-pong", &[]);
    let page = world.host.foreign_memory().map_foreign(new.domid, new.store_gfn, 1).unwrap();
    let mut channels = world.host.event_channels().unwrap();
    let port = channels.bind_interdomain(new.domid, new.store_port).unwrap();
    poke(&page, 0, 41);
    channels.notify(port).unwrap();
    world.domains().unpause(new.domid).unwrap();

    await_event(&mut channels, port);
    assert_eq!(peek(&page, 1), 42, "console: {}", world.console(new.domid));
    let state = world.wait_state(new.domid, |s| s.is_some_and(DomainState::is_shutdown_or_dying));
    assert_eq!(state, Some(DomainState::Shutdown(ShutdownReason::Poweroff)));
}

#[test]
fn adopted_handle_keeps_its_ports_events_and_notifications() {
    let world = World::new();
    let new = world.create("pinger", "ping-pong", &[]);
    let page = world.host.foreign_memory().map_foreign(new.domid, new.store_gfn, 1).unwrap();
    // The old daemon: its own connection, given up entirely once its
    // handle is taken apart (as when it execs its successor).
    let old_host = Host::connect(&hypervisor_socket(world.dir.path())).unwrap();
    let mut old = old_host.event_channels().unwrap();
    let virq = old.bind_virq(Virq::DomExc).unwrap();
    let port = old.bind_interdomain(new.domid, new.store_port).unwrap();
    let bindings = old.bindings();
    assert_eq!(
        bindings,
        vec![
            BoundPort { port: virq, binding: Binding::Virq(Virq::DomExc) },
            BoundPort { port, binding: Binding::Interdomain { remote: new.domid, remote_port: new.store_port } },
        ]
    );
    let parts = Box::new(old).into_parts().unwrap();
    drop(old_host);

    let mut adopted = HostedEventChannels::adopt(0, parts).unwrap();
    assert_eq!(adopted.bindings(), bindings);
    poke(&page, 0, 41);
    adopted.notify(port).unwrap();
    world.domains().unpause(new.domid).unwrap();
    await_event(&mut adopted, port);
    assert_eq!(peek(&page, 1), 42, "console: {}", world.console(new.domid));
    // The guest exits when done: VIRQ_DOM_EXC reaches the adopted handle.
    await_event(&mut adopted, virq);
    // A port adopted is still ours to close, and closing it frees the
    // guest's port for another binding.
    adopted.unbind(port).unwrap();
}

/// A port handed to its caller (`poll_directly`, what xenstored and a
/// guest's ring transport do) fires on its own descriptor and no longer
/// through the handle, until it is given back.
#[test]
fn a_port_polled_directly_fires_on_its_own_descriptor_until_given_back() {
    use rustix::event::{poll, PollFd, PollFlags};
    let world = World::new();
    let new = world.create("pinger", "ping-pong", &[]);
    let page = world.host.foreign_memory().map_foreign(new.domid, new.store_gfn, 1).unwrap();
    let mut channels = world.host.event_channels().unwrap();
    let virq = channels.bind_virq(Virq::DomExc).unwrap();
    let port = channels.bind_interdomain(new.domid, new.store_port).unwrap();
    let fd = channels.poll_directly(port).unwrap().expect("hosted ports have their own descriptor");
    poke(&page, 0, 41);
    channels.notify(port).unwrap();
    world.domains().unpause(new.domid).unwrap();
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let ready = poll(&mut fds, Some(&rustix::event::Timespec { tv_sec: 10, tv_nsec: 0 })).unwrap();
    assert_eq!(ready, 1, "no event on the port's descriptor; console: {}", world.console(new.domid));
    assert_eq!(peek(&page, 1), 42);
    // The guest's exit raises the virq, which the handle still reports;
    // the port it no longer does.
    await_event(&mut channels, virq);
    let mut pending = Vec::new();
    channels.take_pending(&mut pending).unwrap();
    assert!(!pending.contains(&port), "{pending:?}");
    // Given back while still pending (nobody cleared it): the handle
    // reports it again.
    channels.poll_through_handle(port).unwrap();
    channels.take_pending(&mut pending).unwrap();
    assert!(pending.contains(&port), "{pending:?}");
}

#[test]
fn bound_store_port_cannot_be_bound_twice_but_can_after_unbind() {
    let world = World::new();
    let new = world.create("guest", "sleep", &[]);
    let mut first = world.host.event_channels().unwrap();
    let port = first.bind_interdomain(new.domid, new.store_port).unwrap();
    let mut second = world.host.event_channels().unwrap();
    assert_eq!(errno(second.bind_interdomain(new.domid, new.store_port)), EINVAL);
    first.unbind(port).unwrap();
    second.bind_interdomain(new.domid, new.store_port).unwrap();
}

#[test]
fn virq_dom_exc_fires_when_guest_exits_with_poweroff_or_crash() {
    let world = World::new();
    let mut channels = world.host.event_channels().unwrap();
    let virq = channels.bind_virq(Virq::DomExc).unwrap();
    for (code, reason) in [(0, ShutdownReason::Poweroff), (3, ShutdownReason::Crash)] {
        let new = world.create(&format!("exiter-{code}"), "exit", &[("EXIT_CODE", code.to_string())]);
        world.domains().unpause(new.domid).unwrap();
        await_event(&mut channels, virq);
        assert_eq!(world.state(new.domid), Some(DomainState::Shutdown(reason)));
    }
}

#[test]
fn shutdown_self_reason_wins_over_exit_status() {
    let world = World::new();
    let mut channels = world.host.event_channels().unwrap();
    let virq = channels.bind_virq(Virq::DomExc).unwrap();
    let new = world.create("rebooter", "shutdown-self", &[]);
    world.domains().unpause(new.domid).unwrap();
    await_event(&mut channels, virq);
    assert_eq!(world.state(new.domid), Some(DomainState::Shutdown(ShutdownReason::Reboot)));
}

#[test]
fn shutdown_kills_records_reason_and_fires_virq() {
    let world = World::new();
    let mut channels = world.host.event_channels().unwrap();
    let virq = channels.bind_virq(Virq::DomExc).unwrap();
    let new = world.create("victim", "sleep", &[]);
    world.domains().unpause(new.domid).unwrap();
    world.domains().shutdown(new.domid, ShutdownReason::Suspend).unwrap();
    await_event(&mut channels, virq);
    assert_eq!(world.state(new.domid), Some(DomainState::Shutdown(ShutdownReason::Suspend)));
    // The process's death afterwards does not rewrite the reason.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(world.state(new.domid), Some(DomainState::Shutdown(ShutdownReason::Suspend)));
}

#[test]
fn a_live_domain_name_cannot_be_taken_twice() {
    let world = World::new();
    let first = world.create("twin", "sleep", &[]);
    assert_eq!(errno(world.domains().create(&guest_config("twin", "sleep", &[]))), EEXIST);
    assert_eq!(errno(world.domains().create(&guest_config("Domain-0", "sleep", &[]))), EEXIST);
    assert_eq!(world.domains().list().unwrap().len(), 2, "the refused domain was not left behind");
    world.domains().destroy(first.domid).unwrap();
    let again = world.create("twin", "sleep", &[]);
    assert_eq!(world.domains().info(again.domid).unwrap().map(|d| d.name), Some("twin".to_owned()));
}

#[test]
fn destroy_removes_domain_and_fires_virq() {
    let world = World::new();
    let mut channels = world.host.event_channels().unwrap();
    let virq = channels.bind_virq(Virq::DomExc).unwrap();
    let new = world.create("doomed", "sleep", &[]);
    world.domains().destroy(new.domid).unwrap();
    await_event(&mut channels, virq);
    assert_eq!(world.state(new.domid), None);
    assert_eq!(errno(world.domains().destroy(new.domid)), ESRCH);
}

#[test]
fn changed_states_first_look_is_everything_then_only_changes() {
    let world = World::new();
    let mut states = world.domains();
    let first = states.changed_states(false).unwrap();
    assert_eq!(first, DomainChanges::Everything(vec![(0, DomainState::Running)]));
    let stopped = world.create("stopped", "sleep", &[]);
    let doomed = world.create("doomed", "sleep", &[]);
    let quiet = world.create("quiet", "sleep", &[]);
    world.domains().shutdown(stopped.domid, ShutdownReason::Reboot).unwrap();
    world.domains().destroy(doomed.domid).unwrap();
    let changes = states.changed_states(false).unwrap();
    assert_eq!(
        changes,
        DomainChanges::Changed(vec![
            (stopped.domid, Some(DomainState::Shutdown(ShutdownReason::Reboot))),
            (doomed.domid, None),
        ]),
        "{} is unchanged",
        quiet.domid
    );
    assert_eq!(states.changed_states(false).unwrap(), DomainChanges::Changed(Vec::new()), "taken once");
}

#[test]
fn changed_states_fresh_lists_every_domain_again() {
    let world = World::new();
    let mut states = world.domains();
    states.changed_states(false).unwrap();
    let new = world.create("guest", "sleep", &[]);
    world.domains().destroy(new.domid).unwrap();
    let fresh = states.changed_states(true).unwrap();
    assert_eq!(fresh, DomainChanges::Everything(vec![(0, DomainState::Running)]));
    assert_eq!(states.changed_states(false).unwrap(), DomainChanges::Changed(Vec::new()));
}

#[test]
fn changed_states_are_kept_per_connection() {
    let world = World::new();
    let mut first = world.domains();
    first.changed_states(false).unwrap();
    let new = world.create("guest", "sleep", &[]);
    world.domains().destroy(new.domid).unwrap();
    let mut second = Host::connect(&hypervisor_socket(world.dir.path())).unwrap().toolstack();
    assert!(matches!(second.changed_states(false).unwrap(), DomainChanges::Everything(_)), "its own first look");
    assert_eq!(first.changed_states(false).unwrap(), DomainChanges::Changed(vec![(new.domid, None)]));
}

#[test]
fn granted_pages_map_in_dom0_but_not_in_a_third_domain() {
    let world = World::new();
    let granter = world.create("granter", "grant", &[]);
    let page = world.host.foreign_memory().map_foreign(granter.domid, granter.store_gfn, 1).unwrap();
    let mut channels = world.host.event_channels().unwrap();
    let port = channels.bind_interdomain(granter.domid, granter.store_port).unwrap();
    world.domains().unpause(granter.domid).unwrap();
    await_event(&mut channels, port);
    assert_eq!(peek(&page, 8), 1, "console: {}", world.console(granter.domid));
    let refs: Vec<u32> = (0..2).map(|i| u32::from_le_bytes(std::array::from_fn(|j| peek(&page, i * 4 + j)))).collect();

    let mapped = world.host.grants().map_grants(granter.domid, &refs, false).unwrap();
    assert_eq!(mapped.len(), 2 * PAGE_SIZE);
    assert_eq!((peek(&mapped, 0), peek(&mapped, PAGE_SIZE)), (0xab, 0xcd));
    assert_eq!(errno(world.host.grants().map_grants(granter.domid, &refs, true)), EPERM, "read-only grant");

    let refs_text = refs.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    let third = world.create("third", "map-grants", &[("GRANTER", granter.domid.to_string()), ("REFS", refs_text)]);
    world.domains().unpause(third.domid).unwrap();
    let state = world.wait_state(third.domid, |s| s.is_some_and(DomainState::is_shutdown_or_dying));
    assert_eq!(state, Some(DomainState::Shutdown(ShutdownReason::Poweroff)), "console: {}", world.console(third.domid));

    channels.notify(port).unwrap();
    let state = world.wait_state(granter.domid, |s| s.is_some_and(DomainState::is_shutdown_or_dying));
    assert_eq!(state, Some(DomainState::Shutdown(ShutdownReason::Poweroff)));
}

#[test]
fn guest_inherits_only_stdio_and_its_socket() {
    let world = World::new();
    // Inheritable on purpose: the hypervisor must not pass it on.
    let _inheritable =
        rustix::fs::open("/proc/self/status", rustix::fs::OFlags::RDONLY, rustix::fs::Mode::empty()).unwrap();
    let new = world.create("clean", "check-fds", &[]);
    world.domains().unpause(new.domid).unwrap();
    let state = world.wait_state(new.domid, |s| s.is_some_and(DomainState::is_shutdown_or_dying));
    assert_eq!(state, Some(DomainState::Shutdown(ShutdownReason::Poweroff)), "console: {}", world.console(new.domid));
}

#[test]
fn guest_gets_eperm_for_privileged_operations() {
    let world = World::new();
    let new = world.create("pleb", "unprivileged", &[]);
    world.domains().unpause(new.domid).unwrap();
    let state = world.wait_state(new.domid, |s| s.is_some_and(DomainState::is_shutdown_or_dying));
    assert_eq!(state, Some(DomainState::Shutdown(ShutdownReason::Poweroff)), "console: {}", world.console(new.domid));
}

#[test]
fn map_foreign_of_unknown_domain_is_esrch_and_wrong_frame_einval() {
    let world = World::new();
    let new = world.create("guest", "sleep", &[]);
    let mut memory = world.host.foreign_memory();
    assert_eq!(errno(memory.map_foreign(77, xen_platform::hosted::STORE_GFN, 1)), ESRCH);
    assert_eq!(errno(memory.map_foreign(new.domid, 0, 1)), EINVAL);
}

#[test]
fn malformed_messages_do_not_kill_the_hypervisor() {
    use rustix::net::{socket_with, AddressFamily, SendFlags, SocketAddrUnix, SocketFlags, SocketType};
    let world = World::new();
    let connect = || {
        let fd = socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None).unwrap();
        rustix::net::connect(&fd, &SocketAddrUnix::new(hypervisor_socket(world.dir.path())).unwrap()).unwrap();
        fd
    };
    // JSON that is no request: an error reply.
    let raw = connect();
    rustix::net::send(&raw, b"\x01{\"Nonsense\":42}", SendFlags::empty()).unwrap();
    let mut reply = [0u8; 256];
    let n = rustix::net::recv(&raw, &mut reply, rustix::net::RecvFlags::empty()).unwrap().0;
    assert!(String::from_utf8_lossy(&reply[1..n]).contains("Error"));
    // A broken frame: the connection closes.
    let raw = connect();
    rustix::net::send(&raw, b"\x07garbage", SendFlags::empty()).unwrap();
    let n = rustix::net::recv(&raw, &mut reply, rustix::net::RecvFlags::empty()).unwrap().0;
    assert_eq!(n, 0);
    // Binary garbage and an early hang-up.
    let raw = connect();
    rustix::net::send(&raw, &[0xff; 100], SendFlags::empty()).unwrap();
    drop(raw);

    assert_eq!(world.domains().list().unwrap().len(), 1);
}

fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + PATIENCE;
    while !path.exists() {
        assert!(Instant::now() < deadline, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn ports_of_a_dom0_process_that_dies_are_released() {
    let world = World::new();
    let new = world.create("guest", "sleep", &[]);
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "guest_entry", "--nocapture", "--test-threads=1"])
        .env(ROLE, "dom0-bind-and-die")
        .env("SOCKET", hypervisor_socket(world.dir.path()))
        .env("DOMID", new.domid.to_string())
        .env("PORT", new.store_port.to_string())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let mut channels = world.host.event_channels().unwrap();
    channels.bind_interdomain(new.domid, new.store_port).unwrap();
}

// ------------------------------------------------- advisories, platform side
//
// The grant-table and event-channel cases of the adversarial suite
// (`crates/xenstored/tests/xsa.rs` has the daemon's side): what a guest or
// a confused dom0 may hand the hosted hypervisor instead of a real grant or
// port. Hypervisor-internal advisories (XSA-486 `gnttab_map_frame`, XSA-496
// `evtchn_bind_virq`) concern code the hosted platform does not have.

#[test]
fn grant_refs_never_granted_are_refused_and_the_hypervisor_survives() {
    let world = World::new();
    let new = world.create("guest", "sleep", &[]);
    for refs in [&[0u32][..], &[1], &[12345], &[u32::MAX], &[1, 1, 1]] {
        assert!(world.host.grants().map_grants(new.domid, refs, false).is_err(), "refs {refs:?}");
        assert!(world.host.grants().map_grants(new.domid, refs, true).is_err(), "refs {refs:?} writable");
    }
    assert_eq!(errno(world.host.grants().map_grants(77, &[1], false)), ESRCH);
    assert_eq!(world.domains().list().unwrap().len(), 2);
}

#[test]
fn ports_not_bound_or_not_offered_cannot_be_used_and_a_closed_port_can_be_bound_again() {
    let world = World::new();
    let new = world.create("guest", "sleep", &[]);
    let mut channels = world.host.event_channels().unwrap();
    // A port nobody bound: no notification, no unbind.
    assert!(channels.notify(4000).is_err());
    assert!(channels.unbind(4000).is_err());
    // A port the guest did not offer.
    assert_eq!(errno(channels.bind_interdomain(new.domid, new.store_port + 100)), EINVAL);
    // The store port, bound, closed (unbound), then used: refused; bound
    // again: it works, as the daemon does after RELEASE and INTRODUCE.
    let port = channels.bind_interdomain(new.domid, new.store_port).unwrap();
    channels.notify(port).unwrap();
    channels.unbind(port).unwrap();
    assert!(channels.notify(port).is_err(), "a closed port notified");
    let again = channels.bind_interdomain(new.domid, new.store_port).unwrap();
    channels.notify(again).unwrap();
    assert_eq!(world.domains().list().unwrap().len(), 2);
}

#[test]
fn a_guest_cannot_use_another_domains_port_grants_or_frame() {
    let world = World::new();
    let victim = world.create("victim", "sleep", &[]);
    let env = [("VICTIM", victim.domid.to_string()), ("VICTIM_PORT", victim.store_port.to_string())];
    let misuser = world.create("misuser", "misuse-ports-and-grants", &env);
    world.domains().unpause(misuser.domid).unwrap();
    let state = world.wait_state(misuser.domid, |s| s.is_some_and(DomainState::is_shutdown_or_dying));
    assert_eq!(
        state,
        Some(DomainState::Shutdown(ShutdownReason::Poweroff)),
        "console: {}",
        world.console(misuser.domid)
    );
    // The victim's store port still serves dom0.
    let mut channels = world.host.event_channels().unwrap();
    let port = channels.bind_interdomain(victim.domid, victim.store_port).unwrap();
    channels.notify(port).unwrap();
}

// ---------------------------------------------------------------- Xen Share

fn wait_poweroff(world: &World, domid: DomId) {
    let state = world.wait_state(domid, |s| s.is_some_and(DomainState::is_shutdown_or_dying));
    assert_eq!(state, Some(DomainState::Shutdown(ShutdownReason::Poweroff)), "console: {}", world.console(domid));
}

#[test]
fn share_members_map_trigger_and_transfer_and_a_removed_member_is_cut_off() {
    let world = World::new();
    let shares = world.host.shares();
    let share_file = world.shared.path().join("share");
    let env = [("SHARE_FILE", share_file.to_string_lossy().into_owned())];
    let peer = world.create("peer", "share-peer", &env);
    let share = shares.create(2, &[0, peer.domid]).unwrap();
    std::fs::write(&share_file, share.to_string()).unwrap();
    let mut ours = shares.attach_share(share).unwrap();
    assert_eq!(ours.members(), [0, peer.domid]);
    assert_eq!(ours.me(), 0);
    let buffer = ours.register(7, &[seg(4096, 60), seg(6000, 40)]).unwrap();
    let second = ours.register(8, &[seg(7000, 16)]).unwrap();
    world.domains().unpause(peer.domid).unwrap();

    // Memory and triggers, both ways.
    await_triggers(&mut ours, 1 << 3);
    assert_eq!(read_bytes(ours.pages(), 0, 5), b"hello");
    ours.trigger(5).unwrap();
    let seen = await_triggers(&mut ours, 1 << 3 | 1 << TRIGGER_TRANSFERRED);
    assert_eq!(read_bytes(ours.pages(), 16, 9), b"checks-ok", "the peer's checks");
    assert_eq!(seen & 1 << TRIGGER_CHANGED, 0);
    // The transfer landed in our buffer: ours to read until our next take,
    // which frees it.
    let mut completed = ours.take_completed().unwrap();
    completed.sort_by_key(|c| c.buffer);
    let mut want =
        [xen_platform::share::Completed { buffer, len: 5 }, xen_platform::share::Completed { buffer: second, len: 5 }];
    want.sort_by_key(|c| c.buffer);
    assert_eq!(completed, want);
    assert_eq!(read_bytes(ours.pages(), 4096, 5), b"hello");
    assert_eq!(read_bytes(ours.pages(), 7000, 5), b"hello", "the batch's transfer");
    assert_eq!(ours.take_completed().unwrap(), []);

    // A domain that is not a member is refused everything.
    let outsider = world.create("outsider", "share-outsider", &env);
    world.domains().unpause(outsider.domid).unwrap();
    wait_poweroff(&world, outsider.domid);

    // Removal: the share moves; we are told and keep the content.
    write_bytes(ours.pages(), 40, b"before");
    shares.remove_member(share, peer.domid).unwrap();
    await_triggers(&mut ours, 1 << TRIGGER_CHANGED);
    ours.refresh().unwrap();
    assert_eq!(ours.members(), [0]);
    assert_eq!(ours.generation(), 2);
    assert_eq!(read_bytes(ours.pages(), 40, 6), b"before");
    wait_poweroff(&world, peer.domid);
    // What the removed peer wrote and raised afterwards reached nobody.
    assert_eq!(read_bytes(ours.pages(), 32, 5), [0; 5]);
    assert_eq!(ours.take_pending().unwrap(), 0);
    assert!(!ours.wait(Some(Duration::ZERO)).unwrap());

    shares.destroy(share).unwrap();
    assert_eq!(errno(ours.refresh()), ENOENT);
    assert_eq!(errno(shares.attach_share(share)), ENOENT);
}

/// Whatever a member does to the eventfds it holds, neither another
/// member's trigger (dom0's here) nor the hypervisor's own wake-ups (a
/// membership change raises TRIGGER_CHANGED in every member, the jammer
/// too) can block: both go on.
#[test]
fn a_member_cannot_make_a_trigger_or_the_hypervisor_block() {
    let world = World::new();
    let shares = world.host.shares();
    let share_file = world.shared.path().join("share");
    let guest_file = world.shared.path().join("jammed");
    let env = [
        ("SHARE_FILE", share_file.to_string_lossy().into_owned()),
        ("GUEST_FILE", guest_file.to_string_lossy().into_owned()),
    ];
    let jammer = world.create("jammer", "share-jammer", &env);
    let other = world.create("other", "sleep", &[]);
    let share = shares.create(1, &[0, jammer.domid, other.domid]).unwrap();
    std::fs::write(&share_file, share.to_string()).unwrap();
    let mut ours = shares.attach_share(share).unwrap();
    world.domains().unpause(jammer.domid).unwrap();
    wait_for_file(&guest_file);
    // Each change makes the hypervisor signal every member; then a plain
    // request. On a thread: a hypervisor that blocks would never answer.
    let (tx, rx) = std::sync::mpsc::channel();
    let socket = hypervisor_socket(world.dir.path());
    let other_domid = other.domid;
    std::thread::spawn(move || {
        let host = Host::connect(&socket).unwrap();
        let shares = host.shares();
        let answer = (|| -> io::Result<usize> {
            // dom0's trigger writes what it alone wakes the others with.
            shares.attach_share(share)?.trigger(1)?;
            shares.remove_member(share, other_domid)?;
            shares.add_member(share, other_domid)?;
            Ok(host.toolstack().list()?.len())
        })();
        let _ = tx.send(answer.map_err(|e| e.to_string()));
    });
    let answer = rx.recv_timeout(Duration::from_secs(10)).expect("dom0's trigger or the hypervisor blocked");
    assert!(answer.unwrap() >= 3);
    await_triggers(&mut ours, 1 << TRIGGER_CHANGED);
    ours.refresh().unwrap();
    assert_eq!(ours.members(), [0, jammer.domid, other.domid]);
}

#[test]
fn share_membership_follows_the_toolstack_and_the_domains() {
    let world = World::new();
    let shares = world.host.shares();
    let first = world.create("first", "sleep", &[]);
    let second = world.create("second", "sleep", &[]);
    assert_eq!(errno(shares.create(0, &[0])), EINVAL);
    assert_eq!(errno(shares.create(MAX_SHARE_PAGES + 1, &[0])), EINVAL);
    assert_eq!(errno(shares.create(1, &[])), EINVAL);
    assert_eq!(errno(shares.create(1, &[0, 0])), EINVAL);
    assert_eq!(errno(shares.create(1, &[0; MAX_MEMBERS + 1])), EINVAL);
    assert_eq!(errno(shares.create(1, &[0, 999])), ESRCH);

    let share = shares.create(1, &[0, first.domid]).unwrap();
    let mut ours = shares.attach_share(share).unwrap();
    assert_eq!(errno(shares.add_member(share, first.domid)), EEXIST);
    assert_eq!(errno(shares.add_member(share, 999)), ESRCH);
    assert_eq!(errno(shares.remove_member(share, second.domid)), ENOENT);
    assert_eq!(errno(shares.add_member(share + 1, second.domid)), ENOENT);

    shares.add_member(share, second.domid).unwrap();
    await_triggers(&mut ours, 1 << TRIGGER_CHANGED);
    // Until it refreshes, what a member asks of the pages was made on its
    // old mapping, and is refused.
    assert_eq!(errno(ours.register(1, &[seg(0, 16)])), ESTALE);
    assert_eq!(errno(ours.transfer(1, &[seg(0, 16)])), ESTALE);
    assert_eq!(errno(ours.transfer_many(&[(1, &[seg(0, 16)])])), ESTALE);
    assert_eq!(errno(ours.take_completed()), ESTALE);
    ours.refresh().unwrap();
    assert_eq!(ours.members(), [0, first.domid, second.domid]);
    assert_eq!(ours.generation(), 2);
    assert_eq!(ours.take_completed().unwrap(), []);

    // A destroyed domain leaves every share it was in.
    world.domains().destroy(first.domid).unwrap();
    await_triggers(&mut ours, 1 << TRIGGER_CHANGED);
    ours.refresh().unwrap();
    assert_eq!(ours.members(), [0, second.domid]);

    // Receive buffers are bounded per process.
    for _ in 0..xen_platform::share::MAX_BUFFERS {
        ours.register(1, &[seg(0, 16)]).unwrap();
    }
    assert_eq!(errno(ours.register(1, &[seg(0, 16)])), ENOSPC);
    // Our own buffers are not a target for our transfers.
    assert_eq!(errno(ours.transfer(1, &[seg(0, 16)])), EAGAIN);
    // Withdrawn, they make room again.
    ours.unregister_all().unwrap();
    ours.register(1, &[seg(0, 16)]).unwrap();
    // A domain's processes together are bounded too: more connections do
    // not buy more buffers.
    let mut others: Vec<_> = (0..8).map(|_| Host::connect(&hypervisor_socket(world.dir.path())).unwrap()).collect();
    let mut registered = 1;
    for host in &mut others {
        let mut attached = host.shares().attach_share(share).unwrap();
        while attached.register(1, &[seg(0, 16)]).is_ok() {
            registered += 1;
        }
    }
    assert_eq!(registered, xen_platform::share::MAX_DOMAIN_BUFFERS);
}

/// A share of dom0 and one guest made of grants and an event channel
/// (what Xen has, `PairShare`): the guest accepts dom0's offer, each sees
/// the other's bytes and triggers, a third domain cannot map the pages,
/// and transfers say they need the share service.
#[test]
fn a_pair_share_over_grants_and_a_channel_joins_dom0_and_one_guest() {
    let world = World::new();
    let offer_file = world.shared.path().join("offer");
    let env = [("SHARE_FILE", offer_file.to_string_lossy().into_owned())];
    let guest = world.create("pair", "pair", &env);
    let channels = Box::new(world.host.event_channels().unwrap());
    let (mut ours, offer) = PairShare::offer(7, &mut world.host.grants(), channels, guest.domid, 2).unwrap();
    assert_eq!(ours.members(), [0, guest.domid]);
    assert_eq!(ours.me(), 0);
    write_bytes(ours.pages(), 0, b"from dom0");
    std::fs::write(&offer_file, offer.to_text()).unwrap();
    world.domains().unpause(guest.domid).unwrap();
    await_triggers(&mut ours, 1 << 3);
    assert_eq!(read_bytes(ours.pages(), PAGE_SIZE, 10), b"from guest");
    ours.trigger(5).unwrap();
    wait_poweroff(&world, guest.domid);

    let outsider = world.create("outsider", "pair-outsider", &env);
    world.domains().unpause(outsider.domid).unwrap();
    wait_poweroff(&world, outsider.domid);

    assert_eq!(ours.register(1, &[seg(0, 16)]).unwrap_err().kind(), io::ErrorKind::Unsupported);
    assert_eq!(ours.transfer(1, &[seg(0, 16)]).unwrap_err().kind(), io::ErrorKind::Unsupported);
    assert_eq!(errno(ours.trigger(USER_TRIGGERS)), EINVAL);
    assert_eq!(
        errno(PairShare::offer(
            8,
            &mut world.host.grants(),
            Box::new(world.host.event_channels().unwrap()),
            guest.domid,
            0
        )),
        EINVAL
    );
}

/// A share relayed by dom0's service (`relay_share`, what shares of
/// several guests are on Xen) over the hosted platform's grants and
/// event channels, with a guest process: triggers and transfers cross
/// both ways through the service, and a removed guest hears that it was.
#[test]
fn a_relayed_share_carries_a_guest_process_transfers_and_triggers() {
    let world = World::new();
    let offer_file = world.shared.path().join("offer");
    let env = [("SHARE_FILE", offer_file.to_string_lossy().into_owned())];
    let guest = world.create("relay", "relay-member", &env);
    let service = RelayShares::start(
        Box::new(world.host.grants()),
        Box::new(world.host.event_channels().unwrap()),
        GNTALLOC_LIMIT,
    )
    .unwrap();
    let share = service.create(2, &[0, guest.domid]).unwrap();
    let mut ours = service.attach_local(share).unwrap();
    ours.register(1, &[seg(PAGE_SIZE as u64, 64)]).unwrap();
    std::fs::write(&offer_file, service.offer(share, guest.domid).unwrap().to_text()).unwrap();
    world.domains().unpause(guest.domid).unwrap();
    await_triggers(&mut ours, 1 << 3);
    write_bytes(ours.pages(), 0, b"hello");
    assert_eq!(ours.transfer(2, &[seg(0, 5)]).unwrap(), 5);
    await_triggers(&mut ours, 1 << 4 | 1 << TRIGGER_TRANSFERRED);
    let done = ours.take_completed().unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(read_bytes(ours.pages(), PAGE_SIZE, done[0].len), b"hello back");
    service.remove_member(share, guest.domid).unwrap();
    wait_poweroff(&world, guest.domid);
}

/// A removal withdraws the buffers of the members whose index moved
/// (they were laid out by index, and would overlap another's), and keeps
/// those of the members before it.
#[test]
fn a_removal_withdraws_the_buffers_of_the_members_it_moves() {
    let world = World::new();
    let shares = world.host.shares();
    let guests: Vec<DomId> = (0..3).map(|i| world.create(&format!("g{i}"), "sleep", &[]).domid).collect();
    let fill = |attached: &mut dyn Share| {
        let mut n = 0;
        while attached.register(1, &[seg(0, 16)]).is_ok() {
            n += 1;
        }
        n
    };
    // dom0 last: it moves when a member before it goes.
    let moved = shares.create(1, &[guests[0], guests[1], 0]).unwrap();
    let mut ours = shares.attach_share(moved).unwrap();
    assert_eq!(fill(&mut ours), xen_platform::share::MAX_BUFFERS);
    shares.remove_member(moved, guests[0]).unwrap();
    ours.refresh().unwrap();
    assert_eq!(ours.me(), 1);
    assert_eq!(fill(&mut ours), xen_platform::share::MAX_BUFFERS, "the old buffers were withdrawn");
    // dom0 first: a member after it goes, and its buffers stay.
    let kept = shares.create(1, &[0, guests[1], guests[2]]).unwrap();
    let mut ours = shares.attach_share(kept).unwrap();
    assert_eq!(fill(&mut ours), xen_platform::share::MAX_BUFFERS);
    shares.remove_member(kept, guests[1]).unwrap();
    ours.refresh().unwrap();
    assert_eq!(ours.me(), 0);
    assert_eq!(errno(ours.register(1, &[seg(0, 16)])), ENOSPC, "the buffers stayed");
}

#[test]
fn each_domain_has_a_vdevice_page_shared_with_dom0_alone() {
    let world = World::new();
    let shares = world.host.shares();
    let guest = world.create("guest", "sleep", &[]);
    let page = shares.vdevice(guest.domid).unwrap();
    assert_eq!(shares.vdevice(guest.domid).unwrap(), page, "made once");
    let attached = shares.attach_share(page).unwrap();
    assert_eq!(attached.members(), [0, guest.domid]);
    assert_eq!(attached.pages().len(), PAGE_SIZE);
    assert_eq!(errno(shares.vdevice(999)), ESRCH);

    // dom0's own has dom0 alone, and a trigger there wakes dom0 itself
    // (the toolstack and dom0's device bus are both dom0).
    let mut own = shares.attach_share(shares.vdevice(0).unwrap()).unwrap();
    assert_eq!(own.members(), [0]);
    own.trigger(0).unwrap();
    assert_eq!(await_triggers(&mut own, 1), 1);

    // The page goes with its domain.
    world.domains().destroy(guest.domid).unwrap();
    assert_eq!(errno(shares.attach_share(page)), ENOENT);
}
