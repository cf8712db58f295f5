//! `xenstore-state`: look at, edit and check XenStore migration streams
//! (ours, or a C `xenstored`'s), any version and byte order.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use xenstore_migration::text::{from_text, to_text};
use xenstore_migration::{from_stream, read, read_header, write_with, Record};

/// Dump, load and check XenStore migration streams.
#[derive(Debug, Parser)]
#[command(name = "xenstore-state", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a stream as text: a header line, then one line per record
    /// (values escaped as xenstore-ls does; extension records in hex).
    Dump {
        /// The binary stream (or a `xenstored --persist` snapshot file).
        file: PathBuf,
    },
    /// Turn a dump (possibly edited) back into a binary stream.
    Load {
        /// The text, as `dump` prints it.
        text: PathBuf,
        /// Where to write the stream.
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
    /// Read a stream, convert it to a daemon state and import it into a
    /// store engine: prints OK and a summary, or the error (exit 1).
    Check {
        /// The binary stream (or a `xenstored --persist` snapshot file).
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xenstore-state: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The magic of a `xenstored --persist` snapshot file: the stream follows
/// a 24-octet header (magic, generation, length, checksum).
const SNAPSHOT_MAGIC: &[u8; 8] = b"XSSNAPS1";

/// A stream file's bytes; a `--persist` snapshot's stream without its
/// header (the daemon checks the header's checksum; this tool reads the
/// stream, which checks itself).
fn stream_bytes(p: &PathBuf) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
    match bytes.strip_prefix(SNAPSHOT_MAGIC) {
        Some(_) => bytes.get(24..).map(<[u8]>::to_vec).ok_or_else(|| format!("{}: a truncated snapshot", p.display())),
        None => Ok(bytes),
    }
}

fn run(command: Command) -> Result<(), String> {
    let read_file = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    match command {
        Command::Dump { file } => {
            let bytes = stream_bytes(&file)?;
            let header = read_header(&bytes).map_err(|e| e.to_string())?;
            let stream = read(&bytes).map_err(|e| e.to_string())?;
            print!("{}", to_text(header, &stream));
        }
        Command::Load { text, output } => {
            let text = String::from_utf8(read_file(&text)?).map_err(|_| "the text is not UTF-8".to_owned())?;
            let (header, stream) = from_text(&text).map_err(|e| e.to_string())?;
            let bytes = write_with(&stream, header).map_err(|e| e.to_string())?;
            std::fs::write(&output, bytes).map_err(|e| format!("{}: {e}", output.display()))?;
        }
        Command::Check { file } => {
            let bytes = stream_bytes(&file)?;
            let stream = read(&bytes).map_err(|e| e.to_string())?;
            let state = from_stream(&stream).map_err(|e| e.to_string())?;
            let ours = stream.records().iter().any(|r| matches!(r, Record::Extension { .. }));
            let e = &state.engine;
            println!(
                "OK: {} nodes, {} domains, {} connections ({} with a transport), {} watches, {} transactions; {}",
                e.nodes.len(),
                e.domains.len(),
                e.conns.len(),
                state.conns.len(),
                e.watches.len(),
                e.transactions.len(),
                if ours { "exact (extension records)" } else { "derived (no extension records)" }
            );
        }
    }
    Ok(())
}
