//! `xenstore`: the XenStore command-line tools in one binary, compatible
//! with Debian's `xenstore-utils` (Xen 4.17): same options, same output on
//! stdout and stderr, same exit status.
//!
//! The job comes from the name it is called by (`xenstore-read`,
//! `xenstore-ls`, ..., `xenstore-control`) or from its first argument
//! (`xenstore read ...`): `read`, `write`, `ls`, `list`, `rm`, `chmod`,
//! `exists`, `watch`, and `control` (the separate `xenstore-control` tool
//! of xen-utils); and `top`, a live view of the daemon's use per domain
//! that xen-utils does not have.

mod control;
mod escape;
mod getopt;
mod tools;
mod top;

use std::io::{self, Write};
use std::os::unix::ffi::OsStringExt;
use std::process::ExitCode;

/// Leaving the program with this status (messages already printed).
#[derive(Debug)]
pub struct Exit(pub i32);

/// Concatenates byte strings (messages are bytes: paths and argv need not
/// be UTF-8).
pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// glibc's `strerror` text for an errno (Rust's `io::Error` gets it from
/// the C library; only its " (os error N)" suffix is ours to drop).
pub fn strerror(errno: i32) -> String {
    let text = io::Error::from_raw_os_error(errno).to_string();
    match text.rfind(" (os error ") {
        Some(cut) => text[..cut].to_owned(),
        None => text,
    }
}

/// What a program named `progname` prints through `err(3)` and friends.
#[derive(Debug)]
pub struct Messages<'a> {
    /// `program_invocation_short_name`: `argv[0]` after its last `/`.
    pub short_name: &'a [u8],
}

impl Messages<'_> {
    /// `warnx`: "name: msg\n" on stderr (stdout is not flushed first,
    /// as in C, where it is a separate buffer).
    pub fn warnx(&self, msg: &[u8]) {
        let _ = io::stderr().write_all(&cat(&[self.short_name, b": ", msg, b"\n"]));
    }

    /// `warn`: "name: msg: strerror\n".
    pub fn warn(&self, msg: &[u8], errno: i32) {
        self.warnx(&cat(&[msg, b": ", strerror(errno).as_bytes()]));
    }

    /// `errx`: [`Messages::warnx`], then exit with `code`.
    pub fn errx(&self, code: i32, msg: &[u8]) -> Exit {
        self.warnx(msg);
        Exit(code)
    }

    /// `err`: [`Messages::warn`], then exit with `code`.
    pub fn err(&self, code: i32, msg: &[u8], errno: i32) -> Exit {
        self.warn(msg, errno);
        Exit(code)
    }
}

/// `argv[0]` after its last `/`.
pub fn basename(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|b| *b == b'/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

fn run(args: &[Vec<u8>]) -> Result<i32, Exit> {
    let argv0 = args.first().map_or(&b"xenstore"[..], Vec::as_slice);
    let msgs = Messages { short_name: basename(argv0) };
    let (command, switch_argv) = if let Some(command) = msgs.short_name.strip_prefix(b"xenstore-") {
        (command, 0)
    } else if let Some(command) = args.get(1) {
        (command.as_slice(), 1)
    } else {
        return Err(msgs.errx(1, &cat(&[b"Usage: ", argv0, b" <mode> [-h] [...]"])));
    };
    let sub_args = args.get(switch_argv..).unwrap_or_default();
    if command == b"control" {
        let display = if switch_argv == 0 { argv0.to_vec() } else { cat(&[argv0, b" control"]) };
        return Ok(control::run(&display, sub_args.get(1..).unwrap_or_default()));
    }
    if command == b"top" {
        let display = if switch_argv == 0 { argv0.to_vec() } else { cat(&[argv0, b" top"]) };
        let rest: Vec<std::ffi::OsString> =
            sub_args.get(1..).unwrap_or_default().iter().map(|a| std::ffi::OsString::from_vec(a.clone())).collect();
        let display = String::from_utf8_lossy(basename(&display)).into_owned();
        return Ok(top::run(&display, &rest));
    }
    let Some(mode) = tools::Mode::lookup(command) else {
        return Err(msgs.errx(1, &cat(&[b"unknown mode ", command, b"\n"])));
    };
    tools::run(&msgs, mode, argv0, switch_argv == 1, sub_args)
}

fn main() -> ExitCode {
    let args: Vec<Vec<u8>> = std::env::args_os().map(OsStringExt::into_vec).collect();
    let code = match run(&args) {
        Ok(code) | Err(Exit(code)) => code,
    };
    let _ = io::stdout().flush();
    // Exit statuses are 0..=255 on Unix; the tools only use small ones.
    ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1))
}
