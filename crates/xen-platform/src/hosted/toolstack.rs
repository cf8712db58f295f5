//! A process's hosted domain operations: each is one request to the
//! hypervisor, which refuses them (`EPERM`) unless the caller is dom0.

use std::io;

use super::client::Host;
use super::protocol::{invalid, Request, Response};
use crate::{
    Dom0Store, DomId, DomainChanges, DomainConfig, DomainInfo, DomainState, DomainStates, MappedPages, NewDomain, Port,
    ShutdownReason, Toolstack,
};

/// Hosted domain lifecycle, for a toolstack, and domain states, for the
/// daemon.
#[derive(Debug, Clone)]
pub struct HostedToolstack {
    host: Host,
}

impl HostedToolstack {
    pub(crate) fn new(host: Host) -> HostedToolstack {
        HostedToolstack { host }
    }
}

impl DomainStates for HostedToolstack {
    fn states(&mut self) -> io::Result<Vec<(DomId, DomainState)>> {
        Ok(self.list()?.into_iter().map(|d| (d.domid, d.state)).collect())
    }

    /// One question about one domain, not a list of all.
    fn state(&mut self, domid: DomId) -> io::Result<Option<DomainState>> {
        Ok(self.info(domid)?.map(|d| d.state))
    }

    /// The hypervisor tracks changes per connection: this handle's.
    fn changed_states(&mut self, fresh: bool) -> io::Result<DomainChanges> {
        match self.host.request(&Request::ChangedDomains { fresh })?.0 {
            Response::Changed { changes } => Ok(DomainChanges::Changed(changes)),
            Response::Domains { domains } => {
                Ok(DomainChanges::Everything(domains.into_iter().map(|d| (d.domid, d.state)).collect()))
            }
            _ => Err(invalid("unexpected reply to ChangedDomains")),
        }
    }
}

impl Toolstack for HostedToolstack {
    fn create(&mut self, config: &DomainConfig) -> io::Result<NewDomain> {
        match self.host.request(&Request::Create { config: config.clone() })?.0 {
            Response::Created { domain } => Ok(domain),
            _ => Err(invalid("unexpected reply to Create")),
        }
    }

    fn unpause(&mut self, domid: DomId) -> io::Result<()> {
        self.host.request_done(&Request::Unpause { domid })
    }

    fn pause(&mut self, domid: DomId) -> io::Result<()> {
        self.host.request_done(&Request::Pause { domid })
    }

    fn shutdown(&mut self, domid: DomId, reason: ShutdownReason) -> io::Result<()> {
        self.host.request_done(&Request::Shutdown { domid, reason })
    }

    fn destroy(&mut self, domid: DomId) -> io::Result<()> {
        self.host.request_done(&Request::Destroy { domid })
    }

    fn list(&mut self) -> io::Result<Vec<DomainInfo>> {
        match self.host.request(&Request::List)?.0 {
            Response::Domains { domains } => Ok(domains),
            _ => Err(invalid("unexpected reply to List")),
        }
    }

    fn info(&mut self, domid: DomId) -> io::Result<Option<DomainInfo>> {
        match self.host.request(&Request::Info { domid })?.0 {
            Response::Info { domain } => Ok(domain),
            _ => Err(invalid("unexpected reply to Info")),
        }
    }
}

/// Hosted dom0 has no xenstore ring: its processes reach the daemon over
/// the daemon's socket, so [`Dom0Store::dom0_ring`] is always `None`.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostedDom0Store;

impl Dom0Store for HostedDom0Store {
    fn dom0_ring(&mut self) -> io::Result<Option<(MappedPages, Port)>> {
        Ok(None)
    }
}
