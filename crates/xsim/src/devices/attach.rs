//! `xsim attach`: a new device, as libxl's `libxl__device_add` makes one.
//!
//! 1. Both domains must exist, the type must be a path component
//!    ([`super::names`]), and the id free (or picked: [`super::devid`]).
//! 2. The toolstack's record ([`super::record`]) is written, then both
//!    directories in one transaction by [`xenbus::toolstack::attach`]:
//!    frontend directory owned by the frontend domain and readable by the
//!    backend's, backend directory owned by the backend domain and
//!    readable by the frontend's, `state` 1 in both, `online` 1 and the
//!    caller's keys in the backend's; for a `vbd` also the frontend's
//!    `virtual-device` (the id) and `device-type` (as libxl writes them).
//! 3. The backend is waited for ([`super::wait`]).
//!
//! On a timeout or a backend that closes the device, the directories are
//! **left in place**, as libxl leaves them: its add path reports the
//! failure and removes nothing (`device_hotplug_done` cleans XenStore only
//! for a removal), and `xl block-attach` just fails. The state is then
//! visible (`xsim devices`) and a backend started late still picks the
//! device up; `xsim detach --force` removes it.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use xen_platform::DomId;
use xenbus::toolstack::{self as xt, DeviceSpec};
use xenbus::{Conn, XenbusState};
use xenstore::Store;

use super::record::{self, Record};
use super::wait::{self, NotReady};
use super::{devid, names};
use crate::Toolstack;

/// libxl's wait for a new device's backend (`LIBXL_INIT_TIMEOUT`).
pub const INIT_TIMEOUT: Duration = Duration::from_secs(10);

/// A device to attach.
#[derive(Debug, Clone)]
pub struct AttachSpec {
    /// The guest domain (the frontend).
    pub frontend: DomId,
    /// `vbd`, `vif`, ...
    pub devtype: String,
    /// The serving domain.
    pub backend: DomId,
    /// The id; the next free one when `None`.
    pub devid: Option<u32>,
    /// Keys for the backend directory (`params`, `mode`, ...).
    pub backend_keys: Vec<(String, String)>,
    /// How long to wait for the backend.
    pub timeout: Duration,
}

impl AttachSpec {
    /// A device of `devtype` for `frontend` served by dom0, with the next
    /// free id, no keys and libxl's timeout.
    pub fn new(frontend: DomId, devtype: &str) -> AttachSpec {
        AttachSpec {
            frontend,
            devtype: devtype.to_owned(),
            backend: 0,
            devid: None,
            backend_keys: Vec::new(),
            timeout: INIT_TIMEOUT,
        }
    }
}

/// Attaches a device (see the module documentation); returns its id once
/// the backend has taken it.
pub fn attach(ts: &mut Toolstack, spec: &AttachSpec) -> Result<u32> {
    names::check_type(&spec.devtype).map_err(anyhow::Error::msg)?;
    let fe_name = ts.describe(spec.frontend)?;
    let be_name = ts.describe(spec.backend)?;
    let store = ts.store();
    let in_use = record::numbered_children(
        store,
        &xenbus::paths::bus_root(xenbus::Role::Frontend, spec.frontend, &spec.devtype),
    )?;
    let devid = match spec.devid {
        Some(id) => id,
        None => devid::next_free(&spec.devtype, &in_use)
            .with_context(|| format!("{fe_name} has no free {} id left", spec.devtype))?,
    };
    let mut device = DeviceSpec::new(&spec.devtype, devid, spec.frontend, spec.backend);
    // xenbus's attach replaces what it finds; a device in use must not be.
    for dir in [device.frontend_dir(), device.backend_dir(), record::dir(spec.frontend, &spec.devtype, devid)] {
        if store.exists(&dir).with_context(|| format!("reading {dir}"))? {
            bail!(
                "{fe_name} already has {} {devid} ({dir} exists; `xsim devices {}` lists its devices, \
                 `xsim detach` removes one)",
                spec.devtype,
                spec.frontend
            );
        }
    }
    if spec.devtype == "vbd" {
        let disk_type = spec.backend_keys.iter().find(|(k, _)| k == "device-type").map_or("disk", |(_, v)| v);
        device.frontend_keys.push(("virtual-device".into(), devid.to_string()));
        device.frontend_keys.push(("device-type".into(), disk_type.to_owned()));
    }
    device.backend_keys.clone_from(&spec.backend_keys);
    let rec = Record {
        devtype: spec.devtype.clone(),
        devid,
        backend_id: spec.backend,
        backend: device.backend_dir(),
        frontend: device.frontend_dir(),
    };
    record::write(store, spec.frontend, &rec).context("writing the toolstack's record of the device")?;
    let conn = ts.device_conn()?;
    if let Err(e) = xt::attach(conn, &device) {
        let _ = record::rm_if_there(conn.store(), &record::dir(spec.frontend, &spec.devtype, devid));
        return Err(e).with_context(|| format!("writing {} and {}", device.frontend_dir(), device.backend_dir()));
    }
    let be_dir = device.backend_dir();
    match wait::backend_up(conn, spec.backend, &be_dir, spec.timeout) {
        Ok(_) => Ok(devid),
        Err(NotReady::Timeout { last, waited }) => bail!(
            "{} {devid} of {fe_name}: no backend took the device in {:.1} s: {be_dir}/state is {}, wanted {} or later. \
             Is a backend for {} running in {be_name}? The directories are left in place, as libxl leaves them \
             (a backend started now still takes the device); `xsim detach --force {} {} {devid}` removes them.",
            spec.devtype,
            waited.as_secs_f64(),
            state_text(last),
            state_text(Some(XenbusState::InitWait)),
            spec.devtype,
            spec.frontend,
            spec.devtype,
        ),
        Err(NotReady::Closed { state, error }) => bail!(
            "{} {devid} of {fe_name}: the backend in {be_name} closed the device ({be_dir}/state is {}){}. \
             The directories are left in place; `xsim detach --force {} {} {devid}` removes them.",
            spec.devtype,
            state_text(Some(state)),
            error.map_or_else(String::new, |e| format!(": {e}")),
            spec.frontend,
            spec.devtype,
        ),
    }
}

/// A state as `Connected (4)`; `None` is an unreadable node.
pub fn state_text(state: Option<XenbusState>) -> String {
    state.map_or_else(|| "unreadable".to_owned(), |s| s.to_string())
}
