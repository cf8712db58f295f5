//! What every device of one backend process shares: the platform's
//! grant and event-channel handles (one handle, so one descriptor to
//! wait on for all devices), and the devices that are connected, by
//! port.

use std::collections::{BTreeMap, BTreeSet};

use xen_ioring::RingError;
use xen_platform::{EventChannels, Grants, Port};

use crate::backend::served::Served;

/// Requests one device may have answered per round before the others get
/// their turn: one 1-page ring's worth.
pub const BUDGET: usize = 32;

/// The shared state of a backend process.
#[derive(Debug)]
pub struct Hub {
    pub(crate) grants: Box<dyn Grants>,
    pub(crate) events: Box<dyn EventChannels>,
    served: BTreeMap<Port, Served>,
    /// Ports with work: notified, or left over from a round.
    pending: BTreeSet<Port>,
    /// Devices whose ring stopped this round, to close.
    broken: Vec<(String, RingError)>,
}

impl Hub {
    pub(crate) fn new(grants: Box<dyn Grants>, events: Box<dyn EventChannels>) -> Hub {
        Hub { grants, events, served: BTreeMap::new(), pending: BTreeSet::new(), broken: Vec::new() }
    }

    /// Adds a connected device; its port is pending (requests may have
    /// been published before the bind).
    pub(crate) fn attach(&mut self, served: Served) {
        self.pending.insert(served.port);
        self.served.insert(served.port, served);
    }

    /// Removes a device: its ring is unmapped and its port unbound.
    pub(crate) fn detach(&mut self, port: Port) {
        self.pending.remove(&port);
        if self.served.remove(&port).is_some() {
            if let Err(err) = self.events.unbind(port) {
                tracing::warn!(port, %err, "could not unbind a device's port");
            }
        }
    }

    /// The data pages device `dir` keeps mapped, if connected.
    pub(crate) fn cached_grants(&self, dir: &str) -> Option<usize> {
        self.served.values().find(|s| s.dir == dir).map(Served::cached_grants)
    }

    /// The connected devices' directories.
    pub(crate) fn dirs(&self) -> Vec<String> {
        self.served.values().map(|s| s.dir.clone()).collect()
    }

    /// One round: takes the notified ports, then serves each device with
    /// work up to [`BUDGET`] requests, in port order. Returns the
    /// requests answered.
    pub(crate) fn round(&mut self) -> usize {
        let mut notified = Vec::new();
        if let Err(err) = self.events.take_pending(&mut notified) {
            tracing::warn!(%err, "could not read pending event channels");
        }
        self.pending.extend(notified.into_iter().filter(|p| self.served.contains_key(p)));
        let mut answered = 0;
        for port in std::mem::take(&mut self.pending) {
            // A stopped ring waits to be closed; it is not served again.
            let Some(served) = self.served.get_mut(&port).filter(|s| s.failure().is_none()) else { continue };
            match served.serve(self.grants.as_mut(), BUDGET) {
                Ok(round) => {
                    answered += round.answered;
                    if round.more {
                        self.pending.insert(port);
                    }
                }
                Err(err) => self.broken.push((served.dir.clone(), err)),
            }
        }
        answered
    }

    /// Whether some device has work left from the last round.
    pub(crate) fn has_work(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The devices whose rings stopped since the last call.
    pub(crate) fn take_broken(&mut self) -> Vec<(String, RingError)> {
        std::mem::take(&mut self.broken)
    }
}
