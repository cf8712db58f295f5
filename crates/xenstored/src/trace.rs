//! The trace file: one line per request and reply, like the C daemon's `-T`.
//!
//! Format: `IN  <conn> <time> <OP> (<payload>)` and `OUT <conn> <time> <OP>
//! (<payload>)`, with nul bytes shown as spaces and other unprintable bytes
//! as `\xNN`, so a trace is one line per message whatever the payload.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use xenstore_wire::{Header, Op};

/// The trace sink; off when no file is set or logging is switched off.
#[derive(Debug, Default)]
pub struct Trace {
    path: Option<PathBuf>,
    file: Option<BufWriter<File>>,
    enabled: bool,
}

impl Trace {
    /// Traces to `path` (appending), enabled.
    pub fn open(path: Option<&Path>) -> std::io::Result<Trace> {
        let mut trace = Trace { path: path.map(Path::to_path_buf), file: None, enabled: path.is_some() };
        trace.reopen()?;
        Ok(trace)
    }

    /// Opens the file again by its path (SIGHUP: after logrotate moved
    /// it away, tracing goes on in a new file of the same name).
    pub fn reopen(&mut self) -> std::io::Result<()> {
        self.file = match &self.path {
            Some(p) => Some(BufWriter::new(OpenOptions::new().create(true).append(true).open(p)?)),
            None => None,
        };
        Ok(())
    }

    /// CONTROL `logfile`: trace to another file from now on.
    pub fn set_file(&mut self, path: &Path) -> std::io::Result<()> {
        self.path = Some(path.to_path_buf());
        self.enabled = true;
        self.reopen()
    }

    /// CONTROL `log on|off`.
    pub fn set_enabled(&mut self, on: bool) {
        self.enabled = on;
    }

    /// Whether lines are written.
    pub fn active(&self) -> bool {
        self.enabled && self.file.is_some()
    }

    /// Records one message.
    pub fn message(&mut self, direction: &str, conn: u64, header: &Header, payload: &[u8]) {
        if !self.active() {
            return;
        }
        let name = Op::from_u32(header.op).map_or_else(|| format!("UNKNOWN({})", header.op), |op| op.name().to_owned());
        let line = format!("{direction:<3} {conn} {} {name} ({})\n", timestamp(), printable(payload));
        self.write_line(&line);
    }

    /// Records an encoded outgoing message (header and payload).
    pub fn outgoing(&mut self, conn: u64, message: &[u8]) {
        if !self.active() {
            return;
        }
        let Some((header, payload)) = message.split_first_chunk::<{ xenstore_wire::HEADER_LEN }>() else {
            return;
        };
        self.message("OUT", conn, &Header::decode(header), payload);
    }

    /// Records a free-form line (CONTROL `print`, connection events).
    pub fn note(&mut self, text: &str) {
        if self.active() {
            let line = format!("--- {} {}\n", timestamp(), printable(text.as_bytes()));
            self.write_line(&line);
        }
    }

    fn write_line(&mut self, line: &str) {
        if let Some(file) = self.file.as_mut() {
            if file.write_all(line.as_bytes()).and_then(|_| file.flush()).is_err() {
                tracing::warn!("trace file write failed; tracing switched off");
                self.enabled = false;
            }
        }
    }
}

fn printable(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            0 => out.push(' '),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

fn timestamp() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs();
    format!("{:02}:{:02}:{:02}.{:06}", (secs / 3600) % 24, (secs / 60) % 60, secs % 60, now.subsec_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_shows_nuls_as_spaces_and_escapes_binary() {
        assert_eq!(printable(b"/a\0tok\0"), "/a tok ");
        assert_eq!(printable(b"x\x01\xff"), "x\\x01\\xff");
    }
}
