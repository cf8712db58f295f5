//! `xenstored --metrics`: the statistics as Prometheus text over HTTP,
//! scraped as a Prometheus server would, and checked with the Prometheus
//! project's own Python parser (Debian's python3-prometheus-client,
//! installed by `.ci/run`; where it is missing those tests are reported
//! ignored, see `xs_peers::harness`). Also: what a scraper cannot do to
//! the daemon.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;
use xenstore_wire::Op;
use xs_peers::harness::{run, Test};
use xs_peers::{PROMETHEUS_CLIENT, PYTHON3};

/// One HTTP exchange on a fresh connection: the whole answer.
fn http<S: Read + Write>(mut stream: S, request: &str) -> String {
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// Connects to the metrics socket. The test's daemon counts as started
/// once its store socket answers, and the metrics listener is bound a
/// little after it: a loaded machine saw the first scrape come before it
/// (ENOENT). Waits up to 10 s for it.
fn connect_metrics(socket: &Path) -> UnixStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match UnixStream::connect(socket) {
            Ok(stream) => return stream,
            Err(e)
                if Instant::now() < deadline
                    && matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("{}: {e}", socket.display()),
        }
    }
}

fn get_unix(socket: &Path, path: &str) -> String {
    let stream = connect_metrics(socket);
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    http(stream, &format!("GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n"))
}

fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// The samples as the Prometheus client library parses them:
/// `name{labels} value` lines, sorted labels, as Python prints them.
fn parse_with_prometheus_client(text: &str) -> Vec<String> {
    let python = "/usr/bin/python3";
    let script = [
        "import sys",
        "from prometheus_client.parser import text_string_to_metric_families",
        "for f in text_string_to_metric_families(sys.stdin.read()):",
        "    for s in f.samples:",
        "        labels = ','.join('%s=%s' % kv for kv in sorted(s.labels.items()))",
        "        print('%s %s{%s} %s' % (f.type, s.name, labels, s.value))",
    ]
    .join("\n");
    let mut child = Command::new(python)
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{python}: {e} (apt-get install python3 python3-prometheus-client; .ci/run does)"));
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused the text (python3-prometheus-client installed?): {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect()
}

fn a_scrape_parses_with_prometheus_own_parser_and_counts_what_was_done() {
    let dir = fresh_dir("metrics-unix");
    let metrics = dir.join("metrics.sock");
    let daemon = Daemon::start(&["--metrics", metrics.to_str().unwrap()]);
    {
        let mut c = daemon.client();
        c.write("/local/domain/0/name", b"Domain-0");
        c.write("/a", b"1");
        assert_eq!(c.call(Op::Read, 0, &p("/tool/nothing")).0, Op::Error as u32);
    }
    // The client has gone; its three requests stay dom0's. A fresh
    // connection's one request counts too.
    let mut c = daemon.client();
    c.write("/b", b"2");
    // The first client's hangup is an event of its own, which a loaded
    // machine may deliver after the scrape: scraped again until it shows
    // (a daemon that never noticed it fails here after 10 s).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let one_connection = "gauge xenstored_domain_connections{domid=0,name=Domain-0} 1.0";
    let (answer, samples) = loop {
        let answer = get_unix(&metrics, "/metrics");
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        let samples = parse_with_prometheus_client(body(&answer));
        if samples.iter().any(|s| s == one_connection) || std::time::Instant::now() > deadline {
            break (answer, samples);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(answer.contains("Content-Type: text/plain; version=0.0.4"), "{answer}");
    let has = |line: &str| samples.iter().any(|s| s == line);
    assert!(has("counter xenstored_domain_requests_total{domid=0,name=Domain-0} 4.0"), "{samples:#?}");
    assert!(has("gauge xenstored_domain_connections{domid=0,name=Domain-0} 1.0"), "{samples:#?}");
    assert!(has("counter xenstored_domain_refusals_total{domid=0,name=Domain-0,reason=access} 0.0"), "{samples:#?}");
    // `/`, `/tool`, `/tool/xenstored`, `/local`, `/local/domain`,
    // `/local/domain/0`, its name, `/a`, `/b`.
    assert!(has("gauge xenstored_nodes{} 9.0"), "{samples:#?}");
    assert!(has("gauge xenstored_domain_nodes{domid=0,name=Domain-0} 9.0"), "{samples:#?}");
    assert!(samples.iter().any(|s| s.starts_with("gauge xenstored_resident_memory_bytes{} ")), "{samples:#?}");
    assert!(samples.iter().any(|s| s.starts_with("counter xenstored_domain_sent_bytes_total{domid=0")));
}

fn metrics_on_tcp_with_any_free_port_logs_where() {
    let daemon = Daemon::start(&["--metrics", "127.0.0.1:0"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let addr = loop {
        let log = daemon.log();
        if let Some(at) = log.split("http://").nth(1) {
            break at.split("/metrics").next().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "no metrics address in the log:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let stream = TcpStream::connect(&addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let answer = http(stream, "GET /metrics HTTP/1.0\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(!parse_with_prometheus_client(body(&answer)).is_empty());
}

fn scrapers_get_clear_answers_and_cannot_hold_the_daemon() {
    let dir = fresh_dir("metrics-abuse");
    let metrics = dir.join("metrics.sock");
    let daemon = Daemon::start(&["--metrics", metrics.to_str().unwrap()]);
    assert!(get_unix(&metrics, "/other").starts_with("HTTP/1.1 404 "));
    let post = UnixStream::connect(&metrics).unwrap();
    assert!(http(post, "POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405 "));
    let head = UnixStream::connect(&metrics).unwrap();
    let answer = http(head, "HEAD /metrics HTTP/1.1\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 200 ") && body(&answer).is_empty(), "{answer}");
    // A head that never ends is answered 400 once it passes the bound.
    let mut long = UnixStream::connect(&metrics).unwrap();
    long.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = long.write_all(format!("GET /metrics HTTP/1.1\r\nX: {}\r\n", "y".repeat(20_000)).as_bytes());
    let mut answer = String::new();
    let _ = long.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    // Scrapers that connect and say nothing: the oldest are dropped, a
    // new scrape is answered, and the store never waited.
    let idle: Vec<UnixStream> = (0..40).map(|_| UnixStream::connect(&metrics).unwrap()).collect();
    let mut c = daemon.client();
    c.write("/still", b"served");
    assert!(get_unix(&metrics, "/metrics").starts_with("HTTP/1.1 200 "));
    drop(idle);
    // The socket goes with the daemon.
    let mut daemon = daemon;
    assert!(daemon.terminate());
    assert!(!metrics.exists(), "the metrics socket is removed at exit");
}

fn a_bad_metrics_address_is_refused_naming_the_option() {
    let out = Command::new(env!("CARGO_BIN_EXE_xenstored")).args(["-N", "--metrics", "nonsense"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--metrics") && err.contains("127.0.0.1:9427"), "{err}");
}

fn main() -> std::process::ExitCode {
    run(vec![
        Test::new(
            "a_scrape_parses_with_prometheus_own_parser_and_counts_what_was_done",
            a_scrape_parses_with_prometheus_own_parser_and_counts_what_was_done,
        )
        .needs(&[PYTHON3, PROMETHEUS_CLIENT]),
        Test::new("metrics_on_tcp_with_any_free_port_logs_where", metrics_on_tcp_with_any_free_port_logs_where)
            .needs(&[PYTHON3, PROMETHEUS_CLIENT]),
        Test::new(
            "scrapers_get_clear_answers_and_cannot_hold_the_daemon",
            scrapers_get_clear_answers_and_cannot_hold_the_daemon,
        ),
        Test::new(
            "a_bad_metrics_address_is_refused_naming_the_option",
            a_bad_metrics_address_is_refused_naming_the_option,
        ),
    ])
}
