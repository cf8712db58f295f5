//! Log lines to the system log when the daemon forks without a log file:
//! one datagram per line to `/dev/log`, as `syslog(3)` sends it
//! (`<PRI>xenstored[PID]: message`, facility `daemon`). On a systemd host
//! `/dev/log` is journald's, so the lines reach the journal too; a forked
//! daemon has no standard error, so without this it would log nowhere.
//!
//! `XENSTORED_SYSLOG_SOCKET` names another socket (tests, or a syslog
//! daemon listening elsewhere).

use std::io::{self, Write};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Arc;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// Where syslog(3) sends its lines.
const DEV_LOG: &str = "/dev/log";

/// The `daemon` facility (3), shifted as in a PRI value.
const FACILITY_DAEMON: u8 = 3 << 3;

/// A connection to the system log that makes one writer per line.
#[derive(Debug, Clone)]
pub struct Syslog {
    socket: Arc<UnixDatagram>,
}

impl Syslog {
    /// Connects to `$XENSTORED_SYSLOG_SOCKET`, else `/dev/log`.
    pub fn connect() -> io::Result<Syslog> {
        let path = std::env::var_os("XENSTORED_SYSLOG_SOCKET").map_or_else(|| PathBuf::from(DEV_LOG), PathBuf::from);
        let socket = UnixDatagram::unbound()?;
        socket.connect(&path)?;
        Ok(Syslog { socket: Arc::new(socket) })
    }

    fn line(&self, level: Level) -> SyslogLine {
        let severity = match level {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            _ => 7,
        };
        SyslogLine { socket: self.socket.clone(), priority: FACILITY_DAEMON | severity, text: Vec::new() }
    }
}

impl<'a> MakeWriter<'a> for Syslog {
    type Writer = SyslogLine;

    fn make_writer(&'a self) -> SyslogLine {
        self.line(Level::INFO)
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> SyslogLine {
        self.line(*meta.level())
    }
}

/// One log line, sent as one datagram when dropped.
#[derive(Debug)]
pub struct SyslogLine {
    socket: Arc<UnixDatagram>,
    priority: u8,
    text: Vec<u8>,
}

impl Write for SyslogLine {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogLine {
    fn drop(&mut self) {
        let text = self.text.strip_suffix(b"\n").unwrap_or(&self.text);
        if text.is_empty() {
            return;
        }
        // The pid is read per line: the daemon forks after connecting.
        let mut datagram = format!("<{}>xenstored[{}]: ", self.priority, std::process::id()).into_bytes();
        datagram.extend_from_slice(text);
        // A full or absent log loses the line, never blocks the daemon.
        let _ = self.socket.send(&datagram);
    }
}
