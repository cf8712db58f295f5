//! The server's error indicator, as an error callers can inspect.

use std::fmt;
use std::io;

use xenstore_ring::{ERROR_COMM, ERROR_PROTO, ERROR_RINGIDX};

/// The server set the ring's error indicator: it has stopped serving this
/// ring, so every read and write of the transport fails with this (inside
/// an [`io::Error`] of kind [`io::ErrorKind::ConnectionAborted`]) instead
/// of waiting for answers that will never come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerRingError {
    /// The indicator's value (`ERROR_COMM`, `ERROR_RINGIDX`, `ERROR_PROTO`
    /// in [`xenstore_ring`], or a value newer than this code).
    pub indicator: u32,
}

impl ServerRingError {
    /// The indicator's name in `xenstore-ring.txt`, if it is one we know.
    pub fn name(&self) -> Option<&'static str> {
        match self.indicator {
            ERROR_COMM => Some("ERROR_COMM"),
            ERROR_RINGIDX => Some("ERROR_RINGIDX"),
            ERROR_PROTO => Some("ERROR_PROTO"),
            _ => None,
        }
    }

    fn meaning(&self) -> &'static str {
        match self.indicator {
            ERROR_COMM => "communication problem",
            ERROR_RINGIDX => "invalid ring index",
            ERROR_PROTO => "protocol violation",
            _ => "unknown error",
        }
    }
}

impl fmt::Display for ServerRingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "xenstored stopped serving the ring: ")?;
        match self.name() {
            Some(name) => write!(f, "{name} ({})", self.meaning()),
            None => write!(f, "error indicator {} ({})", self.indicator, self.meaning()),
        }
    }
}

impl std::error::Error for ServerRingError {}

impl From<ServerRingError> for io::Error {
    fn from(err: ServerRingError) -> io::Error {
        io::Error::new(io::ErrorKind::ConnectionAborted, err)
    }
}
