//! The toolstack's own record of each device it attached, under
//! `/libxl/<fe>/device/<type>/<devid>` as libxl keeps one ("We make a copy
//! of everything for the backend in the libxl path ... This means we
//! don't need to trust the backend").
//!
//! Detach, listing and domain destroy read the backend's domain and
//! directory from here, never from the frontend directory: that one
//! belongs to the guest, which could point its `backend` node at any
//! other domain's nodes and have dom0 write `online` and `state` there.
//! `/libxl` is dom0's alone (it inherits the root's permissions).

use anyhow::{Context, Result};
use xen_platform::DomId;
use xenstore::{ErrorCode, Store};

/// Where the record of device `devid` of `devtype` in domain `fe` is.
pub fn dir(fe: DomId, devtype: &str, devid: u32) -> String {
    format!("{}/{devtype}/{devid}", types_dir(fe))
}

/// The directory of a domain's device records, one subdirectory a type.
pub fn types_dir(fe: DomId) -> String {
    format!("{}/device", domain_dir(fe))
}

/// Everything the toolstack keeps of domain `fe` (removed with it).
pub fn domain_dir(fe: DomId) -> String {
    format!("/libxl/{fe}")
}

/// One device as the record has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The device type.
    pub devtype: String,
    /// The device id.
    pub devid: u32,
    /// The backend's domain.
    pub backend_id: DomId,
    /// The backend directory.
    pub backend: String,
    /// The frontend directory.
    pub frontend: String,
}

/// Writes the record (in the caller's transaction, or outside one).
pub fn write(store: &dyn Store, fe: DomId, record: &Record) -> Result<(), xenstore::Error> {
    let dir = dir(fe, &record.devtype, record.devid);
    store.write(&format!("{dir}/backend-id"), record.backend_id.to_string().as_bytes())?;
    store.write(&format!("{dir}/backend"), record.backend.as_bytes())?;
    store.write(&format!("{dir}/frontend"), record.frontend.as_bytes())
}

/// The record of one device, `None` if there is none.
pub fn read(store: &dyn Store, fe: DomId, devtype: &str, devid: u32) -> Result<Option<Record>> {
    let dir = dir(fe, devtype, devid);
    let text = |key: &str| -> Result<Option<String>> {
        match store.read(&format!("{dir}/{key}")) {
            Ok(v) => Ok(Some(String::from_utf8_lossy(&v).into_owned())),
            Err(e) if e.code() == Some(ErrorCode::ENOENT) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {dir}/{key}")),
        }
    };
    let (Some(backend_id), Some(backend), Some(frontend)) = (text("backend-id")?, text("backend")?, text("frontend")?)
    else {
        return Ok(None);
    };
    let backend_id = backend_id.parse().with_context(|| format!("{dir}/backend-id: {backend_id:?} is not a domid"))?;
    Ok(Some(Record { devtype: devtype.to_owned(), devid, backend_id, backend, frontend }))
}

/// The names in a directory that are numbers, sorted (a missing
/// directory has none).
pub fn numbered_children(store: &dyn Store, dir: &str) -> Result<Vec<u32>> {
    let mut ids: Vec<u32> = children(store, dir)?.iter().filter_map(|n| n.parse().ok()).collect();
    ids.sort_unstable();
    Ok(ids)
}

/// A directory's children; a missing directory has none.
pub fn children(store: &dyn Store, dir: &str) -> Result<Vec<String>> {
    match store.directory(dir) {
        Ok(names) => Ok(names),
        Err(e) if e.code() == Some(ErrorCode::ENOENT) => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("listing {dir}")),
    }
}

/// Every device of domain `fe` the toolstack attached, by type then id.
pub fn all(store: &dyn Store, fe: DomId) -> Result<Vec<Record>> {
    let mut types = children(store, &types_dir(fe))?;
    types.sort();
    let mut records = Vec::new();
    for devtype in types {
        for devid in numbered_children(store, &format!("{}/{devtype}", types_dir(fe)))? {
            records.extend(read(store, fe, &devtype, devid)?);
        }
    }
    Ok(records)
}

/// Removes `path` in `store`; a path already gone is not an error.
pub fn rm_if_there(store: &dyn Store, path: &str) -> Result<(), xenstore::Error> {
    match store.rm(path) {
        Err(e) if e.code() == Some(ErrorCode::ENOENT) => Ok(()),
        other => other,
    }
}
