//! A guest's own network namespace (`DomainConfig::netns`): loopback and
//! a TAP interface, `xsn0`, with the guest's xensnet MAC and address
//! ([`crate::share::lan_mac`], [`crate::share::lan_ip`]), owned by the
//! guest's user so that its xensnet driver can attach to it without
//! privilege; ICMP echo sockets allowed, so `ping` works unprivileged.
//!
//! A network namespace belongs to a thread: the guest is spawned from a
//! short-lived thread that made one, configured it with iproute2's `ip`
//! (its children inherit the thread's namespace) and then forks the
//! guest, which inherits it too. The hypervisor's own thread never
//! changes namespace. Addresses exist only inside the namespaces.

use std::io;
use std::process::{Command, Stdio};

use rustix::thread::UnshareFlags;

use crate::share::{lan_ip, lan_mac, LAN_PREFIX, LAN_TAP as TAP_NAME};
use crate::DomId;

/// Runs `spawn` in a thread inside a new network namespace set up for
/// `domid` (the TAP owned by `owner`).
pub(super) fn in_new_netns<T: Send>(
    domid: DomId,
    owner: u32,
    spawn: impl FnOnce() -> io::Result<T> + Send,
) -> io::Result<T> {
    if !rustix::process::geteuid().is_root() {
        return Err(io::Error::new(io::ErrorKind::PermissionDenied, "a network namespace needs a root hypervisor"));
    }
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: the namespace changes for this thread alone (a
                // network namespace is per thread), which exists only to
                // make the guest's and ends after the spawn; nothing else
                // runs on it.
                unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNET) }?;
                configure(domid, owner)?;
                spawn()
            })
            .join()
            .map_err(|_| io::Error::other("the network namespace's thread panicked"))?
    })
}

/// Brings up loopback and the guest's TAP in the calling thread's
/// namespace.
fn configure(domid: DomId, owner: u32) -> io::Result<()> {
    let mac = lan_mac(domid).iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    let address = format!("{}/{LAN_PREFIX}", lan_ip(domid));
    let owner = owner.to_string();
    ip(&["link", "set", "lo", "up"])?;
    ip(&["tuntap", "add", "dev", TAP_NAME, "mode", "tap", "user", &owner, "group", &owner])?;
    ip(&["link", "set", "dev", TAP_NAME, "address", &mac])?;
    ip(&["address", "add", &address, "dev", TAP_NAME])?;
    ip(&["link", "set", "dev", TAP_NAME, "up"])?;
    // Per namespace: the file is this thread's namespace's.
    std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 2147483647")?;
    Ok(())
}

/// Runs iproute2's `ip` with `args`; its error output on failure.
fn ip(args: &[&str]) -> io::Result<()> {
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
