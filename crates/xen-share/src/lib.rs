//! Xen Share's device layer (`docs/xen-share.md`): the vdevice page each
//! domain has ([`page`]), the toolstack's serial changes to it
//! ([`toolstack`]) and the guest's device bus that probes and removes
//! drivers as the page changes ([`bus`]), and the devices on it: the
//! multi-way LAN ([`net`]) and the block device ([`blk`]). The share transport itself
//! (pages, triggers, transfers) is the platform's: `xen_platform::share`.
//!
//! Everything here works on a `xen_platform::share::Share` and the page's
//! shared memory, so it runs the same hosted and, once shares exist
//! there, on Xen.

pub mod blk;
pub mod bus;
pub mod net;
pub mod page;
pub mod toolstack;

pub use bus::{Bus, BusEvent, Device, Driver};
pub use page::{kind, status, Entry, Page};
pub use toolstack::{VdeviceError, VdeviceHost, CHANGE_TRIGGER};
