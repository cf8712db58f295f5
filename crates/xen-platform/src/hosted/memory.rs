//! A process's hosted foreign mapping and grants: the hypervisor checks
//! and hands out memfds; the caller maps them with [`MappedPages`].

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::io::Errno;

use super::client::Host;
use super::protocol::{invalid, Request, Response};
use crate::{DomId, ForeignMemory, GrantRef, GrantedPages, Grants, MappedPages};

/// Hosted foreign mapping (privcmd); dom0 only.
#[derive(Debug, Clone)]
pub struct HostedForeignMemory {
    host: Host,
}

impl HostedForeignMemory {
    pub(crate) fn new(host: Host) -> HostedForeignMemory {
        HostedForeignMemory { host }
    }
}

impl ForeignMemory for HostedForeignMemory {
    fn map_foreign(&mut self, domid: DomId, gfn: u64, count: usize) -> io::Result<MappedPages> {
        let (response, fds) = self.host.request(&Request::MapForeign { domid, gfn, count })?;
        match (response, fds.as_slice()) {
            (Response::Pages, [fd]) => MappedPages::map(fd.as_fd(), 0, count, true),
            _ => Err(invalid("unexpected reply to MapForeign")),
        }
    }
}

/// Hosted grants (gntalloc and gntdev).
#[derive(Debug, Clone)]
pub struct HostedGrants {
    host: Host,
}

impl HostedGrants {
    pub(crate) fn new(host: Host) -> HostedGrants {
        HostedGrants { host }
    }
}

impl Grants for HostedGrants {
    fn grant_pages(&mut self, remote: DomId, count: usize, writable: bool) -> io::Result<GrantedPages> {
        let (response, fds) = self.host.request(&Request::GrantPages { remote, count, writable })?;
        let (refs, fd) = match (response, fds.as_slice()) {
            (Response::Granted { refs }, [fd]) if refs.len() == count => (refs, fd),
            _ => return Err(invalid("unexpected reply to GrantPages")),
        };
        let pages = match MappedPages::map(fd.as_fd(), 0, count, true) {
            Ok(pages) => pages,
            Err(e) => {
                let _ = self.host.request_done(&Request::EndGrants { refs });
                return Err(e);
            }
        };
        let host = self.host.clone();
        let ended = refs.clone();
        let end = move || {
            let _ = host.request_done(&Request::EndGrants { refs: ended });
        };
        Ok(GrantedPages::new(pages, refs, Some(Box::new(end))))
    }

    fn map_grants(&mut self, remote: DomId, refs: &[GrantRef], writable: bool) -> io::Result<MappedPages> {
        let (response, fds) = self.host.request(&Request::MapGrants { remote, refs: refs.to_vec(), writable })?;
        let Response::Segments { pages } = response else {
            return Err(invalid("unexpected reply to MapGrants"));
        };
        if pages.len() != refs.len() {
            return Err(invalid("wrong number of granted pages"));
        }
        let segments = pages
            .iter()
            .map(|&(index, page)| fds.get(index).map(|fd| (fd.as_fd(), page, 1)))
            .collect::<Option<Vec<(BorrowedFd<'_>, u64, usize)>>>()
            .ok_or(Errno::INVAL)?;
        MappedPages::map_segments(&segments, writable)
    }
}
