//! A store shaped like a real Xen host, built through the engine's own
//! entry point, for the benchmarks.
//!
//! Each guest domain `d` gets 100 nodes: 76 under its home
//! `/local/domain/<d>` (name, domid, vm, cpu, memory, control, data, store,
//! console, one vif, one vbd, suspend) and 24 backend nodes under
//! `/local/domain/0/backend/{vif,vbd}/<d>/...`. The toolstack's permissions
//! are applied as libxl does: the home is owned by the guest (so its nodes
//! count as the guest's), the backend directories are owned by
//! dom0 and readable by the guest. Everything is written by a privileged
//! dom0 connection with `Request::Write` and `Request::SetPerms`.

// Each bench binary compiles this module on its own and uses a different
// part of it.
#![allow(dead_code)]

use xenstore_db::{Caller, ConnId, Engine};
use xenstore_wire::{Access, DomId, Perm, PermList, Request};

/// Nodes each guest domain adds to the store.
pub const NODES_PER_DOMAIN: usize = 100;

/// An engine populated like a host, with the dom0 connection that built it.
#[derive(Debug)]
pub struct Host {
    /// The engine.
    pub engine: Engine,
    /// The privileged dom0 connection.
    pub dom0: ConnId,
    /// Guest domains present: `1..=domains`.
    pub domains: DomId,
}

impl Host {
    /// A host with about `nodes` nodes: `nodes / 100` guests (at least one).
    pub fn build(nodes: usize) -> Host {
        let mut engine = Engine::default();
        let dom0 = engine.connect(Caller::DOM0);
        let domains = DomId::try_from((nodes / NODES_PER_DOMAIN).max(1)).expect("at most 65535 guests");
        let mut host = Host { engine, dom0, domains };
        host.write_dom0();
        for d in 1..=domains {
            host.write_guest(d);
        }
        host
    }

    /// The guest whose nodes the benchmarks read and write: the middle one.
    pub fn target(&self) -> DomId {
        self.domains.div_ceil(2)
    }

    /// Writes as dom0, panicking on failure (the store is being built).
    pub fn write(&mut self, path: &str, value: &[u8]) {
        let out = self.engine.handle(self.dom0, 0, &Request::Write { path, value });
        assert!(out.reply.is_ok(), "write {path}: {:?}", out.reply);
    }

    fn set_perms(&mut self, path: &str, perms: PermList) {
        let out = self.engine.handle(self.dom0, 0, &Request::SetPerms { path, perms });
        assert!(out.reply.is_ok(), "set_perms {path}: {:?}", out.reply);
    }

    fn write_dom0(&mut self) {
        for (key, value) in [("name", "Domain-0"), ("domid", "0"), ("memory/target", "4194304")] {
            self.write(&format!("/local/domain/0/{key}"), value.as_bytes());
        }
    }

    fn write_guest(&mut self, d: DomId) {
        let home = format!("/local/domain/{d}");
        self.write(&home, b"");
        self.set_perms(&home, PermList::owned_by(d, Access::None));
        for (key, value) in frontend(d) {
            self.write(&format!("{home}/{key}"), value.as_bytes());
        }
        let readable_by_guest =
            PermList::new(vec![Perm { domid: 0, access: Access::None }, Perm { domid: d, access: Access::Read }])
                .expect("two entries");
        for (kind, dev, keys) in [("vif", "0", vif_backend(d)), ("vbd", "51712", vbd_backend(d))] {
            let dir = format!("/local/domain/0/backend/{kind}/{d}");
            self.write(&dir, b"");
            self.set_perms(&dir, readable_by_guest.clone());
            for (key, value) in keys {
                self.write(&format!("{dir}/{dev}/{key}"), value.as_bytes());
            }
        }
    }
}

/// The frontend keys under a guest's home, as `(relative path, value)`.
/// Intermediate directories are created by the writes.
fn frontend(d: DomId) -> Vec<(&'static str, String)> {
    let mac = format!("00:16:3e:{:02x}:{:02x}:00", d >> 8, d & 0xff);
    let s = |v: &str| v.to_owned();
    vec![
        ("vm", format!("/vm/00000000-0000-0000-0000-{d:012}")),
        ("name", format!("guest-{d}")),
        ("domid", d.to_string()),
        ("cpu/0/availability", s("online")),
        ("cpu/1/availability", s("online")),
        ("memory/static-max", s("1048576")),
        ("memory/target", s("1048576")),
        ("memory/videoram", s("-1")),
        ("control/shutdown", s("")),
        ("control/sysrq", s("")),
        ("control/feature-poweroff", s("1")),
        ("control/feature-reboot", s("1")),
        ("control/feature-suspend", s("1")),
        ("control/feature-s3", s("1")),
        ("control/feature-s4", s("1")),
        ("control/feature-balloon", s("1")),
        ("control/platform-feature-multiprocessor-suspend", s("1")),
        ("control/platform-feature-xs_reset_watches", s("1")),
        ("data/updated", s("1")),
        ("data/os_name", s("Debian GNU/Linux")),
        ("data/os_distro", s("debian")),
        ("data/os_majorver", s("12")),
        ("data/os_minorver", s("5")),
        ("data/os_uname", s("6.1.0-18-amd64")),
        ("data/ip", format!("10.0.{}.{}", d >> 8, d & 0xff)),
        ("store/port", s("1")),
        ("store/ring-ref", s("1044476")),
        ("console/port", s("2")),
        ("console/ring-ref", s("1044477")),
        ("console/type", s("xenconsoled")),
        ("console/output", s("pty")),
        ("console/tty", format!("/dev/pts/{d}")),
        ("console/limit", s("1048576")),
        ("console/backend", format!("/local/domain/0/backend/console/{d}/0")),
        ("console/backend-id", s("0")),
        ("console/state", s("1")),
        ("device/vif/0/backend", format!("/local/domain/0/backend/vif/{d}/0")),
        ("device/vif/0/backend-id", s("0")),
        ("device/vif/0/state", s("4")),
        ("device/vif/0/handle", s("0")),
        ("device/vif/0/mac", mac),
        ("device/vif/0/mtu", s("1500")),
        ("device/vif/0/multi-queue-num-queues", s("2")),
        ("device/vif/0/tx-ring-ref", s("1280")),
        ("device/vif/0/rx-ring-ref", s("1281")),
        ("device/vif/0/event-channel", s("19")),
        ("device/vif/0/request-rx-copy", s("1")),
        ("device/vif/0/feature-rx-notify", s("1")),
        ("device/vif/0/feature-sg", s("1")),
        ("device/vbd/51712/backend", format!("/local/domain/0/backend/vbd/{d}/51712")),
        ("device/vbd/51712/backend-id", s("0")),
        ("device/vbd/51712/state", s("4")),
        ("device/vbd/51712/virtual-device", s("51712")),
        ("device/vbd/51712/device-type", s("disk")),
        ("device/vbd/51712/ring-ref", s("8")),
        ("device/vbd/51712/event-channel", s("20")),
        ("device/vbd/51712/protocol", s("x86_64-abi")),
        ("device/vbd/51712/feature-persistent", s("1")),
        ("device/suspend/event-channel", s("21")),
    ]
}

/// The keys of a guest's network backend device, relative to its directory.
fn vif_backend(d: DomId) -> Vec<(&'static str, String)> {
    let s = |v: &str| v.to_owned();
    vec![
        ("frontend", format!("/local/domain/{d}/device/vif/0")),
        ("frontend-id", d.to_string()),
        ("online", s("1")),
        ("state", s("4")),
        ("script", s("/etc/xen/scripts/vif-bridge")),
        ("mac", format!("00:16:3e:{:02x}:{:02x}:00", d >> 8, d & 0xff)),
        ("bridge", s("xenbr0")),
        ("handle", s("0")),
        ("type", s("vif")),
        ("hotplug-status", s("connected")),
        ("feature-sg", s("1")),
        ("feature-rx-copy", s("1")),
    ]
}

/// The keys of a guest's block backend device, relative to its directory.
fn vbd_backend(d: DomId) -> Vec<(&'static str, String)> {
    let s = |v: &str| v.to_owned();
    vec![
        ("frontend", format!("/local/domain/{d}/device/vbd/51712")),
        ("frontend-id", d.to_string()),
        ("online", s("1")),
        ("state", s("4")),
        ("params", format!("/dev/vg0/guest-{d}")),
        ("type", s("phy")),
        ("mode", s("w")),
        ("device-type", s("disk")),
        ("hotplug-status", s("connected")),
        ("physical-device", s("fe:3")),
    ]
}
