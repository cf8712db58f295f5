//! The hosted end of a xensnet LAN member: frames carried between the
//! member's port on the LAN's share and its TAP interface. Guests run it
//! (`xsim-guest xensnet`), and dom0 (`xensnet`, in a network namespace of
//! its own).

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use xen_share::net::{LanPort, SLOT};

/// Carries frames both ways until `stop` (checked every 200 ms at
/// least), or the LAN drops this member (`EPERM`, `ENOENT`).
pub fn pump(mut port: LanPort, tap: OwnedFd, stop: &AtomicBool) -> io::Result<()> {
    let mut frame = vec![0u8; SLOT];
    let mut frames = Vec::new();
    let tick = Timespec { tv_sec: 0, tv_nsec: 200_000_000 };
    while !stop.load(Ordering::Relaxed) {
        {
            let mut fds =
                [PollFd::new(&tap, PollFlags::IN), PollFd::from_borrowed_fd(port.share().as_fd(), PollFlags::IN)];
            match poll(&mut fds, Some(&tick)) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        // Out: every frame the guest's stack queued.
        loop {
            match rustix::io::read(&tap, &mut frame) {
                Ok(0) | Err(Errno::AGAIN) => break,
                Ok(n) => {
                    // A frame that is not Ethernet-sized is the stack's
                    // error; dropped like any frame a wire refuses.
                    let _ = port.send(&frame[..n]);
                }
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        // In: every frame the LAN delivered.
        frames.clear();
        port.receive(&mut frames)?;
        for f in &frames {
            // A full TAP queue drops the frame, as a NIC's would.
            let _ = rustix::io::write(&tap, f);
        }
    }
    Ok(())
}
