//! `xenstore top` (also `xenstore-top`): a live view of who uses the
//! store, per domain: connections, nodes, watches, open transactions,
//! quota use, requests and bytes per second, refusals. Neither reference
//! daemon has one; the figures come from our daemon's CONTROL `stats`
//! ([`sample`]), so it works over any connection a dom0 tool has (the
//! Unix socket, or the xenbus device on real Xen).
//!
//! A new command, so its command line is clap's (the xenstore-utils tools
//! keep their byte-compatible getopt); the options follow `top`'s: `-b`
//! batch, `-n` iterations, `-d` delay.

mod sample;
mod screen;
mod table;

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use clap::Parser;

use table::{Column, Order};

/// A live view of the XenStore daemon's use, per domain.
#[derive(Debug, Parser)]
#[command(
    name = "xenstore top",
    version,
    after_help = "Interactive keys: d a c n N w W t m M r i o e u sort by a column (the letters of --sort), R \
reverses, space refreshes, h shows the keys, q quits.\n\nThe figures come from the daemon's CONTROL `stats` \
command (xen-control-plane's xenstored); the same figures are served as Prometheus text by `xenstored \
--metrics`."
)]
struct Args {
    /// Batch mode: print frames as text, for scripts and logs (the
    /// default when standard output is not a terminal).
    #[arg(short, long)]
    batch: bool,
    /// Stop after this many frames (batch mode: the default is forever).
    #[arg(short = 'n', long, value_name = "COUNT")]
    iterations: Option<u64>,
    /// Seconds between refreshes.
    #[arg(short, long, value_name = "SECONDS", default_value_t = 2.0)]
    delay: f64,
    /// The column to sort by: its header (REQ/S, NODES, ...) or its key
    /// letter (r, n, ...).
    #[arg(short, long, value_name = "COLUMN", default_value = "REQ/S", value_parser = parse_column)]
    sort: Column,
    /// Reverse the sort.
    #[arg(short = 'R', long)]
    reverse: bool,
}

fn parse_column(text: &str) -> Result<Column, String> {
    Column::from_name(text).ok_or_else(|| {
        let names: Vec<&str> = table::COLUMNS.iter().map(|c| c.1).collect();
        format!("no column {text:?} (valid: {})", names.join(", "))
    })
}

/// What the view runs with.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    order: Order,
    delay: Duration,
    iterations: Option<u64>,
}

/// Runs `xenstore top`; `args` are what follows the command. Returns the
/// exit status.
pub fn run(progname: &str, args: &[std::ffi::OsString]) -> i32 {
    let parsed = Args::try_parse_from(std::iter::once(std::ffi::OsString::from(progname)).chain(args.iter().cloned()));
    let args = match parsed {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    if !(args.delay.is_finite() && args.delay >= 0.1) {
        eprintln!("{progname}: --delay must be at least 0.1 seconds");
        return 2;
    }
    let settings = Settings {
        order: Order { column: args.sort, reversed: args.reverse },
        delay: Duration::from_secs_f64(args.delay),
        iterations: args.iterations,
    };
    let client = match xenstore::Client::open() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{progname}: cannot reach xenstored: {e}");
            return 1;
        }
    };
    let interactive = !args.batch && std::io::stdout().is_terminal() && std::io::stdin().is_terminal();
    let result = if interactive { screen::run(&client, &settings) } else { batch(&client, &settings) };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{progname}: {e}");
            1
        }
    }
}

/// Frames as text, one after another, separated by a blank line. The
/// first frame has no rates; it is printed at once, as `top -b` does.
fn batch(client: &xenstore::Client, settings: &Settings) -> Result<(), String> {
    let mut before: Option<(sample::Sample, Instant)> = None;
    let mut frames = 0u64;
    let mut out = std::io::stdout().lock();
    loop {
        let now = (sample::take(client).map_err(|e| e.to_string())?, Instant::now());
        let seconds = before.as_ref().map_or(0.0, |b| now.1.duration_since(b.1).as_secs_f64());
        let frame = table::frame(&now.0, before.as_ref().map(|b| &b.0), seconds, settings.order);
        let mut text = String::new();
        if frames > 0 {
            text.push('\n');
        }
        for line in frame.summary.iter().chain(std::iter::once(&table::header())) {
            text.push_str(line);
            text.push('\n');
        }
        for row in &frame.rows {
            text.push_str(&table::line(row));
            text.push('\n');
        }
        // A closed pipe (`| head`) ends the program quietly.
        if out.write_all(text.as_bytes()).and_then(|()| out.flush()).is_err() {
            return Ok(());
        }
        frames += 1;
        if settings.iterations.is_some_and(|n| frames >= n) {
            return Ok(());
        }
        std::thread::sleep(settings.delay);
        before = Some(now);
    }
}
