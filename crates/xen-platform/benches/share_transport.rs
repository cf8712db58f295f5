//! What one transfer costs on the two transports a share has hosted,
//! side by side in one run: a small transfer from dom0 to a guest process
//! and one back, each taken by its receiver, timed as dom0 sees the round
//! trip.
//!
//! - `hypervisor`: the hosted hypervisor's shares, where each call
//!   (transfer, take) is a JSON request over the hypervisor's socket;
//! - `relay`: `relay_share`'s service (what shares of several guests are
//!   on Xen) over the hosted grants and event channels, where each call
//!   is a request in the member's control page and a notification, and
//!   the service is a thread of dom0's.
//!
//! `cargo bench -p xen-platform --features hosted-hypervisor --bench
//! share_transport` (`ROUNDS=N` for another count than 5000 per run).

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use xen_platform::hosted::{hypervisor_socket, Confinement, Host, Hypervisor};
use xen_platform::relay_share::{RelayMember, RelayOffer, RelayShares, GNTALLOC_LIMIT};
use xen_platform::share::{Segment, Share, Shares, TRIGGER_CHANGED, TRIGGER_TRANSFERRED};
use xen_platform::{DomainConfig, Toolstack, PAGE_SIZE};

const ROLE: &str = "SHARE_TRANSPORT_GUEST";
const RUNS: usize = 3;
/// dom0's receive key, and the guest's.
const TO_DOM0: u32 = 1;
const TO_GUEST: u32 = 2;

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        std::process::exit(guest(&role));
    }
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(5000);
    let dir = tempfile::tempdir().unwrap();
    let hypervisor = Hypervisor::bind(dir.path(), Confinement::strongest()).unwrap();
    let stop = hypervisor.stop_handle();
    let thread = std::thread::spawn(move || hypervisor.serve());
    let host = Host::connect(&hypervisor_socket(dir.path())).unwrap();
    let shared = tempfile::tempdir().unwrap();
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    println!("share_transport: {rounds} round trips a run, {RUNS} runs each, median and 99th percentile per run");
    for _ in 0..RUNS {
        for transport in ["hypervisor", "relay"] {
            let mut times = run(&host, shared.path(), transport, rounds);
            times.sort_unstable();
            // The round trip at `per_mille` of the sorted times.
            let at = |per_mille: usize| times[(times.len() - 1) * per_mille / 1000].as_secs_f64() * 1e6;
            println!("{transport:>10}: median {:7.1} µs, p99 {:7.1} µs", at(500), at(990));
        }
    }
    drop(host);
    stop.stop();
    let _ = thread.join();
}

/// One run: a guest, a two-page share with it on `transport`, `rounds`
/// round trips; each one's time.
fn run(host: &Host, shared: &std::path::Path, transport: &str, rounds: usize) -> Vec<Duration> {
    let file = shared.join(format!("offer-{transport}"));
    let exe = std::env::current_exe().unwrap().to_string_lossy().into_owned();
    let config = DomainConfig {
        name: format!("bench-{transport}"),
        program: vec![exe],
        env: vec![(ROLE.into(), transport.into()), ("SHARE_FILE".into(), file.to_string_lossy().into_owned())],
        cwd: None,
        netns: false,
        fuse: false,
    };
    let guest = host.toolstack().create(&config).unwrap().domid;
    let (service, hosted);
    let (shares, mut ours): (&dyn Shares, Box<dyn Share>) = if transport == "relay" {
        service = RelayShares::start(Box::new(host.grants()), Box::new(host.event_channels().unwrap()), GNTALLOC_LIMIT)
            .unwrap();
        let share = service.create(2, &[0, guest]).unwrap();
        std::fs::write(&file, service.offer(share, guest).unwrap().to_text()).unwrap();
        (&service, service.attach(share).unwrap())
    } else {
        hosted = host.shares();
        let share = hosted.create(2, &[0, guest]).unwrap();
        std::fs::write(&file, share.to_string()).unwrap();
        (&hosted, hosted.attach(share).unwrap())
    };
    for i in 0..2u64 {
        ours.register(TO_DOM0, &[Segment { offset: PAGE_SIZE as u64 + 64 * i, len: 64 }]).unwrap();
    }
    host.toolstack().unpause(guest).unwrap();
    // The guest raises 3 once its buffers are there.
    await_bits(&mut *ours, 1 << 3);
    ours.pages().shared_mem().write_bytes(0, b"ping");
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        ours.transfer(TO_GUEST, &[Segment { offset: 0, len: 4 }]).unwrap();
        loop {
            if !ours.take_completed().unwrap().is_empty() {
                break;
            }
            await_bits(&mut *ours, 1 << TRIGGER_TRANSFERRED);
        }
        times.push(start.elapsed());
    }
    shares.destroy(ours.share_ref()).unwrap();
    let _ = host.toolstack().destroy(guest);
    times
}

/// Waits (up to 20 s) until every bit of `want` was raised.
fn await_bits(share: &mut dyn Share, want: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = 0;
    while seen & want != want {
        assert!(Instant::now() < deadline, "triggers {want:#x} never came (saw {seen:#x})");
        share.wait(Some(Duration::from_millis(100))).unwrap();
        seen |= share.take_pending().unwrap();
    }
    seen
}

/// The guest: sends back every transfer it takes, until the share goes.
fn guest(transport: &str) -> i32 {
    let (host, _) = Host::from_guest_env().unwrap();
    let text = std::fs::read_to_string(std::env::var("SHARE_FILE").unwrap()).unwrap();
    let mut share: Box<dyn Share> = if transport == "relay" {
        let offer = RelayOffer::parse(text.trim()).unwrap();
        Box::new(
            RelayMember::accept(
                &mut host.grants(),
                Box::new(host.event_channels().unwrap()),
                Box::new(host.event_channels().unwrap()),
                &offer,
            )
            .unwrap(),
        )
    } else {
        Box::new(host.shares().attach_share(text.trim().parse().unwrap()).unwrap())
    };
    for i in 0..2u64 {
        share.register(TO_GUEST, &[Segment { offset: 64 * i, len: 64 }]).unwrap();
    }
    share.pages().shared_mem().write_bytes(PAGE_SIZE + 512, b"pong");
    share.trigger(3).unwrap();
    loop {
        let Ok(bits) = share.take_pending() else { return 0 };
        if bits & 1 << TRIGGER_CHANGED != 0 {
            return 0;
        }
        let Ok(done) = share.take_completed() else { return 0 };
        for _ in &done {
            if share.transfer(TO_DOM0, &[Segment { offset: PAGE_SIZE as u64 + 512, len: 4 }]).is_err() {
                return 0;
            }
        }
        if done.is_empty() && share.wait(Some(Duration::from_millis(200))).is_err() {
            return 0;
        }
    }
}
