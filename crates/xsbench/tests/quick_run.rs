//! A quick `xs-bench compare` end to end: every workload runs against our
//! daemon (and the C and OCaml references when this machine has them),
//! checks what the daemon did, and the report step writes the markdown and
//! the PNG plots. Figures are not judged here (timing belongs in the
//! benchmark, not in tests); that they exist and make sense is.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn xs_bench(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_xs-bench")).args(args).output().expect("run xs-bench");
    assert!(
        out.status.success(),
        "xs-bench {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn values(results: &Value, group: &str, name_part: &str, daemon: &str) -> Vec<f64> {
    let figure = results["figures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["group"] == group && f["name"].as_str().unwrap().contains(name_part))
        .unwrap_or_else(|| panic!("no figure {group} / {name_part}"));
    figure["values"][daemon]
        .as_array()
        .unwrap_or_else(|| panic!("{daemon} has no value for {group} / {name_part}"))
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

#[test]
fn quick_compare_measures_every_workload_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    xs_bench(&["compare", "--quick", "--out", out.to_str().unwrap()]);
    let results: Value = serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();

    // Nothing failed: a failed workload (a lost increment, a missing watch
    // event, a wrong listing) leaves a note.
    assert_eq!(results["notes"], Value::Array(vec![]), "workloads failed");
    // Our daemon serves a quiet client under every `contained` attack (a
    // reference that does not is only reported).
    let starved: Vec<&Value> = results["observations"]
        .as_array()
        .map(|o| {
            o.iter()
                .filter(|o| o.as_str().is_some_and(|o| o.starts_with("rust:") && o.contains("was not served")))
                .collect()
        })
        .unwrap_or_default();
    assert!(starved.is_empty(), "{starved:?}");

    let present: Vec<String> = results["daemons"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["present"] == true)
        .map(|d| d["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(present.contains(&"rust".to_owned()), "our daemon did not run: {results}");
    for daemon in &present {
        for (group, name) in [
            ("Single client round trip", "READ p50"),
            ("READ throughput", "64 clients"),
            ("Subtrees", "MKDIR"),
            ("Subtrees", "children"),
            ("Transactions", "commits/s"),
            ("Watch fan-out", "50 watchers"),
            ("Many connections", "p99"),
            ("Store size", "READ p50 at 10k"),
            ("Store size", "memory per node at 10k"),
        ] {
            let v = values(&results, group, name, daemon);
            assert!(!v.is_empty() && v.iter().all(|x| x.is_finite() && *x > 0.0), "{daemon} {group} {name}: {v:?}");
        }
    }
    let ring = values(&results, "Hosted domains", "ring", "rust");
    let floor = values(&results, "Hosted domains", "floor: eventfd", "machine");
    assert!(ring[0] > floor[0], "a ring round trip cannot beat two bare wake-ups: {ring:?} vs {floor:?}");
    // The device figures: a device ring beside the floor of the same run,
    // and attaching devices to a guest (1 and 10 in a quick run).
    for (group, name, daemon) in [
        ("Device ring round trip", "floor: eventfd + shared memory ping-pong p50", "machine"),
        ("Device ring round trip", "FrontRing/BackRing request + response, eventfd wake-ups p50", "rust"),
        ("Device ring round trip", "FrontRing/BackRing request + response, eventfd wake-ups p99", "rust"),
        ("Device attach", "attach 1 in a row", "rust"),
        ("Device attach", "attach 10 in a row", "rust"),
    ] {
        let v = values(&results, group, name, daemon);
        assert!(!v.is_empty() && v.iter().all(|x| x.is_finite() && *x > 0.0), "{group} {name}: {v:?}");
    }
    // Block throughput: every case through a guest's blkfront and on the
    // image directly (the limit, in the machine column), and their ratio.
    for op in ["read", "write"] {
        for size in [4, 64] {
            for depth in [1, 32] {
                let case = format!("{op} {size} KiB QD{depth}");
                for (figure, daemon) in [
                    (format!("{case}: MB/s"), "rust"),
                    (format!("{case}: MB/s"), "machine"),
                    (format!("{case}: IOPS"), "rust"),
                    (format!("{case}: IOPS"), "machine"),
                    (format!("{case}: ours / limit"), "rust"),
                ] {
                    let v = values(&results, "Block device throughput", &figure, daemon);
                    assert!(!v.is_empty() && v.iter().all(|x| x.is_finite() && *x > 0.0), "{figure} {daemon}: {v:?}");
                }
            }
        }
    }
    // The same disk over Xen Share beside blkif: one operation in flight,
    // and each side's setup.
    for figure in [
        "read 4 KiB QD1 over Xen Share (xensblk): MB/s",
        "write 64 KiB QD1 over Xen Share (xensblk): IOPS",
        "read 4 KiB QD1: xensblk / blkif",
        "read 4 KiB QD1: median operation, blkif",
        "read 4 KiB QD1 over Xen Share (xensblk): median operation",
        "setup: blkif (xsim attach to frontend Connected)",
        "setup: xensblk (vdevice --create block to driver ok)",
    ] {
        let v = values(&results, "Block device throughput", figure, "rust");
        assert!(!v.is_empty() && v.iter().all(|x| x.is_finite() && *x > 0.0), "{figure}: {v:?}");
    }
    // The LAN against a veth pair, where the machine allows it (root,
    // iproute2, ping: CI's); else the run says why it did not measure.
    let lan_possible = rustix::process::geteuid().is_root()
        && ["/usr/bin/ping", "/usr/sbin/ip", "/usr/bin/python3"].iter().all(|p| std::path::Path::new(p).exists());
    if lan_possible {
        for figure in ["ping round trip", "TCP, one connection"] {
            for daemon in ["rust", "machine"] {
                let v = values(&results, "Xen Share LAN", figure, daemon);
                assert!(!v.is_empty() && v.iter().all(|x| x.is_finite() && *x > 0.0), "LAN {figure} {daemon}: {v:?}");
            }
        }
    } else {
        let said = results["observations"].as_array().is_some_and(|o| {
            o.iter().any(|o| o.as_str().is_some_and(|o| o.starts_with("Xen Share LAN: not measured")))
        });
        assert!(said, "the run does not say why the LAN was not measured");
    }

    let md = dir.path().join("benchmarks.md");
    std::fs::write(&md, "# Benchmarks\n\nHand-written text stays.\n").unwrap();
    let plots = dir.path().join("plots");
    xs_bench(&[
        "report",
        out.join("results.json").to_str().unwrap(),
        "--md",
        md.to_str().unwrap(),
        "--plots",
        plots.to_str().unwrap(),
    ]);
    let doc = std::fs::read_to_string(&md).unwrap();
    assert!(doc.contains("Hand-written text stays."));
    assert!(doc.contains("| goal | measured |") && doc.contains("### Store size"), "{doc}");
    for png in ["read-latency-vs-store-size.png", "throughput-vs-clients.png", "memory-per-node-vs-store-size.png"] {
        let bytes = std::fs::read(plots.join(png)).unwrap_or_else(|e| panic!("{png}: {e}"));
        assert!(bytes.starts_with(b"\x89PNG"), "{png} is not a PNG");
        assert!(doc.contains(&format!("(plots/{png})")), "{png} not linked from the markdown");
    }
    assert!(Path::new(&plots.join("results.json")).is_file());
}

/// Our xenstored in the foreground on `socket`, once it answers.
fn start_xenstored(socket: &Path) -> std::process::Child {
    let exe = Path::new(env!("CARGO_BIN_EXE_xs-bench"));
    let xenstored = exe.with_file_name("xenstored");
    assert!(xenstored.is_file(), "build the binaries first (cargo build --workspace --bins)");
    let daemon = Command::new(&xenstored)
        .args(["-N", "--socket", socket.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        assert!(std::time::Instant::now() < deadline, "xenstored did not start");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    daemon
}

#[test]
fn run_measures_one_daemon_and_names_its_column() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("socket");
    let mut daemon = start_xenstored(&socket);
    let out_dir = dir.path().join("out");
    let out = xs_bench(&[
        "run",
        "--socket",
        socket.to_str().unwrap(),
        "--name",
        "mine",
        "--only",
        "latency",
        "--quick",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    let _ = daemon.kill();
    let _ = daemon.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("measuring mine at"), "{stderr}");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("| figure | unit | machine floor | mine |"), "{table}");
    let results: Value = serde_json::from_str(&std::fs::read_to_string(out_dir.join("results.json")).unwrap()).unwrap();
    assert!(!values(&results, "Single client round trip", "READ p50", "mine").is_empty());
}

/// The figure and unit columns of the tables on stdout: what a run
/// measured, without the figures (which vary from run to run).
fn table_shape(stdout: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(stdout);
    text.lines().map(|l| l.splitn(4, '|').take(3).collect::<Vec<_>>().join("|")).collect()
}

#[test]
fn run_says_its_steps_on_stderr_and_quiet_silences_them() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("socket");
    let mut daemon = start_xenstored(&socket);
    let run = |extra: &[&str]| {
        let out_dir = dir.path().join("out");
        let args = ["run", "--socket", socket.to_str().unwrap(), "--name", "mine", "--only", "latency,store"];
        xs_bench(&[&args[..], &["--quick", "--out", out_dir.to_str().unwrap()], extra].concat())
    };
    let loud = run(&[]);
    let quiet = run(&["--quiet"]);
    let _ = daemon.kill();
    let _ = daemon.wait();

    let stderr = String::from_utf8_lossy(&loud.stderr);
    for step in [
        "xs-bench: measuring mine at",
        "xs-bench: repetition 1 of 1",
        "xs-bench: latency on mine",
        "xs-bench: store: filling mine from 0 to 1k nodes",
        "xs-bench: store: filling mine from 1k to 10k nodes",
        "xs-bench: store: latency at 10k nodes",
        "xs-bench: results in",
    ] {
        assert!(stderr.contains(step), "no {step:?} in:\n{stderr}");
    }
    // Not a terminal: no redraws.
    assert!(!stderr.contains('\r'), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&quiet.stderr), "", "--quiet printed progress");
    // Stdout holds the tables alone, the same with or without progress.
    let shape = table_shape(&loud.stdout);
    assert!(shape.iter().any(|l| l.starts_with("| READ p50 at 10k | µs")), "{shape:?}");
    assert!(!String::from_utf8_lossy(&loud.stdout).contains("xs-bench"), "progress on stdout");
    assert_eq!(shape, table_shape(&quiet.stdout));
}

#[test]
fn report_from_the_results_beside_the_plots_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let published = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/benchmarks/results.json");
    let results = dir.path().join("results.json");
    std::fs::copy(&published, &results).unwrap();
    let before = std::fs::read(&results).unwrap();
    let md = dir.path().join("b.md");
    let dir_s = dir.path().to_str().unwrap();
    xs_bench(&["report", results.to_str().unwrap(), "--md", md.to_str().unwrap(), "--plots", dir_s]);
    assert_eq!(std::fs::read(&results).unwrap(), before, "results.json was copied onto itself");
    assert!(dir.path().join("memory-per-node-vs-store-size.png").is_file());
}
