//! What the advisory tests (`tests/xsa*.rs`) share: a host with a
//! toolstack, guests with their homes as libxl makes them, and the checks
//! every advisory ends with (the daemon answers the others, its store is
//! consistent).

#![allow(dead_code)]

use std::collections::BTreeMap;

use xen_platform::{DomainConfig, Toolstack};
use xenstore::{ErrorCode, Op};
use xenstored::testing::{ClientId, ReplyResult, World};

/// The daemon's error code of a reply, if it is one.
pub fn code(result: ReplyResult) -> Option<ErrorCode> {
    result.err().and_then(|e| e.code())
}

/// Nul-terminated parts, as a payload.
pub fn z(parts: &[&str]) -> Vec<u8> {
    parts.iter().flat_map(|p| [p.as_bytes(), b"\0"].concat()).collect()
}

/// `path\0value`, a WRITE payload.
pub fn wr(path: &str, value: &[u8]) -> Vec<u8> {
    [path.as_bytes(), b"\0", value].concat()
}

/// An introduced guest with its home, as a toolstack makes it; its
/// domid, as text.
pub fn guest(w: &mut World, dom0: ClientId, name: &str) -> (ClientId, String) {
    let g = w.create_guest(name);
    home(w, dom0, g);
    assert_eq!(w.introduce(g).unwrap(), b"OK\0");
    (g, w.domid(g).to_string())
}

/// Makes `g`'s home, owned by `g`, readable by dom0.
pub fn home(w: &mut World, dom0: ClientId, g: ClientId) {
    let domid = w.domid(g);
    let home = format!("/local/domain/{domid}");
    w.call(dom0, Op::Mkdir, &z(&[&home])).unwrap();
    w.call(dom0, Op::SetPerms, &z(&[&home, &format!("n{domid}"), "r0"])).unwrap();
}

/// A domain that exists but is not introduced; its domid, as text.
pub fn existing(w: &mut World, name: &str) -> String {
    let config =
        DomainConfig { name: name.into(), program: Vec::new(), env: Vec::new(), cwd: None, netns: false, fuse: false };
    w.hv.toolstack().create(&config).unwrap().domid.to_string()
}

/// A world with dom0's toolstack client and a bystander guest that the
/// attacks must not disturb.
pub struct Host {
    pub w: World,
    pub dom0: ClientId,
    pub bystander: ClientId,
}

impl Host {
    pub fn new() -> Host {
        Host::with(World::new())
    }

    pub fn with(mut w: World) -> Host {
        let dom0 = w.dom0();
        let mut host = Host { w, dom0, bystander: dom0 };
        host.bystander = host.guest("bystander");
        host.w.call(host.bystander, Op::Write, b"data/mine\0ok").unwrap();
        host
    }

    /// An introduced guest whose home it owns (dom0 may read it), as
    /// libxl makes `/local/domain/<domid>`.
    pub fn guest(&mut self, name: &str) -> ClientId {
        guest(&mut self.w, self.dom0, name).0
    }

    /// Makes `g`'s home, owned by `g`, readable by dom0.
    pub fn home(&mut self, g: ClientId) {
        home(&mut self.w, self.dom0, g);
    }

    /// A domain the hypervisor has but the store was not told of.
    pub fn existing(&mut self, name: &str) -> u32 {
        existing(&mut self.w, name).parse().unwrap()
    }

    /// Destroys a domain by id (one without a client here).
    pub fn destroy_domid(&mut self, domid: u32) {
        self.w.hv.toolstack().destroy(u16::try_from(domid).unwrap()).unwrap();
        self.w.run();
    }

    pub fn domid(&self, g: ClientId) -> u32 {
        u32::from(self.w.domid(g))
    }

    pub fn home_of(&self, g: ClientId) -> String {
        format!("/local/domain/{}", self.domid(g))
    }

    /// Sets one quota of one domain (SET_QUOTA, dom0).
    pub fn quota(&mut self, g: ClientId, name: &str, value: u32) {
        let domid = self.domid(g).to_string();
        self.w.call(self.dom0, Op::SetQuota, &z(&[&domid, name, &value.to_string()])).unwrap();
    }

    /// Nodes `g`'s domain owns, as the store counts them.
    pub fn owned(&self, g: ClientId) -> usize {
        self.w.server.engine().owned_count(self.w.domid(g))
    }

    /// The daemon still answers dom0 and the bystander, and its store is
    /// consistent: what every advisory test ends with.
    pub fn still_serving(&mut self) {
        self.w.run();
        assert_eq!(self.w.server.engine().check(), Ok(()), "the store is consistent");
        assert_eq!(self.w.call(self.bystander, Op::Read, b"data/mine\0").unwrap(), b"ok", "the bystander is served");
        self.w.call(self.bystander, Op::Write, b"data/mine\0ok").unwrap();
        assert_eq!(self.w.call(self.dom0, Op::Read, b"/tool/xenstored\0").unwrap(), b"", "dom0 is served");
    }

    /// A daemon-wide figure of CONTROL `stats` (`queued-bytes`, `nodes` ...).
    pub fn total(&mut self, name: &str) -> usize {
        let reply = self.w.call(self.dom0, Op::Control, b"stats\0").unwrap();
        let text = String::from_utf8(reply).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.trim_end_matches('\0').parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    }
}

/// One `domain` line of a stats page, by column name.
pub type Line = BTreeMap<String, String>;

/// Every page of `stats`, following `more`; checks each page's size.
pub fn stats(w: &mut World, dom0: ClientId) -> (Vec<Line>, usize) {
    let mut from = 0u32;
    let mut lines = Vec::new();
    let mut pages = 0;
    loop {
        let reply = w.call(dom0, Op::Control, format!("stats\0{from}\0").as_bytes()).unwrap();
        assert!(reply.len() <= 4096, "a page over the payload limit: {} bytes", reply.len());
        pages += 1;
        let text = String::from_utf8(reply).unwrap();
        let text = text.trim_end_matches('\0');
        let mut columns: Vec<String> = Vec::new();
        let mut next = None;
        for line in text.lines() {
            let (key, rest) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "columns" => columns = rest.split(' ').map(str::to_owned).collect(),
                "domain" => {
                    let fields = rest.splitn(columns.len(), ' ');
                    lines.push(columns.iter().cloned().zip(fields.map(str::to_owned)).collect());
                }
                "more" => next = Some(rest.parse::<u32>().unwrap()),
                _ => {}
            }
        }
        assert!(text.starts_with("xenstored-stats 1\n"), "{text}");
        match next {
            Some(n) => {
                assert!(n > from, "pages move forward");
                from = n;
            }
            None => return (lines, pages),
        }
    }
}

pub fn line_of(lines: &[Line], domid: u32) -> Line {
    lines.iter().find(|l| l["domid"] == domid.to_string()).cloned().unwrap_or_else(|| panic!("no line for {domid}"))
}
