//! Writing and reading a `state` node, and reporting a device error.
//!
//! [`switch_state`] is Linux's `xenbus_switch_state`: one transaction of
//! its own that first checks the `state` node still exists and writes
//! nothing if it does not. The toolstack removes a device by removing its
//! directory; a late state write must not create it again (Linux: "we
//! don't want to resurrect that directory"). It never joins a caller's
//! transaction, because the caller's cached state would be wrong if that
//! transaction were aborted.

use xenstore::{ErrorCode, Store};

use crate::conn::{self, Conn};
use crate::error::Error;
use crate::paths;
use crate::state::XenbusState;

/// What [`switch_state`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switched {
    /// The new value was written.
    Written,
    /// The `state` node (so the device directory) is gone; nothing was written.
    Gone,
}

/// Writes `state` to `<dir>/state` in a transaction, unless the node no
/// longer exists; retried on `EAGAIN` by [`Conn::transaction`].
pub fn switch_state(conn: &dyn Conn, dir: &str, state: XenbusState) -> Result<Switched, Error> {
    let node = paths::child(dir, "state");
    let outcome = conn::transaction(conn, |tx| {
        if !tx.exists(&node)? {
            return Ok(Switched::Gone);
        }
        tx.write(&node, &state.to_node_value())?;
        Ok(Switched::Written)
    })?;
    Ok(outcome)
}

/// Reads `<dir>/state`. A missing node is [`XenbusState::Unknown`], as in
/// Linux's `xenbus_read_driver_state`, and so is one we may not read
/// (`EACCES`: the daemon answers that for a missing node below one we
/// cannot read, so the two cannot be told apart); a value that is not a
/// state is [`Error::BadState`].
pub fn read_state(store: &dyn Store, dir: &str) -> Result<XenbusState, Error> {
    let path = paths::child(dir, "state");
    match store.read(&path) {
        Ok(value) => XenbusState::parse(&value).map_err(|error| Error::BadState { path, error }),
        Err(err) if matches!(err.code(), Some(ErrorCode::ENOENT | ErrorCode::EACCES)) => Ok(XenbusState::Unknown),
        Err(err) => Err(err.into()),
    }
}

/// Linux's `xenbus_dev_error`: writes `"<errno> <message>"` to the device's
/// error node under `home` (see [`paths::error_node`]) and logs it. A
/// failure to write is logged too, and otherwise ignored: the error being
/// reported matters more.
pub fn report_error(conn: &dyn Conn, home: &str, dir: &str, error: &Error) {
    let node = paths::error_node(home, dir);
    let text = format!("{} {error}", error.errno());
    tracing::error!(device = dir, errno = error.errno(), %error, "xenbus device error");
    if let Err(err) = conn.store().write(&node, text.as_bytes()) {
        tracing::warn!(node, %err, "could not write the device error node");
    }
}
