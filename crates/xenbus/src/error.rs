//! The framework's error type: every way a device operation fails, each
//! with the errno that `xenbus_dev_fatal` would write for it.

use std::fmt;
use std::time::Duration;

use xenstore::ErrorCode;

use crate::state::{ParseStateError, XenbusState};
use crate::transitions::IllegalTransition;

/// Why a xenbus operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A XenStore request failed (the daemon's error, or the connection).
    Xs(xenstore::Error),
    /// A `state` node holds something that is not a state.
    BadState {
        /// The `state` node.
        path: String,
        /// What is wrong with its value.
        error: ParseStateError,
    },
    /// A node the driver asked for as a typed value does not parse.
    Parse {
        /// The node.
        path: String,
        /// Its value.
        value: Vec<u8>,
        /// The type it was to be (`u32`, ...).
        expected: &'static str,
    },
    /// The tables do not allow the state change asked for.
    Illegal(IllegalTransition),
    /// The device's `backend`/`frontend` node (or `-id`) is missing, empty
    /// or unparseable, or names a directory that does not exist (Linux's
    /// `talk_to_otherend` fails with `ENOENT` then).
    NoOtherEnd {
        /// The device directory whose other end is missing.
        device: String,
    },
    /// The device directory was removed (by the toolstack) while the
    /// operation ran; nothing was written.
    Gone {
        /// The device directory.
        device: String,
    },
    /// A directory that had to be new is already there (see
    /// [`crate::toolstack::attach_new`]).
    Exists {
        /// The directory.
        path: String,
    },
    /// A wait for a state ran out of time.
    Timeout {
        /// The `state` node waited on.
        path: String,
        /// The state wanted.
        wanted: XenbusState,
        /// The last state seen (`None`: unreadable).
        last: Option<XenbusState>,
        /// How long it waited.
        waited: Duration,
    },
    /// A driver hook failed with an errno and a message.
    Driver {
        /// The positive errno (`ENOMEM` is 12), written as in Linux.
        errno: i32,
        /// What went wrong, for the error node and the log.
        message: String,
    },
}

impl Error {
    /// A driver's own failure.
    pub fn driver(errno: i32, message: impl Into<String>) -> Error {
        Error::Driver { errno, message: message.into() }
    }

    /// The positive errno written to `error/<device>/error` for this error.
    pub fn errno(&self) -> i32 {
        match self {
            Error::Xs(err) => err.errno(),
            Error::BadState { .. } | Error::Parse { .. } | Error::Illegal(_) => ErrorCode::EINVAL.errno(),
            Error::NoOtherEnd { .. } | Error::Gone { .. } => ErrorCode::ENOENT.errno(),
            Error::Exists { .. } => ErrorCode::EEXIST.errno(),
            // Linux's ETIMEDOUT.
            Error::Timeout { .. } => 110,
            Error::Driver { errno, .. } => *errno,
        }
    }

    /// Whether the daemon said `ENOENT`.
    pub fn is_enoent(&self) -> bool {
        matches!(self, Error::Xs(err) if err.code() == Some(ErrorCode::ENOENT))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Xs(err) => write!(f, "{err}"),
            Error::BadState { path, error } => write!(f, "{path}: {error}"),
            Error::Parse { path, value, expected } => {
                write!(f, "{path}: {:?} is not a {expected}", String::from_utf8_lossy(value))
            }
            Error::Illegal(t) => write!(f, "{t}"),
            Error::NoOtherEnd { device } => write!(f, "{device}: the other end is missing"),
            Error::Gone { device } => write!(f, "{device}: the device directory is gone"),
            Error::Exists { path } => write!(f, "{path} already exists"),
            Error::Timeout { path, wanted, last, waited } => {
                let last = last.map_or_else(|| "unreadable".to_owned(), |s| s.to_string());
                write!(f, "{path}: waited {waited:?} for {wanted}, last saw {last}")
            }
            Error::Driver { errno, message } => write!(f, "{message} (errno {errno})"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Xs(err) => Some(err),
            Error::BadState { error, .. } => Some(error),
            Error::Illegal(t) => Some(t),
            _ => None,
        }
    }
}

impl From<xenstore::Error> for Error {
    fn from(err: xenstore::Error) -> Self {
        Error::Xs(err)
    }
}

impl From<IllegalTransition> for Error {
    fn from(t: IllegalTransition) -> Self {
        Error::Illegal(t)
    }
}
