//! The hosted toolstack: what `xl` and libxl do on Xen, for domains that
//! are processes under the hosted hypervisor.
//!
//! [`state::StateDir`] says where a host keeps its sockets, pids and
//! consoles; [`host`] starts and stops the hypervisor and xenstored;
//! [`toolstack::Toolstack`] creates domains (writing what a real toolstack
//! writes to XenStore and introducing them), and pauses, shuts down,
//! destroys and lists them; [`list`] formats the listing as `xl list`
//! does; [`devices`] attaches, detaches and lists PV devices as `xl
//! block-attach` and friends do. The `xsim` binary is a thin command line over
//! these, and tests and example runners use them directly.

pub mod devices;
pub mod host;
pub mod ipc;
pub mod lan;
pub mod list;
pub mod state;
pub mod toolstack;
pub mod vdevice_entries;
pub mod vdeviced;

pub use state::StateDir;
pub use toolstack::{DomainSpec, Toolstack};
