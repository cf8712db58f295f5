//! Our `xenstore` binary against Debian's xenstore-utils (Xen 4.17): every
//! command line of the corpus runs with both, against the same C reference
//! daemon, from the same starting tree, and must give byte-identical
//! stdout, stderr and exit status, and leave the same tree behind.
//!
//! Both programs get the same `argv[0]` (so messages naming the program
//! match byte for byte). Needs root and the reference tools; where a Debian
//! package is missing the test is reported ignored, saying what to install
//! (failed under `XS_REQUIRE_PEERS=1`; `.ci/run` installs them). The
//! harness is `xs_peers::harness` (`harness = false` in Cargo.toml).

mod common;

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::CDaemon;
use xenstore::{Client, Store};
use xs_peers::harness::{run, Test};
use xs_peers::{Need, XENSTORE_UTILS, XEN_UTILS};

const OURS: &str = env!("CARGO_BIN_EXE_xenstore");

/// What a run produced.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    status: Option<i32>,
    stdout: String,
    stderr: String,
    tree: String,
}

/// One command line: the name it is called by, its arguments, and (for
/// our side only, when it differs) the command line that should behave the
/// same.
#[derive(Debug, Clone)]
struct Case {
    argv0: String,
    args: Vec<Vec<u8>>,
    ours: Option<(String, Vec<Vec<u8>>)>,
    socket: Option<PathBuf>,
}

fn case(argv0: &str, args: &[&str]) -> Case {
    Case {
        argv0: argv0.to_owned(),
        args: args.iter().map(|a| a.as_bytes().to_vec()).collect(),
        ours: None,
        socket: None,
    }
}

fn case_bytes(argv0: &str, args: &[&[u8]]) -> Case {
    Case { argv0: argv0.to_owned(), args: args.iter().map(|a| a.to_vec()).collect(), ours: None, socket: None }
}

fn reference_program(argv0: &str) -> PathBuf {
    let name = argv0.rsplit('/').next().unwrap_or(argv0);
    if name == "xenstore-control" {
        return PathBuf::from("/usr/lib/xen-4.17/bin/xenstore-control");
    }
    let direct = Path::new("/usr/bin").join(name);
    if direct.exists() {
        direct
    } else {
        PathBuf::from("/usr/bin/xenstore")
    }
}

fn quote(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// The whole tree, one line per node: path, value, permissions.
fn dump(client: &Client) -> String {
    fn walk(client: &Client, path: &str, out: &mut String) {
        let value = client.read(path).map(|v| quote(&v)).unwrap_or_else(|e| format!("<{e}>"));
        let perms = client.get_perms(path).map(|p| p.to_string()).unwrap_or_else(|e| format!("<{e}>"));
        out.push_str(&format!("{path} = \"{value}\" ({perms})\n"));
        for child in client.directory(path).unwrap_or_default() {
            let child_path = if path == "/" { format!("/{child}") } else { format!("{path}/{child}") };
            walk(client, &child_path, out);
        }
    }
    let mut out = String::new();
    walk(client, "/", &mut out);
    out
}

/// Puts the corpus' tree in place: everything under /t, plus nodes other
/// cases may create elsewhere removed. /big is created once and only read.
fn reset(client: &Client) {
    for path in ["/t", "/local/domain/0/t", "/local/domain/0/rel"] {
        match client.rm(path) {
            Ok(()) | Err(xenstore::Error::Xs(xenstore::ErrorCode::ENOENT)) => {}
            Err(err) => panic!("rm {path}: {err}"),
        }
    }
    client
        .transaction(|tx| {
            tx.write("/t", b"")?;
            tx.write("/t/a", b"hello")?;
            tx.write("/t/a/b", b"bin\x01\x02\x7f\xff\\\n\t\"q\"")?;
            tx.write("/t/a/c", b"")?;
            tx.write("/t/a/c/d", b"deep")?;
            tx.write("/t/long", &[b'x'; 100])?;
            tx.write("/t/averyveryveryveryveryveryveryveryveryveryveryveryveryveryveryveryverylongname", b"n")?;
            tx.write("/t/esc", &(0u8..=40).collect::<Vec<u8>>())?;
            tx.write("/t/empty", b"")?;
            tx.write("/t/chain/x/y", b"leaf")?;
            tx.write("/t/perm", b"p")?;
            let perms = xenstore::PermList::new(vec![
                xenstore::Perm { domid: 1, access: xenstore::Access::None },
                xenstore::Perm { domid: 2, access: xenstore::Access::Read },
                xenstore::Perm { domid: 3, access: xenstore::Access::Both },
            ])
            .unwrap();
            tx.set_perms("/t/perm", &perms)?;
            Ok(())
        })
        .unwrap();
}

fn spawn(program: &Path, argv0: &str, args: &[Vec<u8>], socket: &Path) -> Child {
    Command::new(program)
        .arg0(argv0)
        .args(args.iter().map(|a| OsString::from_vec(a.clone())))
        .env("XENSTORED_PATH", socket)
        .env_remove("POSIXLY_CORRECT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut out = Vec::new();
        let _ = pipe.read_to_end(&mut out);
        out
    })
}

/// Waits for `child` at most `limit`, killing it (and failing) after.
fn finish(mut child: Child, stdout: thread::JoinHandle<Vec<u8>>, what: &str) -> (Option<i32>, Vec<u8>, Vec<u8>) {
    let stderr = drain(child.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish in time");
        }
        thread::sleep(Duration::from_millis(5));
    };
    (status.code(), stdout.join().unwrap(), stderr.join().unwrap())
}

struct Harness {
    daemon: CDaemon,
    client: Client,
}

impl Harness {
    fn new() -> Harness {
        let daemon = CDaemon::start();
        let client = daemon.client();
        // Made once, before /t, so that the order of the root's children
        // is the same whatever a case creates there.
        client.mkdir("/local/domain/0").unwrap();
        client
            .transaction(|tx| {
                for i in 1..=130 {
                    tx.write(&format!("/big/child-with-a-long-name-number-{i}"), b"x")?;
                }
                Ok(())
            })
            .unwrap();
        Harness { daemon, client }
    }

    fn run_one(&self, program: &Path, argv0: &str, args: &[Vec<u8>], socket: Option<&Path>) -> Outcome {
        reset(&self.client);
        let socket = socket.unwrap_or(self.daemon.socket());
        let mut child = spawn(program, argv0, args, socket);
        let stdout = drain(child.stdout.take().unwrap());
        let what = format!("{} {:?}", program.display(), args);
        let (status, stdout, stderr) = finish(child, stdout, &what);
        Outcome { status, stdout: quote(&stdout), stderr: quote(&stderr), tree: dump(&self.client) }
    }

    /// Runs `case` with both programs; returns a description of any
    /// difference.
    fn compare(&self, case: &Case) -> Option<String> {
        let reference = self.run_one(&reference_program(&case.argv0), &case.argv0, &case.args, case.socket.as_deref());
        let (argv0, args) = case.ours.clone().unwrap_or_else(|| (case.argv0.clone(), case.args.clone()));
        let ours = self.run_one(Path::new(OURS), &argv0, &args, case.socket.as_deref());
        if reference == ours {
            return None;
        }
        let line = |args: &[Vec<u8>]| args.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ");
        let mut report = format!("`{} {}` differs:\n", case.argv0, line(&case.args));
        if reference.tree != ours.tree {
            let (r, o): (Vec<&str>, Vec<&str>) = (reference.tree.lines().collect(), ours.tree.lines().collect());
            report.push_str("  tree (lines only one side has):\n");
            for line in r.iter().filter(|l| !o.contains(l)) {
                report.push_str(&format!("    reference: {line}\n"));
            }
            for line in o.iter().filter(|l| !r.contains(l)) {
                report.push_str(&format!("    ours:      {line}\n"));
            }
        }
        for (what, r, o) in [
            ("status", format!("{:?}", reference.status), format!("{:?}", ours.status)),
            ("stdout", reference.stdout, ours.stdout),
            ("stderr", reference.stderr, ours.stderr),
        ] {
            if r != o {
                report.push_str(&format!("  {what}:\n    reference: {r}\n    ours:      {o}\n"));
            }
        }
        Some(report)
    }

    /// `xenstore-watch -n 4 /t/a` while another client changes /t/a: the
    /// events after the first one (the registration) are caused by writes
    /// made once the watch is known to be in place.
    fn watch_with_writes(&self, program: &Path) -> Outcome {
        reset(&self.client);
        let args: Vec<Vec<u8>> = vec![b"-n".to_vec(), b"4".to_vec(), b"/t/a".to_vec()];
        let mut child = spawn(program, "xenstore-watch", &args, self.daemon.socket());
        let (lines_tx, lines_rx) = mpsc::channel();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let stdout = thread::spawn(move || {
            let mut all = Vec::new();
            loop {
                let mut line = Vec::new();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        all.extend_from_slice(&line);
                        let _ = lines_tx.send(());
                    }
                }
            }
            all
        });
        lines_rx.recv_timeout(Duration::from_secs(10)).expect("the registration event");
        self.client.write("/t/a/x", b"1").unwrap();
        self.client.write("/t/a/y", b"2").unwrap();
        self.client.rm("/t/a/x").unwrap();
        let (status, stdout, stderr) = finish(child, stdout, "xenstore-watch with writes");
        Outcome { status, stdout: quote(&stdout), stderr: quote(&stderr), tree: dump(&self.client) }
    }
}

fn corpus(scratch: &Path) -> Vec<Case> {
    let all_bytes: Vec<u8> = (1u8..=255).collect();
    let huge = "h".repeat(5000);
    let missing_socket = scratch.join("no-such-socket");
    let mut cases = vec![
        // read
        case("xenstore-read", &["/t/a"]),
        case("xenstore-read", &["/t/a/b"]),
        case("xenstore-read", &["-R", "/t/a/b"]),
        case("xenstore-read", &["/t/esc"]),
        case("xenstore-read", &["-p", "/t/a", "/t/a/b"]),
        case("xenstore-read", &["-pR", "/t/a", "/t/esc"]),
        case("xenstore-read", &["--prefix", "--raw", "/t/empty"]),
        case("xenstore-read", &["/t/nope"]),
        case("xenstore-read", &["/t/a", "/t/nope", "/t/a/b"]),
        case("xenstore-read", &["bad path"]),
        case("xenstore-read", &["t/a"]),
        case("xenstore-read", &["/t/a", "-p"]),
        case("xenstore-read", &["--", "-p"]),
        case("xenstore-read", &["-s", "/t/a"]),
        case("xenstore-read", &[]),
        case("xenstore-read", &["-h"]),
        case("xenstore-read", &["--help", "/t/a"]),
        case("xenstore-read", &["-x", "/t/a"]),
        case("xenstore-read", &["--bogus=1", "/t/a"]),
        case("xenstore-read", &["--r", "/t/a"]),
        case("xenstore-read", &["--raw=1", "/t/a"]),
        case("xenstore-read", &["-f", "/t/a"]),
        case("xenstore-read", &["-n", "3", "/t/a"]),
        case("xenstore-read", &["-n"]),
        case("/opt/x/xenstore-read", &["-h"]),
        case("/opt/x/xenstore-read", &["/t/nope"]),
        case_bytes("xenstore-read", &[b"/t/\xff"]),
        // the multi-call forms
        case("xenstore", &[]),
        case("xenstore", &["-h"]),
        case("xenstore", &["bogus"]),
        case("xenstore", &["read", "/t/a"]),
        case("xenstore", &["read", "-h"]),
        case("xenstore", &["read", "-x", "/t/a"]),
        case("xenstore", &["ls", "-p", "/t/a"]),
        case("xenstore", &["write"]),
        // write
        case("xenstore-write", &["/t/w", "v"]),
        case("xenstore-write", &["/t/w", ""]),
        case("xenstore-write", &["/t/w", "\\x41\\101\\t\\\\\\q\\0end"]),
        case("xenstore-write", &["/t/w", "\\x 41\\x-1\\x0x41\\xg\\777\\x"]),
        case("xenstore-write", &["/t/w", "trailing\\"]),
        case("xenstore-write", &["-R", "/t/w", "\\x41\\"]),
        case_bytes("xenstore-write", &[b"/t/w", &all_bytes]),
        case_bytes("xenstore-write", &[b"-R", b"/t/w", &all_bytes]),
        case("xenstore-write", &["/t/w1", "1", "/t/w2", "2"]),
        case("xenstore-write", &["/t/w1", "1", "bad path", "2", "/t/w3", "3"]),
        case("xenstore-write", &["/t/a/new/deep", "v"]),
        case("xenstore-write", &["rel", "v"]),
        case("xenstore-write", &["/t/huge", &huge]),
        case("xenstore-write", &["/t/w"]),
        case("xenstore-write", &[]),
        case("xenstore-write", &["-p", "/t/w", "v"]),
        case("xenstore", &["write", "-R", "/t/w", "a\\n"]),
        // ls
        case("xenstore-ls", &["/t"]),
        case("xenstore-ls", &["-p", "/t"]),
        case("xenstore-ls", &["-f", "/t"]),
        case("xenstore-ls", &["-fp", "/t"]),
        case("xenstore-ls", &["--flat", "--prefix", "/t/a"]),
        case("xenstore-ls", &[]),
        case("xenstore-ls", &["-p"]),
        case("xenstore-ls", &["/t/a/b"]),
        case("xenstore-ls", &["/t/nope"]),
        case("xenstore-ls", &["-p", "/t/nope"]),
        case("xenstore-ls", &["/t/a", "/t/chain"]),
        case("xenstore-ls", &["/big"]),
        case("xenstore-ls", &["-s", "/t/perm"]),
        case("xenstore-ls", &["-R", "/t"]),
        case("xenstore-ls", &["/"]),
        case("xenstore-ls", &["bad path"]),
        // list
        case("xenstore-list", &["/t"]),
        case("xenstore-list", &["-p", "/t"]),
        case("xenstore-list", &["-p", "/"]),
        case("xenstore-list", &["/t/a/b"]),
        case("xenstore-list", &["/t/nope"]),
        case("xenstore-list", &["/t", "/t/nope", "/t/a"]),
        case("xenstore-list", &["/big"]),
        case("xenstore-list", &["-p", "/big"]),
        case("xenstore-list", &[]),
        case("xenstore-list", &["-R", "/t"]),
        // rm
        case("xenstore-rm", &["/t/a/b"]),
        case("xenstore-rm", &["/t/a"]),
        case("xenstore-rm", &["/t/nope"]),
        case("xenstore-rm", &["/t/nope/deeper"]),
        case("xenstore-rm", &["/t/a", "/t/nope/deeper"]),
        case("xenstore-rm", &["-t", "/t/chain/x/y"]),
        case("xenstore-rm", &["-t", "/t/a/c/d"]),
        case("xenstore-rm", &["-t", "/t/nope/deeper"]),
        case("xenstore-rm", &["--tidy", "/t/empty"]),
        case("xenstore-rm", &[]),
        case("xenstore-rm", &["-p", "/t/a"]),
        // chmod
        case("xenstore-chmod", &["/t/a", "r0"]),
        case("xenstore-chmod", &["/t/a", "b1", "r2", "w3", "n4"]),
        case("xenstore-chmod", &["-r", "/t/a", "n1", "r2"]),
        case("xenstore-chmod", &["-u", "/t/a/c/d", "w3"]),
        case("xenstore-chmod", &["-ur", "/t/a/c", "r4"]),
        case("xenstore-chmod", &["/t/nope", "r0"]),
        case("xenstore-chmod", &["/t/a", "x1"]),
        case("xenstore-chmod", &["/t/a"]),
        case("xenstore-chmod", &["/t/a", "r70000"]),
        case("xenstore-chmod", &["/t/a", "r-1"]),
        case("xenstore-chmod", &["/t/a", "rabc"]),
        case("xenstore-chmod", &["-u", "rel", "r0"]),
        case("xenstore-chmod", &["-r", "/", "r0"]),
        case("xenstore-chmod", &[]),
        // exists
        case("xenstore-exists", &["/t/a"]),
        case("xenstore-exists", &["/t/nope"]),
        case("xenstore-exists", &["/t/a", "/t/nope"]),
        case("xenstore-exists", &[]),
        case("xenstore-exists", &["-p", "/t/a"]),
        // watch
        case("xenstore-watch", &["-n", "1", "/t/a"]),
        case("xenstore-watch", &["-n0", "/t"]),
        case("xenstore-watch", &["--number=3", "/t/a", "/t/chain", "@introduceDomain"]),
        case("xenstore-watch", &["-n", "1", "bad path"]),
        case("xenstore-watch", &[]),
        case("xenstore-watch", &["-n"]),
        case("xenstore-watch", &["-p", "/t"]),
        // control
        case("xenstore-control", &[]),
        case("xenstore-control", &["help"]),
        case("xenstore-control", &["print", "from the interop test"]),
        case("xenstore-control", &["quota"]),
        case("xenstore-control", &["bogus", "a", "b"]),
        case("xenstore-control", &["log"]),
        case("xenstore-control", &["live-update"]),
        case("xenstore-control", &["live-update", "-c"]),
        case("xenstore-control", &["live-update", "-t"]),
        case("xenstore-control", &["live-update", "/no/such/binary"]),
        // no daemon there
        Case { socket: Some(missing_socket.clone()), ..case("xenstore-read", &["/t/a"]) },
        Case { socket: Some(missing_socket), ..case("xenstore-control", &["help"]) },
        Case { socket: Some(scratch.to_path_buf()), ..case("xenstore-ls", &[]) },
    ];
    // `xenstore control ...` is ours only: it must do what xenstore-control does.
    let mut alias = case("xenstore-control", &["print", "alias"]);
    alias.ours = Some(("xenstore".to_owned(), vec![b"control".to_vec(), b"print".to_vec(), b"alias".to_vec()]));
    cases.push(alias);
    cases
}

fn cli_matches_xenstore_utils_byte_for_byte() {
    let harness = Harness::new();
    let scratch = tempfile::tempdir().unwrap();
    let cases = corpus(scratch.path());
    let mut failures = Vec::new();
    for case in &cases {
        if let Some(report) = harness.compare(case) {
            failures.push(report);
        }
    }
    let reference = harness.watch_with_writes(&reference_program("xenstore-watch"));
    let ours = harness.watch_with_writes(Path::new(OURS));
    assert_eq!(reference.stdout, "/t/a\\n/t/a/x\\n/t/a/y\\n/t/a/x\\n", "the reference saw the writes");
    if reference != ours {
        failures.push(format!("xenstore-watch with writes differs:\n  reference {reference:?}\n  ours      {ours:?}"));
    }
    assert!(
        failures.is_empty(),
        "{} of {} command lines differ:\n{}",
        failures.len(),
        cases.len() + 1,
        failures.join("\n")
    );
    eprintln!("{} command lines gave identical results", cases.len() + 1);
}

fn ls_truncates_to_the_terminal_width_like_xenstore_ls() {
    // `script` gives both programs a terminal of a chosen width.
    let script = Path::new("/usr/bin/script");
    let harness = Harness::new();
    let mut failures = Vec::new();
    for cols in [0, 1, 10, 30, 50, 120] {
        for flags in ["", "-p", "-f", "-fp"] {
            let run = |program: &str| {
                reset(&harness.client);
                let command = format!("stty cols {cols}; exec -a xenstore-ls {program} {flags} /t");
                let out = Command::new(script)
                    .args(["-qec", &command, "/dev/null"])
                    .env("XENSTORED_PATH", harness.daemon.socket())
                    .env("SHELL", "/bin/bash")
                    .stdin(Stdio::null())
                    .output()
                    .unwrap();
                (out.status.code(), quote(&out.stdout))
            };
            let (reference, ours) = (run("/usr/bin/xenstore-ls"), run(OURS));
            if reference != ours {
                failures.push(format!("cols {cols} flags {flags:?}:\n  reference {reference:?}\n  ours      {ours:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `script(1)`, which gives a program a terminal of a chosen width.
const BSDUTILS: Need = Need::Package { name: "bsdutils", file: "/usr/bin/script" };

fn main() -> std::process::ExitCode {
    // The reference tools (xenstore-control is xen-utils-4.17's) and the C daemon.
    let needs = [&[XENSTORE_UTILS, XEN_UTILS][..], xs_peers::C_XENSTORED].concat();
    run(vec![
        Test::new("cli_matches_xenstore_utils_byte_for_byte", cli_matches_xenstore_utils_byte_for_byte).needs(&needs),
        Test::new(
            "ls_truncates_to_the_terminal_width_like_xenstore_ls",
            ls_truncates_to_the_terminal_width_like_xenstore_ls,
        )
        .needs(&needs)
        .needs(&[BSDUTILS]),
    ])
}
