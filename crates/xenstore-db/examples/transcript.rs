//! Drives the store engine the way a toolstack and two guests would, and
//! prints every request, reply and watch event: the engine's behaviour at a
//! glance, with no daemon. `cargo run -p xenstore-db --example transcript`

// Payloads are written as on the wire: `\0` is the nul separator, never octal.
#![allow(clippy::octal_escapes)]

use xenstore_db::{Caller, ConnId, Engine};
use xenstore_wire::{Op, Reply, Request};

struct Demo {
    engine: Engine,
    names: Vec<(ConnId, &'static str)>,
}

impl Demo {
    fn name(&self, conn: ConnId) -> &'static str {
        self.names.iter().find(|(c, _)| *c == conn).map_or("?", |(_, n)| n)
    }

    fn show_event(&self, d: &xenstore_db::Delivery) {
        let token = String::from_utf8_lossy(&d.event.token);
        println!("{:>30} event to {}: {} ({token})", "<-", self.name(d.conn), d.event.path);
    }

    fn send(&mut self, conn: ConnId, tx: u32, op: Op, payload: &[u8]) -> Option<Reply> {
        let shown = String::from_utf8_lossy(payload).replace('\0', "|");
        println!("{:>5} tx={tx:<2} {op:<17} {shown}", self.name(conn));
        let request = match Request::parse(op as u32, payload) {
            Ok(r) => r,
            Err(e) => {
                println!("{:>30} {e}", "<-");
                return None;
            }
        };
        let out = self.engine.handle(conn, tx, &request);
        for d in &out.events {
            self.show_event(d);
        }
        match &out.reply {
            Ok(reply) => {
                let mut bytes = Vec::new();
                reply.encode_payload(&mut bytes);
                println!("{:>30} {}", "<-", String::from_utf8_lossy(&bytes).replace('\0', "|"));
            }
            Err(e) => println!("{:>30} {e}{}", "<-", out.quota.map(|q| format!(" ({q})")).unwrap_or_default()),
        }
        if let Some(d) = &out.after_reply {
            self.show_event(d);
        }
        out.reply.ok()
    }
}

fn main() {
    let mut engine = Engine::default();
    let dom0 = engine.connect(Caller::DOM0);
    let g1 = engine.connect(Caller::guest(1));
    let g2 = engine.connect(Caller::guest(2));
    let mut d = Demo { engine, names: vec![(dom0, "dom0"), (g1, "dom1"), (g2, "dom2")] };

    println!("# The toolstack lays out domain 1 and 2 and introduces them");
    for id in [1u8, 2] {
        d.send(dom0, 0, Op::Mkdir, format!("/local/domain/{id}\0").as_bytes());
        d.send(dom0, 0, Op::SetPerms, format!("/local/domain/{id}\0n0\0r{id}\0").as_bytes());
        d.send(dom0, 0, Op::Write, format!("/local/domain/{id}/name\0guest{id}").as_bytes());
        d.send(dom0, 0, Op::Mkdir, format!("/local/domain/{id}/data\0").as_bytes());
        d.send(dom0, 0, Op::SetPerms, format!("/local/domain/{id}/data\0b{id}\0").as_bytes());
    }
    d.send(dom0, 0, Op::Watch, b"@introduceDomain\0intro\0");
    d.send(dom0, 0, Op::Introduce, b"1\0100\05\0");

    println!("\n# Guests use relative paths, and permissions hold");
    d.send(g1, 0, Op::Read, b"name\0");
    d.send(g1, 0, Op::Write, b"name\0renamed");
    d.send(g1, 0, Op::Read, b"/local/domain/2/name\0");
    d.send(g1, 0, Op::Read, b"/local/domain/2/secret\0");
    d.send(g1, 0, Op::Write, b"data/inbox\0");
    d.send(g1, 0, Op::SetPerms, b"data/inbox\0n1\0w2\0");
    d.send(g1, 0, Op::Watch, b"data/inbox\0mail\0");

    println!("\n# dom2 writes into dom1's inbox. The writer owns what it creates, so dom1");
    println!("# cannot read it and is not told (XSA-115) until dom2 grants it read access");
    d.send(g2, 0, Op::Write, b"/local/domain/1/data/inbox/msg1\0hello");
    d.send(g2, 0, Op::SetPerms, b"/local/domain/1/data/inbox/msg1\0n2\0r1\0");
    d.send(g1, 0, Op::Read, b"data/inbox/msg1\0");

    println!("\n# Two transactions creating different children both commit; a real conflict is EAGAIN");
    d.send(dom0, 0, Op::Mkdir, b"/vm\0");
    let t1 = tx(d.send(dom0, 0, Op::TransactionStart, b"\0"));
    let t2 = tx(d.send(dom0, 0, Op::TransactionStart, b"\0"));
    d.send(dom0, t1, Op::Write, b"/vm/a\01");
    d.send(dom0, t2, Op::Write, b"/vm/b\02");
    d.send(dom0, t1, Op::TransactionEnd, b"T\0");
    d.send(dom0, t2, Op::TransactionEnd, b"T\0");
    let t3 = tx(d.send(dom0, 0, Op::TransactionStart, b"\0"));
    d.send(dom0, t3, Op::Read, b"/vm/a\0");
    d.send(dom0, t3, Op::Write, b"/vm/a\03");
    d.send(dom0, 0, Op::Write, b"/vm/a\0changed-meanwhile");
    d.send(dom0, t3, Op::TransactionEnd, b"T\0");

    println!("\n# Domain 1 goes away: what it owned goes with it");
    let events = d.engine.remove_domain(1).events;
    for e in events {
        println!("{:>30} event to {}: {}", "<-", d.name(e.conn), e.event.path);
    }
    d.send(dom0, 0, Op::Read, b"/local/domain/1/data/inbox/msg1\0");
    println!("\nnodes in store: {}", d.engine.node_count());
}

fn tx(reply: Option<Reply>) -> u32 {
    match reply {
        Some(Reply::TransactionStart(id)) => id,
        other => panic!("transaction start failed: {other:?}"),
    }
}
