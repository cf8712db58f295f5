//! Which domains exist, for the requests that name one the store does not
//! know yet: the hypervisor's answer, asked through the driver.
//!
//! The C daemon asks the hypervisor (`find_or_alloc_existing_domain`) when
//! a request names a domain it has no record of: SET_PERMS entries, the
//! domains of SET_TARGET, SET_FEATURE and GET_FEATURE. The engine has no
//! I/O, so the driver hands [`Engine::handle_with`] a function that
//! answers; it is called only for domains the store does not know, and the
//! same answers give the same outcome. [`Engine::handle`] assumes every
//! domain exists (a store without a hypervisor behind it).
//!
//! What follows from the answer, as in C:
//! - a SET_PERMS entry naming an existing domain makes the store know it
//!   (from then on the entry counts, the domain not yet introduced
//!   included); one naming a domain that does not exist grants nothing
//!   (and is not reported, see `docs/DESIGN.md`); an owner that does not
//!   exist is `ENOENT`;
//! - SET_TARGET, SET_FEATURE and GET_FEATURE of a domain that does not
//!   exist are `ENOENT`.

use xenstore_wire::{DomId, ErrorCode, PermList, DOMID_ANY};

use crate::Engine;

/// Answers whether the hypervisor has a domain.
pub type Exists<'a> = &'a mut dyn FnMut(DomId) -> bool;

impl Engine {
    /// Whether `domid` exists: dom0 always, a domain the store knows, or
    /// one the hypervisor has.
    pub(crate) fn domain_exists(&self, domid: DomId, exists: Exists<'_>) -> bool {
        domid == 0 || self.domains.contains_key(&domid) || exists(domid)
    }

    /// Makes the store know the existing domains a SET_PERMS list names;
    /// `ENOENT` if its owner does not exist.
    pub(crate) fn admit_perm_domains(&mut self, perms: &PermList, exists: Exists<'_>) -> Result<(), ErrorCode> {
        for (i, entry) in perms.entries().iter().enumerate() {
            if entry.domid == DOMID_ANY {
                continue;
            }
            if self.domain_exists(entry.domid, exists) {
                self.ensure_domain(entry.domid);
            } else if i == 0 {
                return Err(ErrorCode::ENOENT);
            }
        }
        Ok(())
    }
}
