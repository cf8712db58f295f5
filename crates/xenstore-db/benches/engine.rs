//! Criterion benchmarks of `Engine::handle` on host-shaped stores of 1k,
//! 100k and 1M nodes (see `host/mod.rs` for the shape).
//!
//! Each store is built once, on first use, and shared by every group. The
//! groups run in the order listed in `criterion_group!` and two of them add
//! to the shared store, after the groups that do not want those additions
//! have run: `write_1000_watches` registers its 1,000 watches,
//! `directory_10k_children` adds a node with 10,000 children (so at "1k"
//! that group runs on an 11k-node store).
//!
//! Every request goes through `handle` from a privileged dom0 connection
//! unless said otherwise, and the `Outcome` (reply and events) is dropped
//! inside the timed loop, as a daemon would after sending it.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{black_box, criterion_main, BenchmarkGroup, BenchmarkId, Criterion};
use xenstore_db::{Caller, ConnId, Engine};
use xenstore_wire::{DomId, ErrorCode, Reply, Request};

mod host;
use host::Host;

/// Store sizes, in nodes.
const SIZES: [usize; 3] = [1_000, 100_000, 1_000_000];

/// Children of the node listed by the `directory_10k_children` group.
const WIDE_CHILDREN: usize = 10_000;

/// Guests whose paths the background watches are on (4 watches each).
const WATCHING_GUESTS: DomId = 249;

/// A built store and what the groups added to it.
struct Fixture {
    host: Host,
    watches: bool,
    wide: bool,
}

static FIXTURES: Mutex<BTreeMap<usize, Fixture>> = Mutex::new(BTreeMap::new());

/// Runs `f` on the store of `size` nodes, building it on first use.
fn with_fixture<R>(size: usize, f: impl FnOnce(&mut Fixture) -> R) -> R {
    let mut fixtures = FIXTURES.lock().unwrap_or_else(|e| e.into_inner());
    let fixture = fixtures.entry(size).or_insert_with(|| {
        let started = std::time::Instant::now();
        let host = Host::build(size);
        eprintln!(
            "built store: nodes={} guests={} in {:.2}s",
            host.engine.node_count(),
            host.domains,
            started.elapsed().as_secs_f64()
        );
        Fixture { host, watches: false, wide: false }
    });
    f(fixture)
}

fn label(size: usize) -> String {
    match size {
        1_000_000.. => format!("{}M", size / 1_000_000),
        1_000.. => format!("{}k", size / 1_000),
        _ => size.to_string(),
    }
}

/// The node READ, WRITE and the watch group use: a guest's vif state.
fn vif_state(d: DomId) -> String {
    format!("/local/domain/{d}/device/vif/0/state")
}

/// 18 benchmarks at about 8 s each, plus building the stores (about 3 s at
/// 1M), keep a whole run near 3 minutes on a 2-core machine.
fn configure<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group.sample_size(60).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(6));
    group
}

fn expect_ok(engine: &mut Engine, conn: ConnId, tx: u32, request: &Request<'_>) -> Reply {
    let out = engine.handle(conn, tx, request);
    match out.reply {
        Ok(reply) => reply,
        Err(e) => panic!("{request:?} in tx {tx}: {e:?}"),
    }
}

fn bench_read(c: &mut Criterion) {
    let mut group = configure(c, "read");
    for size in SIZES {
        group.bench_with_input(BenchmarkId::from_parameter(label(size)), &size, |b, &size| {
            with_fixture(size, |fx| {
                let path = vif_state(fx.host.target());
                let (engine, dom0) = (&mut fx.host.engine, fx.host.dom0);
                let request = Request::Read(&path);
                assert_eq!(expect_ok(engine, dom0, 0, &request), Reply::Read(b"4"[..].into()));
                b.iter(|| black_box(engine.handle(dom0, 0, black_box(&request))));
            });
        });
    }
    group.finish();
}

fn bench_write(c: &mut Criterion) {
    let mut group = configure(c, "write");
    for size in SIZES {
        group.bench_with_input(BenchmarkId::from_parameter(label(size)), &size, |b, &size| {
            with_fixture(size, |fx| {
                let path = vif_state(fx.host.target());
                let (engine, dom0) = (&mut fx.host.engine, fx.host.dom0);
                let request = Request::Write { path: &path, value: b"4" };
                let before = engine.node_count();
                expect_ok(engine, dom0, 0, &request);
                assert_eq!(engine.node_count(), before, "WRITE must overwrite, not create");
                b.iter(|| black_box(engine.handle(dom0, 0, black_box(&request))));
            });
        });
    }
    group.finish();
}

/// TRANSACTION_START, three overwrites in the transaction (the frontend's
/// and backend's vif state and a data key, as a hotplug step does), then
/// TRANSACTION_END with commit.
fn bench_transaction(c: &mut Criterion) {
    let mut group = configure(c, "transaction_3_writes");
    for size in SIZES {
        group.bench_with_input(BenchmarkId::from_parameter(label(size)), &size, |b, &size| {
            with_fixture(size, |fx| {
                let d = fx.host.target();
                let paths = [
                    vif_state(d),
                    format!("/local/domain/0/backend/vif/{d}/0/state"),
                    format!("/local/domain/{d}/data/updated"),
                ];
                let (engine, dom0) = (&mut fx.host.engine, fx.host.dom0);
                let transaction = |engine: &mut Engine| {
                    let Ok(Reply::TransactionStart(tx)) = engine.handle(dom0, 0, &Request::TransactionStart).reply
                    else {
                        panic!("TRANSACTION_START failed");
                    };
                    for path in &paths {
                        black_box(engine.handle(dom0, tx, &Request::Write { path, value: b"4" }));
                    }
                    engine.handle(dom0, tx, &Request::TransactionEnd { commit: true })
                };
                let before = engine.node_count();
                assert_eq!(transaction(engine).reply, Ok(Reply::Ok));
                assert_eq!(engine.node_count(), before, "the transaction must overwrite, not create");
                assert_eq!(engine.transaction_count(), 0);
                b.iter(|| black_box(transaction(engine)));
            });
        });
    }
    group.finish();
}

/// Registers 1,000 watches: each of 249 guests (the target and guests 1, 2,
/// ..., whether or not the store holds them) watches its own `device`,
/// `control/shutdown`, `control/sysrq` and `memory/target` (relative paths,
/// from its own connection), and dom0 watches the target guest's vif state
/// (a backend watching its frontend), the target's home (a toolstack),
/// `/local/domain` with depth 1 and `/local/domain/0/backend`. A write of
/// the target's vif state then matches the target guest's `device` watch and
/// dom0's first two: three deliveries, one depth-filtered candidate.
fn register_watches(fx: &mut Fixture) {
    if fx.watches {
        return;
    }
    let target = fx.host.target();
    let engine = &mut fx.host.engine;
    let before = engine.watch_count();
    let others = (1..).filter(|d| *d != target).take(usize::from(WATCHING_GUESTS) - 1);
    for d in std::iter::once(target).chain(others) {
        let conn = engine.connect(Caller::guest(d));
        for (path, token) in [
            ("device", &b"fe"[..]),
            ("control/shutdown", b"shutdown"),
            ("control/sysrq", b"sysrq"),
            ("memory/target", b"balloon"),
        ] {
            expect_ok(engine, conn, 0, &Request::Watch { path, token, depth: None });
        }
    }
    let backend = engine.connect(Caller::DOM0);
    let home = format!("/local/domain/{target}");
    let state = vif_state(target);
    for (path, token, depth) in [
        (state.as_str(), &b"otherend"[..], None),
        (home.as_str(), b"toolstack", None),
        ("/local/domain", b"domains", Some(1)),
        ("/local/domain/0/backend", b"backend", None),
    ] {
        expect_ok(engine, backend, 0, &Request::Watch { path, token, depth });
    }
    assert_eq!(engine.watch_count() - before, 1_000);
    fx.watches = true;
}

fn bench_watch(c: &mut Criterion) {
    let mut group = configure(c, "write_1000_watches");
    for size in SIZES {
        group.bench_with_input(BenchmarkId::from_parameter(label(size)), &size, |b, &size| {
            with_fixture(size, |fx| {
                register_watches(fx);
                let path = vif_state(fx.host.target());
                let (engine, dom0) = (&mut fx.host.engine, fx.host.dom0);
                let request = Request::Write { path: &path, value: b"4" };
                let out = engine.handle(dom0, 0, &request);
                assert_eq!(out.reply, Ok(Reply::Ok));
                assert_eq!(out.events.len(), 3, "deliveries: {:?}", out.events);
                b.iter(|| black_box(engine.handle(dom0, 0, black_box(&request))));
            });
        });
    }
    group.finish();
}

/// A node with 10,000 children, `/local/domain/0/data/wide`, listed two ways.
///
/// `directory`: one DIRECTORY request. The list (about 49 kB) is over the
/// 4096-byte payload limit, so the reply is `E2BIG`, as from the C daemon;
/// this measures what such a request costs the store (the engine builds the
/// whole list before the size check).
///
/// `directory_part_all`: the whole list through DIRECTORY_PART requests from
/// offset 0 until the part marked complete (12 requests), which is what
/// libxenstore's `xs_directory` falls back to after `E2BIG`.
fn bench_directory(c: &mut Criterion) {
    let mut group = configure(c, "directory_10k_children");
    let wide = "/local/domain/0/data/wide";
    for size in SIZES {
        group.bench_with_input(BenchmarkId::new("directory", label(size)), &size, |b, &size| {
            with_fixture(size, |fx| {
                add_wide(fx, wide);
                let (engine, dom0) = (&mut fx.host.engine, fx.host.dom0);
                let request = Request::Directory(wide);
                assert_eq!(engine.handle(dom0, 0, &request).reply, Err(ErrorCode::E2BIG));
                b.iter(|| black_box(engine.handle(dom0, 0, black_box(&request))));
            });
        });
        group.bench_with_input(BenchmarkId::new("directory_part_all", label(size)), &size, |b, &size| {
            with_fixture(size, |fx| {
                add_wide(fx, wide);
                let (engine, dom0) = (&mut fx.host.engine, fx.host.dom0);
                let (names, requests) = list_by_parts(engine, dom0, wide);
                assert_eq!(names.iter().filter(|b| **b == 0).count(), WIDE_CHILDREN);
                assert_eq!(requests, 12);
                b.iter(|| black_box(list_by_parts(engine, dom0, black_box(wide))));
            });
        });
    }
    group.finish();
}

fn add_wide(fx: &mut Fixture, wide: &str) {
    if !fx.wide {
        for i in 0..WIDE_CHILDREN {
            fx.host.write(&format!("{wide}/{i}"), b"");
        }
        fx.wide = true;
    }
}

/// Lists `path` with DIRECTORY_PART as a client does: the names (nul
/// terminated) and the number of requests it took.
fn list_by_parts(engine: &mut Engine, conn: ConnId, path: &str) -> (Vec<u8>, usize) {
    let mut all = Vec::new();
    let mut requests = 0;
    loop {
        let offset = u32::try_from(all.len()).expect("list under 4 GiB");
        requests += 1;
        match engine.handle(conn, 0, &Request::DirectoryPart { path, offset }).reply {
            Ok(Reply::DirectoryPart { names, complete, .. }) => {
                all.extend_from_slice(&names);
                if complete {
                    return (all, requests);
                }
            }
            other => panic!("DIRECTORY_PART {path} at {offset}: {other:?}"),
        }
    }
}

/// The groups in running order (a private module, so the `pub fn` that
/// `criterion_group!` generates needs no docs).
mod groups {
    use super::{bench_directory, bench_read, bench_transaction, bench_watch, bench_write};
    criterion::criterion_group!(benches, bench_read, bench_write, bench_transaction, bench_watch, bench_directory);
}
criterion_main!(groups::benches);
