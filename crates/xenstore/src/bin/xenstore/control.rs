//! `xenstore-control <command> [<arg>...]`: sends `CONTROL` and prints the
//! daemon's answer, as xen-utils 4.17's tool does, `live-update` included
//! (for a daemon; updating a xenstore stub domain needs the hypervisor's
//! domain builder and is refused).

use std::io::{self, Write};
use std::time::{Duration, Instant};

use xenstore::{Client, ErrorCode, Store};

use crate::escape::atoi;
use crate::strerror;

fn eprint(bytes: &[u8]) {
    let _ = io::stderr().write_all(bytes);
}

/// The C string the daemon's answer holds (up to its first nul).
fn c_str(text: &[u8]) -> &[u8] {
    match text.iter().position(|b| *b == 0) {
        Some(nul) => &text[..nul],
        None => text,
    }
}

/// Runs the tool; `progname` is what its usage text names, `args` what
/// follows it. Returns the exit status.
pub fn run(progname: &[u8], args: &[Vec<u8>]) -> i32 {
    let Some((command, params)) = args.split_first() else {
        eprint(&[b"Usage:\n", progname, b" <command> [<arg>...]\n"].concat());
        return 2;
    };
    let Ok(client) = Client::open() else {
        eprint(b"Failed to contact Xenstored.\n");
        return 1;
    };
    if command == b"live-update" {
        return live_update(&client, params);
    }
    let mut call: Vec<&[u8]> = vec![command];
    call.extend(params.iter().map(Vec::as_slice));
    match client.control(&call) {
        Ok(text) => {
            let text = c_str(&text);
            if !text.is_empty() {
                let _ = io::stdout().write_all(&[text, b"\n"].concat());
            }
            0
        }
        Err(err) if err.code() == Some(ErrorCode::EINVAL) => {
            match client.control(&[b"help"]) {
                Ok(help) => eprint(&[b"Command not supported. Valid commands are:\n", c_str(&help), b"\n"].concat()),
                Err(_) => eprint(b"Error when executing command.\n"),
            }
            3
        }
        Err(err) => {
            eprint(format!("Error {} when trying to execute command.\n", err.errno()).as_bytes());
            3
        }
    }
}

/// One `live-update` step; `Err(text)` is what the failure message shows
/// (the daemon's answer, or the error's `strerror`).
fn step(client: &Client, args: &[&[u8]]) -> Result<Vec<u8>, Vec<u8>> {
    let mut call: Vec<&[u8]> = vec![b"live-update"];
    call.extend_from_slice(args);
    match client.control(&call) {
        Ok(text) => Ok(c_str(&text).to_vec()),
        Err(err) => Err(strerror(err.errno()).into_bytes()),
    }
}

fn expect_ok(client: &Client, args: &[&[u8]], failure: &[u8]) -> Result<(), i32> {
    match step(client, args) {
        Ok(text) if text == b"OK" => Ok(()),
        Ok(text) | Err(text) => {
            eprint(&[failure, b"\n", &text, b"\n"].concat());
            Err(3)
        }
    }
}

fn abort(client: &Client) {
    let _ = step(client, &[b"-a"]);
}

fn live_update(client: &Client, args: &[Vec<u8>]) -> i32 {
    let mut binary: Option<&[u8]> = None;
    let mut cmdline: Option<&[u8]> = None;
    let mut timeout: u32 = 60;
    let mut force = false;
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        match arg.as_slice() {
            b"-c" => {
                i += 1;
                let Some(value) = args.get(i) else {
                    eprint(b"Missing command line value\n");
                    return 2;
                };
                cmdline = Some(value);
            }
            b"-t" => {
                i += 1;
                let Some(value) = args.get(i) else {
                    eprint(b"Missing timeout value\n");
                    return 2;
                };
                timeout = u32::from_ne_bytes(atoi(value).to_ne_bytes());
            }
            b"-F" => force = true,
            other => binary = Some(other),
        }
        i += 1;
    }
    let Some(binary) = binary else {
        eprint(b"Missing binary specification\n");
        return 2;
    };
    if client.exists("/tool/xenstored/domid").unwrap_or(false) {
        eprint(b"Live update of a xenstore stub domain is not supported by this tool.\n");
        abort(client);
        return 1;
    }
    if let Err(rc) = expect_ok(client, &[b"-f", binary], b"Setting update binary failed:") {
        return rc;
    }
    if let Some(cmdline) = cmdline {
        if let Err(rc) = expect_ok(client, &[b"-c", cmdline], b"Setting update binary failed:") {
            abort(client);
            return rc;
        }
    }
    let timeout_text = timeout.to_string();
    let mut start: Vec<&[u8]> = vec![b"-s", b"-t", timeout_text.as_bytes()];
    if force {
        start.push(b"-F");
    }
    // The daemon answers BUSY while it cannot update yet; ask again until
    // the timeout (plus 2 s, as the C tool allows) runs out.
    let deadline = Instant::now() + Duration::from_secs(u64::from(timeout) + 2);
    let answer = loop {
        let answer = step(client, &start);
        match &answer {
            Ok(text) if text == b"BUSY" && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            _ => break answer,
        }
    };
    match answer {
        Ok(text) if text == b"OK" => 0,
        Ok(text) | Err(text) => {
            eprint(&[b"Starting live update failed:\n", &text[..], b"\n"].concat());
            abort(client);
            3
        }
    }
}
