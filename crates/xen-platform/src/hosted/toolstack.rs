//! A process's hosted domain operations: each is one request to the
//! hypervisor, which refuses them (`EPERM`) unless the caller is dom0.

use std::io;

use super::client::Host;
use super::protocol::{invalid, Request, Response};
use crate::{DomId, DomainConfig, DomainInfo, Domains, NewDomain, ShutdownReason};

/// Hosted domain lifecycle, for a toolstack.
#[derive(Debug, Clone)]
pub struct HostedDomains {
    host: Host,
}

impl HostedDomains {
    pub(crate) fn new(host: Host) -> HostedDomains {
        HostedDomains { host }
    }
}

impl Domains for HostedDomains {
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
}
