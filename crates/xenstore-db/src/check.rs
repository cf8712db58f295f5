//! The store's consistency check (CONTROL `check`, and the tests' oracle
//! for the engine's own bookkeeping): the tree's links and the domains'
//! owned-node counts and memory totals.

use std::collections::BTreeMap;

use xenstore_wire::{path, DomId};

use crate::Engine;

impl Engine {
    /// Checks the store's invariants: every node's parent exists and lists
    /// it once; every listed child exists; every domain's owned-node count
    /// is the number of nodes it owns, and every owner is a known domain.
    pub fn check(&self) -> Result<(), String> {
        let mut owned: BTreeMap<DomId, usize> = BTreeMap::new();
        for (key, node) in self.tree.iter() {
            if let Some(parent) = path::parent(&key) {
                let Some(p) = self.tree.get(parent) else {
                    return Err(format!("{key}: parent missing"));
                };
                let name = path::basename(&key);
                if p.children.iter().filter(|c| &***c == name).count() != 1 {
                    return Err(format!("{key}: not listed once by its parent"));
                }
            }
            for child in node.children.iter() {
                if self.tree.get(&path::join(&key, child)).is_none() {
                    return Err(format!("{key}: lists missing child {child}"));
                }
            }
            let owner = node.perms.owner();
            if owner != 0 {
                if !self.domains.contains_key(&owner) {
                    return Err(format!("{key}: owner {owner} is not a known domain"));
                }
                *owned.entry(owner).or_default() += 1;
            }
        }
        for (domid, d) in &self.domains {
            let actual = owned.get(domid).copied().unwrap_or(0);
            if *domid != 0 && d.owned != actual {
                return Err(format!("domain {domid} counts {} owned nodes, owns {actual}", d.owned));
            }
        }
        let memory = self.recount_memory();
        for domid in self.domains.keys().chain(self.orphaned_memory.keys()).chain(memory.keys()) {
            let (counted, actual) = (self.memory_total(*domid), memory.get(domid).copied().unwrap_or(0));
            if counted != actual {
                return Err(format!("domain {domid} counts {counted} bytes of memory, holds {actual}"));
            }
        }
        Ok(())
    }
}
