//! A small world for engine tests: named connections, wire-level requests.

#![allow(dead_code)]

use std::collections::BTreeMap;

use xenstore_db::{Caller, Config, ConnId, Engine, Outcome};
use xenstore_wire::{ErrorCode, Op, Request};

/// Expected reply: the encoded payload, or an error.
pub type Expect = Result<&'static [u8], ErrorCode>;

pub struct World {
    pub engine: Engine,
    pub conns: BTreeMap<&'static str, ConnId>,
}

impl World {
    /// dom0 (privileged socket) as "dom0", guests as "d1", "d2", "d3".
    pub fn new() -> World {
        World::with_config(Config::default())
    }

    pub fn with_config(config: Config) -> World {
        let mut engine = Engine::new(config);
        let mut conns = BTreeMap::new();
        conns.insert("dom0", engine.connect(Caller::DOM0));
        for (name, domid) in [("d1", 1), ("d2", 2), ("d3", 3)] {
            conns.insert(name, engine.connect(Caller::guest(domid)));
        }
        World { engine, conns }
    }

    pub fn conn(&self, name: &str) -> ConnId {
        self.conns[name]
    }

    /// Sends a request as raw wire payload, parsed exactly as the daemon would.
    pub fn send(&mut self, who: &str, tx: u32, op: Op, payload: &[u8]) -> Outcome {
        let conn = self.conn(who);
        match Request::parse(op as u32, payload) {
            Ok(req) => self.engine.handle(conn, tx, &req),
            Err(e) => Outcome::error(e),
        }
    }

    /// The reply payload bytes (or error) of a request.
    pub fn reply(&mut self, who: &str, tx: u32, op: Op, payload: &[u8]) -> Result<Vec<u8>, ErrorCode> {
        let out = self.send(who, tx, op, payload);
        out.reply.map(|r| {
            let mut buf = Vec::new();
            r.encode_payload(&mut buf);
            buf
        })
    }

    /// Runs a request that must succeed (setup steps).
    pub fn ok(&mut self, who: &str, op: Op, payload: &[u8]) {
        let r = self.reply(who, 0, op, payload);
        assert!(r.is_ok(), "{who} {op} {:?} failed: {r:?}", String::from_utf8_lossy(payload));
    }

    pub fn write(&mut self, who: &str, path: &str, value: &str) {
        let mut p = path.as_bytes().to_vec();
        p.push(0);
        p.extend_from_slice(value.as_bytes());
        self.ok(who, Op::Write, &p);
    }

    pub fn set_perms(&mut self, who: &str, path: &str, perms: &[&str]) {
        let mut p = path.as_bytes().to_vec();
        p.push(0);
        for perm in perms {
            p.extend_from_slice(perm.as_bytes());
            p.push(0);
        }
        self.ok(who, Op::SetPerms, &p);
    }

    pub fn watch(&mut self, who: &str, path: &str, token: &str) {
        let payload = format!("{path}\0{token}\0");
        self.ok(who, Op::Watch, payload.as_bytes());
    }

    pub fn tx_start(&mut self, who: &str) -> u32 {
        let r = self.reply(who, 0, Op::TransactionStart, b"\0").expect("tx start");
        std::str::from_utf8(&r[..r.len() - 1]).unwrap().parse().unwrap()
    }

    /// Events as (connection name, path, token), in delivery order.
    pub fn events_of(&self, out: &Outcome) -> Vec<(String, String, String)> {
        out.events
            .iter()
            .map(|d| {
                let name =
                    self.conns.iter().find(|(_, c)| **c == d.conn).map(|(n, _)| n.to_string()).unwrap_or_default();
                (name, d.event.path.clone(), String::from_utf8_lossy(&d.event.token).into_owned())
            })
            .collect()
    }
}

/// `path\0`
pub fn p(path: &str) -> Vec<u8> {
    let mut v = path.as_bytes().to_vec();
    v.push(0);
    v
}
pub mod gen;
