//! xensnet, the Xen Share LAN, end to end on a hosted host: guests in
//! network namespaces of their own (`xsim create --netns`) run the
//! xensnet driver (`xsim-guest xensnet`), dom0 makes the LAN with the
//! `vdevice` tool, and the guests' ordinary tools use it: `ping` between
//! three domains, a TCP transfer, a member added and one removed while
//! traffic flows.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{guest_program, TestHost};
use xen_platform::share::lan_ip;
use xen_platform::DomId;
use xs_peers::harness::{run, Test};
use xs_peers::{Need, IPROUTE2, PING, PYTHON3};
use xsim::DomainSpec;

/// Network namespaces and a uid per guest: root, and the programs
/// reachable by the guests' users.
const ROOT_AND_TUN: Need = Need::Check {
    missing: "not root, or no /dev/net/tun, or the build directory is not searchable by other users: \
              hosted guests get network namespaces and TAP interfaces from a root hypervisor",
    met: || {
        rustix::process::geteuid().is_root()
            && Path::new("/dev/net/tun").exists()
            && xen_platform::hosted::Isolation::strongest() == xen_platform::hosted::Isolation::Uid
    },
};

/// A directory the guests' users can read: the scripts and the go files.
fn shared_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    dir
}

/// Creates guest `name` in a network namespace running `script` (a shell
/// script in `dir`, which starts with the xensnet driver in the
/// background).
fn guest(host: &mut TestHost, dir: &Path, name: &str, script: &str) -> DomId {
    let path = dir.join(format!("{name}.sh"));
    let body = format!("set -u\nD={}\n\"{}\" xensnet &\n{script}\n", dir.display(), guest_program());
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let spec = DomainSpec {
        name: name.to_owned(),
        program: vec!["/bin/sh".into(), path.display().to_string()],
        env: Vec::new(),
        paused: false,
        netns: true,
        fuse: false,
    };
    host.ts.create(&spec).expect("xsim create --netns").domid
}

fn go(dir: &Path, name: &str, content: &str) {
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, content).unwrap();
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    std::fs::rename(tmp, dir.join(name)).unwrap();
}

fn three_guests_ping_each_other_over_a_lan() {
    let mut host = TestHost::up();
    let dir = shared_dir();
    let script = "until [ -e $D/go ]; do sleep 0.05; done\n\
                  for ip in $(cat $D/go); do ping -c 3 -i 0.2 -W 2 $ip >/dev/null || { echo PING-FAILED $ip; exit 1; }; done\n\
                  echo PINGS-OK\nwait";
    let ids: Vec<DomId> = ["a", "b", "c"].iter().map(|n| guest(&mut host, dir.path(), n, script)).collect();
    let names: Vec<String> = ids.iter().map(|d| d.to_string()).collect();
    // dom0 too: its end is a TAP in a network namespace of its own.
    let device = host.vdevice(&["--create", "net", "0", &names[0], &names[1], &names[2]]);
    let device = device.trim();
    let list = host.vdevice(&["--list"]);
    assert_eq!(list.matches("acknowledge,driver,driver-ok").count(), 3, "{list}");
    let netns = dom0_netns(&list);
    let ips: Vec<String> = ids.iter().chain([&0]).map(|&d| lan_ip(d).to_string()).collect();
    assert_eq!(ips[3], "10.88.255.254");
    go(dir.path(), "go", &ips.join(" "));
    for &id in &ids {
        host.wait_console(id, "PINGS-OK");
    }
    for ip in &ips[..3] {
        dom0_ping(&netns, ip).unwrap();
    }
    // Off and on again: the namespace goes with dom0's end and comes back.
    host.vdevice(&["--remove", device, "0"]);
    assert!(!Path::new("/run/netns").join(&netns).exists(), "{netns} outlived dom0's end");
    assert!(!host.vdevice(&["--list"]).contains("domain 0"));
    host.vdevice(&["--add", device, "0"]);
    dom0_ping(&netns, &ips[1]).unwrap();
    host.vdevice(&["--destroy", device]);
    assert_eq!(host.vdevice(&["--list"]), "");
    assert!(!Path::new("/run/netns").join(&netns).exists(), "{netns} outlived the LAN");
}

/// The network namespace of dom0's end of the LAN `vdevice --list`
/// shows.
fn dom0_netns(list: &str) -> String {
    let line = list.lines().find(|l| l.trim_start().starts_with("domain 0:")).unwrap_or_else(|| panic!("{list}"));
    line.rsplit(' ').next().unwrap().to_owned()
}

/// Pings `ip` from dom0's end of a LAN, in `netns`.
fn dom0_ping(netns: &str, ip: &str) -> Result<(), String> {
    let out = Command::new("ip")
        .args(["netns", "exec", netns, "ping", "-c", "3", "-i", "0.2", "-W", "2", ip])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("dom0 ping {ip}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

/// Sends 4 MiB to port 7000 of the address in $D/tcp and prints its hash.
const TCP_CLIENT: &str = "import hashlib, socket, sys
data = bytes((i * 7 + i // 251) % 256 for i in range(4 << 20))
s = socket.create_connection((open(sys.argv[1]).read().strip(), 7000), timeout=30)
s.sendall(data)
s.close()
print('SENT', len(data), hashlib.sha256(data).hexdigest())";

/// Receives one connection on port 7000 and prints what came.
const TCP_SERVER: &str = "import hashlib, socket
s = socket.socket()
s.bind(('0.0.0.0', 7000))
s.listen(1)
c, _ = s.accept()
h, n = hashlib.sha256(), 0
while True:
    d = c.recv(65536)
    if not d:
        break
    h.update(d)
    n += len(d)
print('RECEIVED', n, h.hexdigest())";

fn tcp_and_membership_changes_under_traffic() {
    let mut host = TestHost::up();
    let dir = shared_dir();
    let d = dir.path();
    std::fs::write(d.join("client.py"), TCP_CLIENT).unwrap();
    std::fs::write(d.join("server.py"), TCP_SERVER).unwrap();
    // a: TCP to b, then a steady ping of c while members come and go,
    // then a ping of b (removed by then).
    let a = guest(
        &mut host,
        d,
        "a",
        "until [ -e $D/go ]; do sleep 0.05; done\n\
         python3 $D/client.py $D/tcp\n\
         ping -c 80 -i 0.05 -W 1 $(cat $D/ip-c) | grep 'packets transmitted'\n\
         echo PING-DONE\n\
         until [ -e $D/go2 ]; do sleep 0.05; done\n\
         ping -c 3 -i 0.2 -W 1 $(cat $D/tcp) >/dev/null; echo PING-B-EXIT=$?\nwait",
    );
    let b = guest(&mut host, d, "b", "python3 $D/server.py\nwait");
    let c = guest(&mut host, d, "c", "wait");
    let device = host.vdevice(&["--create", "net", &a.to_string(), &b.to_string(), &c.to_string()]);
    let device = device.trim();
    go(d, "tcp", &lan_ip(b).to_string());
    go(d, "ip-c", &lan_ip(c).to_string());
    go(d, "go", "");

    let sent = host.wait_console(a, "SENT ");
    let received = host.wait_console(b, "RECEIVED ");
    let line = |text: &str, tag: &str| text.lines().find(|l| l.starts_with(tag)).unwrap()[tag.len()..].to_owned();
    assert_eq!(line(&sent, "SENT "), line(&received, "RECEIVED "), "what b received is what a sent");

    // While a pings c: d joins, b leaves.
    let new = guest(
        &mut host,
        d,
        "d",
        "until [ -e $D/go3 ]; do sleep 0.05; done\n\
                                        ping -c 3 -i 0.2 -W 2 $(cat $D/go3) >/dev/null && echo D-REACHES-C\nwait",
    );
    std::thread::sleep(Duration::from_millis(500));
    host.vdevice(&["--add", device, &new.to_string()]);
    host.vdevice(&["--remove", device, &b.to_string()]);
    let console = host.wait_console(a, "PING-DONE");
    let stats = console.lines().find(|l| l.contains("packets transmitted")).unwrap();
    let received: u32 = stats.split(", ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(received >= 76, "a's pings of c while members changed: {stats}");
    go(d, "go3", &lan_ip(c).to_string());
    host.wait_console(new, "D-REACHES-C");
    // b is cut off.
    go(d, "go2", "");
    host.wait_console(a, "PING-B-EXIT=1");
    let list = host.vdevice(&["--list"]);
    assert!(!list.contains(&format!("domain {b} ")), "{list}");
    assert!(list.contains(&format!("domain {new} ")), "{list}");
}

/// The README's command for Xen Share (`scripts/share-demo`: the LAN and
/// the disk), over this build's programs.
fn the_share_demo_runs() {
    let bin = Path::new(env!("CARGO_BIN_EXE_xsim")).parent().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/share-demo");
    let out = Command::new(script).env("DEMO_BIN", bin).env_remove("XSIM_STATE").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("share-demo: three guests and dom0 pinged each other over xensnet"), "{stdout}");
    assert!(stdout.contains("read back: written on a xensblk disk"), "{stdout}");
    assert!(stdout.contains("disk-user: fsck clean"), "{stdout}");
    // Each guest pinged the two others and dom0, dom0 each guest: two
    // answers each time.
    assert_eq!(stdout.matches("2 packets transmitted, 2 received").count(), 12, "{stdout}");
}

/// The guest's TAP comes attached, on a descriptor named by
/// `XSIM_TAP_FD`: the guest needs no access to `/dev/net/tun` (root's
/// alone on many hosts, where xensnet could not open the interface). A
/// TAP has a carrier only while a descriptor is attached to it.
fn a_guest_inherits_its_tap_attached() {
    let mut host = TestHost::up();
    let dir = shared_dir();
    let domid = guest(
        &mut host,
        dir.path(),
        "tap",
        "echo link=$(ip -o link show xsn0)\n\
         echo fd=$(readlink /proc/self/fd/$XSIM_TAP_FD)\n\
         echo END",
    );
    let console = host.wait_console(domid, "END");
    let line = |key: &str| console.lines().find(|l| l.starts_with(key)).unwrap_or_default().to_owned();
    assert!(line("link=").contains("LOWER_UP") && !line("link=").contains("NO-CARRIER"), "{console}");
    assert_eq!(line("fd="), "fd=/dev/net/tun", "{console}");
}

/// A LAN with dom0 whose creation fails (a guest that runs no bus never
/// acknowledges) leaves nothing behind: dom0's end stopped, its network
/// namespace gone, no device listed, and the same LAN can be made again.
fn a_failed_lan_creation_with_dom0_undoes_dom0s_end() {
    let mut host = TestHost::up();
    let spec = DomainSpec {
        name: "mute".to_owned(),
        program: vec!["/bin/sleep".into(), "600".into()],
        env: Vec::new(),
        paused: false,
        netns: false,
        fuse: false,
    };
    let mute = host.ts.create(&spec).expect("xsim create").domid.to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_vdevice"))
        .arg("--state")
        .arg(host.state.root())
        .args(["--timeout", "0.5", "--create", "net", "0", &mute])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("nothing created") && stderr.contains(&format!("domain {mute}")), "{stderr}");
    // dom0's end had started (its namespace is named as it did).
    let netns = stderr
        .split("in the network namespace ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("dom0's end never started: {stderr}"))
        .to_owned();
    assert!(!Path::new("/run/netns").join(&netns).exists(), "{netns} outlived the failed creation");
    let running = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .any(|cmdline| String::from_utf8_lossy(&cmdline).contains(&netns));
    assert!(!running, "dom0's xensnet for {netns} still runs");
    assert_eq!(host.vdevice(&["--list"]), "");
    // Nothing is left half made: a LAN of dom0 alone comes up and goes.
    let device = host.vdevice(&["--create", "net", "0"]);
    host.vdevice(&["--destroy", device.trim()]);
    assert_eq!(host.vdevice(&["--list"]), "");
}

/// dom0's end makes its network namespace and will not take one that
/// exists (it would remove it when it ends): it says so and leaves it.
fn dom0s_end_will_not_take_an_existing_namespace() {
    let host = TestHost::up();
    let name = format!("xsim-test-taken-{}", std::process::id());
    let ip = |args: &[&str]| Command::new("ip").args(args).status().unwrap().success();
    assert!(ip(&["netns", "add", &name]));
    let out = Command::new(env!("CARGO_BIN_EXE_xensnet"))
        .arg("--state")
        .arg(host.state.root())
        .args(["--share", "1", "--netns", &name])
        .output()
        .unwrap();
    let kept = Path::new("/run/netns").join(&name).exists();
    ip(&["netns", "del", &name]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("the network namespace {name} exists already")), "{stderr}");
    assert!(kept, "xensnet removed a namespace it did not make");
}

fn main() -> std::process::ExitCode {
    let needs = [ROOT_AND_TUN, PING, IPROUTE2];
    run(vec![
        Test::new("a_guest_inherits_its_tap_attached", a_guest_inherits_its_tap_attached)
            .needs(&[ROOT_AND_TUN, IPROUTE2]),
        Test::new("three_guests_ping_each_other_over_a_lan", three_guests_ping_each_other_over_a_lan).needs(&needs),
        Test::new("tcp_and_membership_changes_under_traffic", tcp_and_membership_changes_under_traffic).needs(&[
            ROOT_AND_TUN,
            PING,
            IPROUTE2,
            PYTHON3,
        ]),
        Test::new("a_failed_lan_creation_with_dom0_undoes_dom0s_end", a_failed_lan_creation_with_dom0_undoes_dom0s_end)
            .needs(&[ROOT_AND_TUN, IPROUTE2]),
        Test::new("dom0s_end_will_not_take_an_existing_namespace", dom0s_end_will_not_take_an_existing_namespace)
            .needs(&[ROOT_AND_TUN, IPROUTE2]),
        Test::new("the_share_demo_runs", the_share_demo_runs).needs(&[
            ROOT_AND_TUN,
            PING,
            IPROUTE2,
            Need::Package { name: "e2fsprogs", file: "/usr/sbin/mke2fs" },
        ]),
    ])
}
