//! `xsim attach`: a new device, as libxl's `libxl__device_add` makes one.
//!
//! 1. Both domains must exist and the type must be a path component
//!    ([`super::names`]). Without an id from the caller, the next free
//!    one is taken by libxl's rule ([`super::devid`]), found from the
//!    toolstack's note of the highest id rather than a listing of every
//!    device ([`super::next_id`]).
//! 2. One transaction ([`xenbus::toolstack::attach_new`]) writes the
//!    toolstack's record ([`super::record`]), raises the note, and writes
//!    both directories: frontend directory owned by the frontend domain
//!    and readable by the backend's, backend directory owned by the
//!    backend domain and readable by the frontend's, `state` 1 in both,
//!    `online` 1 and the caller's keys in the backend's; for a `vbd` also
//!    the frontend's `virtual-device` (the id) and `device-type` (as libxl
//!    writes them). It refuses, writing nothing, if the record or either
//!    directory is already there: a device in use is never replaced, and
//!    of two attaches racing for one id only one succeeds (the other,
//!    with an id of its choosing, chooses again from a listing).
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
use xenbus::XenbusState;
use xenstore::ErrorCode;

use super::record::{self, Record};
use super::wait::{self, NotReady};
use super::{names, next_id};
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
    let device = write(ts, spec, &fe_name)?;
    let devid = device.devid;
    let conn = ts.device_conn()?;
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

/// How many ids of our choosing may turn out taken before we give up. Each
/// loss but the last means another attach took that id meanwhile, so only
/// a toolstack attaching devices to this domain without end could exhaust
/// it; the bound is a backstop.
const ATTEMPTS: usize = 64;

/// Picks the id (unless the caller gave one) and writes the device: the
/// record and both directories in one transaction. An id of our choosing
/// that turns out taken (another attach won the race for it, or something
/// made a directory behind the note's back) is chosen again from a
/// listing; the same id chosen twice is something the listing does not
/// show (a record or backend directory left without its frontend's), and
/// an error.
fn write(ts: &mut Toolstack, spec: &AttachSpec, fe_name: &str) -> Result<DeviceSpec> {
    let mut lost: Option<u32> = None;
    for _ in 0..ATTEMPTS {
        let devid = match spec.devid {
            Some(id) => id,
            None => next_id::next(ts.store(), spec.frontend, &spec.devtype, lost.is_some())?
                .with_context(|| format!("{fe_name} has no free {} id left", spec.devtype))?,
        };
        let device = device_spec(spec, devid);
        let Some(taken) = write_new(ts, spec, &device)? else { return Ok(device) };
        if spec.devid.is_some() || lost == Some(devid) {
            bail!(
                "{fe_name} already has {} {devid} ({taken} exists; `xsim devices {}` lists its devices, \
                 `xsim detach` removes one)",
                spec.devtype,
                spec.frontend
            );
        }
        lost = Some(devid);
    }
    bail!(
        "{fe_name}: the free {} id found was taken {ATTEMPTS} times over (is another toolstack attaching \
         devices to it without end?)",
        spec.devtype
    )
}

/// What xenbus writes for `spec` with id `devid`.
fn device_spec(spec: &AttachSpec, devid: u32) -> DeviceSpec {
    let mut device = DeviceSpec::new(&spec.devtype, devid, spec.frontend, spec.backend);
    if spec.devtype == "vbd" {
        let disk_type = spec.backend_keys.iter().find(|(k, _)| k == "device-type").map_or("disk", |(_, v)| v);
        device.frontend_keys.push(("virtual-device".into(), devid.to_string()));
        device.frontend_keys.push(("device-type".into(), disk_type.to_owned()));
    }
    device.backend_keys.clone_from(&spec.backend_keys);
    device
}

/// One transaction: the record (refused if one is there), both directories
/// (refused if either is there) and the raised note of the highest id.
/// Returns the directory that was already there, if one was; then nothing
/// is written.
fn write_new(ts: &mut Toolstack, spec: &AttachSpec, device: &DeviceSpec) -> Result<Option<String>> {
    let devid = device.devid;
    let rec = Record {
        devtype: spec.devtype.clone(),
        devid,
        backend_id: spec.backend,
        backend: device.backend_dir(),
        frontend: device.frontend_dir(),
    };
    let record_dir = record::dir(spec.frontend, &spec.devtype, devid);
    let conn = ts.device_conn()?;
    let mut record_taken = false;
    let written = xt::attach_new(conn, device, &mut |tx| {
        record_taken = tx.exists(&record_dir)?;
        if record_taken {
            return Err(xenstore::Error::Xs(ErrorCode::EEXIST));
        }
        record::write(tx, spec.frontend, &rec)?;
        next_id::note(tx, spec.frontend, &spec.devtype, devid)
    });
    match written {
        Ok(()) => Ok(None),
        Err(xenbus::Error::Exists { path }) => Ok(Some(path)),
        Err(_) if record_taken => Ok(Some(record_dir)),
        Err(e) => Err(e).with_context(|| {
            format!("writing {}, {} and the record {record_dir}", device.frontend_dir(), device.backend_dir())
        }),
    }
}

/// A state as `Connected (4)`; `None` is an unreadable node.
pub fn state_text(state: Option<XenbusState>) -> String {
    state.map_or_else(|| "unreadable".to_owned(), |s| s.to_string())
}
