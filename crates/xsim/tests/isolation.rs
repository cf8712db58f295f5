//! Hosted isolation: a guest that tries to reach dom0's sockets, or
//! another domain's or dom0's processes through /proc, is refused; under
//! the strongest isolation available (a uid per guest as root, which CI
//! is) and under user namespaces, where dom0's sockets refuse by peer
//! credentials and say so in their logs.

mod support;

use support::TestHost;
use xen_platform::hosted::Isolation;
use xs_peers::harness::{run, Test};
use xs_peers::Need;

/// A host under user namespaces (the tests that use it need
/// [`USER_NAMESPACES`]).
fn userns_host() -> TestHost {
    TestHost::up_with(Isolation::UserNamespace)
}

/// User namespaces this user may make (the harness reports the tests that
/// need them ignored otherwise).
const USER_NAMESPACES: Need = Need::Check {
    missing: "this user cannot make user namespaces (see /proc/sys/user/max_user_namespaces)",
    met: || Isolation::strongest() != Isolation::None,
};

/// A uid per guest: root, and the test programs reachable by other users.
const UID_PER_GUEST: Need = Need::Check {
    missing: "no uid per guest here: not root, or the build directory is under a directory other users \
              cannot search (such as /root)",
    met: || Isolation::strongest() == Isolation::Uid,
};

/// Runs the socket check in a guest of `host`.
fn try_dom0_sockets(host: &mut TestHost) -> String {
    let state = host.state.root().display().to_string();
    let domid = host.check("dom0-sockets", &[&state]);
    host.console(domid)
}

fn guest_cannot_use_dom0_sockets() {
    let mut host = TestHost::up();
    let console = try_dom0_sockets(&mut host);
    assert!(console.contains("xenstored.sock: "), "{console}");
}

fn guest_in_a_user_namespace_is_refused_by_peer_credentials_and_logged_within_a_rate() {
    let mut host = userns_host();
    let console = try_dom0_sockets(&mut host);
    assert!(console.contains("xenstored.sock: connected, then closed unanswered"), "{console}");
    assert!(console.contains("hypervisor.sock: connected, then closed unanswered"), "{console}");
    for (log, what) in [(host.state.xenstored_log(), "xenstored"), (host.state.hypervisor_log(), "the hypervisor")] {
        let log = std::fs::read_to_string(log).expect("log");
        let prefix = format!("refused a connection to {what} from ");
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(&prefix)).collect();
        // 31 tries: the first 10 of the burst, then the last one, a
        // second later, with the count of the 20 left out.
        assert_eq!(lines.len(), 11, "{log}");
        assert!(lines[0].contains("another user namespace (a guest's)"), "{log}");
        assert!(lines[10].contains("(20 more refused, not logged)"), "{log}");
    }
}

/// A sibling guest's process, xenstored's and the hypervisor's: the guest
/// may open none of their /proc files, take none of their descriptors,
/// signal none of them.
fn try_proc_files(mut host: TestHost) {
    let sibling = host.guest("sibling", &["demo"], false);
    let pids = [
        host.pid(sibling),
        xsim::host::pid_of(&host.state.xenstored_pid()).expect("xenstored's pid"),
        xsim::host::pid_of(&host.state.hypervisor_pid()).expect("the hypervisor's pid"),
    ]
    .map(|pid| pid.to_string());
    let args: Vec<&str> = pids.iter().map(String::as_str).collect();
    let domid = host.check("proc", &args);
    let console = host.console(domid);
    assert_eq!(console.matches(": refused: ").count(), 3, "{console}");
}

fn guest_cannot_open_other_domains_or_dom0s_proc_files() {
    try_proc_files(TestHost::up());
}

fn guest_in_a_user_namespace_cannot_open_other_domains_or_dom0s_proc_files() {
    try_proc_files(userns_host());
}

fn ordinary_guests_work_in_a_user_namespace() {
    let mut host = userns_host();
    host.check("relative", &[]);
    host.check("reconnect", &[]);
}

fn destroy_kills_what_a_guest_left_running_under_a_uid_per_guest() {
    let mut host = TestHost::up();
    // A grandchild in a session of its own, which outlives the guest's
    // own process: only its uid still ties it to the domain.
    let spec = xsim::DomainSpec {
        name: "leaver".into(),
        program: vec!["/bin/sh".into(), "-c".into(), "setsid sleep 300 & echo $!; sleep 300".into()],
        env: Vec::new(),
        paused: false,
        netns: false,
        fuse: false,
    };
    let domid = host.ts.create(&spec).expect("create").domid;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let leftover: u32 = loop {
        if let Ok(pid) = host.console(domid).trim().parse() {
            break pid;
        }
        assert!(std::time::Instant::now() < deadline, "no pid on the console");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(running(leftover), "the leftover is not running");
    host.ts.destroy(domid).expect("destroy");
    // SIGKILL is sent before destroy returns; the process ends when the
    // kernel next schedules it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while running(leftover) {
        let log = std::fs::read_to_string(host.state.hypervisor_log()).unwrap_or_default();
        assert!(std::time::Instant::now() < deadline, "pid {leftover} outlived its domain; hypervisor log:\n{log}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Whether `pid` is a live process (not gone, not a zombie).
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn main() -> std::process::ExitCode {
    run(vec![
        Test::new("guest_cannot_use_dom0_sockets", guest_cannot_use_dom0_sockets),
        Test::new(
            "guest_in_a_user_namespace_is_refused_by_peer_credentials_and_logged_within_a_rate",
            guest_in_a_user_namespace_is_refused_by_peer_credentials_and_logged_within_a_rate,
        )
        .needs(&[USER_NAMESPACES]),
        Test::new(
            "guest_cannot_open_other_domains_or_dom0s_proc_files",
            guest_cannot_open_other_domains_or_dom0s_proc_files,
        ),
        Test::new(
            "guest_in_a_user_namespace_cannot_open_other_domains_or_dom0s_proc_files",
            guest_in_a_user_namespace_cannot_open_other_domains_or_dom0s_proc_files,
        )
        .needs(&[USER_NAMESPACES]),
        Test::new("ordinary_guests_work_in_a_user_namespace", ordinary_guests_work_in_a_user_namespace)
            .needs(&[USER_NAMESPACES]),
        Test::new(
            "destroy_kills_what_a_guest_left_running_under_a_uid_per_guest",
            destroy_kills_what_a_guest_left_running_under_a_uid_per_guest,
        )
        .needs(&[UID_PER_GUEST]),
    ])
}
