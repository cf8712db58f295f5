//! The statistics as Prometheus text, served over HTTP to a scraper on an
//! opt-in listener (`--metrics ADDR`: a TCP address or a Unix socket path).
//!
//! The listener lives in the daemon's one loop, so it must never make the
//! store wait: requests and answers are read and written without blocking,
//! a request is at most [`REQUEST_MAX`] bytes, at most [`CLIENTS_MAX`]
//! scrapers are served at once (a new one evicts the oldest), and each
//! connection is closed after one answer. The text is built only when a
//! scrape asks for it.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Interest, Registry, Token};
use tracing::{debug, info};

use crate::server::Server;
use crate::stats::{DomainStats, Totals};

/// Where to serve the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricsAddr {
    /// A TCP address (port 0: any free port, logged at start).
    Tcp(SocketAddr),
    /// A Unix socket at this path.
    Unix(PathBuf),
}

impl MetricsAddr {
    /// A path (it contains a `/`) or `host:port`.
    pub fn parse(text: &str) -> Result<MetricsAddr, String> {
        if text.contains('/') {
            return Ok(MetricsAddr::Unix(PathBuf::from(text)));
        }
        text.parse().map(MetricsAddr::Tcp).map_err(|_| {
            format!("\"{text}\" is neither a socket path (with a /) nor an address such as 127.0.0.1:9427")
        })
    }
}

/// The listening socket's poll token.
pub(crate) const LISTENER: Token = Token(usize::MAX - 3);
/// Scrapers served at once.
const CLIENTS_MAX: usize = 16;
/// The clients' poll tokens: `CLIENT_BASE - slot`.
const CLIENT_BASE: usize = usize::MAX - 4;
/// The longest request head read before answering 400.
const REQUEST_MAX: usize = 8192;

/// Whether a poll token is one of the metrics clients'.
pub(crate) fn is_client(token: Token) -> bool {
    (CLIENT_BASE + 1 - CLIENTS_MAX..=CLIENT_BASE).contains(&token.0)
}

#[derive(Debug)]
enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

#[derive(Debug)]
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Stream::Tcp(s) => s,
            Stream::Unix(s) => s,
        }
    }

    fn io(&mut self) -> &mut dyn ReadWrite {
        match self {
            Stream::Tcp(s) => s,
            Stream::Unix(s) => s,
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// One scraper's connection: its request as read so far, then the answer
/// being written.
#[derive(Debug)]
struct Client {
    stream: Stream,
    /// When it was accepted (the oldest is evicted first).
    serial: u64,
    request: Vec<u8>,
    answer: Vec<u8>,
    written: usize,
}

/// The listener and its clients.
#[derive(Debug)]
pub(crate) struct Metrics {
    listener: Listener,
    clients: Vec<Option<Client>>,
    accepted: u64,
}

impl Metrics {
    /// Binds the listener and registers it with the poll.
    pub(crate) fn bind(addr: &MetricsAddr, registry: &Registry) -> Result<Metrics> {
        let mut listener = match addr {
            MetricsAddr::Tcp(a) => {
                Listener::Tcp(TcpListener::bind(*a).with_context(|| format!("binding the metrics address {a}"))?)
            }
            MetricsAddr::Unix(path) => {
                if std::os::unix::net::UnixStream::connect(path).is_ok() {
                    anyhow::bail!("{} is in use by a running program", path.display());
                }
                let _ = std::fs::remove_file(path);
                let l = UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
                Listener::Unix(l, path.clone())
            }
        };
        match &mut listener {
            Listener::Tcp(l) => {
                registry.register(l, LISTENER, Interest::READABLE)?;
                info!("metrics (Prometheus text) at http://{}/metrics", l.local_addr()?);
            }
            Listener::Unix(l, path) => {
                registry.register(l, LISTENER, Interest::READABLE)?;
                info!("metrics (Prometheus text) at {} (HTTP, /metrics)", path.display());
            }
        }
        Ok(Metrics { listener, clients: (0..CLIENTS_MAX).map(|_| None).collect(), accepted: 0 })
    }

    /// The Unix socket to remove at exit.
    pub(crate) fn socket_path(&self) -> Option<&std::path::Path> {
        match &self.listener {
            Listener::Unix(_, path) => Some(path),
            Listener::Tcp(_) => None,
        }
    }

    fn accept_one(&mut self) -> io::Result<Option<Stream>> {
        let accepted = match &self.listener {
            Listener::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
            Listener::Unix(l, _) => l.accept().map(|(s, _)| Stream::Unix(s)),
        };
        match accepted {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Accepts every waiting scraper; a full table evicts its oldest.
    fn accept(&mut self, registry: &Registry) {
        loop {
            let mut stream = match self.accept_one() {
                Ok(Some(s)) => s,
                Ok(None) => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!("metrics: accept failed: {e}");
                    return;
                }
            };
            let slot = match self.clients.iter().position(Option::is_none) {
                Some(free) => free,
                None => {
                    let oldest =
                        (0..CLIENTS_MAX).min_by_key(|&i| self.clients[i].as_ref().map_or(0, |c| c.serial)).unwrap_or(0);
                    self.drop_client(oldest, registry);
                    oldest
                }
            };
            let token = Token(CLIENT_BASE - slot);
            if registry.register(stream.source(), token, Interest::READABLE).is_err() {
                continue;
            }
            self.accepted += 1;
            self.clients[slot] =
                Some(Client { stream, serial: self.accepted, request: Vec::new(), answer: Vec::new(), written: 0 });
        }
    }

    fn drop_client(&mut self, slot: usize, registry: &Registry) {
        if let Some(mut client) = self.clients[slot].take() {
            let _ = registry.deregister(client.stream.source());
        }
    }
}

impl Server {
    /// Serves the statistics as Prometheus text at `addr` from now on.
    pub fn serve_metrics(&mut self, addr: &MetricsAddr) -> Result<()> {
        self.metrics = Some(Metrics::bind(addr, self.poll.registry())?);
        Ok(())
    }

    /// The metrics listener or one of its clients is ready.
    pub(crate) fn metrics_ready(&mut self, token: Token) {
        let Some(mut metrics) = self.metrics.take() else { return };
        if token == LISTENER {
            metrics.accept(self.poll.registry());
        } else {
            let slot = CLIENT_BASE - token.0;
            if !self.serve_scraper(&mut metrics, slot) {
                metrics.drop_client(slot, self.poll.registry());
            }
        }
        self.metrics = Some(metrics);
    }

    /// Reads the request, then writes the answer; `false` once the
    /// connection is done with (answered, failed or closed).
    fn serve_scraper(&self, metrics: &mut Metrics, slot: usize) -> bool {
        let Some(client) = metrics.clients[slot].as_mut() else { return true };
        if client.answer.is_empty() {
            let mut buf = [0u8; 1024];
            loop {
                match client.stream.io().read(&mut buf) {
                    Ok(0) => return false,
                    Ok(n) => client.request.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return false,
                }
                if client.request.len() > REQUEST_MAX {
                    break;
                }
            }
            let head_done = client.request.windows(4).any(|w| w == b"\r\n\r\n");
            if !head_done && client.request.len() <= REQUEST_MAX {
                return true;
            }
            client.answer = self.http_answer(&client.request);
        }
        while client.written < client.answer.len() {
            match client.stream.io().write(&client.answer[client.written..]) {
                Ok(0) => return false,
                Ok(n) => client.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let token = Token(CLIENT_BASE - slot);
                    return self.poll.registry().reregister(client.stream.source(), token, Interest::WRITABLE).is_ok();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        false
    }

    /// The HTTP answer to one request head.
    fn http_answer(&self, request: &[u8]) -> Vec<u8> {
        let line = request.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = String::from_utf8_lossy(line);
        let mut words = line.split_whitespace();
        let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let path = target.split('?').next().unwrap_or("");
        let (status, body) = if !request.windows(4).any(|w| w == b"\r\n\r\n") {
            ("400 Bad Request", "request head too long or incomplete\n".to_owned())
        } else if method != "GET" && method != "HEAD" {
            ("405 Method Not Allowed", "only GET and HEAD\n".to_owned())
        } else if path == "/metrics" || path == "/" {
            ("200 OK", self.prometheus_text())
        } else {
            ("404 Not Found", "the metrics are at /metrics\n".to_owned())
        };
        let content_type = if status.starts_with("200") {
            "text/plain; version=0.0.4; charset=utf-8"
        } else {
            "text/plain; charset=utf-8"
        };
        let mut answer = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        if method != "HEAD" {
            answer.extend_from_slice(body.as_bytes());
        }
        answer
    }

    /// Every figure, in the Prometheus text exposition format (0.0.4).
    pub(crate) fn prometheus_text(&self) -> String {
        render(&self.totals(), &self.domain_stats(0, usize::MAX))
    }
}

/// One metric family: its name, type, help, and how to read a domain's
/// value.
type Family = (&'static str, &'static str, &'static str, fn(&DomainStats) -> u64);

const DOMAIN_FAMILIES: &[Family] = &[
    ("xenstored_domain_introduced", "gauge", "1 if the domain is introduced (its ring served).", |d| {
        u64::from(d.usage.introduced)
    }),
    ("xenstored_domain_connections", "gauge", "Connections of the domain (sockets and its ring).", |d| {
        d.usage.connections as u64
    }),
    ("xenstored_domain_nodes", "gauge", "Nodes the domain owns (dom0: every node no other domain owns).", |d| {
        d.usage.usage.nodes as u64
    }),
    ("xenstored_domain_watches", "gauge", "Watches the domain's connections registered.", |d| {
        d.usage.usage.watches as u64
    }),
    ("xenstored_domain_transactions", "gauge", "Transactions open on the domain's connections.", |d| {
        d.usage.usage.transactions as u64
    }),
    ("xenstored_domain_memory_bytes", "gauge", "Store memory charged to the domain (the memory quota's count).", |d| {
        d.usage.usage.memory as u64
    }),
    ("xenstored_domain_requests_total", "counter", "Requests handled.", |d| d.counters.requests),
    ("xenstored_domain_received_bytes_total", "counter", "Bytes of requests received, headers included.", |d| {
        d.counters.bytes_in
    }),
    ("xenstored_domain_sent_bytes_total", "counter", "Bytes of replies and watch events sent.", |d| {
        d.counters.bytes_out
    }),
    ("xenstored_domain_watch_events_total", "counter", "Watch events sent.", |d| d.counters.events),
];

fn render(totals: &Totals, domains: &[DomainStats]) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: String| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
    };
    gauge("xenstored_uptime_seconds", "Seconds since the daemon started.", format!("{:.3}", totals.uptime));
    gauge("xenstored_nodes", "Nodes in the store.", totals.nodes.to_string());
    gauge("xenstored_watches", "Watches registered.", totals.watches.to_string());
    gauge("xenstored_transactions", "Transactions open.", totals.transactions.to_string());
    gauge("xenstored_connections", "Connections served (sockets and rings).", totals.connections.to_string());
    gauge("xenstored_domains", "Domains the store knows.", totals.domains.to_string());
    gauge("xenstored_queued_output_bytes", "Bytes waiting to be sent.", totals.queued_bytes.to_string());
    if let Some(rss) = totals.resident_bytes {
        gauge("xenstored_resident_memory_bytes", "Resident memory of the daemon.", rss.to_string());
    }
    let labels: Vec<String> = domains.iter().map(domain_labels).collect();
    for (name, kind, help, value) in DOMAIN_FAMILIES {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (d, l) in domains.iter().zip(&labels) {
            let _ = writeln!(out, "{name}{{{l}}} {}", value(d));
        }
    }
    let name = "xenstored_domain_refusals_total";
    let _ = writeln!(out, "# HELP {name} Requests refused, by reason (access: EACCES or EPERM; quota).");
    let _ = writeln!(out, "# TYPE {name} counter");
    for (d, l) in domains.iter().zip(&labels) {
        let _ = writeln!(out, "{name}{{{l},reason=\"access\"}} {}", d.counters.refused_access);
        let _ = writeln!(out, "{name}{{{l},reason=\"quota\"}} {}", d.counters.refused_quota);
    }
    let name = "xenstored_domain_quota";
    let _ = writeln!(out, "# HELP {name} The domain's quota, by resource (dom0 has none).");
    let _ = writeln!(out, "# TYPE {name} gauge");
    for (d, l) in domains.iter().zip(&labels) {
        if let Some(q) = d.usage.quotas {
            for kind in [
                xenstore_db::QuotaKind::Nodes,
                xenstore_db::QuotaKind::Watches,
                xenstore_db::QuotaKind::Transactions,
                xenstore_db::QuotaKind::Memory,
            ] {
                let _ = writeln!(out, "{name}{{{l},resource=\"{}\"}} {}", kind.name(), q.get(kind));
            }
        }
    }
    out
}

/// `domid="1",name="web"` (the name only when the toolstack wrote one),
/// escaped as the format requires.
fn domain_labels(d: &DomainStats) -> String {
    let mut l = format!("domid=\"{}\"", d.usage.domid);
    if let Some(name) = &d.usage.name {
        l.push_str(",name=\"");
        for ch in name.chars() {
            match ch {
                '\\' => l.push_str("\\\\"),
                '"' => l.push_str("\\\""),
                '\n' => l.push_str("\\n"),
                c => l.push(c),
            }
        }
        l.push('"');
    }
    l
}
