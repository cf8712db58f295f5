//! TAP interfaces, the hosted end of a xensnet LAN: a member's frames go
//! between its share and the TAP of its network namespace, where the
//! kernel's stack and ordinary tools use them.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Stdio};

use rustix::fs::{open, Mode, OFlags};
use rustix::io::Errno;

use crate::share::{lan_ip, lan_mac, LAN_PREFIX, LAN_TAP};
use crate::DomId;

/// Sets up the calling thread's (new) network namespace for `domid`'s
/// end of a LAN: loopback up, the persistent TAP [`LAN_TAP`] (owned by
/// user `owner` if given, so that its driver may attach again without
/// privilege) with `domid`'s MAC and address, ICMP echo sockets allowed
/// to every user (so `ping` works unprivileged); returns a descriptor
/// attached to the TAP. Needs root, and iproute2's `ip`.
pub fn set_up_lan_namespace(domid: DomId, owner: Option<u32>) -> io::Result<OwnedFd> {
    let mac = lan_mac(domid).iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    let address = format!("{}/{LAN_PREFIX}", lan_ip(domid));
    ip(&["link", "set", "lo", "up"])?;
    match owner.map(|o| o.to_string()) {
        Some(o) => ip(&["tuntap", "add", "dev", LAN_TAP, "mode", "tap", "user", &o, "group", &o])?,
        None => ip(&["tuntap", "add", "dev", LAN_TAP, "mode", "tap"])?,
    }
    ip(&["link", "set", "dev", LAN_TAP, "address", &mac])?;
    ip(&["address", "add", &address, "dev", LAN_TAP])?;
    ip(&["link", "set", "dev", LAN_TAP, "up"])?;
    // Per namespace: the file is this thread's namespace's.
    std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 2147483647")?;
    attach(LAN_TAP)
}

/// Runs iproute2's `ip` with `args` (in the calling thread's network
/// namespace, which the child inherits); its error output on failure.
pub fn ip(args: &[&str]) -> io::Result<()> {
    let program = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file())
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "iproute2's ip is not installed"))?;
    let output = Command::new(program).args(args).stdin(Stdio::null()).output()?;
    if output.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim())))
    }
}

/// Attaches to the TAP interface `name` of the calling thread's network
/// namespace (making it, if it does not exist and the caller may):
/// frames without a packet-info header, non-blocking. Needs access to
/// `/dev/net/tun`, and, for an interface that exists, to own it or be
/// root.
pub fn attach(name: &str) -> io::Result<OwnedFd> {
    let fd = open("/dev/net/tun", OFlags::RDWR | OFlags::CLOEXEC | OFlags::NONBLOCK, Mode::empty())?;
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.is_empty() || name.len() >= request.ifr_name.len() {
        return Err(Errno::NAMETOOLONG.into());
    }
    for (dst, src) in request.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = libc::c_char::from_ne_bytes([src]);
    }
    request.ifr_ifru.ifru_flags = libc::c_short::try_from(libc::IFF_TAP | libc::IFF_NO_PI).map_err(|_| Errno::INVAL)?;
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which
    // `request` is, for the call's duration; `fd` is an open tun device.
    let result = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut request) };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}
