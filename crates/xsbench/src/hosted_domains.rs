//! Many hosted domains, in the hosted phase: for N domains, create and
//! introduce them one after another, give each a device through a
//! xenbus-style handshake, then destroy them; per domain, for each step.
//! Flat per-domain costs from N = 10 to N = 10,000 say that nothing on
//! the way (hypervisor, toolstack, xenstored) walks every domain per
//! operation.
//!
//! The handshake is Linux's, played by the bench over two dom0 socket
//! connections, one for every backend and one for every frontend, as a
//! driver domain's and a guest's xenbus each watch the other end's
//! `state` node: the toolstack writes both directories (state 1,
//! Initialising) in one transaction, the backend goes to InitWait (2),
//! the frontend, woken by its watch, writes its ring details and goes to
//! Initialised (3), the backend, woken, reads them and goes to Connected
//! (4), the frontend, woken, goes to Connected (4), and the backend sees
//! it. Each step waits for the watch event the real driver waits for.
//! Guests are left paused: 10,000 running guests, each with its own
//! client on its ring, would measure the scheduler of a 2-core machine
//! rather than the control plane, and a paused process costs the kernel
//! least, which is what lets the count go highest here.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use xen_platform::DomId;
use xenstore::Store;
use xenstore_wire::Op;
use xsim::{DomainSpec, StateDir, Toolstack};

use crate::conn::{z, Conn};
use crate::limits::{self, Held};
use crate::progress::Counter;
use crate::stats::micros;

/// Per-domain microseconds of each step for one N, and what the host
/// held with all N domains up.
#[derive(Debug, Clone, Copy)]
pub struct PerDomain {
    /// The hypervisor's descriptors and memory with the N domains up.
    pub hypervisor: Option<Held>,
    /// xenstored's, likewise.
    pub xenstored: Option<Held>,
    /// The machine's available memory with the N domains up, KiB.
    pub available_kib: Option<u64>,
    /// Create + introduce.
    pub create: f64,
    /// The device handshake.
    pub handshake: f64,
    /// Destroy + release (and the backend directory's removal).
    pub destroy: f64,
}

/// The device type of the handshake (a network interface's name).
const DEVICE: &str = "vif";

/// Creates, connects and destroys `n` domains; per-domain costs. A
/// domain that cannot be created stops the run with an error that says
/// how far it got (the limits are the caller's to report); the domains
/// made so far are destroyed first.
pub fn run(ts: &mut Toolstack, state: &StateDir, n: usize) -> Result<PerDomain> {
    let mut domids = Vec::with_capacity(n);
    let created = create(ts, n, &mut domids);
    let peak = |file: &std::path::Path| xsim::host::pid_of(file).and_then(limits::held);
    let (hypervisor, xenstored) = (peak(&state.hypervisor_pid()), peak(&state.xenstored_pid()));
    let available_kib = limits::available_kib();
    let result = created.and_then(|create| {
        let handshake = handshake(state, &domids)?;
        Ok((create, handshake))
    });
    let destroyed = destroy(ts, &domids);
    let (create, handshake) = result?;
    let destroy = destroyed?;
    // Counts fit f64 exactly.
    #[allow(clippy::cast_precision_loss)]
    let per = |us: f64| us / n as f64;
    Ok(PerDomain {
        hypervisor,
        xenstored,
        available_kib,
        create: per(create),
        handshake: per(handshake),
        destroy: per(destroy),
    })
}

/// Creates and introduces `n` paused domains, pushing each id; the
/// microseconds it took.
fn create(ts: &mut Toolstack, n: usize, domids: &mut Vec<DomId>) -> Result<f64> {
    let mut counter = Counter::new("created", n, "domains");
    let began = Instant::now();
    for i in 0..n {
        counter.update(i);
        let spec = DomainSpec {
            name: format!("idle{i}"),
            program: vec!["/bin/sleep".into(), "3600".into()],
            env: Vec::new(),
            paused: true,
            netns: false,
            fuse: false,
        };
        let new = ts.create(&spec).with_context(|| format!("creating domain {} of {n}", i + 1))?;
        domids.push(new.domid);
    }
    let elapsed = micros(began.elapsed());
    counter.finish(n);
    Ok(elapsed)
}

/// The two ends' paths of domain `domid`'s device 0.
fn paths(domid: DomId) -> (String, String) {
    (format!("{}/0", backend_dir(domid)), format!("/local/domain/{domid}/device/{DEVICE}/0"))
}

/// Dom0's directory of domain `domid`'s backends of the type.
fn backend_dir(domid: DomId) -> String {
    format!("/local/domain/0/backend/{DEVICE}/{domid}")
}

/// Connects a device to each domain, one after another; the
/// microseconds it took. Both connections keep their watches until the
/// end, as drivers do while their devices live.
fn handshake(state: &StateDir, domids: &[DomId]) -> Result<f64> {
    let socket = state.xenstored_socket();
    let mut be = Conn::connect(&socket).context("the backend's connection")?;
    let mut fe = Conn::connect(&socket).context("the frontend's connection")?;
    let mut counter = Counter::new("connected", domids.len(), "devices");
    let began = Instant::now();
    for (i, &domid) in domids.iter().enumerate() {
        counter.update(i);
        connect(&mut be, &mut fe, domid).with_context(|| format!("domain {domid}'s device handshake"))?;
    }
    let elapsed = micros(began.elapsed());
    counter.finish(domids.len());
    // Drivers stop watching when their devices go: not timed, and before
    // the destroys, whose removals would otherwise fire them.
    for &domid in domids {
        let (back, front) = paths(domid);
        be.send(Op::Unwatch, 0, &[&z(&format!("{front}/state")), &z(&format!("b{domid}"))]);
        fe.send(Op::Unwatch, 0, &[&z(&format!("{back}/state")), &z(&format!("f{domid}"))]);
    }
    be.flush()?;
    fe.flush()?;
    for _ in domids {
        expect_ok(be.recv()?, "UNWATCH")?;
        expect_ok(fe.recv()?, "UNWATCH")?;
    }
    Ok(elapsed)
}

/// One device's handshake, as the toolstack, Linux's backend and
/// frontend drivers do it.
fn connect(be: &mut Conn, fe: &mut Conn, domid: DomId) -> Result<()> {
    let (back, front) = paths(domid);
    let (back_state, front_state) = (format!("{back}/state"), format!("{front}/state"));
    let id = domid.to_string();
    // The toolstack (libxl's device add): both directories in one
    // transaction, the frontend's the guest's, the backend's readable by
    // it.
    let tx = be.call_ok(Op::TransactionStart, 0, &[b"\0"])?;
    let tx: u32 = std::str::from_utf8(tx.payload.strip_suffix(b"\0").unwrap_or(&tx.payload))?.parse()?;
    let writes: [(String, &str); 9] = [
        (format!("{front}/backend"), &back),
        (format!("{front}/backend-id"), "0"),
        (format!("{front}/handle"), "0"),
        (front_state.clone(), "1"),
        (format!("{back}/frontend"), &front),
        (format!("{back}/frontend-id"), &id),
        (format!("{back}/handle"), "0"),
        (format!("{back}/online"), "1"),
        (back_state.clone(), "1"),
    ];
    for (path, value) in &writes {
        be.send(Op::Write, tx, &[&z(path), value.as_bytes()]);
    }
    be.send(Op::SetPerms, tx, &[&z(&front), &z(&format!("n{domid}")), &z("r0")]);
    be.send(Op::SetPerms, tx, &[&z(&back), &z("n0"), &z(&format!("r{domid}"))]);
    be.flush()?;
    for _ in 0..writes.len() + 2 {
        expect_ok(be.recv()?, "a toolstack write")?;
    }
    expect_ok(be.call(Op::TransactionEnd, tx, &[b"T\0"])?, "TRANSACTION_END")?;
    // Each driver watches the other end's state; a watch fires once when
    // set.
    let (fe_token, be_token) = (format!("f{domid}"), format!("b{domid}"));
    expect_ok(fe.call(Op::Watch, 0, &[&z(&back_state), &z(&fe_token)])?, "WATCH")?;
    wait_event(fe, &back_state)?;
    expect_ok(be.call(Op::Watch, 0, &[&z(&front_state), &z(&be_token)])?, "WATCH")?;
    wait_event(be, &front_state)?;
    // Backend: InitWait.
    expect_ok(be.call(Op::Write, 0, &[&z(&back_state), b"2"])?, "WRITE")?;
    // Frontend: sees InitWait, publishes its ring, Initialised.
    wait_state(fe, &back_state, b"2")?;
    let tx = fe.call_ok(Op::TransactionStart, 0, &[b"\0"])?;
    let tx: u32 = std::str::from_utf8(tx.payload.strip_suffix(b"\0").unwrap_or(&tx.payload))?.parse()?;
    fe.send(Op::Write, tx, &[&z(&format!("{front}/ring-ref")), b"8"]);
    fe.send(Op::Write, tx, &[&z(&format!("{front}/event-channel")), b"5"]);
    fe.flush()?;
    expect_ok(fe.recv()?, "WRITE")?;
    expect_ok(fe.recv()?, "WRITE")?;
    expect_ok(fe.call(Op::TransactionEnd, tx, &[b"T\0"])?, "TRANSACTION_END")?;
    expect_ok(fe.call(Op::Write, 0, &[&z(&front_state), b"3"])?, "WRITE")?;
    // Backend: sees Initialised, reads the ring details, Connected.
    wait_state(be, &front_state, b"3")?;
    expect_ok(be.call(Op::Read, 0, &[&z(&format!("{front}/ring-ref"))])?, "READ")?;
    expect_ok(be.call(Op::Read, 0, &[&z(&format!("{front}/event-channel"))])?, "READ")?;
    expect_ok(be.call(Op::Write, 0, &[&z(&back_state), b"4"])?, "WRITE")?;
    // Frontend: sees Connected, Connected.
    wait_state(fe, &back_state, b"4")?;
    expect_ok(fe.call(Op::Write, 0, &[&z(&front_state), b"4"])?, "WRITE")?;
    // Backend: sees the frontend Connected.
    wait_state(be, &front_state, b"4")
}

/// An error reply is an error.
fn expect_ok(msg: crate::conn::Msg, what: &str) -> Result<()> {
    match msg.error() {
        Some(e) => bail!("{what}: {e}"),
        None => Ok(()),
    }
}

/// Waits for a watch event on `path` (a reply first is an error).
fn wait_event(conn: &mut Conn, path: &str) -> Result<()> {
    loop {
        let msg = conn.recv_any()?;
        if !msg.is_event() {
            bail!("a reply while waiting for a watch event on {path}");
        }
        if msg.payload.split(|&b| b == 0).next() == Some(path.as_bytes()) {
            return Ok(());
        }
    }
}

/// Waits for watch events on `path` until it reads `want`, as a driver's
/// otherend-changed callback reads the state on each event.
fn wait_state(conn: &mut Conn, path: &str, want: &[u8]) -> Result<()> {
    for _ in 0..16 {
        wait_event(conn, path)?;
        let msg = conn.call(Op::Read, 0, &[&z(path)])?;
        expect_ok(msg.clone(), "READ")?;
        if msg.payload == want {
            return Ok(());
        }
    }
    bail!("{path} never became {}", String::from_utf8_lossy(want))
}

/// Destroys every domain (the toolstack removes its directories and
/// releases it in xenstored) and removes its device's backend directory,
/// as libxl's destroy does; the microseconds it took. Every domain is
/// tried; the first error is returned.
fn destroy(ts: &mut Toolstack, domids: &[DomId]) -> Result<f64> {
    let mut first_error = None;
    let began = Instant::now();
    for &domid in domids {
        let back = backend_dir(domid);
        let done = ts.destroy(domid).and_then(|()| match ts.store().rm(&back) {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some(xenstore::ErrorCode::ENOENT) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {back}")),
        });
        if let Err(e) = done {
            first_error.get_or_insert(e.context(format!("destroying domain {domid}")));
        }
    }
    let elapsed = micros(began.elapsed());
    match first_error {
        Some(e) => Err(e),
        None => Ok(elapsed),
    }
}
