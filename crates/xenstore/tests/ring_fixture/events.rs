//! Event channels for one port, over eventfds.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rustix::event::{eventfd, EventfdFlags};
use xen_platform::{Binding, BoundPort, DomId, EventChannelParts, EventChannels, Notifier, Port, Virq};

/// One direction of the channel: a level that `signal` raises and `clear`
/// lowers.
#[derive(Debug, Clone)]
pub struct EventFd(Arc<OwnedFd>);

impl EventFd {
    pub fn new() -> EventFd {
        EventFd(Arc::new(eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).unwrap()))
    }

    pub fn signal(&self) -> io::Result<()> {
        rustix::io::write(&*self.0, &1u64.to_ne_bytes())?;
        Ok(())
    }

    /// Lowers the level; whether it was raised.
    pub fn clear(&self) -> io::Result<bool> {
        let mut buf = [0u8; 8];
        match rustix::io::read(&*self.0, &mut buf) {
            Ok(_) => Ok(true),
            Err(rustix::io::Errno::AGAIN) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// A shared count of notifications.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicUsize>);

impl Counter {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    fn bump(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// The guest's event-channel handle with its store port already bound:
/// pending when `inbound` is raised; notifying raises `outbound`.
#[derive(Debug)]
pub struct TestEvents {
    port: Port,
    inbound: EventFd,
    outbound: EventFd,
    sent: Counter,
}

impl TestEvents {
    pub fn new(port: Port, inbound: EventFd, outbound: EventFd) -> TestEvents {
        TestEvents { port, inbound, outbound, sent: Counter::default() }
    }

    /// Counts the notifications sent through this handle.
    pub fn sent(&self) -> Counter {
        self.sent.clone()
    }
}

fn unsupported<T>() -> io::Result<T> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

impl AsFd for TestEvents {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inbound.as_fd()
    }
}

impl EventChannels for TestEvents {
    fn alloc_unbound(&mut self, _remote: DomId) -> io::Result<Port> {
        unsupported()
    }

    fn bind_interdomain(&mut self, _remote: DomId, _remote_port: Port) -> io::Result<Port> {
        unsupported()
    }

    fn bind_virq(&mut self, _virq: Virq) -> io::Result<Port> {
        unsupported()
    }

    fn unbind(&mut self, _port: Port) -> io::Result<()> {
        unsupported()
    }

    fn notifier(&self, port: Port) -> io::Result<Notifier> {
        if port != self.port {
            return unsupported();
        }
        let (outbound, sent) = (self.outbound.clone(), self.sent.clone());
        Ok(Notifier::new(move || {
            sent.bump();
            outbound.signal()
        }))
    }

    fn bindings(&self) -> Vec<BoundPort> {
        vec![BoundPort { port: self.port, binding: Binding::Claimed }]
    }

    fn into_parts(self: Box<Self>) -> Result<EventChannelParts, xen_platform::IntoPartsError> {
        match unsupported() {
            Ok(parts) => Ok(parts),
            Err(error) => Err(xen_platform::IntoPartsError { handle: self, error }),
        }
    }

    fn take_pending(&mut self, out: &mut Vec<Port>) -> io::Result<()> {
        if self.inbound.clear()? {
            out.push(self.port);
        }
        Ok(())
    }
}
