//! How bytes reach the daemon, and where the daemon is.
//!
//! A [`Transport`] is a byte stream to `xenstored` that one thread reads
//! (the blocking client's reader) while others write whole messages. Three
//! exist: [`UnixSocket`] (the daemon's socket, a privileged dom0
//! connection), [`XenbusDevice`] (Linux's `/dev/xen/xenbus`, which the
//! kernel forwards over the domain's ring) and [`SharedRing`] (the
//! domain's ring page driven directly, for guests without that driver).
//!
//! Where the daemon is follows libxenstore (`xs_open`, Xen 4.17): first
//! [`daemon_socket_path`], then [`domain_device_path`]; each path is a
//! socket if it is one, else a device. Inside a hosted guest (see
//! [`hosted::in_hosted_guest`]) the guest's own ring comes first.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

pub mod hosted;
mod shared_ring;
mod xenbus_device;

pub use shared_ring::{ServerRingError, SharedRing};
pub use xenbus_device::XenbusDevice;

/// A connection to the daemon, as the blocking client drives it.
pub trait Transport: Send + Sync + fmt::Debug + 'static {
    /// A second handle on the same connection, for the reader thread.
    fn reader(&self) -> io::Result<Box<dyn Read + Send>>;

    /// Writes one or more whole messages. The client serializes calls, so
    /// bytes of two messages never interleave.
    fn write_all(&self, bytes: &[u8]) -> io::Result<()>;

    /// Ends the connection so that a blocked [`Transport::reader`] returns
    /// (end of file or an error). Idempotent.
    fn shutdown(&self);

    /// Whether `err`, from a read or a write, means the server stopped
    /// serving this connection in a way [`Transport::resume`] recovers
    /// from. Only [`SharedRing`] ever says yes (the ring's error
    /// indicator, when the server supports reconnection); a socket closed
    /// by a daemon restart stays closed (connect again).
    fn can_resume(&self, err: &io::Error) -> bool {
        let _ = err;
        false
    }

    /// After an error [`Transport::can_resume`] accepted: resets the
    /// connection and waits until the server serves it again. The server
    /// has then forgotten everything of the old connection (requests in
    /// flight, watches, transactions). The client calls it from its reader
    /// thread, with no write in progress.
    fn resume(&self) -> io::Result<()> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "this transport cannot resume a connection"))
    }
}

/// A Unix stream socket to the daemon.
#[derive(Debug)]
pub struct UnixSocket {
    stream: UnixStream,
}

impl UnixSocket {
    /// Connects to the socket at `path`.
    pub fn connect(path: &Path) -> io::Result<Self> {
        Ok(UnixSocket { stream: UnixStream::connect(path)? })
    }

    /// Wraps a connected stream (a test's socket pair, an inherited fd).
    pub fn from_stream(stream: UnixStream) -> Self {
        UnixSocket { stream }
    }
}

impl Transport for UnixSocket {
    fn reader(&self) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(self.stream.try_clone()?))
    }

    fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        (&self.stream).write_all(bytes)
    }

    fn shutdown(&self) {
        // Already shut down, or the peer is gone: nothing left to do.
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// The daemon's socket: `XENSTORED_PATH`, else `$XENSTORED_RUNDIR/socket`,
/// else `/var/run/xenstored/socket` (libxenstore's `xs_daemon_socket`).
pub fn daemon_socket_path() -> PathBuf {
    if let Some(path) = std::env::var_os("XENSTORED_PATH") {
        return PathBuf::from(path);
    }
    let rundir = std::env::var_os("XENSTORED_RUNDIR").unwrap_or_else(|| "/var/run/xenstored".into());
    Path::new(&rundir).join("socket")
}

/// The kernel device: `XENSTORED_PATH`, else `/dev/xen/xenbus`
/// (libxenstore's `xs_domain_dev` on Linux).
pub fn domain_device_path() -> PathBuf {
    std::env::var_os("XENSTORED_PATH").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/dev/xen/xenbus"))
}

/// Connects to `path`: a socket is connected to, a character device is
/// opened, a directory fails with `EISDIR`. Any other file is refused with
/// `ENODEV` (libxenstore would open it and write requests into it).
pub fn connect_path(path: &Path) -> io::Result<Box<dyn Transport>> {
    let file_type = std::fs::metadata(path)?.file_type();
    if file_type.is_socket() {
        Ok(Box::new(UnixSocket::connect(path)?))
    } else if file_type.is_char_device() || file_type.is_dir() {
        Ok(Box::new(XenbusDevice::open(path)?))
    } else {
        Err(io::Error::from_raw_os_error(rustix::io::Errno::NODEV.raw_os_error()))
    }
}

/// Connects the way `xs_open(0)` does: [`daemon_socket_path`], then
/// [`domain_device_path`]; the error is the last attempt's. Inside a hosted
/// guest, the guest's ring instead ([`hosted::connect_guest_ring`]).
pub fn connect_default() -> io::Result<Box<dyn Transport>> {
    if hosted::in_hosted_guest() {
        return hosted::connect_guest_ring();
    }
    connect_path(&daemon_socket_path()).or_else(|_| connect_path(&domain_device_path()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_path_reports_missing_path_as_enoent() {
        let err = connect_path(Path::new("/nonexistent/xenstored/socket")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn connect_path_refuses_a_directory_with_eisdir() {
        let dir = tempfile::tempdir().unwrap();
        let err = connect_path(dir.path()).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(rustix::io::Errno::ISDIR.raw_os_error()));
    }

    #[test]
    fn connect_path_never_writes_into_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-socket");
        std::fs::write(&file, b"precious").unwrap();
        let err = connect_path(&file).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(rustix::io::Errno::NODEV.raw_os_error()));
        assert_eq!(std::fs::read(&file).unwrap(), b"precious");
    }

    #[test]
    fn socket_transport_carries_bytes_both_ways() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let transport = UnixSocket::from_stream(a);
        let mut reader = transport.reader().unwrap();
        transport.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        b.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        b.write_all(b"pong").unwrap();
        reader.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"pong");
        transport.shutdown();
        assert_eq!(reader.read(&mut buf).unwrap(), 0);
    }
}
