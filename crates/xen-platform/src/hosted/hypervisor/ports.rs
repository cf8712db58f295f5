//! One domain's event-channel ports, as the hypervisor keeps them.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::OwnedFd;
use std::sync::Arc;

use super::ConnId;
use crate::{DomId, Port};

/// The highest port a domain may have (FIFO ABI's limit is far higher;
/// this bounds what one domain can make the hypervisor hold).
pub(super) const MAX_PORT: Port = 1 << 17;

/// One port of a domain.
#[derive(Debug)]
pub(super) struct PortEntry {
    /// The connection that has the port bound locally (polls it), if any.
    /// A port made for a domain by someone else waits here unheld until
    /// the domain claims it.
    pub(super) holder: Option<ConnId>,
    /// Taken by a claim: when the holder's connection goes the port
    /// stays, unheld, for the domain's next process.
    pub(super) claimed: bool,
    /// What it is connected to.
    pub(super) kind: PortKind,
}

/// What a port is connected to.
#[derive(Debug)]
pub(super) enum PortKind {
    /// One end of an interdomain channel: offered to `remote` while
    /// `peer` is `None`, connected to `remote`'s port `peer` otherwise.
    /// The channel's eventfds stay with both ends across rebinds, so a
    /// peer that rebinds (xenstored restarting) reaches the same
    /// descriptors the other side polls and signals.
    Interdomain { remote: DomId, peer: Option<Port>, poll: Arc<OwnedFd>, notify: Arc<OwnedFd> },
    /// A virtual interrupt (VIRQ_DOM_EXC, the only one) the hypervisor
    /// raises on `fd`.
    Virq { fd: Arc<OwnedFd> },
}

/// A domain's ports: lowest free number first, like Xen.
#[derive(Debug, Default)]
pub(super) struct PortTable {
    entries: BTreeMap<Port, PortEntry>,
    /// Freed numbers below `next`.
    free: BTreeSet<Port>,
    /// The lowest number never used.
    next: Port,
}

impl PortTable {
    /// Adds `entry` under the lowest free port (port 0 is never used, as
    /// in Xen); `None` when the domain has [`MAX_PORT`] ports.
    pub(super) fn insert(&mut self, entry: PortEntry) -> Option<Port> {
        let port = match self.free.pop_first() {
            Some(port) => port,
            None => {
                let port = self.next.max(1);
                if port > MAX_PORT {
                    return None;
                }
                self.next = port + 1;
                port
            }
        };
        self.entries.insert(port, entry);
        Some(port)
    }

    /// The entry of `port`.
    pub(super) fn get(&self, port: Port) -> Option<&PortEntry> {
        self.entries.get(&port)
    }

    /// The entry of `port`, to change.
    pub(super) fn get_mut(&mut self, port: Port) -> Option<&mut PortEntry> {
        self.entries.get_mut(&port)
    }

    /// Removes `port` and frees its number.
    pub(super) fn remove(&mut self, port: Port) -> Option<PortEntry> {
        let entry = self.entries.remove(&port)?;
        self.free.insert(port);
        Some(entry)
    }

    /// Every port with its entry.
    pub(super) fn iter(&self) -> impl Iterator<Item = (Port, &PortEntry)> {
        self.entries.iter().map(|(port, entry)| (*port, entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn virq() -> PortEntry {
        let fd = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).unwrap();
        PortEntry { holder: None, claimed: false, kind: PortKind::Virq { fd: Arc::new(fd) } }
    }

    #[test]
    fn insert_reuses_lowest_freed_port() {
        let mut table = PortTable::default();
        assert_eq!(table.insert(virq()), Some(1));
        assert_eq!(table.insert(virq()), Some(2));
        assert_eq!(table.insert(virq()), Some(3));
        table.remove(2);
        table.remove(1);
        assert_eq!(table.insert(virq()), Some(1));
        assert_eq!(table.insert(virq()), Some(2));
        assert_eq!(table.insert(virq()), Some(4));
    }
}
