//! The CONTROL commands that act on the daemon rather than the store
//! (`log`, `logfile`, `print`, `memreport`): the engine parses every
//! CONTROL request and hands these over as [`DaemonCommand`]s.

use std::fmt::Write as _;
use std::path::Path;

use tracing::info;
use xenstore_db::DaemonCommand;

use crate::server::Server;

impl Server {
    /// Runs one daemon command; returns the reply text, in the C daemon's
    /// words.
    pub(crate) fn daemon_command(&mut self, command: DaemonCommand) -> Vec<u8> {
        let text = match command {
            DaemonCommand::Log(on) => {
                self.trace.set_enabled(on);
                "OK".to_owned()
            }
            DaemonCommand::LogFile(file) => match self.trace.set_file(Path::new(&file)) {
                Ok(()) => "OK".to_owned(),
                Err(e) => format!("cannot open {file}: {e}"),
            },
            DaemonCommand::Print(line) => {
                info!("control print: {line}");
                self.trace.note(&line);
                "OK".to_owned()
            }
            DaemonCommand::MemReport(None) => self.memreport(),
            DaemonCommand::MemReport(Some(file)) => match std::fs::write(&file, self.memreport()) {
                Ok(()) => "OK".to_owned(),
                Err(e) => format!("cannot write {file}: {e}"),
            },
            DaemonCommand::Stats(from) => self.stats_page(from),
            other => format!("unsupported command {other:?}"),
        };
        text.into_bytes()
    }

    fn memreport(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "nodes: {}", self.engine.node_count());
        let _ = writeln!(out, "watches: {}", self.engine.watch_count());
        let _ = writeln!(out, "transactions: {}", self.engine.transaction_count());
        let _ = writeln!(out, "connections: {}", self.conns.len());
        let queued: usize = self.conns.values().map(|c| c.outbox.queued_bytes()).sum();
        let _ = writeln!(out, "queued output bytes: {queued}");
        if let Some(rss) = resident_bytes() {
            let _ = writeln!(out, "resident memory bytes: {rss}");
        }
        out
    }
}

/// Resident set size from `/proc/self/statm`.
pub(crate) fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
