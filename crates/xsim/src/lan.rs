//! The hosted end of a xensnet LAN member: frames carried between the
//! member's port on the LAN's share and its TAP interface. Guests run it
//! (`xsim-guest xensnet`), and dom0 (`xensnet`, in a network namespace of
//! its own).

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use xen_share::net::{LanPort, SLOT, TX_SLOTS};

/// Carries frames both ways until `stop` (checked every 200 ms at
/// least), or the LAN drops this member (`EPERM`, `ENOENT`).
pub fn pump(mut port: LanPort, tap: OwnedFd, stop: &AtomicBool) -> io::Result<()> {
    let mut batch = vec![vec![0u8; SLOT]; TX_SLOTS];
    let mut lens = [0usize; TX_SLOTS];
    let mut frames = Vec::new();
    let tick = Timespec { tv_sec: 0, tv_nsec: 200_000_000 };
    let now = Timespec { tv_sec: 0, tv_nsec: 0 };
    // Frames may wait that no wake-up will announce (the port stopped
    // taking under a flood): look again without waiting.
    let mut more = false;
    while !stop.load(Ordering::Relaxed) {
        {
            let mut fds =
                [PollFd::new(&tap, PollFlags::IN), PollFd::from_borrowed_fd(port.share().as_fd(), PollFlags::IN)];
            match poll(&mut fds, Some(if more { &now } else { &tick })) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        // Out: every frame the stack queued, a batch of them per call to
        // the transport.
        loop {
            let mut taken = 0;
            while taken < TX_SLOTS {
                match rustix::io::read(&tap, &mut batch[taken]) {
                    Ok(0) | Err(Errno::AGAIN) => break,
                    Ok(n) => {
                        lens[taken] = n;
                        taken += 1;
                    }
                    Err(Errno::INTR) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            if taken == 0 {
                break;
            }
            let frames: Vec<&[u8]> = batch.iter().zip(&lens).take(taken).map(|(f, &n)| &f[..n]).collect();
            // A frame that is not Ethernet-sized is the stack's error:
            // the batch is dropped like frames a wire refuses.
            let _ = port.send_many(&frames);
            if taken < TX_SLOTS {
                break;
            }
        }
        // In: every frame the LAN delivered.
        frames.clear();
        more = port.receive(&mut frames)?;
        for f in &frames {
            // A full TAP queue drops the frame, as a NIC's would.
            let _ = rustix::io::write(&tap, f);
        }
    }
    Ok(())
}

/// Makes `name`, this domain's end of a LAN where nobody else makes it
/// (real Xen: the hosted hypervisor makes a guest's): a TAP interface
/// with `domid`'s MAC and address ([`xen_platform::share::lan_mac`],
/// [`xen_platform::share::lan_ip`]), up; gone when the returned
/// descriptor closes. Needs root and an `ip` (iproute2's or busybox's).
pub fn make_tap(name: &str, domid: xen_platform::DomId) -> io::Result<OwnedFd> {
    use xen_platform::hosted::tap;
    use xen_platform::share::{lan_ip, lan_mac, LAN_PREFIX};
    let fd = tap::attach(name)?;
    let mac = lan_mac(domid).iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    tap::ip(&["link", "set", "dev", name, "address", &mac])?;
    tap::ip(&["addr", "add", &format!("{}/{LAN_PREFIX}", lan_ip(domid)), "dev", name])?;
    tap::ip(&["link", "set", "dev", name, "up"])?;
    Ok(fd)
}
