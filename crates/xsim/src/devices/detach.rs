//! `xsim detach`: a device removed as `xl block-detach` removes one
//! (`libxl_device_disk_safe_remove`, and `libxl_device_disk_destroy` with
//! `--force`).
//!
//! - Orderly: in one transaction `online` 0 and, unless the backend is
//!   already Closed, `state` 5 (Closing) in the backend directory
//!   ([`xenbus::toolstack::begin_detach`]); the frontend sees Closing and
//!   closes, the backend follows it to Closed; wait for the backend's
//!   Closed (`LIBXL_DESTROY_TIMEOUT`, 10 s); then remove both directories
//!   and the toolstack's record. On a timeout nothing is removed (the safe
//!   remove's choice: libxl's plain remove would go on to a forced one)
//!   and the error says what to check.
//! - A backend directory already gone (its domain died) leaves only the
//!   frontend's to remove, as libxl does ("backend ... already removed,
//!   cleanup frontend only").
//! - Forced: both directories and the record go in one transaction, with
//!   no wait; a running backend sees its directory vanish and drops the
//!   device, a frontend its own.
//!
//! Which backend serves the device comes from the toolstack's record
//! ([`super::record`]), never from the guest's frontend directory.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use xen_platform::DomId;
use xenbus::switch::read_state;
use xenbus::toolstack::{self as xt, DeviceSpec};
use xenbus::{Conn, XenbusState};

use super::attach::state_text;
use super::names;
use super::record::{self, rm_if_there};
use crate::Toolstack;

/// libxl's wait for the backend to close a device (`LIBXL_DESTROY_TIMEOUT`).
pub const DESTROY_TIMEOUT: Duration = xt::DESTROY_TIMEOUT;

/// Detaches device `devid` of `devtype` from domain `fe`: orderly within
/// `timeout`, or at once with `force`.
pub fn detach(ts: &mut Toolstack, fe: DomId, devtype: &str, devid: u32, timeout: Duration, force: bool) -> Result<()> {
    names::check_type(devtype).map_err(anyhow::Error::msg)?;
    let fe_name = ts.describe(fe)?;
    let Some(rec) = record::read(ts.store(), fe, devtype, devid)? else {
        bail!("{fe_name} has no {devtype} {devid} (`xsim devices {fe}` lists its devices)");
    };
    let spec = DeviceSpec::new(devtype, devid, fe, rec.backend_id);
    if rec.backend != spec.backend_dir() || rec.frontend != spec.frontend_dir() {
        bail!(
            "{}: the record names {} and {}, not where xsim puts them",
            record::dir(fe, devtype, devid),
            rec.backend,
            rec.frontend
        );
    }
    if force {
        return remove(ts, &spec, true);
    }
    let conn = ts.device_conn()?;
    let be_dir = spec.backend_dir();
    if !conn.store().exists(&xenbus::paths::child(&be_dir, "state")).with_context(|| format!("reading {be_dir}"))? {
        // The backend (or its domain) is gone: only the frontend is left.
        return remove(ts, &spec, false);
    }
    xt::begin_detach(conn, &spec).with_context(|| format!("writing {be_dir}/online and state"))?;
    match xt::wait_for_state(conn, &be_dir, XenbusState::Closed, timeout) {
        Ok(()) => remove(ts, &spec, true),
        Err(xenbus::Error::Timeout { last, waited, .. }) => {
            let frontend = read_state(conn.store(), &spec.frontend_dir()).ok();
            bail!(
                "{devtype} {devid} of {fe_name}: the backend did not close the device in {:.1} s: {be_dir}/state is {}, \
                 wanted {} (the frontend {}/state is {}). A backend closes once its frontend has: is the \
                 frontend's driver running in {fe_name}, and the backend's in domain {}? online is 0 and the \
                 directories are left; `xsim detach --force {fe} {devtype} {devid}` removes them.",
                waited.as_secs_f64(),
                state_text(last),
                state_text(Some(XenbusState::Closed)),
                spec.frontend_dir(),
                state_text(frontend),
                rec.backend_id,
            )
        }
        Err(e) => Err(e).with_context(|| format!("waiting for {be_dir}/state")),
    }
}

/// Removes the frontend directory, the backend's (`with_backend`) and the
/// record, in one transaction; what is already gone is skipped.
fn remove(ts: &Toolstack, spec: &DeviceSpec, with_backend: bool) -> Result<()> {
    let record = record::dir(spec.frontend, &spec.devtype, spec.devid);
    let mut dirs = vec![spec.frontend_dir(), record];
    if with_backend {
        dirs.push(spec.backend_dir());
    }
    ts.store()
        .transaction(|t| {
            for dir in &dirs {
                rm_if_there(t, dir)?;
            }
            Ok(())
        })
        .with_context(|| format!("removing {}", dirs.join(", ")))
}
