//! The state loader of a live update: `Engine::import` fed a real export
//! that the input corrupts field by field (paths, values, permissions,
//! generations, children lists, domain records, connections, watches,
//! transactions and their snapshots, the id counters). Import must never
//! panic; whatever it accepts must pass the engine's own consistency
//! check, export and import again to the same state, and serve requests.

#![no_main]

use libfuzzer_sys::fuzz_target;
use xenstore_db::state::{NodeState, TransactionState};
use xenstore_db::{Caller, Engine, EngineState};
use xenstore_wire::{Access, Perm, Request};

/// Reads the input as a stream of small numbers.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn num(&mut self) -> u64 {
        u64::from(self.byte().unwrap_or(0))
    }
    fn pick(&mut self, len: usize) -> Option<usize> {
        (len > 0).then(|| usize::from(self.byte().unwrap_or(0)) % len)
    }
    fn text(&mut self) -> String {
        let n = usize::from(self.byte().unwrap_or(0) % 12);
        (0..n).map(|_| char::from(b"/abc@0123-_\0\xff"[usize::from(self.byte().unwrap_or(0)) % 13])).collect()
    }
}

/// A store with something of every kind: nodes with permissions naming
/// domains, an introduced domain, watches, and open transactions.
fn rich_engine() -> Engine {
    let mut engine = Engine::default();
    let dom0 = engine.connect(Caller::DOM0);
    let guest = engine.connect(Caller::guest(5));
    let home = "/local/domain/5";
    for (p, v) in [("/local/domain/5/a", "1"), ("/local/domain/5/b/c", "2"), ("/vm/x", "3")] {
        engine.handle(dom0, 0, &Request::Write { path: p, value: v.as_bytes() });
    }
    let perms = xenstore_wire::PermList::new(vec![
        Perm { domid: 5, access: Access::None },
        Perm { domid: 7, access: Access::Read },
    ])
    .expect("a permission list");
    engine.handle(dom0, 0, &Request::SetPerms { path: home, perms });
    engine.handle(dom0, 0, &Request::Introduce { domid: 5, gfn: 1, port: 2 });
    engine.handle(dom0, 0, &Request::Watch { path: "/local", token: b"t", depth: None });
    engine.handle(guest, 0, &Request::Watch { path: "a", token: b"rel", depth: Some(1) });
    let Ok(xenstore_wire::Reply::TransactionStart(tx)) = engine.handle(guest, 0, &Request::TransactionStart).reply else {
        return engine;
    };
    engine.handle(guest, tx, &Request::Write { path: "a", value: b"in-tx" });
    engine.handle(guest, tx, &Request::Rm("b"));
    engine
}

fn corrupt_node(node: &mut NodeState, input: &mut Input<'_>) {
    match input.byte().unwrap_or(0) % 7 {
        0 => node.path = input.text(),
        1 => node.value = input.text().into_bytes(),
        2 => node.perms.clear(),
        3 => node.perms.push(Perm { domid: input.num() as u16, access: Access::Both }),
        4 => node.meta_gen = input.num() << (input.num() % 64),
        5 => node.list_gen = input.num() << (input.num() % 64),
        _ => match input.pick(node.children.len()) {
            Some(i) if input.num() % 2 == 0 => drop(node.children.remove(i)),
            Some(i) => node.children.push(node.children[i].clone()),
            None => node.children.push(input.text()),
        },
    }
}

fn corrupt_nodes(nodes: &mut Vec<NodeState>, input: &mut Input<'_>) {
    match input.pick(nodes.len()) {
        Some(i) if input.num() % 5 == 0 => drop(nodes.remove(i)),
        Some(i) if input.num() % 5 == 0 => nodes.push(nodes[i].clone()),
        Some(i) => corrupt_node(&mut nodes[i], input),
        None => {}
    }
}

fn corrupt_tx(tx: &mut TransactionState, input: &mut Input<'_>) {
    match input.byte().unwrap_or(0) % 7 {
        0 => corrupt_nodes(&mut tx.base, input),
        1 => corrupt_nodes(&mut tx.work, input),
        2 => tx.conn = input.num(),
        3 => tx.id = input.num() as u32,
        4 => tx.written.push(input.text()),
        5 => tx.node_delta = input.num() as i64 - 128,
        _ => tx.seen.clear(),
    }
}

fn corrupt(state: &mut EngineState, input: &mut Input<'_>) {
    match input.byte().unwrap_or(0) % 12 {
        0 => corrupt_nodes(&mut state.nodes, input),
        1 => {
            if let Some(i) = input.pick(state.domains.len()) {
                let d = &mut state.domains[i];
                match input.num() % 5 {
                    0 => d.owned = input.num() as usize,
                    1 => d.since_gen = input.num() << 8,
                    2 => d.target = Some(input.num() as u16),
                    3 => d.ring_conn = Some(input.num()),
                    _ => d.domid = input.num() as u16,
                }
            }
        }
        2 => {
            if let Some(i) = input.pick(state.domains.len()) {
                state.domains.remove(i);
            }
        }
        3 => {
            if let Some(i) = input.pick(state.conns.len()) {
                let c = &mut state.conns[i];
                match input.num() % 3 {
                    0 => c.watches.push(input.num()),
                    1 => c.transactions.push(input.num() as u32),
                    _ => c.id = input.num(),
                }
            }
        }
        4 => {
            if let Some(i) = input.pick(state.conns.len()) {
                state.conns.remove(i);
            }
        }
        5 => {
            if let Some(i) = input.pick(state.watches.len()) {
                let w = &mut state.watches[i];
                match input.num() % 4 {
                    0 => w.conn = input.num(),
                    1 => w.path = input.text(),
                    2 => w.depth = Some(input.num() as u32),
                    _ => w.relative = !w.relative,
                }
            }
        }
        6 => {
            if let Some(i) = input.pick(state.transactions.len()) {
                corrupt_tx(&mut state.transactions[i], input);
            }
        }
        7 => state.generation = input.num(),
        8 => state.next_conn = input.num(),
        9 => state.next_watch = input.num(),
        10 => {
            if let Some(i) = input.pick(state.special_perms.len()) {
                state.special_perms[i].name = input.text();
            }
        }
        _ => state.next_tx = input.num() as u32,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mut state = rich_engine().export();
    for _ in 0..usize::from(input.byte().unwrap_or(0) % 6) {
        corrupt(&mut state, &mut input);
    }
    let Ok(mut engine) = Engine::import(state) else { return };
    assert_eq!(engine.check(), Ok(()), "import accepted an inconsistent store");
    let exported = engine.export();
    let again = Engine::import(exported.clone()).expect("an accepted state exports to an importable one");
    assert_eq!(again.export(), exported);
    // It serves requests on every connection it has.
    let conns: Vec<u64> = exported.conns.iter().map(|c| c.id).collect();
    for conn in conns {
        engine.handle(conn, 0, &Request::Directory("/"));
        engine.handle(conn, 0, &Request::Write { path: "/local/domain/5/z", value: b"v" });
        engine.disconnect(conn);
    }
    assert_eq!(engine.check(), Ok(()));
});
