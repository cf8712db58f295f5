//! `xsim devices` in the manner of `xl block-list` and `xl network-list`:
//! a header, then one line a device with its id, backend domain, the
//! `state` of each end and the backend path, in left-aligned columns
//! (xl's `%-5s %-3s ...`) so that scripts can split on white space.
//!
//! xl lists one type per command; we list every type the toolstack
//! attached, so a Type column comes first. States are their numbers, as
//! xl prints them (`Connected` is 4; `xsim devices --help` has the
//! table); an end whose `state` node is missing or unreadable shows 0,
//! which is what Linux reads for it (`XenbusStateUnknown`), and a value
//! that is not a state shows `?`.

use xenbus::switch::read_state;
use xenstore::Store;

use super::record::Record;

/// The header line.
pub const HEADER: &str = "Type  Devid     BE  FE-state BE-state BE-path";

/// One device's line, reading both `state` nodes through `store`.
pub fn row(store: &dyn Store, device: &Record) -> String {
    let state = |dir: &str| read_state(store, dir).map_or_else(|_| "?".to_owned(), |s| s.number().to_string());
    format!(
        "{:<5} {:<9} {:<3} {:<8} {:<8} {}",
        device.devtype,
        device.devid,
        device.backend_id,
        state(&device.frontend),
        state(&device.backend),
        device.backend
    )
}
