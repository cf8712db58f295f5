//! Finding the next free device id without listing every device.
//!
//! The rule is libxl's ([`super::devid`]): one more than the highest id
//! in the frontend's `device/<type>` directory. libxl lists that
//! directory on every attach, which makes attaching the N-th device cost
//! O(N): N names sent, parsed and compared. Instead the toolstack keeps
//! the highest id it attached in its own record directory
//! (`/libxl/<fe>/device/<type>/highest`, dom0's alone, removed with the
//! domain), raised in the transaction that writes each device. Then:
//!
//! - if that device is still there (one read of the note, one existence
//!   check), no higher one can be, since every attach raises the note: the
//!   next id follows it;
//! - if the note is missing (devices attached by something that keeps
//!   none) or its device was detached (libxl would reuse ids above the
//!   highest left), the directory is listed, as libxl does.
//!
//! A device another tool created above the note without raising it gives
//! an id that is free but not above it; one created at the chosen id makes
//! the attach's transaction refuse the id, and the caller asks again with
//! `relist`. Either way no id is handed out twice: that is the
//! transaction's check ([`xenbus::toolstack::attach_new`]), not this
//! module's.

use anyhow::{Context, Result};
use xen_platform::DomId;
use xenstore::{ErrorCode, Store};

use super::{devid, record};

/// The node holding the highest id of `devtype` attached to `fe`.
pub fn node(fe: DomId, devtype: &str) -> String {
    format!("{}/{devtype}/highest", record::types_dir(fe))
}

/// The id for a new device of `devtype` in domain `fe` (`None`: ids are
/// exhausted); `relist` skips the note and lists the directory.
pub fn next(store: &dyn Store, fe: DomId, devtype: &str, relist: bool) -> Result<Option<u32>> {
    if !relist {
        if let Some(highest) = read(store, fe, devtype)? {
            let dir = xenbus::paths::frontend_dir(fe, devtype, highest);
            if store.exists(&dir).with_context(|| format!("reading {dir}"))? {
                return Ok(devid::next_free(devtype, &[highest]));
            }
        }
    }
    let dir = xenbus::paths::bus_root(xenbus::Role::Frontend, fe, devtype);
    Ok(devid::next_free(devtype, &record::numbered_children(store, &dir)?))
}

/// Raises the note to `devid` (in the attach's transaction), unless it
/// already names a higher one or `devid` does not count (a `vbd` id that
/// is no xvd disk).
pub fn note(tx: &dyn Store, fe: DomId, devtype: &str, devid: u32) -> Result<(), xenstore::Error> {
    let highest = match tx.read(&node(fe, devtype)) {
        Ok(v) => parse(&v),
        Err(e) if e.code() == Some(ErrorCode::ENOENT) => None,
        Err(e) => return Err(e),
    };
    let Some(rank) = devid::rank(devtype, devid) else { return Ok(()) };
    if highest.and_then(|h| devid::rank(devtype, h)).is_some_and(|h| h >= rank) {
        return Ok(());
    }
    tx.write(&node(fe, devtype), devid.to_string().as_bytes())
}

/// The note, if there is one that parses.
fn read(store: &dyn Store, fe: DomId, devtype: &str) -> Result<Option<u32>> {
    let node = node(fe, devtype);
    match store.read(&node) {
        Ok(v) => Ok(parse(&v)),
        Err(e) if e.code() == Some(ErrorCode::ENOENT) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {node}")),
    }
}

fn parse(value: &[u8]) -> Option<u32> {
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}
