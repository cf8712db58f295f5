//! Guest-side behaviour checks: each runs inside a hosted domain against
//! xenstored over the domain's ring, prints `PASS <name>` and exits 0, or
//! fails with what differed. The dom0 side (tests/guests.rs) sets up what
//! a check needs (quotas, targets) before unpausing it.

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use xenstore::{Access, Client, ErrorCode, Perm, PermList, Store};
use xenstore_ring::{Field, ERROR_PROTO, ERROR_RINGIDX, FEATURE_ERROR, FEATURE_RECONNECTION, FEATURE_WATCH_DEPTH};
use xenstore_wire::Op;

use crate::raw_ring::RawRing;

pub fn run(args: &[String]) -> Result<()> {
    let Some(name) = args.first() else { bail!("check: which one?") };
    let rest = &args[1..];
    let arg = |i: usize| -> Result<u16> {
        rest.get(i).with_context(|| format!("check {name}: missing argument {i}"))?.parse().context("not a domid")
    };
    match name.as_str() {
        "relative" => relative()?,
        "eacces" => eacces(arg(0)?)?,
        "ownership" => ownership(arg(0)?)?,
        "quota" => quota()?,
        "target" => target(arg(0)?)?,
        "linger" => linger()?,
        "reconnect" => reconnect()?,
        "corrupt" => corrupt()?,
        "oversize" => oversize()?,
        "jam-port" => jam_port()?,
        "pinger" => pinger(u32::from(arg(0)?))?,
        "steady" => steady(u32::from(arg(0)?))?,
        "resume" => resume(u32::from(arg(0)?))?,
        "resume-client" => resume_client(u32::from(arg(0)?))?,
        "device-access" => match rest {
            [devtype, devid, backend] => device_access(devtype, devid, backend)?,
            _ => bail!("check device-access TYPE DEVID BACKEND_DOMID"),
        },
        "no-access" => no_access(rest)?,
        "dom0-sockets" => crate::isolation::dom0_sockets(rest)?,
        "proc" => crate::isolation::proc_files(rest)?,
        other => bail!("no check {other:?}"),
    }
    println!("PASS {name}");
    Ok(())
}

/// Expects `result` to be the daemon's `code`.
fn expect_err<T: std::fmt::Debug>(what: &str, result: Result<T, xenstore::Error>, code: ErrorCode) -> Result<()> {
    match result {
        Err(e) if e.code() == Some(code) => Ok(()),
        other => bail!("{what}: expected {code:?}, got {other:?}"),
    }
}

fn me(client: &Client) -> Result<u16> {
    Ok(String::from_utf8(client.read("domid")?)?.parse()?)
}

/// Relative paths resolve under `/local/domain/<me>`, and watch events on
/// relative watches come back relative.
fn relative() -> Result<()> {
    let client = Client::open()?;
    let me = me(&client)?;
    let home = client.get_domain_path(me)?;
    ensure!(home == format!("/local/domain/{me}"), "GET_DOMAIN_PATH: {home}");
    client.write("data/rel", b"v1")?;
    ensure!(client.read(&format!("{home}/data/rel"))? == b"v1", "relative write not at the absolute path");
    let watch = client.watch("data/rel", "tok")?;
    let first = watch.recv_timeout(Duration::from_secs(5)).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    ensure!(first.path == "data/rel", "initial event path {:?}", first.path);
    client.write(&format!("{home}/data/rel"), b"v2")?;
    let second = watch.recv_timeout(Duration::from_secs(5)).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    ensure!(second.path == "data/rel", "event path for an absolute write: {:?}", second.path);
    let listing = client.directory("data")?;
    ensure!(listing.contains(&"rel".to_owned()), "DIRECTORY data: {listing:?}");
    Ok(())
}

/// Another domain's nodes, dom0's, and read-only nodes are refused with
/// the C daemon's answers.
fn eacces(other: u16) -> Result<()> {
    let client = Client::open()?;
    expect_err("read dom0's name", client.read("/local/domain/0/name"), ErrorCode::EACCES)?;
    expect_err(
        "write into another domain",
        client.write(&format!("/local/domain/{other}/data/x"), b"x"),
        ErrorCode::EACCES,
    )?;
    expect_err(
        "read a missing node under an unreadable directory",
        client.read(&format!("/local/domain/{other}/data/missing")),
        ErrorCode::EACCES,
    )?;
    expect_err(
        "rm a missing node under an unwritable parent",
        client.rm(&format!("/local/domain/{other}/data/missing")),
        ErrorCode::EACCES,
    )?;
    expect_err("write my read-only name", client.write("name", b"evil"), ErrorCode::EACCES)?;
    expect_err("CONTROL from a guest", client.control(&[b"help"]), ErrorCode::EACCES)?;
    expect_err("INTRODUCE from a guest", client.introduce(other, 1, 1), ErrorCode::EACCES)?;
    ensure!(!client.read("name")?.is_empty(), "my own name is readable");
    Ok(())
}

/// What a guest creates is its own; it may share it but not give it away.
fn ownership(other: u16) -> Result<()> {
    let client = Client::open()?;
    let me = me(&client)?;
    client.write("data/mine", b"x")?;
    let perms = client.get_perms("data/mine")?;
    ensure!(perms.owner() == me, "owner of a created node: {perms:?}");
    let share =
        PermList::new(vec![Perm { domid: me, access: Access::None }, Perm { domid: other, access: Access::Read }])
            .context("perm list")?;
    client.set_perms("data/mine", &share)?;
    let give = PermList::new(vec![Perm { domid: other, access: Access::None }]).context("perm list")?;
    expect_err("giving a node away", client.set_perms("data/mine", &give), ErrorCode::EPERM)?;
    let mut six = vec![Perm { domid: me, access: Access::None }];
    six.extend((0..5).map(|_| Perm { domid: other, access: Access::Read }));
    let six = PermList::new(six).context("perm list")?;
    expect_err("a sixth permission entry", client.set_perms("data/mine", &six), ErrorCode::ENOSPC)?;
    Ok(())
}

/// dom0 lowered this domain's quotas (nodes 12, watches 2, transactions 2):
/// each runs out with its error, and freeing a node makes room again.
fn quota() -> Result<()> {
    let client = Client::open()?;
    let mut created = 0;
    let err = loop {
        match client.write(&format!("data/q{created}"), b"x") {
            Ok(()) => created += 1,
            Err(e) => break e,
        }
        ensure!(created < 100, "node quota never reached");
    };
    ensure!(err.code() == Some(ErrorCode::ENOSPC), "node quota: {err:?}");
    ensure!(created > 0, "not even one node could be created");
    client.rm("data/q0")?;
    client.write("data/again", b"x").context("a node after freeing one")?;
    let w1 = client.watch("data", "a")?;
    let w2 = client.watch("data", "b")?;
    expect_err("third watch", client.watch("data", "c").map(|_| ()), ErrorCode::E2BIG)?;
    drop((w1, w2));
    let t1 = client.transaction_start()?;
    let t2 = client.transaction_start()?;
    expect_err("third transaction", client.transaction_start().map(|_| ()), ErrorCode::ENOSPC)?;
    t1.abort()?;
    t2.abort()?;
    println!("quota: {created} nodes before ENOSPC");
    Ok(())
}

/// dom0 made this domain act for `target` (SET_TARGET): the target's
/// nodes are ours to read and write.
fn target(target: u16) -> Result<()> {
    let client = Client::open()?;
    let path = format!("/local/domain/{target}/data/by-target");
    client.write(&path, b"hi").context("writing the target's node")?;
    ensure!(client.read(&path)? == b"hi", "reading it back");
    ensure!(!client.read(&format!("/local/domain/{target}/name"))?.is_empty(), "target's name");
    Ok(())
}

/// Creates nodes and waits to be destroyed (dom0 checks they go).
fn linger() -> Result<()> {
    let client = Client::open()?;
    client.write("data/linger/a", b"1")?;
    client.write("data/linger/b", b"2")?;
    client.write("data/ready", b"1")?;
    println!("READY");
    std::thread::sleep(Duration::from_secs(600));
    bail!("was not destroyed")
}

/// A reconnection mid-stream drops a partial packet and the connection's
/// watches, and the ring works afterwards.
fn reconnect() -> Result<()> {
    let mut raw = RawRing::open()?;
    let features = raw.field(Field::ServerFeatures);
    let want = FEATURE_RECONNECTION | FEATURE_ERROR | FEATURE_WATCH_DEPTH;
    ensure!(features & want == want, "server features {features:#x}, want {want:#x}");
    let id = raw.send(Op::Watch, b"data/w\0tok\0")?;
    let reply = raw.reply(id)?;
    ensure!(reply.header.op == Op::Watch as u32, "WATCH reply {:?}", reply.header);
    // Half a WRITE: the header promises 100 bytes, 10 follow.
    let header = xenstore_wire::Header { op: Op::Write as u32, req_id: 99, tx_id: 0, len: 100 };
    raw.send_bytes(&header.encode())?;
    raw.send_bytes(b"data/w\0xyz")?;
    raw.reconnect()?;
    let id = raw.send(Op::Read, b"domid\0")?;
    let reply = raw.reply(id)?;
    ensure!(reply.payload == raw.domid.to_string().as_bytes(), "READ after reconnect: {:?}", reply.payload);
    let id = raw.send(Op::Write, b"data/w\0after")?;
    let reply = raw.reply(id)?;
    ensure!(reply.header.op == Op::Write as u32, "WRITE after reconnect: {:?}", reply.header);
    if let Some(p) = raw.recv(Duration::from_millis(300))? {
        bail!("the watch survived the reconnection: {:?} {:?}", p.header, String::from_utf8_lossy(&p.payload));
    }
    Ok(())
}

/// Writes `data/r/N = N` one at a time over the raw ring, through at
/// least one crash and restart of xenstored (`--persist`): when the error
/// indicator is set (the restarted daemon sets `XENSTORE_ERROR_COMM`) it
/// reconnects and goes on with the next N; the write in flight then may or
/// may not have happened. Ends once `count` writes were acknowledged after
/// a restart, then checks that every acknowledged write is there.
fn resume(count: u32) -> Result<()> {
    let mut raw = RawRing::open()?;
    raw.reconnect()?;
    let (mut acked, mut after_restart, mut restarts) = (Vec::new(), 0u32, 0u32);
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    let mut n = 0u32;
    while restarts == 0 || after_restart < count {
        ensure!(std::time::Instant::now() < deadline, "{restarts} restarts, {after_restart} writes after");
        if raw.field(Field::Error) != 0 {
            raw.reconnect()?;
            restarts += 1;
            println!("resume: error indicator set after {} writes: reconnected", acked.len());
            continue;
        }
        let id = raw.send(Op::Write, format!("data/r/{n}\0{n}").as_bytes())?;
        let mut answered = false;
        let wait_until = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < wait_until {
            match raw.recv(Duration::from_millis(50))? {
                Some(p) if p.header.req_id == id => {
                    ensure!(p.header.op == Op::Write as u32, "WRITE {n}: {:?} {:?}", p.header, p.payload);
                    answered = true;
                    break;
                }
                Some(_) => continue,
                None if raw.field(Field::Error) != 0 => break,
                None => continue,
            }
        }
        if answered {
            acked.push(n);
            if restarts > 0 {
                after_restart += 1;
            }
        }
        n += 1;
    }
    for k in &acked {
        let id = raw.send(Op::Read, format!("data/r/{k}\0").as_bytes())?;
        let reply = raw.reply(id)?;
        ensure!(reply.payload == k.to_string().as_bytes(), "acknowledged data/r/{k} lost: {:?}", reply.header);
    }
    println!("resume: {} writes acknowledged, {restarts} restarts, all there", acked.len());
    Ok(())
}

/// [`resume`] with the ordinary [`Client`] instead of the raw ring: writes
/// `data/c/N = N` one at a time, watching `data/c`, through at least one
/// crash and restart of xenstored. The client resumes the ring by itself:
/// the write in flight then fails with [`xenstore::Error::Restarted`] (it
/// may or may not have happened) and the watch is registered again. Ends
/// once `count` writes were acknowledged after a restart, then checks that
/// the watch reported writes made after the restart and that every
/// acknowledged write is there.
fn resume_client(count: u32) -> Result<()> {
    let client = Client::open()?;
    let watch = client.watch("data/c", "resume-client")?;
    watch.recv_timeout(Duration::from_secs(10)).context("the watch did not fire at registration")?;
    let (mut acked, mut after_restart, mut restarts) = (Vec::new(), 0u32, 0u32);
    // The first N written after the (last) restart, and how many events
    // for writes from there on the watch delivered.
    let (mut first_after, mut seen_after) = (None::<u32>, 0u32);
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    let mut n = 0u32;
    while restarts == 0 || after_restart < count {
        ensure!(std::time::Instant::now() < deadline, "{restarts} restarts, {after_restart} writes after");
        match client.write(&format!("data/c/{n}"), n.to_string().as_bytes()) {
            Ok(()) => {
                acked.push(n);
                if restarts > 0 {
                    after_restart += 1;
                    first_after.get_or_insert(n);
                }
            }
            Err(e) if e.is_restarted() => {
                restarts += 1;
                println!("resume-client: write {n} cut off after {} acknowledged: {e}", acked.len());
                first_after = None;
            }
            Err(e) => bail!("write {n}: {e}"),
        }
        while let Ok(event) = watch.try_recv() {
            let k = event.path.strip_prefix("data/c/").and_then(|k| k.parse::<u32>().ok());
            if let (Some(k), Some(first)) = (k, first_after) {
                if k >= first {
                    seen_after += 1;
                }
            }
        }
        n += 1;
    }
    // The events of the last writes may still be on their way.
    while seen_after == 0 {
        let event = watch.recv_timeout(Duration::from_secs(10)).context("no watch event after the restart")?;
        let k = event.path.strip_prefix("data/c/").and_then(|k| k.parse::<u32>().ok());
        if k.zip(first_after).is_some_and(|(k, first)| k >= first) {
            seen_after += 1;
        }
    }
    ensure!(!client.is_closed(), "the client closed");
    for k in &acked {
        let value = client.read(&format!("data/c/{k}")).with_context(|| format!("acknowledged data/c/{k}"))?;
        ensure!(value == k.to_string().as_bytes(), "acknowledged data/c/{k} lost: {value:?}");
    }
    println!(
        "resume-client: {} writes acknowledged ({after_restart} after), {restarts} restarted errors, \
         {seen_after} watch events after, all there",
        acked.len()
    );
    Ok(())
}

/// Corrupt indices: xenstored sets the error indicator to 2 and stops
/// serving this ring.
fn corrupt() -> Result<()> {
    let mut raw = RawRing::open()?;
    ensure!(raw.field(Field::ServerFeatures) & FEATURE_ERROR != 0, "no error indicator advertised");
    let cons = raw.field(Field::ReqCons);
    raw.ring.set_raw_field(Field::ReqProd, cons.wrapping_add(5000));
    raw.kick()?;
    for _ in 0..100 {
        if raw.field(Field::Error) == ERROR_RINGIDX {
            println!("error indicator {ERROR_RINGIDX} set");
            return Ok(());
        }
        raw.wait(Duration::from_millis(50))?;
    }
    bail!("error indicator is {}, not {ERROR_RINGIDX}", raw.field(Field::Error))
}

/// Round trips: a guest that keeps working while another misbehaves
/// (the dom0 side bounds the whole run).
fn pinger(count: u32) -> Result<()> {
    let client = Client::open()?;
    let mut worst = Duration::ZERO;
    for i in 0..count {
        let t = std::time::Instant::now();
        client.write("data/ping", i.to_string().as_bytes())?;
        ensure!(client.read("data/ping")? == i.to_string().as_bytes(), "ping {i}");
        worst = worst.max(t.elapsed());
    }
    println!("pinger: {count} round trips, worst {worst:?}");
    Ok(())
}

/// For `millis` milliseconds: writes distinct nodes under its home, reads
/// each back, runs a transaction now and then, and watches its own
/// writes; every request must succeed and every event arrive, once. What
/// a guest sees of a live update of xenstored: a delay, nothing else.
fn steady(millis: u32) -> Result<()> {
    let client = Client::open()?;
    let watch = client.watch("data/steady", "s")?;
    let until = std::time::Instant::now() + Duration::from_millis(u64::from(millis));
    let mut n = 0u32;
    while std::time::Instant::now() < until {
        let path = format!("data/steady/{n}");
        client.write(&path, n.to_string().as_bytes()).with_context(|| format!("write {n}"))?;
        ensure!(client.read(&path).with_context(|| format!("read {n}"))? == n.to_string().as_bytes(), "read {n}");
        if n % 16 == 0 {
            client.transaction(|tx| tx.write("data/steady-tx", n.to_string().as_bytes())).context("transaction")?;
        }
        client.rm(&path).with_context(|| format!("rm {n}"))?;
        n += 1;
    }
    // Each node fired twice (written, removed); the daemon may coalesce
    // the second with the first while that one is still queued (an
    // identical event tells the watcher nothing more). So: once or twice
    // per node, never none.
    let mut seen = std::collections::BTreeMap::<String, u32>::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while seen.len() < n as usize && std::time::Instant::now() < deadline {
        if let Ok(event) = watch.recv_timeout(Duration::from_millis(100)) {
            if let Some(leaf) = event.path.strip_prefix("data/steady/") {
                *seen.entry(leaf.to_owned()).or_default() += 1;
            }
        }
    }
    // Late duplicates would show here too.
    while let Ok(event) = watch.recv_timeout(Duration::from_millis(200)) {
        if let Some(leaf) = event.path.strip_prefix("data/steady/") {
            *seen.entry(leaf.to_owned()).or_default() += 1;
        }
    }
    let wrong: Vec<u32> = (0..n).filter(|i| !matches!(seen.get(&i.to_string()), Some(1 | 2))).take(5).collect();
    ensure!(wrong.is_empty(), "events missing or more than two for nodes {wrong:?} of {n}");
    println!("steady: {n} rounds, every request answered, every event seen");
    Ok(())
}

/// A payload over 4096 bytes: xenstored sets the error indicator to 3 and
/// stops serving this ring; a reconnection brings it back.
fn oversize() -> Result<()> {
    let mut raw = RawRing::open()?;
    let header = xenstore_wire::Header { op: Op::Write as u32, req_id: 7, tx_id: 0, len: 5000 };
    raw.send_bytes(&header.encode())?;
    for _ in 0..100 {
        if raw.field(Field::Error) == ERROR_PROTO {
            raw.reconnect()?;
            ensure!(raw.field(Field::Error) == 0, "error indicator not cleared by the reconnection");
            let id = raw.send(Op::Read, b"domid\0")?;
            let reply = raw.reply(id)?;
            ensure!(reply.payload == raw.domid.to_string().as_bytes(), "READ after reconnect: {:?}", reply.payload);
            return Ok(());
        }
        raw.wait(Duration::from_millis(50))?;
    }
    bail!("error indicator is {}, not {ERROR_PROTO}", raw.field(Field::Error))
}

/// The frontend of device DEVID of TYPE served by domain BACKEND, as the
/// toolstack made it: this domain reads and writes its own directory,
/// reads the backend's and may not write it.
fn device_access(devtype: &str, devid: &str, backend: &str) -> Result<()> {
    let client = Client::open()?;
    let me = me(&client)?;
    let own = format!("/local/domain/{me}/device/{devtype}/{devid}");
    let other = format!("/local/domain/{backend}/backend/{devtype}/{me}/{devid}");
    ensure!(client.read(&format!("{own}/state"))? == b"1", "{own}/state is not 1");
    client.write(&format!("{own}/ring-ref"), b"8").with_context(|| format!("writing into {own}"))?;
    client.read(&format!("{other}/state")).with_context(|| format!("reading {other}/state"))?;
    ensure!(!client.directory(&other)?.is_empty(), "{other} lists nothing");
    expect_err("writing the backend's state", client.write(&format!("{other}/state"), b"4"), ErrorCode::EACCES)?;
    expect_err("adding to the backend's directory", client.write(&format!("{other}/mine"), b"x"), ErrorCode::EACCES)?;
    Ok(())
}

/// A domain with no part in a device can neither read, list nor write its
/// directories.
fn no_access(dirs: &[String]) -> Result<()> {
    ensure!(!dirs.is_empty(), "check no-access DIR...");
    let client = Client::open()?;
    for dir in dirs {
        expect_err(&format!("reading {dir}/state"), client.read(&format!("{dir}/state")), ErrorCode::EACCES)?;
        expect_err(&format!("listing {dir}"), client.directory(dir), ErrorCode::EACCES)?;
        expect_err(&format!("writing {dir}/state"), client.write(&format!("{dir}/state"), b"6"), ErrorCode::EACCES)?;
    }
    Ok(())
}

/// Tries to make the daemon block in its notification of this guest: the
/// descriptor this guest polls its store port with is, on a platform that
/// hands out the eventfd itself, the one the daemon writes to notify it.
/// Made blocking (the flag is the open file's, shared with every holder)
/// and filled to the counter's maximum, the daemon's next `write` of 1
/// would never return. Then a request, whose reply is that notification.
/// The check passes when it got its reply: dom0's side (tests/guests.rs)
/// then checks that the daemon still serves everyone.
fn jam_port() -> Result<()> {
    use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
    let mut raw = RawRing::open()?;
    raw.reconnect()?;
    let fd = raw.port_descriptor()?;
    let filled = rustix::io::write(&fd, &(u64::MAX - 1).to_ne_bytes());
    let flags = fcntl_getfl(&fd).map(|f| f - OFlags::NONBLOCK);
    let blocking = flags.and_then(|f| fcntl_setfl(&fd, f));
    println!("jam-port: filling the port's descriptor: {filled:?}, making it blocking: {blocking:?}");
    for n in 0..3 {
        let id = raw.send(Op::Read, b"domid\0")?;
        let reply = raw.reply(id)?;
        ensure!(reply.header.op == Op::Read as u32, "READ {n}: {:?}", reply.header);
    }
    Ok(())
}
