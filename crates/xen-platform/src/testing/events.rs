//! The twin's event-channel handles.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use rustix::io::Errno;

use super::world::{HandleId, Kind};
use super::TestHypervisor;
use crate::{BoundPort, DomId, EventChannelParts, EventChannels, Notifier, Port, Virq};

/// One domain's event-channel handle in the twin.
///
/// Its descriptor is an eventfd, readable while one of its ports is
/// pending; [`EventChannels::take_pending`] lowers it. Notifying through
/// a port marks the peer port pending and wakes the handle holding it.
/// Dropping the handle closes the ports it bound (their peers go back to
/// unbound) and releases the ones it claimed.
///
/// [`EventChannels::into_parts`] gives one descriptor (the eventfd) and
/// the bindings; [`TestHypervisor::adopt_event_channels`] takes them
/// back. Meanwhile the ports stay bound and keep collecting events (parts
/// dropped without adoption leave them bound for the twin's life).
pub struct TestEventChannels {
    hv: TestHypervisor,
    domid: DomId,
    /// `None` once taken apart.
    id: Option<HandleId>,
    wake: Arc<OwnedFd>,
}

impl TestEventChannels {
    pub(super) fn new(hv: TestHypervisor, domid: DomId, id: HandleId, wake: Arc<OwnedFd>) -> TestEventChannels {
        TestEventChannels { hv, domid, id: Some(id), wake }
    }

    /// Its domain.
    pub fn domid(&self) -> DomId {
        self.domid
    }

    /// Takes over `port` of this domain, made by someone else and held by
    /// nobody (a guest's xenstore port), like the hosted handle's claim.
    /// Released, not closed, when the handle goes. `EBUSY` if held,
    /// `EINVAL` if there is no such port.
    pub fn claim(&mut self, port: Port) -> io::Result<Port> {
        Ok(self.hv.lock().claim(self.id()?, port)?)
    }

    fn id(&self) -> Result<HandleId, Errno> {
        self.id.ok_or(Errno::BADF)
    }
}

impl EventChannels for TestEventChannels {
    fn alloc_unbound(&mut self, remote: DomId) -> io::Result<Port> {
        Ok(self.hv.lock().alloc_unbound(self.id()?, remote)?)
    }

    fn bind_interdomain(&mut self, remote: DomId, remote_port: Port) -> io::Result<Port> {
        Ok(self.hv.lock().bind_interdomain(self.id()?, remote, remote_port)?)
    }

    fn bind_virq(&mut self, virq: Virq) -> io::Result<Port> {
        Ok(self.hv.lock().bind_virq(self.id()?, virq)?)
    }

    fn unbind(&mut self, port: Port) -> io::Result<()> {
        Ok(self.hv.lock().unbind(self.id()?, port)?)
    }

    fn notifier(&self, port: Port) -> io::Result<Notifier> {
        {
            let world = self.hv.lock();
            let (_, entry) = world.held(self.id()?, port)?;
            if let Kind::Virq(_) = entry.kind {
                return Err(Errno::INVAL.into());
            }
        }
        let (hv, domid) = (self.hv.clone(), self.domid);
        Ok(Notifier::new(move || Ok(hv.lock().send(domid, port)?)))
    }

    fn take_pending(&mut self, out: &mut Vec<Port>) -> io::Result<()> {
        Ok(self.hv.lock().take_pending(self.id()?, out)?)
    }

    fn bindings(&self) -> Vec<BoundPort> {
        match self.id {
            Some(id) => self.hv.lock().bindings(id),
            None => Vec::new(),
        }
    }

    fn into_parts(mut self: Box<Self>) -> Result<EventChannelParts, crate::IntoPartsError> {
        let got = || -> io::Result<_> {
            if let Some(errno) = self.hv.lock().faults.into_parts.take() {
                return Err(errno.into());
            }
            Ok((self.id()?, self.wake.try_clone()?))
        };
        let (id, fd) = match got() {
            Ok(got) => got,
            Err(error) => return Err(crate::IntoPartsError { handle: self, error }),
        };
        let ports = {
            let mut world = self.hv.lock();
            let ports = world.bindings(id);
            world.detach(id);
            ports
        };
        self.id = None;
        Ok(EventChannelParts { fds: vec![fd], ports })
    }
}

impl AsFd for TestEventChannels {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }
}

impl Drop for TestEventChannels {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.hv.lock().close_handle(id);
        }
    }
}

impl fmt::Debug for TestEventChannels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestEventChannels").field("domid", &self.domid).field("handle", &self.id).finish()
    }
}
