//! The client's error type.

use std::fmt;
use std::io;

use xenstore_wire::{ErrorCode, FrameError, Op};

/// Why a request failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The daemon answered with this error (or, for `E2BIG` on a request
    /// that would not fit in a payload, the client refused to send it; for
    /// `EAGAIN` from [`Client::transaction`](crate::Client::transaction),
    /// the retries ran out).
    Xs(ErrorCode),
    /// The transport failed: the daemon could not be reached, or the
    /// connection broke or was closed. Every request in flight on a broken
    /// connection fails with this, and so does every later one.
    Io(io::Error),
    /// The daemon broke the protocol (see [`ProtocolError`]).
    Protocol(ProtocolError),
    /// The daemon stopped serving the connection while this request was in
    /// flight, and the client resumed the connection (a guest's ring after
    /// xenstored restarted, or set the ring's error indicator): the old
    /// daemon may or may not have applied the request before it went, so
    /// check before repeating anything that is not idempotent. Also for a
    /// request in a transaction opened before the resumption (the daemon
    /// forgot the transaction; nothing of it was committed). Later requests
    /// work. See the crate documentation, "Across a daemon restart".
    Restarted,
}

impl Error {
    /// The daemon's error code, if this is one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Xs(code) => Some(*code),
            _ => None,
        }
    }

    /// Whether the daemon said `EAGAIN` (a transaction conflict).
    pub fn is_eagain(&self) -> bool {
        self.code() == Some(ErrorCode::EAGAIN)
    }

    /// Whether the connection was resumed under this request
    /// ([`Error::Restarted`]).
    pub fn is_restarted(&self) -> bool {
        matches!(self, Error::Restarted)
    }

    /// The closest Linux errno, as libxenstore would leave in `errno`:
    /// the code's own number, the OS error of an I/O failure, `EIO`
    /// otherwise.
    pub fn errno(&self) -> i32 {
        match self {
            Error::Xs(code) => code.errno(),
            Error::Io(err) => err.raw_os_error().unwrap_or(ErrorCode::EIO.errno()),
            Error::Protocol(_) => ErrorCode::EIO.errno(),
            Error::Restarted => rustix::io::Errno::CONNRESET.raw_os_error(),
        }
    }

    /// A copy, for handing one failure to every waiting caller (an
    /// `io::Error` is rebuilt from its kind, OS code and message).
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::Xs(code) => Error::Xs(*code),
            Error::Io(err) => Error::Io(match err.raw_os_error() {
                Some(code) => io::Error::from_raw_os_error(code),
                None => io::Error::new(err.kind(), err.to_string()),
            }),
            Error::Protocol(p) => Error::Protocol(p.clone()),
            Error::Restarted => Error::Restarted,
        }
    }

    /// The error every request gets once the connection is gone for good.
    pub(crate) fn closed() -> Error {
        Error::Io(io::Error::new(io::ErrorKind::NotConnected, "connection to xenstored closed"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Xs(code) => write!(f, "xenstored: {code}"),
            Error::Io(err) => write!(f, "xenstore connection: {err}"),
            Error::Protocol(p) => write!(f, "xenstore protocol violation: {p}"),
            Error::Restarted => {
                write!(f, "xenstored restarted: the request may or may not have been applied")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Xs(code) => Some(code),
            Error::Io(err) => Some(err),
            Error::Protocol(p) => Some(p),
            Error::Restarted => None,
        }
    }
}

impl From<ErrorCode> for Error {
    fn from(code: ErrorCode) -> Self {
        Error::Xs(code)
    }
}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Self {
        Error::Io(err)
    }
}

impl From<ProtocolError> for Error {
    fn from(p: ProtocolError) -> Self {
        Error::Protocol(p)
    }
}

/// How the daemon broke the protocol. The first two are fatal: the
/// connection can no longer be trusted and is closed. The others fail only
/// the request they concern.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A message announced a payload over the protocol maximum (fatal).
    Frame(FrameError),
    /// A reply carried a `req_id` with no request waiting for it (fatal).
    UnexpectedReply {
        /// The reply's `req_id`.
        req_id: u32,
        /// The reply's raw operation.
        op: u32,
    },
    /// A reply's operation was neither the request's nor `ERROR`.
    WrongReplyOp {
        /// What was asked.
        expected: Op,
        /// What came back (raw).
        got: u32,
    },
    /// A reply's payload did not parse as that operation's answer.
    MalformedReply {
        /// The operation.
        op: Op,
    },
    /// An `ERROR` reply named an error this client does not know.
    UnknownError(Vec<u8>),
    /// `DIRECTORY_PART` made no progress, or kept changing generation past
    /// the client's bound on restarts.
    DirectoryPart,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Frame(err) => write!(f, "{err}"),
            ProtocolError::UnexpectedReply { req_id, op } => {
                write!(f, "reply (op {op}) to req_id {req_id}, which no request is waiting for")
            }
            ProtocolError::WrongReplyOp { expected, got } => write!(f, "reply to {expected} has operation {got}"),
            ProtocolError::MalformedReply { op } => write!(f, "malformed {op} reply"),
            ProtocolError::UnknownError(name) => {
                write!(f, "unknown error name {:?}", String::from_utf8_lossy(name))
            }
            ProtocolError::DirectoryPart => write!(f, "DIRECTORY_PART replies make no progress"),
        }
    }
}

impl std::error::Error for ProtocolError {}

impl ProtocolError {
    /// Whether the connection must be dropped after this.
    pub fn is_fatal(&self) -> bool {
        matches!(self, ProtocolError::Frame(_) | ProtocolError::UnexpectedReply { .. })
    }
}
