//! Xen Share's LAN (group [`GROUP`], `--only lan`) against the kernel's
//! floor, a veth pair between two network namespaces, in one run:
//!
//! - **Ping round trip**: `ping -q -c N -i 0.005` from one end to the
//!   other; the average `rtt` ping reports. On the LAN, dom0's end (its
//!   `xensnet`, in a namespace of its own) pings a guest running the
//!   xensnet driver (`xsim create --netns`, `vdevice --create net 0
//!   GUEST`); on the veth pair, one namespace pings the other.
//! - **TCP throughput**: one connection carrying [`TCP_BYTES`] from
//!   dom0's end to a receiver in the guest (Python: it answers once it has
//!   every byte), timed from connect to that answer; the same between the
//!   two veth namespaces.
//!
//! Needs root (namespaces), iproute2, iputils-ping and python3; without
//! them the group is not measured and the run says why (an observation).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use xen_platform::hosted::tap::ip;
use xsim::{host, DomainSpec, StateDir, Toolstack};

use crate::hosted_block::beside;
use crate::progress;
use crate::results::{Results, OURS};
use crate::workloads::latency::MACHINE;
use crate::workloads::Config;

/// The figures' group.
pub const GROUP: &str = "Xen Share LAN";

/// Bytes of one TCP transfer.
pub const TCP_BYTES: usize = 64 << 20;

/// The receiver: takes one connection on port 7000, reads until the
/// sender closes its side, answers the byte count.
const RECEIVER: &str = "import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', 7000))
s.listen(1)
print('LISTENING', flush=True)
c, _ = s.accept()
n = 0
while True:
    b = c.recv(1 << 20)
    if not b:
        break
    n += len(b)
c.sendall(str(n).encode())
c.close()";

/// The sender (argv: address, bytes): connects, sends, half-closes,
/// waits for the count; prints the seconds it took.
const SENDER: &str = "import socket, sys, time
data = b'x' * (1 << 20)
left = int(sys.argv[2])
t = time.monotonic()
s = socket.create_connection((sys.argv[1], 7000), timeout=60)
while left > 0:
    chunk = data[:min(left, len(data))]
    s.sendall(chunk)
    left -= len(chunk)
s.shutdown(socket.SHUT_WR)
answer = s.recv(64)
print('SECONDS', time.monotonic() - t, 'GOT', answer.decode())";

/// Pings and TCP transfers per repetition.
fn pings(cfg: Config) -> u32 {
    if cfg.quick {
        20
    } else {
        200
    }
}

/// Measures both sides `reps` times.
pub fn run(dir: &Path, cfg: Config, reps: usize, res: &mut Results) -> Result<()> {
    if let Some(missing) = missing() {
        res.observations.push(format!("{GROUP}: not measured: {missing}"));
        return Ok(());
    }
    let (programs, _) = crate::hosted::programs()?;
    let vdevice = beside("vdevice")?;
    let guest_program = beside("xsim-guest")?;
    let state = StateDir::at(dir.join("xsim-lan"));
    host::up(&state, &programs)?;
    let measured = (|| -> Result<()> {
        let mut ts = Toolstack::connect(&state)?;
        let mut lan = Lan::up(&mut ts, &state, &vdevice, &guest_program)?;
        let veth = Veth::up()?;
        for rep in 0..reps {
            progress::step(format_args!("lan: repetition {} of {reps}", rep + 1));
            let n = pings(cfg);
            res.add(GROUP, "ping round trip", "µs", false, OURS, ping(&lan.dom0_netns, &lan.guest_ip, n)?);
            res.add(GROUP, "ping round trip", "µs", false, MACHINE, ping(&veth.a, Veth::B_IP, n)?);
            let bytes = if cfg.quick { TCP_BYTES / 8 } else { TCP_BYTES };
            let ours = lan.tcp(&state, bytes)?;
            let floor = veth.tcp(bytes)?;
            res.add(GROUP, "TCP, one connection", "MB/s", true, OURS, ours);
            res.add(GROUP, "TCP, one connection", "MB/s", true, MACHINE, floor);
        }
        lan.down(&mut ts, &state, &vdevice)
    })();
    let down = host::down(&state);
    measured?;
    down.map(|_| ())
}

/// What this machine lacks for the LAN's figures, if anything.
pub fn missing() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("the namespaces need root".into());
    }
    ["ip", "ping", "python3"]
        .into_iter()
        .find(|tool| !which(tool))
        .map(|tool| format!("{tool} is missing (iproute2, iputils-ping, python3)"))
}

/// Whether `tool` is on the PATH.
fn which(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
}

/// Runs `ip netns exec NETNS ARGS...`; its stdout.
fn in_netns(netns: &str, args: &[&str]) -> Result<String> {
    let out = Command::new("ip").args(["netns", "exec", netns]).args(args).output()?;
    if !out.status.success() {
        bail!(
            "{} in {netns}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The average round trip, in microseconds, of `n` pings from `netns`.
fn ping(netns: &str, address: &str, n: u32) -> Result<f64> {
    let out = in_netns(netns, &["ping", "-q", "-c", &n.to_string(), "-i", "0.005", "-W", "2", address])?;
    parse_rtt_avg_ms(&out).map(|ms| ms * 1000.0).with_context(|| format!("no rtt line in\n{out}"))
}

/// The average of ping's `rtt min/avg/max/mdev = a/b/c/d ms` line.
pub fn parse_rtt_avg_ms(out: &str) -> Option<f64> {
    let line = out.lines().find(|l| l.starts_with("rtt ") || l.starts_with("round-trip"))?;
    let values = line.split('=').nth(1)?.trim();
    values.split('/').nth(1)?.trim().parse().ok()
}

/// The sender's `SECONDS s GOT n` line: MB/s, if the receiver got them
/// all.
pub fn parse_transfer(out: &str, bytes: usize) -> Option<f64> {
    let mut words = out.split_whitespace();
    let seconds: f64 = words.find(|w| *w == "SECONDS").and_then(|_| words.next())?.parse().ok()?;
    let got: usize = words.find(|w| *w == "GOT").and_then(|_| words.next())?.parse().ok()?;
    #[allow(clippy::cast_precision_loss)] // 64 MiB
    (got == bytes && seconds > 0.0).then(|| bytes as f64 / 1e6 / seconds)
}

/// A LAN of dom0 and one guest.
struct Lan {
    device: String,
    /// Transfers done: the guest's receiver for the next one is listening
    /// once its console has one more `LISTENING` line.
    transfers: usize,
    guest: u16,
    guest_ip: String,
    dom0_netns: String,
}

impl Lan {
    fn up(ts: &mut Toolstack, state: &StateDir, vdevice: &Path, guest_program: &Path) -> Result<Lan> {
        // The guest: its driver, then a receiver for each transfer the
        // benchmark asks for (a file per transfer in its working
        // directory would need a shared directory; a loop is enough).
        let script = format!(
            "'{}' xensnet &\nwhile true; do python3 -c \"{}\" || exit 1; done",
            guest_program.display(),
            RECEIVER.replace('"', "\\\"")
        );
        let spec = DomainSpec {
            name: "xsb-lan".into(),
            program: vec!["/bin/sh".into(), "-c".into(), script],
            env: Vec::new(),
            paused: false,
            netns: true,
            fuse: false,
        };
        let guest = ts.create(&spec)?.domid;
        let root = state.root().to_string_lossy().into_owned();
        let out =
            Command::new(vdevice).args(["--state", &root, "--create", "net", "0", &guest.to_string()]).output()?;
        ensure!(out.status.success(), "vdevice --create net: {}", String::from_utf8_lossy(&out.stderr).trim());
        let device = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let list = Command::new(vdevice).args(["--state", &root, "--list"]).output()?;
        let list = String::from_utf8_lossy(&list.stdout).into_owned();
        let dom0_netns = list
            .lines()
            .find(|l| l.trim_start().starts_with("domain 0:"))
            .and_then(|l| l.rsplit(' ').next())
            .with_context(|| format!("no dom0 end in\n{list}"))?
            .to_owned();
        let guest_ip = xen_platform::share::lan_ip(guest).to_string();
        // The first pings also fill the neighbour caches.
        let deadline = Instant::now() + Duration::from_secs(20);
        while in_netns(&dom0_netns, &["ping", "-q", "-c", "1", "-W", "1", &guest_ip]).is_err() {
            ensure!(Instant::now() < deadline, "the guest never answered on the LAN");
        }
        Ok(Lan { device, transfers: 0, guest, guest_ip, dom0_netns })
    }

    /// One transfer from dom0's end to the guest's receiver; MB/s.
    fn tcp(&mut self, state: &StateDir, bytes: usize) -> Result<f64> {
        let console = state.console(self.guest);
        let listening = || std::fs::read_to_string(&console).unwrap_or_default().matches("LISTENING").count();
        let deadline = Instant::now() + Duration::from_secs(20);
        while listening() <= self.transfers {
            ensure!(Instant::now() < deadline, "the guest's receiver never listened");
            std::thread::sleep(Duration::from_millis(5));
        }
        self.transfers += 1;
        let out = in_netns(&self.dom0_netns, &["python3", "-c", SENDER, &self.guest_ip, &bytes.to_string()])?;
        parse_transfer(&out, bytes).with_context(|| format!("the transfer over the LAN: {out}"))
    }

    fn down(self, ts: &mut Toolstack, state: &StateDir, vdevice: &Path) -> Result<()> {
        let root = state.root().to_string_lossy().into_owned();
        let out = Command::new(vdevice).args(["--state", &root, "--destroy", &self.device]).output()?;
        ensure!(out.status.success(), "vdevice --destroy: {}", String::from_utf8_lossy(&out.stderr).trim());
        ts.destroy(self.guest)
    }
}

/// Two network namespaces joined by a veth pair, removed when dropped.
struct Veth {
    a: String,
    b: String,
}

impl Veth {
    const A_IP: &'static str = "10.89.0.1";
    const B_IP: &'static str = "10.89.0.2";

    fn up() -> Result<Veth> {
        let tag = std::process::id();
        let veth = Veth { a: format!("xsb-veth-a-{tag}"), b: format!("xsb-veth-b-{tag}") };
        ip(&["netns", "add", &veth.a])?;
        ip(&["netns", "add", &veth.b])?;
        ip(&["-n", &veth.a, "link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", &veth.b])?;
        for (ns, address, dev) in [(&veth.a, Veth::A_IP, "v0"), (&veth.b, Veth::B_IP, "v1")] {
            ip(&["-n", ns, "address", "add", &format!("{address}/24"), "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(veth)
    }

    /// One transfer from namespace a to a receiver in b; MB/s.
    fn tcp(&self, bytes: usize) -> Result<f64> {
        let mut receiver: Child = Command::new("ip")
            .args(["netns", "exec", &self.b, "python3", "-c", RECEIVER])
            .stdout(Stdio::piped())
            .spawn()?;
        // Listening once it says so.
        let mut line = String::new();
        let stdout = receiver.stdout.take().context("the receiver's output")?;
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)?;
        ensure!(line.starts_with("LISTENING"), "the veth receiver said {line:?}");
        let out = in_netns(&self.a, &["python3", "-c", SENDER, Veth::B_IP, &bytes.to_string()]);
        let _ = receiver.wait();
        let out = out?;
        parse_transfer(&out, bytes).with_context(|| format!("the transfer over veth: {out}"))
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.a]);
        let _ = ip(&["netns", "del", &self.b]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_summary_gives_the_average() {
        let out = "--- 10.88.0.1 ping statistics ---\n20 packets transmitted, 20 received, 0% packet loss, time 97ms\n\
                   rtt min/avg/max/mdev = 0.101/0.129/0.301/0.040 ms\n";
        assert_eq!(parse_rtt_avg_ms(out), Some(0.129));
        assert_eq!(parse_rtt_avg_ms("100% packet loss\n"), None);
    }

    #[test]
    fn a_transfer_counts_only_when_every_byte_arrived() {
        assert_eq!(parse_transfer("SECONDS 2.0 GOT 8000000\n", 8_000_000), Some(4.0));
        assert_eq!(parse_transfer("SECONDS 2.0 GOT 7999999\n", 8_000_000), None);
        assert_eq!(parse_transfer("Traceback\n", 8_000_000), None);
    }
}
