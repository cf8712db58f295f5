//! Drives the store engine with arbitrary request sequences from several
//! callers (dom0 and guests), with transactions, watches, domain removal
//! and reconnection. The engine must never panic, never produce a reply or
//! event over the payload limit, and keep its invariants after every step.

#![no_main]

use libfuzzer_sys::fuzz_target;
use xenstore_db::{Caller, ConnId, Engine};
use xenstore_wire::{Op, Request, PAYLOAD_MAX};

const COMPONENTS: [&str; 8] = ["a", "b", "c", "local", "domain", "1", "2", "data"];

/// Reads the fuzz input as a stream of small decisions.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*first)
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }

    /// A path from a small universe (so operations collide), sometimes
    /// relative, sometimes special.
    fn path(&mut self) -> Option<String> {
        let shape = self.byte()?;
        let depth = usize::from(shape % 4) + 1;
        let mut parts = Vec::new();
        for _ in 0..depth {
            parts.push(COMPONENTS[usize::from(self.byte()? % 8)]);
        }
        Some(match shape >> 6 {
            0 => parts.join("/"),
            1 if shape & 0x10 != 0 => "@releaseDomain".to_owned(),
            1 => "@introduceDomain".to_owned(),
            _ => format!("/{}", parts.join("/")),
        })
    }
}

fn payload(input: &mut Input<'_>, op: Op) -> Option<Vec<u8>> {
    let mut p = Vec::new();
    let mut s = |bytes: &[u8]| {
        p.extend_from_slice(bytes);
        p.push(0);
    };
    match op {
        Op::Read | Op::Directory | Op::GetPerms | Op::Mkdir | Op::Rm => s(input.path()?.as_bytes()),
        Op::DirectoryPart => {
            s(input.path()?.as_bytes());
            s(input.byte()?.to_string().as_bytes());
        }
        Op::Write => {
            s(input.path()?.as_bytes());
            let n = usize::from(input.byte()?) * 12;
            p.extend_from_slice(input.bytes(n));
        }
        Op::SetPerms => {
            s(input.path()?.as_bytes());
            let count = input.byte()? % 7;
            for _ in 0..count {
                let b = input.byte()?;
                let letter = ["n", "r", "w", "b"][usize::from(b % 4)];
                s(format!("{letter}{}", b >> 6).as_bytes());
            }
        }
        Op::Watch => {
            s(input.path()?.as_bytes());
            s(&[b't', input.byte()? % 4 + b'0']);
            let d = input.byte()?;
            if d < 64 {
                s((d % 3).to_string().as_bytes());
            }
        }
        Op::Unwatch => {
            s(input.path()?.as_bytes());
            s(&[b't', input.byte()? % 4 + b'0']);
        }
        Op::TransactionStart | Op::ResetWatches => s(b""),
        Op::TransactionEnd => s(if input.byte()? & 1 == 0 { b"T" } else { b"F" }),
        Op::Introduce => {
            let d = input.byte()? % 4;
            s(d.to_string().as_bytes());
            s(b"100");
            s(input.byte()?.to_string().as_bytes());
        }
        Op::Release | Op::Resume | Op::IsDomainIntroduced | Op::GetDomainPath => {
            s((input.byte()? % 5).to_string().as_bytes())
        }
        Op::SetTarget => {
            s((input.byte()? % 4).to_string().as_bytes());
            s((input.byte()? % 4).to_string().as_bytes());
        }
        Op::GetQuota | Op::SetQuota => {
            let names = ["nodes", "watches", "transactions", "node-size", "permissions", "transaction-nodes", "bogus"];
            if input.byte()? & 1 == 0 {
                s((input.byte()? % 4).to_string().as_bytes());
            }
            s(names[usize::from(input.byte()? % 7)].as_bytes());
            if op == Op::SetQuota {
                s((input.byte()? % 8).to_string().as_bytes());
            }
        }
        Op::GetFeature | Op::SetFeature => {
            s((input.byte()? % 4).to_string().as_bytes());
            if op == Op::SetFeature {
                s((input.byte()? % 9).to_string().as_bytes());
            }
        }
        _ => {
            let n = usize::from(input.byte()?);
            p.extend_from_slice(input.bytes(n));
        }
    }
    Some(p)
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mut engine = Engine::default();
    let callers = [Caller::DOM0, Caller::guest(1), Caller::guest(2), Caller::guest(3)];
    let mut conns: Vec<ConnId> = callers.iter().map(|c| engine.connect(*c)).collect();
    let mut txs: Vec<u32> = vec![0];
    while let Some(choice) = input.byte() {
        let slot = usize::from(choice % 4);
        match choice >> 5 {
            // Lifecycle events now and then.
            7 if choice & 0x08 != 0 => {
                let events = engine.remove_domain(u16::from(choice & 3)).events;
                assert!(events.iter().all(|d| d.event.payload_len() <= PAYLOAD_MAX));
            }
            7 if choice & 0x04 != 0 => {
                engine.disconnect(conns[slot]);
                conns[slot] = engine.connect(callers[slot]);
            }
            7 => {
                engine.domain_shutdown(u16::from(choice & 3));
            }
            _ => {
                let Some(op_byte) = input.byte() else { break };
                let op = Op::ALL[usize::from(op_byte) % Op::ALL.len()];
                let tx = match input.byte() {
                    Some(t) => txs[usize::from(t) % txs.len()],
                    None => break,
                };
                let Some(payload) = payload(&mut input, op) else { break };
                let Ok(request) = Request::parse(op as u32, &payload) else { continue };
                let out = engine.handle(conns[slot], tx, &request);
                if let Ok(reply) = &out.reply {
                    assert!(reply.payload_len() <= PAYLOAD_MAX);
                    if let xenstore_wire::Reply::TransactionStart(id) = reply {
                        txs.push(*id);
                    }
                }
                for d in out.events.iter().chain(out.after_reply.iter()) {
                    let mut buf = Vec::new();
                    // Oversize events are refused by encode, never sent.
                    if d.event.encode(&mut buf) {
                        assert!(buf.len() <= PAYLOAD_MAX + 16);
                    }
                }
            }
        }
        if let Err(problem) = engine.check() {
            panic!("invariant broken: {problem}");
        }
    }
});
