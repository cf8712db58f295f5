//! The toolstack's side of a device, as libxl does it
//! (`libxl__device_generic_add`, `libxl__initiate_device_generic_remove`).
//!
//! - [`attach`] writes both directories in ONE transaction: the frontend
//!   directory owned by the frontend domain, readable by the backend
//!   domain (`[{fe, NONE}, {be, READ}]`); the backend directory owned by
//!   the backend domain, readable by the frontend (`[{be, NONE}, {fe,
//!   READ}]`); `state` 1 in both, `online` 1 in the backend's. Nodes
//!   created below a directory inherit its permissions.
//! - [`attach_new`] does the same for a device that must be new, with the
//!   caller's own writes in the same transaction: the check that neither
//!   directory exists is made inside it, so two attaches racing for one id
//!   cannot both succeed (the daemon's transactions conflict on a node's
//!   existence, and the loser's retry sees the winner's directories).
//! - [`detach`] writes the backend's `online` 0 and (unless already
//!   Closed) `state` 5 in one transaction, waits for the backend's `state`
//!   6, then removes both directories in one transaction. libxl waits
//!   `LIBXL_DESTROY_TIMEOUT` (10 s); here the caller says how long.
//!
//! The waits consume the connection's watch events: use a connection of
//! the toolstack's own, not one a [`crate::Bus`] also reads.

use std::time::{Duration, Instant};

use xenstore::{Access, Perm, PermList, Store};
use xenstore_wire::DomId;

use crate::conn::{self, Conn};
use crate::error::Error;
use crate::paths;
use crate::state::XenbusState;
use crate::switch::read_state;

/// libxl's wait for the backend to close a device (`LIBXL_DESTROY_TIMEOUT`).
pub const DESTROY_TIMEOUT: Duration = Duration::from_secs(10);

/// A device to attach: its type and id, its two domains, and the extra
/// keys of each directory (`mac`, `params`, ...).
#[derive(Debug, Clone)]
pub struct DeviceSpec {
    /// `vif`, `vbd`, ...
    pub devtype: String,
    /// The backend directory's type: the same as `devtype`, except for
    /// a disk served by a userspace backend, which libxl puts under
    /// `backend/qdisk` while the frontend stays `device/vbd`.
    pub backend_devtype: String,
    /// The device id (`handle` for vif, the `virtual-device` number for vbd).
    pub devid: u32,
    /// The guest domain.
    pub frontend: DomId,
    /// The serving domain.
    pub backend: DomId,
    /// Extra frontend keys.
    pub frontend_keys: Vec<(String, String)>,
    /// Extra backend keys.
    pub backend_keys: Vec<(String, String)>,
}

impl DeviceSpec {
    /// A device with no extra keys.
    pub fn new(devtype: &str, devid: u32, frontend: DomId, backend: DomId) -> DeviceSpec {
        DeviceSpec {
            devtype: devtype.to_owned(),
            backend_devtype: devtype.to_owned(),
            devid,
            frontend,
            backend,
            frontend_keys: Vec::new(),
            backend_keys: Vec::new(),
        }
    }

    /// The same device with its backend directory under
    /// `backend/<backend_devtype>` (`qdisk` for libxl's userspace disk
    /// backend).
    pub fn with_backend_devtype(mut self, backend_devtype: &str) -> DeviceSpec {
        backend_devtype.clone_into(&mut self.backend_devtype);
        self
    }

    /// The frontend directory.
    pub fn frontend_dir(&self) -> String {
        paths::frontend_dir(self.frontend, &self.devtype, self.devid)
    }

    /// The backend directory.
    pub fn backend_dir(&self) -> String {
        paths::backend_dir(self.backend, self.frontend, &self.backend_devtype, self.devid)
    }
}

/// Permissions of a directory owned by `owner` that only `reader` may
/// also read.
fn owned_readable_by(owner: DomId, reader: DomId) -> PermList {
    let entries = vec![Perm { domid: owner, access: Access::None }, Perm { domid: reader, access: Access::Read }];
    PermList::new(entries).unwrap_or_else(|| PermList::owned_by(owner, Access::None))
}

/// Writes both directories of `spec` in one transaction (see the module
/// documentation). Any directory already there is replaced. Both domains
/// must exist: the daemon refuses (`ENOENT`) permissions that name an
/// unknown domain.
pub fn attach(conn: &dyn Conn, spec: &DeviceSpec) -> Result<(), Error> {
    write_both(conn, spec, false, &mut |_| Ok(()))
}

/// Writes both directories of `spec` as [`attach`] does, and runs `also`
/// (the toolstack's own record of the device, say) in the same
/// transaction, for a device that must be new: [`Error::Exists`] if either
/// directory is already there, checked inside the transaction, and nothing
/// is written. An error of `also` aborts the transaction and is returned.
pub fn attach_new(
    conn: &dyn Conn,
    spec: &DeviceSpec,
    also: &mut dyn FnMut(&dyn Store) -> Result<(), xenstore::Error>,
) -> Result<(), Error> {
    write_both(conn, spec, true, also)
}

fn write_both(
    conn: &dyn Conn,
    spec: &DeviceSpec,
    fresh: bool,
    also: &mut dyn FnMut(&dyn Store) -> Result<(), xenstore::Error>,
) -> Result<(), Error> {
    let (fe_dir, be_dir) = (spec.frontend_dir(), spec.backend_dir());
    let fe_keys = [
        ("backend", be_dir.clone()),
        ("backend-id", spec.backend.to_string()),
        ("state", XenbusState::Initialising.number().to_string()),
    ];
    let be_keys = [
        ("frontend", fe_dir.clone()),
        ("frontend-id", spec.frontend.to_string()),
        ("online", "1".to_owned()),
        ("state", XenbusState::Initialising.number().to_string()),
    ];
    let mut taken = None;
    let written = conn::transaction(conn, |tx| {
        taken = None;
        if fresh {
            for dir in [&fe_dir, &be_dir] {
                if tx.exists(dir)? {
                    taken = Some(dir.clone());
                    return Err(xenstore::Error::Xs(xenstore::ErrorCode::EEXIST));
                }
            }
        }
        // A directory left by an earlier device would keep its keys: start
        // clean (a fresh one was just seen not to exist).
        if !fresh {
            rm_if_there(tx, &fe_dir)?;
            rm_if_there(tx, &be_dir)?;
        }
        write_dir(tx, &fe_dir, &owned_readable_by(spec.frontend, spec.backend), &fe_keys, &spec.frontend_keys)?;
        write_dir(tx, &be_dir, &owned_readable_by(spec.backend, spec.frontend), &be_keys, &spec.backend_keys)?;
        also(tx)
    });
    match (written, taken) {
        (Err(_), Some(path)) => Err(Error::Exists { path }),
        (result, _) => Ok(result?),
    }
}

fn rm_if_there(tx: &dyn Store, dir: &str) -> Result<(), xenstore::Error> {
    tx.rm(dir).or_else(|err| if err.code() == Some(xenstore::ErrorCode::ENOENT) { Ok(()) } else { Err(err) })
}

fn write_dir(
    tx: &dyn Store,
    dir: &str,
    perms: &PermList,
    keys: &[(&str, String)],
    extra: &[(String, String)],
) -> Result<(), xenstore::Error> {
    tx.mkdir(dir)?;
    tx.set_perms(dir, perms)?;
    let extra = extra.iter().map(|(k, v)| (k.as_str(), v.clone()));
    for (key, value) in keys.iter().cloned().chain(extra) {
        tx.write(&paths::child(dir, key), value.as_bytes())?;
    }
    Ok(())
}

/// The first half of [`detach`]: `online` 0 and, unless the backend is
/// already Closed, `state` 5, in one transaction.
pub fn begin_detach(conn: &dyn Conn, spec: &DeviceSpec) -> Result<(), Error> {
    let be_dir = spec.backend_dir();
    conn::transaction(conn, |tx| {
        tx.write(&paths::child(&be_dir, "online"), b"0")?;
        let closed = matches!(read_state(tx, &be_dir), Ok(XenbusState::Closed));
        if !closed {
            tx.write(&paths::child(&be_dir, "state"), &XenbusState::Closing.to_node_value())?;
        }
        Ok(())
    })?;
    Ok(())
}

/// The last part of [`detach`]: removes both directories in one transaction.
pub fn remove_dirs(conn: &dyn Conn, spec: &DeviceSpec) -> Result<(), Error> {
    let (fe_dir, be_dir) = (spec.frontend_dir(), spec.backend_dir());
    conn::transaction(conn, |tx| {
        tx.rm(&fe_dir)?;
        tx.rm(&be_dir)
    })?;
    Ok(())
}

/// Detaches a device: [`begin_detach`], wait at most `timeout` for the
/// backend's Closed, [`remove_dirs`]. On a timeout nothing is removed and
/// the error says what state the backend was left in; the caller may
/// [`remove_dirs`] anyway (libxl's forced removal).
pub fn detach(conn: &dyn Conn, spec: &DeviceSpec, timeout: Duration) -> Result<(), Error> {
    begin_detach(conn, spec)?;
    wait_for_state(conn, &spec.backend_dir(), XenbusState::Closed, timeout)?;
    remove_dirs(conn, spec)
}

/// Waits at most `timeout` for `<dir>/state` to read `wanted`, with a
/// watch on it; [`Error::Timeout`] names the node and the last state seen.
pub fn wait_for_state(conn: &dyn Conn, dir: &str, wanted: XenbusState, timeout: Duration) -> Result<(), Error> {
    let node = paths::child(dir, "state");
    let token = format!("xenbus-wait:{node}");
    conn.watch(&node, &token)?;
    let start = Instant::now();
    let result = loop {
        let last = read_state(conn.store(), dir).ok();
        if last == Some(wanted) {
            break Ok(());
        }
        let waited = start.elapsed();
        let Some(left) = timeout.checked_sub(waited).filter(|left| !left.is_zero()) else {
            break Err(Error::Timeout { path: node.clone(), wanted, last, waited });
        };
        let _ = conn.next_event(Some(left));
    };
    let _ = conn.unwatch(&node, &token);
    result
}
