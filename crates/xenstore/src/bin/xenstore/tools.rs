//! `read`, `write`, `ls`, `list`, `rm`, `chmod`, `exists` and `watch`,
//! behaving as `xenstore_client.c` of Xen 4.17 does: its option table, its
//! usage texts, its use of one transaction around the whole command (for
//! `read` of several keys, `write` of several pairs, and `rm`, `chmod`,
//! `exists`, `list`), retried on `EAGAIN`, and its output formats.

use std::io::{self, Write};

use xenstore::{Access, Client, Error, ErrorCode, Op, Perm, PermList, Store};

use crate::escape::{atoi, sanitise, unsanitise};
use crate::getopt::{Found, Getopt, LongOpt};
use crate::{cat, Exit, Messages};

/// The job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Chmod,
    Exists,
    List,
    Ls,
    Read,
    Rm,
    Write,
    Watch,
}

impl Mode {
    /// The mode a command word names.
    pub fn lookup(word: &[u8]) -> Option<Mode> {
        Some(match word {
            b"chmod" => Mode::Chmod,
            b"exists" => Mode::Exists,
            b"list" => Mode::List,
            b"ls" => Mode::Ls,
            b"read" => Mode::Read,
            b"rm" => Mode::Rm,
            b"write" => Mode::Write,
            b"watch" => Mode::Watch,
            _ => return None,
        })
    }

    fn word(self) -> &'static [u8] {
        match self {
            Mode::Chmod => b"chmod ",
            Mode::Exists => b"exists ",
            Mode::List => b"list ",
            Mode::Ls => b"ls ",
            Mode::Read => b"read ",
            Mode::Rm => b"rm ",
            Mode::Write => b"write ",
            Mode::Watch => b"watch ",
        }
    }

    fn synopsis(self) -> &'static [u8] {
        match self {
            Mode::Read => b"[-h] [-p] [-s] [-R] key [...]",
            Mode::Write => b"[-h] [-s] [-R] key value [...]",
            Mode::Rm => b"[-h] [-s] [-t] key [...]",
            // As in the C tool, `exists` shares `list`'s text.
            Mode::Exists | Mode::List => b"[-h] [-p] [-s] key [...]",
            Mode::Ls => b"[-h] [-f] [-p] [-s] [path]",
            Mode::Chmod => b"[-h] [-u] [-r] [-s] key <mode [modes...]>",
            Mode::Watch => b"[-h] [-n NR] key",
        }
    }
}

const LONG_OPTIONS: &[LongOpt] = &[
    LongOpt { name: "help", has_arg: false, short: b'h' },
    LongOpt { name: "flat", has_arg: false, short: b'f' },
    LongOpt { name: "prefix", has_arg: false, short: b'p' },
    LongOpt { name: "tidy", has_arg: false, short: b't' },
    LongOpt { name: "upto", has_arg: false, short: b'u' },
    LongOpt { name: "recurse", has_arg: false, short: b'r' },
    LongOpt { name: "number", has_arg: true, short: b'n' },
    LongOpt { name: "raw", has_arg: false, short: b'R' },
];

/// The C tool's `usage()`: always exit status 1, `-h` included.
fn usage(msgs: &Messages<'_>, mode: Mode, incl_mode: bool, argv0: &[u8]) -> Exit {
    let word: &[u8] = if incl_mode { mode.word() } else { b"" };
    msgs.errx(1, &cat(&[b"Usage: ", argv0, b" ", word, mode.synopsis()]))
}

/// `xenstore-ls` line layout.
#[derive(Debug, Clone, Copy)]
struct Layout {
    max_width: i32,
    desired_width: i32,
    show_whole_path: bool,
}

#[derive(Debug, Default)]
struct Flags {
    prefix: bool,
    tidy: bool,
    upto: bool,
    recurse: bool,
    raw: bool,
}

/// Parses the options of `mode`, connects, and does the job.
pub fn run(msgs: &Messages<'_>, mode: Mode, argv0: &[u8], incl_mode: bool, args: &[Vec<u8>]) -> Result<i32, Exit> {
    let mut flags = Flags::default();
    let mut nr_watches = -1;
    let mut layout = Layout { max_width: 80, desired_width: 60, show_whole_path: false };
    let mut getopt = Getopt::new(args, b"hfspturn:R", LONG_OPTIONS);
    let bad = || usage(msgs, mode, incl_mode, argv0);
    while let Some(found) = getopt.next_opt() {
        let Found::Opt(c, arg) = found else { continue };
        match c {
            b'h' => return Err(bad()),
            b'f' if mode == Mode::Ls => {
                layout = Layout { max_width: i32::MAX / 2, desired_width: 0, show_whole_path: true };
            }
            b's' => {}
            b'p' if matches!(mode, Mode::Read | Mode::List | Mode::Ls) => flags.prefix = true,
            b't' if mode == Mode::Rm => flags.tidy = true,
            b'u' if mode == Mode::Chmod => flags.upto = true,
            b'r' if mode == Mode::Chmod => flags.recurse = true,
            b'n' if mode == Mode::Watch => nr_watches = atoi(arg.as_deref().unwrap_or_default()),
            b'R' if matches!(mode, Mode::Read | Mode::Write) => flags.raw = true,
            _ => return Err(bad()),
        }
    }
    let operands = getopt.operands();
    if mode == Mode::Write && operands.len() % 2 == 1 {
        return Err(bad());
    }
    if mode != Mode::Ls && operands.is_empty() {
        return Err(bad());
    }
    let transaction = match mode {
        Mode::Read => operands.len() > 1,
        Mode::Write => operands.len() > 2,
        Mode::Ls | Mode::Watch => false,
        _ => true,
    };
    if mode == Mode::Ls {
        if let Ok(size) = rustix::termios::tcgetwinsize(io::stdout()) {
            layout.max_width = i32::from(size.ws_col) - 2;
        }
    }

    let client = Client::open().map_err(|e| msgs.err(1, b"xs_open", e.errno()))?;
    if mode == Mode::Watch {
        return watch(msgs, &client, &operands, nr_watches);
    }
    let job = Job { msgs, mode, flags, layout, operands: &operands };
    let mut out = Vec::new();
    let ret = loop {
        out.clear();
        if !transaction {
            break job.perform(&client, &mut out)?;
        }
        let tx = client.transaction_start().map_err(|_| msgs.errx(1, b"couldn't start transaction"))?;
        let ret = job.perform(&tx, &mut out)?;
        let end = if ret == 0 { tx.commit() } else { tx.abort() };
        match end {
            Ok(()) => break ret,
            Err(err) if ret == 0 && err.is_eagain() => continue,
            Err(_) => return Err(msgs.errx(1, b"couldn't end transaction")),
        }
    };
    if !out.is_empty() {
        io::stdout().write_all(&out).map_err(|_| Exit(BROKEN_PIPE))?;
    }
    Ok(ret)
}

/// An operand as a path. Paths on the wire are ASCII; one that is not
/// UTF-8 could only be refused by the daemon, so it is refused here with
/// the daemon's answer.
fn path_of(bytes: &[u8]) -> Result<&str, Error> {
    std::str::from_utf8(bytes).map_err(|_| Error::Xs(ErrorCode::EINVAL))
}

fn read<S: Store>(store: &S, path: &[u8]) -> Result<Vec<u8>, Error> {
    store.read(path_of(path)?)
}

fn directory<S: Store>(store: &S, path: &[u8]) -> Result<Vec<String>, Error> {
    store.directory(path_of(path)?)
}

struct Job<'a> {
    msgs: &'a Messages<'a>,
    mode: Mode,
    flags: Flags,
    layout: Layout,
    operands: &'a [Vec<u8>],
}

impl Job<'_> {
    /// The C tool's `perform()`: 0 or 1, or an early exit. Output that the
    /// C tool buffers until the transaction ends goes to `out`.
    fn perform<S: Store>(&self, store: &S, out: &mut Vec<u8>) -> Result<i32, Exit> {
        let msgs = self.msgs;
        match self.mode {
            Mode::Read => {
                for key in self.operands {
                    let Ok(value) = read(store, key) else {
                        msgs.warnx(&cat(&[b"couldn't read path ", key]));
                        return Ok(1);
                    };
                    if self.flags.prefix {
                        out.extend_from_slice(&cat(&[key, b": "]));
                    }
                    if self.flags.raw {
                        out.extend_from_slice(&value);
                    } else {
                        out.extend_from_slice(&sanitise(&value));
                        out.push(b'\n');
                    }
                }
            }
            Mode::Write => {
                for pair in self.operands.chunks(2) {
                    let [key, spec] = pair else { break };
                    let value = if self.flags.raw { spec.clone() } else { unsanitise(spec) };
                    if path_of(key).and_then(|path| store.write(path, &value)).is_err() {
                        msgs.warnx(&cat(&[b"could not write path ", key]));
                        return Ok(1);
                    }
                }
            }
            Mode::Rm => {
                for key in self.operands {
                    if self.rm(store, key) {
                        return Ok(1);
                    }
                }
            }
            Mode::Exists => {
                for key in self.operands {
                    if read(store, key).is_err() {
                        return Ok(1);
                    }
                }
            }
            Mode::List => {
                for key in self.operands {
                    let Ok(names) = directory(store, key) else {
                        msgs.warnx(&cat(&[b"could not list path ", key]));
                        return Ok(1);
                    };
                    // No special case for "/" in 4.17: `-p /` prints "//name".
                    for name in names {
                        if self.flags.prefix {
                            out.extend_from_slice(&cat(&[key, b"/"]));
                        }
                        out.extend_from_slice(&cat(&[name.as_bytes(), b"\n"]));
                    }
                }
            }
            Mode::Ls => {
                let roots: Vec<Vec<u8>> =
                    if self.operands.is_empty() { vec![b"/".to_vec()] } else { self.operands.to_vec() };
                let stdout = io::stdout();
                let mut w = io::BufWriter::new(stdout.lock());
                let result = roots.iter().try_for_each(|root| self.ls(store, &mut w, root, 0));
                let flushed = w.flush();
                result?;
                flushed.map_err(|_| Exit(BROKEN_PIPE))?;
            }
            Mode::Chmod => {
                let Some((path, specs)) = self.operands.split_first() else { return Ok(0) };
                let mut perms = Vec::with_capacity(specs.len());
                for spec in specs {
                    let id = atoi(spec.get(1..).unwrap_or_default());
                    let letter = spec.first().copied().unwrap_or(0);
                    let access = Access::from_letter(letter).ok_or_else(|| {
                        msgs.errx(1, &cat(&[b"Invalid permission specification: '", &[letter], b"'"]))
                    })?;
                    perms.push((access, id));
                }
                self.chmod(store, path.clone(), &perms, self.flags.upto, self.flags.recurse)?;
            }
            Mode::Watch => {}
        }
        Ok(0)
    }

    /// Removes `key` (and with `-t` its emptied ancestors); true on failure.
    fn rm<S: Store>(&self, store: &S, key: &[u8]) -> bool {
        let mut path = key.to_vec();
        loop {
            if path_of(&path).and_then(|p| store.rm(p)).is_err() {
                self.msgs.warnx(&cat(&[b"could not remove path ", &path]));
                return true;
            }
            if !self.flags.tidy {
                return false;
            }
            // Go on with the parent if it has an empty value and no children.
            let Some(slash) = path.iter().rposition(|b| *b == b'/') else { return false };
            path.truncate(slash);
            let empty_value = read(store, &path).is_ok_and(|v| v.is_empty());
            if !(empty_value && directory(store, &path).is_ok_and(|names| names.is_empty())) {
                return false;
            }
        }
    }

    /// `do_chmod`: sets `path`'s permissions, then (`-u`) each ancestor's
    /// and (`-r`) each descendant's. Child paths are cut to 255 bytes, as
    /// the C tool's buffer does.
    fn chmod<S: Store>(
        &self,
        store: &S,
        path: Vec<u8>,
        perms: &[(Access, i32)],
        upto: bool,
        recurse: bool,
    ) -> Result<(), Exit> {
        if path.is_empty() {
            return Ok(());
        }
        if let Err(err) = set_perms(store, &path, perms) {
            let msg = cat(&[b"Error occurred setting permissions on '", &path, b"'"]);
            return Err(self.msgs.err(1, &msg, err.errno()));
        }
        if upto {
            let Some(slash) = path.iter().rposition(|b| *b == b'/') else {
                let msg = cat(&[b"Unable to locate path separator '/' in '", &path, b"'"]);
                return Err(self.msgs.errx(1, &msg));
            };
            self.chmod(store, path[..slash].to_vec(), perms, true, false)?;
        }
        if recurse {
            if let Ok(names) = directory(store, &path) {
                for name in names {
                    let mut child = cat(&[&path, b"/", name.as_bytes()]);
                    child.truncate(255);
                    self.chmod(store, child, perms, false, true)?;
                }
            }
        }
        Ok(())
    }

    /// `do_ls`: one line per node below `path`, depth first.
    fn ls<S: Store>(&self, store: &S, w: &mut impl Write, path: &[u8], depth: i32) -> Result<(), Exit> {
        let names = match directory(store, path) {
            Ok(names) => names,
            Err(Error::Xs(ErrorCode::ENOENT)) if depth > 0 => return Ok(()),
            Err(err) => {
                return Err(self.msgs.err(1, &cat(&[b"xs_directory (", path, b")"]), err.errno()));
            }
        };
        let Layout { max_width, desired_width, show_whole_path } = self.layout;
        for name in &names {
            let name = name.as_bytes();
            let sep: &[u8] = if path.last() == Some(&b'/') { b"" } else { b"/" };
            let mut full = cat(&[path, sep, name]);
            // The C tool composes into a 4096-byte buffer (snprintf).
            let too_long = full.len() >= STRING_MAX;
            full.truncate(STRING_MAX - 1);

            let mut line = Vec::new();
            let mut width: i32 = 0;
            if show_whole_path {
                line.extend_from_slice(&full);
            } else {
                line.resize(usize::try_from(depth).unwrap_or(0), b' ');
                width = depth;
                let shown = precision(name, max_width.wrapping_sub(TAG_LEN).wrapping_sub(width));
                line.extend_from_slice(shown);
                width = width.wrapping_add(len_i32(shown.len()));
            }
            let value = if too_long { None } else { read(store, &full).ok() };
            match value {
                None => line.extend_from_slice(b":\n"),
                Some(value) => {
                    let shown = sanitise(&value);
                    // `max_width < linewid + len + TAG_LEN` in C's types:
                    // int + unsigned, then size_t, with max_width converted.
                    let needed =
                        u64::from(u32::from_ne_bytes(width.to_ne_bytes()).wrapping_add(len_u32(value.len()))) + 8;
                    let limit = u64::from_ne_bytes(i64::from(max_width).to_ne_bytes());
                    if limit < needed {
                        line.extend_from_slice(b" = \"");
                        line.extend_from_slice(precision(&shown, max_width.wrapping_sub(TAG_LEN).wrapping_sub(width)));
                        line.extend_from_slice(b"\\...\"");
                    } else {
                        line.extend_from_slice(b" = \"");
                        line.extend_from_slice(&shown);
                        line.push(b'"');
                        width = width.wrapping_add(len_i32(shown.len() + 5));
                        if self.flags.prefix {
                            line.push(b' ');
                            width = width.wrapping_add(1);
                            while width < desired_width.min(max_width) {
                                line.push(if width & 1 == 1 { b'.' } else { b' ' });
                                width += 1;
                            }
                        }
                    }
                }
            }
            if self.flags.prefix {
                match path_of(&full).and_then(|p| store.get_perms(p)) {
                    Ok(perms) => {
                        line.extend_from_slice(b"  (");
                        let entries: Vec<String> = perms.entries().iter().map(ToString::to_string).collect();
                        line.extend_from_slice(entries.join(",").as_bytes());
                        line.push(b')');
                    }
                    Err(err) => {
                        let msg = cat(&[b"\ncould not access permissions for ", name]);
                        self.msgs.warn(&msg, err.errno());
                    }
                }
            }
            line.push(b'\n');
            w.write_all(&line).map_err(|_| Exit(BROKEN_PIPE))?;
            self.ls(store, w, &full, depth + 1)?;
        }
        Ok(())
    }
}

/// The status when stdout is gone (a closed pipe). The C tools die of
/// SIGPIPE there, which Rust programs ignore; 128 + 13 is what a shell
/// reports for that death.
const BROKEN_PIPE: i32 = 141;

/// `strlen(" = \"...\"")`.
const TAG_LEN: i32 = 8;
/// `XENSTORE_ABS_PATH_MAX + 1024`.
const STRING_MAX: usize = 4096;

fn len_i32(len: usize) -> i32 {
    i32::try_from(len).unwrap_or(i32::MAX)
}

fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// `printf("%.*s", prec, s)`: at most `prec` bytes, all of them if `prec`
/// is negative.
fn precision(s: &[u8], prec: i32) -> &[u8] {
    match usize::try_from(prec) {
        Ok(prec) => &s[..s.len().min(prec)],
        Err(_) => s,
    }
}

/// SET_PERMS with the tool's entries. Domain ids come from `atoi`, so they
/// may be outside 0..=65535 (or the list may be empty); such a list is sent
/// as the C tool formats it (`%c%d`) for the daemon to judge.
fn set_perms<S: Store>(store: &S, path: &[u8], perms: &[(Access, i32)]) -> Result<(), Error> {
    let typed: Option<Vec<Perm>> =
        perms.iter().map(|(access, id)| u16::try_from(*id).ok().map(|domid| Perm { domid, access: *access })).collect();
    if let (Ok(path), Some(list)) = (std::str::from_utf8(path), typed.and_then(PermList::new)) {
        return store.set_perms(path, &list);
    }
    let mut payload = cat(&[path, b"\0"]);
    for (access, id) in perms {
        payload.push(access.letter());
        payload.extend_from_slice(id.to_string().as_bytes());
        payload.push(0);
    }
    store.request_raw(Op::SetPerms, &payload).map(|_| ())
}

/// `xenstore-watch`: registers every key (token = the key), then prints
/// the path of each event, flushing, until `nr` events (all, if -1).
fn watch(msgs: &Messages<'_>, client: &Client, keys: &[Vec<u8>], nr: i32) -> Result<i32, Exit> {
    let fail = |key: &[u8]| msgs.errx(1, &cat(&[b"Unable to add watch on ", key, b"\n"]));
    let mut handle: Option<xenstore::Watch> = None;
    for key in keys {
        let path = path_of(key).map_err(|_| fail(key))?;
        match &mut handle {
            None => handle = Some(client.watch(path, key).map_err(|_| fail(key))?),
            Some(h) => h.add(path, key).map_err(|_| fail(key))?,
        }
    }
    let Some(events) = handle else { return Ok(0) };
    let stdout = io::stdout();
    let mut count: i32 = 0;
    let mut events = events;
    while nr == -1 || count < nr {
        // The connection ended: the C tool would spin on failed reads.
        let Some(event) = events.next() else { break };
        let mut out = stdout.lock();
        let written = out.write_all(&cat(&[event.path.as_bytes(), b"\n"])).and_then(|()| out.flush());
        written.map_err(|_| Exit(BROKEN_PIPE))?;
        count += 1;
    }
    Ok(0)
}
