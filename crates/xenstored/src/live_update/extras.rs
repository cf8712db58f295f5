//! What the daemon hands over besides the store and the connections: the
//! event-channel handle's descriptors and bindings. It travels in the
//! migration stream as our extension record (`xenstore_migration`'s
//! `DaemonState::daemon`), `postcard`-encoded.

use serde::{Deserialize, Serialize};
use xen_platform::{Binding, BoundPort, Port, Virq};

/// The body of the daemon's extension record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DaemonExtras {
    /// The event-channel handle's descriptors in its `into_parts` order
    /// (the first is also `GLOBAL_DATA`'s `evtchn-fd`); empty when no
    /// domains were served.
    pub(crate) evtchn_fds: Vec<i32>,
    /// The ports bound through it.
    pub(crate) ports: Vec<PortBinding>,
    /// The port of VIRQ_DOM_EXC among them.
    pub(crate) virq_port: Option<Port>,
}

/// One [`BoundPort`] as plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum PortBinding {
    /// `Binding::Unbound`.
    Unbound { port: Port, remote: u16 },
    /// `Binding::Interdomain`.
    Interdomain { port: Port, remote: u16, remote_port: Port },
    /// `Binding::Virq`, by Xen's number.
    Virq { port: Port, virq: u32 },
    /// `Binding::Claimed`.
    Claimed { port: Port },
}

impl PortBinding {
    /// `None` for a binding this version does not know how to carry.
    pub(crate) fn from_bound(b: BoundPort) -> Option<PortBinding> {
        Some(match b.binding {
            Binding::Unbound { remote } => PortBinding::Unbound { port: b.port, remote },
            Binding::Interdomain { remote, remote_port } => {
                PortBinding::Interdomain { port: b.port, remote, remote_port }
            }
            Binding::Virq(virq) => PortBinding::Virq { port: b.port, virq: virq.number() },
            Binding::Claimed => PortBinding::Claimed { port: b.port },
            _ => return None,
        })
    }

    /// `None` for a virq number no [`Virq`] has.
    pub(crate) fn to_bound(self) -> Option<BoundPort> {
        let (port, binding) = match self {
            PortBinding::Unbound { port, remote } => (port, Binding::Unbound { remote }),
            PortBinding::Interdomain { port, remote, remote_port } => {
                (port, Binding::Interdomain { remote, remote_port })
            }
            PortBinding::Virq { port, virq } if virq == Virq::DomExc.number() => (port, Binding::Virq(Virq::DomExc)),
            PortBinding::Virq { .. } => return None,
            PortBinding::Claimed { port } => (port, Binding::Claimed),
        };
        Some(BoundPort { port, binding })
    }
}

impl DaemonExtras {
    /// The record body.
    pub(crate) fn encode(&self) -> Vec<u8> {
        // A Vec sink cannot fail.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Parses a record body; trailing octets are an error.
    pub(crate) fn decode(bytes: &[u8]) -> Result<DaemonExtras, String> {
        match postcard::take_from_bytes::<DaemonExtras>(bytes) {
            Ok((extras, [])) => Ok(extras),
            Ok((_, rest)) => Err(format!("{} octets after the daemon's extension", rest.len())),
            Err(e) => Err(format!("the daemon's extension: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extras_and_bindings_round_trip() {
        let bindings = [
            BoundPort { port: 3, binding: Binding::Virq(Virq::DomExc) },
            BoundPort { port: 4, binding: Binding::Interdomain { remote: 7, remote_port: 1 } },
            BoundPort { port: 5, binding: Binding::Unbound { remote: 2 } },
            BoundPort { port: 6, binding: Binding::Claimed },
        ];
        let ports: Vec<PortBinding> = bindings.iter().map(|b| PortBinding::from_bound(*b).unwrap()).collect();
        let back: Vec<BoundPort> = ports.iter().map(|p| p.to_bound().unwrap()).collect();
        assert_eq!(back, bindings);
        let extras = DaemonExtras { evtchn_fds: vec![5, 9], ports, virq_port: Some(3) };
        assert_eq!(DaemonExtras::decode(&extras.encode()).unwrap(), extras);
        let mut long = extras.encode();
        long.push(0);
        assert!(DaemonExtras::decode(&long).is_err());
        assert!(DaemonExtras::decode(&[0xff; 3]).is_err());
        assert_eq!(PortBinding::Virq { port: 1, virq: 99 }.to_bound(), None);
    }
}
