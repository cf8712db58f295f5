//! Pages: a guest's start page, foreign mapping (privcmd) and grants
//! (gntalloc, gntdev). Pages are memfds; the hypervisor checks who may
//! have which and hands out descriptors, callers map them.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use rustix::fs::{ftruncate, memfd_create, MemfdFlags, Mode, OFlags};
use rustix::io::Errno;

use super::grants::Grant;
use super::{done, dup, Answer, State};
use crate::hosted::protocol::{Response, MAX_FDS};
use crate::hosted::STORE_GFN;
use crate::{DomId, GrantRef, ShutdownReason, PAGE_SIZE};

/// The most pages one grant or map request may cover.
const MAX_PAGES_PER_REQUEST: usize = 1024;

/// A zeroed memfd of `pages` pages, close-on-exec.
pub(super) fn memfd(name: &str, pages: usize) -> Result<OwnedFd, (Errno, &'static str)> {
    let fd = memfd_create(name, MemfdFlags::CLOEXEC).map_err(|_| (Errno::NOMEM, "memfd_create"))?;
    let len = u64::try_from(pages.saturating_mul(PAGE_SIZE)).map_err(|_| (Errno::INVAL, "too many pages"))?;
    ftruncate(&fd, len).map_err(|_| (Errno::NOMEM, "ftruncate"))?;
    Ok(fd)
}

/// A read-only descriptor for the file `fd` is open on, so a read-only
/// grant cannot be mapped writable by whoever receives it.
fn read_only(fd: &OwnedFd) -> Result<OwnedFd, (Errno, &'static str)> {
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    rustix::fs::open(path.as_str(), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|_| (Errno::NOMEM, "reopen read-only"))
}

impl State {
    /// A guest asks for its domid, store port and store page.
    pub(super) fn guest_start(&self, caller: DomId) -> Answer {
        let domain = self.domains.get(&caller).ok_or((Errno::SRCH, "caller gone"))?;
        let page = domain.store_page.as_ref().ok_or((Errno::INVAL, "dom0 has no start page"))?;
        Ok((Response::Start { domid: caller, store_port: domain.store_port }, vec![dup(page)?]))
    }

    /// SCHEDOP_shutdown from the guest itself.
    pub(super) fn shutdown_self(&mut self, caller: DomId, reason: ShutdownReason) -> Answer {
        if caller == 0 {
            return Err((Errno::INVAL, "dom0 cannot shut down here"));
        }
        self.mark_shutdown(caller, reason);
        done()
    }

    /// privcmd mapping: dom0 maps `count` frames of `domid` from `gfn`.
    /// A hosted domain has one frame, its xenstore page.
    pub(super) fn map_foreign(&self, caller: DomId, domid: DomId, gfn: u64, count: usize) -> Answer {
        if caller != 0 {
            return Err((Errno::PERM, "foreign mapping needs privilege"));
        }
        let domain = self.domains.get(&domid).ok_or((Errno::SRCH, "no such domain"))?;
        let page = domain.store_page.as_ref().ok_or((Errno::INVAL, "no such frame"))?;
        if gfn != STORE_GFN || count != 1 {
            return Err((Errno::INVAL, "no such frame"));
        }
        Ok((Response::Pages, vec![dup(page)?]))
    }

    /// gntalloc: `count` fresh pages of `caller`, each granted to
    /// `remote`.
    pub(super) fn grant_pages(&mut self, caller: DomId, remote: DomId, count: usize, writable: bool) -> Answer {
        if count == 0 || count > MAX_PAGES_PER_REQUEST {
            return Err((Errno::INVAL, "bad page count"));
        }
        let domain = self.domains.get_mut(&caller).ok_or((Errno::SRCH, "caller gone"))?;
        if !domain.grants.has_room(count) {
            return Err((Errno::NOSPC, "grant table full"));
        }
        let file = Arc::new(memfd("xsim-grant", count)?);
        let reply_fd = dup(&file)?;
        let mut refs = Vec::with_capacity(count);
        for page in 0..count {
            let page = u64::try_from(page).map_err(|_| (Errno::INVAL, "bad page count"))?;
            refs.push(domain.grants.insert(Grant { remote, writable, file: Arc::clone(&file), page }));
        }
        Ok((Response::Granted { refs }, vec![reply_fd]))
    }

    /// Ends grants `caller` made; unknown references are ignored.
    pub(super) fn end_grants(&mut self, caller: DomId, refs: &[GrantRef]) -> Answer {
        if let Some(domain) = self.domains.get_mut(&caller) {
            for gref in refs {
                domain.grants.remove(*gref);
            }
        }
        done()
    }

    /// gntdev: `caller` maps `refs` of `remote`, each of which must be
    /// granted to it (and writable if asked).
    pub(super) fn map_grants(&self, caller: DomId, remote: DomId, refs: &[GrantRef], writable: bool) -> Answer {
        if refs.is_empty() || refs.len() > MAX_PAGES_PER_REQUEST {
            return Err((Errno::INVAL, "bad reference count"));
        }
        let granter = self.domains.get(&remote).ok_or((Errno::SRCH, "no such domain"))?;
        // One descriptor per distinct file, in first-use order.
        let mut files: Vec<&Arc<OwnedFd>> = Vec::new();
        let mut index_of: HashMap<*const OwnedFd, usize> = HashMap::new();
        let mut pages = Vec::with_capacity(refs.len());
        for gref in refs {
            let grant = granter.grants.get(*gref).ok_or((Errno::INVAL, "no such grant"))?;
            if grant.remote != caller {
                return Err((Errno::PERM, "not granted to caller"));
            }
            if writable && !grant.writable {
                return Err((Errno::PERM, "grant is read-only"));
            }
            let index = *index_of.entry(Arc::as_ptr(&grant.file)).or_insert_with(|| {
                files.push(&grant.file);
                files.len() - 1
            });
            pages.push((index, grant.page));
        }
        if files.len() > MAX_FDS {
            return Err((Errno::INVAL, "references span too many allocations"));
        }
        let fds = files
            .iter()
            .map(|file| if writable { dup(file) } else { read_only(file) })
            .collect::<Result<Vec<OwnedFd>, _>>()?;
        Ok((Response::Segments { pages }, fds))
    }
}
