//! Event channels over `/dev/xen/evtchn`.
//!
//! How Linux's device works (`drivers/xen/evtchn.c`): each open file holds
//! the ports bound through it. When an event arrives on one, the kernel
//! masks the port and queues its number; `read` returns the queued numbers
//! (`u32` each), `EAGAIN` when there are none on a non-blocking file, and
//! the file polls readable while the queue is not empty. Writing port
//! numbers back unmasks them: that is how a port is re-armed. The queue is
//! sized to hold every bound port once, so it cannot overflow while ports
//! are re-armed only after being read; if it ever does, `read` fails with
//! `EFBIG` until `IOCTL_EVTCHN_RESET`, and this handle then reports (and
//! re-arms) every port it holds, since which ones fired is lost.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use rustix::fs::{fcntl_getfl, fcntl_setfl, fstat, FileType, OFlags};
use rustix::io::Errno;

use super::abi::{
    EvtchnBindInterdomain, EvtchnBindUnboundPort, EvtchnBindVirq, EvtchnPort, IOCTL_EVTCHN_BIND_INTERDOMAIN,
    IOCTL_EVTCHN_BIND_UNBOUND_PORT, IOCTL_EVTCHN_BIND_VIRQ, IOCTL_EVTCHN_NOTIFY, IOCTL_EVTCHN_RESET,
    IOCTL_EVTCHN_UNBIND,
};
use super::{context, ioctl, non_negative, open_device, EVTCHN_DEVICE};
use crate::{Binding, BoundPort, DomId, EventChannelParts, EventChannels, IntoPartsError, Notifier, Port, Virq};

/// Ports read or written per system call (a page of `u32`s, the most the
/// device takes at once).
const BATCH: usize = 1024;

/// An open `/dev/xen/evtchn`: one handle on event channels.
///
/// Its [`AsFd`] descriptor is the device file itself, which polls readable
/// while a bound port is pending. [`Notifier`]s share the file, so they
/// keep working from any thread; dropping the handle unbinds every port
/// it bound (closing the file would too, once no notifier holds it).
///
/// # Adoption
///
/// [`EventChannels::into_parts`] gives one descriptor, a duplicate of the
/// device file (the bindings belong to the open file, not to the
/// descriptor), and the ports; [`XenEventChannels::adopt`] rebuilds a
/// handle from them, in this process or, across `exec`, in another.
/// Events that arrived in between stay queued in the file.
pub struct XenEventChannels {
    file: Arc<OwnedFd>,
    ports: BTreeMap<Port, Binding>,
}

impl XenEventChannels {
    /// Opens `/dev/xen/evtchn` (read-write, close-on-exec, non-blocking).
    pub fn open() -> io::Result<XenEventChannels> {
        XenEventChannels::open_at(Path::new(EVTCHN_DEVICE))
    }

    /// Opens the device at `path`.
    pub(crate) fn open_at(path: &Path) -> io::Result<XenEventChannels> {
        let file = open_device(path, true, "is this a Xen domain with the xen-evtchn module loaded?")?;
        Ok(XenEventChannels { file: Arc::new(file), ports: BTreeMap::new() })
    }

    /// Rebuilds a handle from the parts [`EventChannels::into_parts`] gave
    /// (one descriptor of the device; see the type's documentation). The
    /// descriptor is made non-blocking. `EINVAL` if there is not exactly
    /// one descriptor or it is not a character device.
    pub fn adopt(parts: EventChannelParts) -> io::Result<XenEventChannels> {
        let EventChannelParts { fds, ports } = parts;
        let [file]: [OwnedFd; 1] = fds.try_into().map_err(|_| Errno::INVAL)?;
        if FileType::from_raw_mode(fstat(&file)?.st_mode) != FileType::CharacterDevice {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "the adopted descriptor is not /dev/xen/evtchn"));
        }
        fcntl_setfl(&file, fcntl_getfl(&file)? | OFlags::NONBLOCK)?;
        let ports = ports.into_iter().map(|bound| (bound.port, bound.binding)).collect();
        Ok(XenEventChannels { file: Arc::new(file), ports })
    }

    /// Runs a bind ioctl and records the port it returns.
    fn bind<T>(&mut self, request: u32, mut arg: T, binding: Binding, what: &str) -> io::Result<Port> {
        // SAFETY: `arg` is the structure `request` names (the callers pair
        // them), alive across the call; the device only reads it.
        let result = unsafe { ioctl(self.file.as_fd(), request, &mut arg) };
        let port = non_negative(result.map_err(|e| context(e, what))?)?;
        self.ports.insert(port, binding);
        Ok(port)
    }

    /// Unmasks `ports` (writes them back to the device).
    fn rearm(&self, ports: &[Port]) -> io::Result<()> {
        let mut bytes = [0u8; BATCH * size_of::<Port>()];
        for chunk in ports.chunks(BATCH) {
            for (slot, port) in bytes.chunks_exact_mut(size_of::<Port>()).zip(chunk) {
                slot.copy_from_slice(&port.to_ne_bytes());
            }
            let bytes = &bytes[..size_of_val(chunk)];
            let mut written = 0;
            while written < bytes.len() {
                match rustix::io::write(self.file.as_fd(), &bytes[written..]) {
                    Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "re-arming event channels")),
                    Ok(n) => written += n,
                    Err(Errno::INTR) => continue,
                    Err(e) => return Err(context(e.into(), "re-arming event channels")),
                }
            }
        }
        Ok(())
    }
}

/// The ports in bytes read from the device (whole `u32`s, native order).
fn parse_ports(bytes: &[u8], out: &mut Vec<Port>) {
    for chunk in bytes.chunks_exact(size_of::<Port>()) {
        let mut port = [0u8; size_of::<Port>()];
        port.copy_from_slice(chunk);
        out.push(Port::from_ne_bytes(port));
    }
}

impl EventChannels for XenEventChannels {
    fn alloc_unbound(&mut self, remote: DomId) -> io::Result<Port> {
        let arg = EvtchnBindUnboundPort { remote_domain: u32::from(remote) };
        let what = format!("allocating an event channel for domain {remote}");
        self.bind(IOCTL_EVTCHN_BIND_UNBOUND_PORT, arg, Binding::Unbound { remote }, &what)
    }

    fn bind_interdomain(&mut self, remote: DomId, remote_port: Port) -> io::Result<Port> {
        let arg = EvtchnBindInterdomain { remote_domain: u32::from(remote), remote_port };
        let what = format!("binding port {remote_port} of domain {remote}");
        self.bind(IOCTL_EVTCHN_BIND_INTERDOMAIN, arg, Binding::Interdomain { remote, remote_port }, &what)
    }

    fn bind_virq(&mut self, virq: Virq) -> io::Result<Port> {
        let arg = EvtchnBindVirq { virq: virq.number() };
        let what = format!("binding virtual interrupt {}", virq.number());
        self.bind(IOCTL_EVTCHN_BIND_VIRQ, arg, Binding::Virq(virq), &what)
    }

    fn unbind(&mut self, port: Port) -> io::Result<()> {
        if self.ports.remove(&port).is_none() {
            return Err(Errno::INVAL.into());
        }
        let mut arg = EvtchnPort { port };
        // SAFETY: IOCTL_EVTCHN_UNBIND reads one `ioctl_evtchn_unbind`,
        // which `arg` is, alive across the call.
        unsafe { ioctl(self.file.as_fd(), IOCTL_EVTCHN_UNBIND, &mut arg) }
            .map_err(|e| context(e, format!("unbinding event channel {port}")))?;
        Ok(())
    }

    fn notifier(&self, port: Port) -> io::Result<Notifier> {
        match self.ports.get(&port) {
            None | Some(Binding::Virq(_)) => return Err(Errno::INVAL.into()),
            Some(_) => {}
        }
        let file = Arc::clone(&self.file);
        Ok(Notifier::new(move || {
            let mut arg = EvtchnPort { port };
            // SAFETY: IOCTL_EVTCHN_NOTIFY reads one `ioctl_evtchn_notify`,
            // which `arg` is, alive across the call; the file is shared
            // and stays open while this notifier lives.
            unsafe { ioctl(file.as_fd(), IOCTL_EVTCHN_NOTIFY, &mut arg) }
                .map(drop)
                .map_err(|e| context(e, format!("notifying event channel {port}")))
        }))
    }

    fn take_pending(&mut self, out: &mut Vec<Port>) -> io::Result<()> {
        let start = out.len();
        let mut buffer = [0u8; BATCH * size_of::<Port>()];
        loop {
            match rustix::io::read(self.file.as_fd(), &mut buffer) {
                Ok(0) => break,
                Ok(n) => parse_ports(&buffer[..n], out),
                Err(Errno::AGAIN) => break,
                Err(Errno::INTR) => continue,
                Err(Errno::FBIG) => {
                    // The queue overflowed: which ports fired is lost, so
                    // all of ours are pending (a level: a spurious one
                    // costs the caller a look).
                    // SAFETY: IOCTL_EVTCHN_RESET takes no argument.
                    unsafe { ioctl(self.file.as_fd(), IOCTL_EVTCHN_RESET, std::ptr::null_mut::<u8>()) }
                        .map_err(|e| context(e, "resetting the event-channel queue after it overflowed"))?;
                    out.truncate(start);
                    out.extend(self.ports.keys().copied());
                    break;
                }
                Err(e) => return Err(context(e.into(), "reading pending event channels")),
            }
        }
        // Re-armed before the caller looks at the rings: an event after
        // this point queues the port again, so none is lost.
        self.rearm(&out[start..])
    }

    fn bindings(&self) -> Vec<BoundPort> {
        self.ports.iter().map(|(&port, &binding)| BoundPort { port, binding }).collect()
    }

    fn into_parts(mut self: Box<Self>) -> Result<EventChannelParts, IntoPartsError> {
        let file = match self.file.try_clone() {
            Ok(file) => file,
            Err(error) => return Err(IntoPartsError { handle: self, error }),
        };
        let ports = self.bindings();
        // The bindings go with the file: nothing to unbind on drop.
        self.ports.clear();
        Ok(EventChannelParts { fds: vec![file], ports })
    }
}

impl AsFd for XenEventChannels {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl Drop for XenEventChannels {
    fn drop(&mut self) {
        for &port in self.ports.keys() {
            let mut arg = EvtchnPort { port };
            // SAFETY: as in `unbind`.
            let _ = unsafe { ioctl(self.file.as_fd(), IOCTL_EVTCHN_UNBIND, &mut arg) };
        }
    }
}

impl fmt::Debug for XenEventChannels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XenEventChannels").field("fd", &self.file).field("ports", &self.ports).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_without_the_device_names_it_and_the_module() {
        let e = XenEventChannels::open_at(Path::new("/nonexistent/dev/xen/evtchn")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let text = e.to_string();
        assert!(text.starts_with("opening /nonexistent/dev/xen/evtchn: No such file or directory"), "{text}");
        assert!(text.contains("xen-evtchn module"), "{text}");
    }

    #[test]
    fn open_on_this_machine_fails_clearly_unless_it_is_xen() {
        if Path::new(EVTCHN_DEVICE).exists() {
            return;
        }
        let e = XenEventChannels::open().unwrap_err();
        assert_eq!(
            e.to_string(),
            "opening /dev/xen/evtchn: No such file or directory \
             (is this a Xen domain with the xen-evtchn module loaded?)"
        );
    }

    #[test]
    fn ports_are_whole_native_u32s() {
        let mut bytes = Vec::new();
        for port in [3u32, 70_000, 1] {
            bytes.extend_from_slice(&port.to_ne_bytes());
        }
        bytes.push(0xff); // a torn tail is ignored
        let mut out = vec![9];
        parse_ports(&bytes, &mut out);
        assert_eq!(out, [9, 3, 70_000, 1]);
    }

    /// A handle over one end of a socket pair standing in for the device:
    /// what the test writes to the other end is "queued", and what the
    /// handle writes back (re-arming) arrives there. It binds nothing, so
    /// dropping it makes no evtchn ioctl.
    fn over_socket() -> (XenEventChannels, std::os::unix::net::UnixStream) {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        theirs.set_nonblocking(true).unwrap();
        (XenEventChannels { file: Arc::new(ours.into()), ports: BTreeMap::new() }, theirs)
    }

    fn ports_bytes(ports: &[Port]) -> Vec<u8> {
        ports.iter().flat_map(|p| p.to_ne_bytes()).collect()
    }

    #[test]
    fn take_pending_appends_what_was_queued_and_writes_it_back_to_rearm() {
        use std::io::{Read, Write};
        let (mut handle, mut device) = over_socket();
        device.write_all(&ports_bytes(&[4, 9])).unwrap();
        let mut out = vec![1];
        handle.take_pending(&mut out).unwrap();
        assert_eq!(out, [1, 4, 9]);
        let mut rearmed = [0u8; 8];
        device.read_exact(&mut rearmed).unwrap();
        assert_eq!(rearmed.to_vec(), ports_bytes(&[4, 9]));
        // Nothing queued: nothing reported, nothing written.
        handle.take_pending(&mut out).unwrap();
        assert_eq!(out, [1, 4, 9]);
        assert_eq!(device.read(&mut rearmed).unwrap_err().kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn take_pending_reads_more_than_one_batch() {
        use std::io::{Read, Write};
        let (mut handle, mut device) = over_socket();
        let many: Vec<Port> = (0..1500).collect();
        device.write_all(&ports_bytes(&many)).unwrap();
        let mut out = Vec::new();
        handle.take_pending(&mut out).unwrap();
        assert_eq!(out, many);
        let mut rearmed = vec![0u8; many.len() * 4];
        device.read_exact(&mut rearmed).unwrap();
        assert_eq!(rearmed, ports_bytes(&many));
    }

    #[test]
    fn adopt_refuses_anything_but_one_character_device() {
        let none = EventChannelParts { fds: vec![], ports: vec![] };
        assert_eq!(XenEventChannels::adopt(none).unwrap_err().raw_os_error(), Some(libc::EINVAL));
        let file = tempfile::tempfile().unwrap();
        let regular = EventChannelParts { fds: vec![file.into()], ports: vec![] };
        assert_eq!(XenEventChannels::adopt(regular).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn adopted_handle_lists_its_ports_and_gives_them_back_without_unbinding() {
        // /dev/null is a character device: enough to check the
        // bookkeeping (nothing here calls an evtchn ioctl).
        let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null").unwrap();
        let ports = vec![
            BoundPort { port: 5, binding: Binding::Virq(Virq::DomExc) },
            BoundPort { port: 9, binding: Binding::Interdomain { remote: 3, remote_port: 1 } },
        ];
        let handle =
            XenEventChannels::adopt(EventChannelParts { fds: vec![null.into()], ports: ports.clone() }).unwrap();
        assert_eq!(handle.bindings(), ports);
        assert_eq!(handle.notifier(5).unwrap_err().raw_os_error(), Some(libc::EINVAL), "a virq has no peer");
        assert_eq!(handle.notifier(7).unwrap_err().raw_os_error(), Some(libc::EINVAL), "not bound here");
        let parts = Box::new(handle).into_parts().unwrap();
        assert_eq!((parts.fds.len(), parts.ports), (1, ports));
    }
}
