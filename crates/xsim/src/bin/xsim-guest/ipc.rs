//! One side of the two-guest message exchange (the XTF scenario).
//!
//! The runner wrote `/ipc/a` and `/ipc/b` (the two domids) and, for each
//! guest, an inbox `/local/domain/<me>/data/inbox` that the peer may
//! write and an `ack` node the peer may read. Each guest sends
//! `count` messages into the peer's inbox, one node per message named by
//! its sequence number, from several threads (many requests in flight),
//! never more than `window` ahead of the peer's acknowledgement (the
//! peer's node quota bounds what may sit in an inbox). It receives by
//! watching its own inbox: on every event it consumes messages strictly
//! in sequence order, checks each one's content, removes it and publishes
//! how far it got in `ack`. Lost, duplicated or reordered messages fail
//! the run. Success writes `data/result` = `ok`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use xenstore::{Client, ErrorCode, Store};

struct Settings {
    count: u64,
    window: u64,
    threads: u64,
    timeout: Duration,
}

fn parse(args: &[String]) -> Result<Settings> {
    let mut s = Settings { count: 10_000, window: 256, threads: 8, timeout: Duration::from_secs(300) };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || -> Result<u64> {
            let v = it.next().with_context(|| format!("{a} needs a value"))?;
            v.parse().with_context(|| format!("{a}: bad number {v:?}"))
        };
        match a.as_str() {
            "--count" => s.count = value()?,
            "--window" => s.window = value()?.max(1),
            "--threads" => s.threads = value()?.max(1),
            "--timeout" => s.timeout = Duration::from_secs(value()?),
            other => bail!("unknown option {other}"),
        }
    }
    Ok(s)
}

/// How far the peer has consumed our messages, and a way to wait for it.
struct Acked {
    upto: Mutex<u64>,
    moved: Condvar,
}

pub fn run(args: &[String]) -> Result<()> {
    let settings = parse(args)?;
    let client = Arc::new(Client::open().context("connecting to xenstored over the ring")?);
    let me: u16 = text(&client.read("domid")?)?.parse()?;
    let a: u16 = text(&client.read("/ipc/a")?)?.parse()?;
    let b: u16 = text(&client.read("/ipc/b")?)?.parse()?;
    let peer = if me == a {
        b
    } else if me == b {
        a
    } else {
        bail!("domain {me} is neither /ipc/a nor /ipc/b")
    };
    println!("ipc: domain {me} <-> domain {peer}, {} messages each way", settings.count);
    let started = Instant::now();
    let deadline = started + settings.timeout;

    // Acknowledgements from the peer: its `ack` node, watched.
    let acked = Arc::new(Acked { upto: Mutex::new(0), moved: Condvar::new() });
    let peer_ack = format!("/local/domain/{peer}/data/ack");
    let ack_watch = client.watch(&peer_ack, "ack")?;
    let ack_thread = {
        let (client, acked, count) = (client.clone(), acked.clone(), settings.count);
        std::thread::spawn(move || -> Result<()> {
            loop {
                let upto: u64 = text(&client.read(&peer_ack)?)?.parse().unwrap_or(0);
                let mut cur = acked.upto.lock().map_err(|_| anyhow!("poisoned"))?;
                if upto > *cur {
                    *cur = upto;
                    acked.moved.notify_all();
                }
                if *cur >= count {
                    return Ok(());
                }
                drop(cur);
                if Instant::now() > deadline {
                    bail!("timed out waiting for acknowledgements");
                }
                let _ = ack_watch.recv_timeout(Duration::from_secs(1));
            }
        })
    };

    // Senders: many writes in flight at once.
    let next = Arc::new(AtomicU64::new(0));
    let peer_inbox = format!("/local/domain/{peer}/data/inbox");
    let mut senders: Vec<_> = (0..settings.threads)
        .map(|_| {
            let (client, acked, next, inbox) = (client.clone(), acked.clone(), next.clone(), peer_inbox.clone());
            let (count, window) = (settings.count, settings.window);
            std::thread::spawn(move || -> Result<()> {
                loop {
                    let seq = next.fetch_add(1, Ordering::Relaxed);
                    if seq >= count {
                        return Ok(());
                    }
                    let mut upto = acked.upto.lock().map_err(|_| anyhow!("poisoned"))?;
                    while seq >= *upto + window {
                        if Instant::now() > deadline {
                            bail!("timed out waiting for the window (message {seq})");
                        }
                        upto =
                            acked.moved.wait_timeout(upto, Duration::from_secs(1)).map_err(|_| anyhow!("poisoned"))?.0;
                    }
                    drop(upto);
                    client
                        .write(&format!("{inbox}/{seq}"), format!("{me}:{seq}").as_bytes())
                        .with_context(|| format!("sending message {seq}"))?;
                }
            })
        })
        .collect();

    // Receiver.
    let inbox = format!("/local/domain/{me}/data/inbox");
    let my_ack = format!("/local/domain/{me}/data/ack");
    let watch = client.watch(&inbox, "inbox")?;
    let mut expected: u64 = 0;
    let mut published: u64 = 0;
    while expected < settings.count {
        let event = match watch.recv_timeout(Duration::from_secs(1)) {
            Ok(event) => Some(event),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
            Err(e) => bail!("inbox watch ended: {e:?}"),
        };
        // A sender that failed says why now, not after the deadline.
        while let Some(i) = senders.iter().position(|s| s.is_finished()) {
            senders.swap_remove(i).join().map_err(|_| anyhow!("a sender panicked"))??;
        }
        if Instant::now() > deadline {
            bail!("timed out: received {expected} of {} messages", settings.count);
        }
        // A message we already consumed must not show up again.
        if let Some(seq) = event.as_ref().and_then(|e| e.path.rsplit('/').next()).and_then(|s| s.parse::<u64>().ok()) {
            if seq < expected && client.exists(&format!("{inbox}/{seq}"))? {
                bail!("message {seq} delivered twice");
            }
        }
        loop {
            let path = format!("{inbox}/{expected}");
            match client.read(&path) {
                Ok(value) => {
                    let want = format!("{peer}:{expected}");
                    if value != want.as_bytes() {
                        bail!("message {expected}: expected {want:?}, got {:?}", String::from_utf8_lossy(&value));
                    }
                    client.rm(&path)?;
                    expected += 1;
                    if expected - published >= 32 || expected == settings.count {
                        client.write(&my_ack, expected.to_string().as_bytes())?;
                        published = expected;
                    }
                }
                Err(e) if e.code() == Some(ErrorCode::ENOENT) => break,
                Err(e) => return Err(e).with_context(|| format!("reading {path}")),
            }
        }
    }
    if expected != published {
        client.write(&my_ack, expected.to_string().as_bytes())?;
    }
    for s in senders {
        s.join().map_err(|_| anyhow!("a sender panicked"))??;
    }
    ack_thread.join().map_err(|_| anyhow!("the ack thread panicked"))??;
    let leftover = client.directory(&inbox)?;
    if !leftover.is_empty() {
        bail!("{} unexpected messages left in the inbox: {:?}", leftover.len(), &leftover[..leftover.len().min(5)]);
    }
    let elapsed = started.elapsed();
    client.write("data/result", b"ok")?;
    println!("ipc: sent and received {} messages each way in {:.2} s; PASS", settings.count, elapsed.as_secs_f64());
    Ok(())
}

fn text(bytes: &[u8]) -> Result<String> {
    Ok(std::str::from_utf8(bytes).context("not UTF-8")?.trim().to_owned())
}
