//! The hosted platform: a host process plays the hypervisor.
//!
//! Each domain is a process, its pages are memfds passed as descriptors,
//! event channels are eventfds. The hypervisor process enforces what Xen
//! would (who is privileged, who may bind which port, map which page),
//! and confines each guest so that it cannot go around it: a uid or a
//! user namespace of its own and a Landlock domain (the hypervisor's
//! `isolation` module).
//!
//! - `Hypervisor::serve` (feature `hosted-hypervisor`) runs the
//!   hypervisor in the calling thread,
//!   listening on `<state>/hypervisor.sock`; every process that connects
//!   there is dom0 (privileged), and [`peer`] refuses any other.
//! - Guest processes are spawned by the hypervisor with an inherited,
//!   pre-connected socket that identifies them as their domain;
//!   [`Host::from_guest_env`] picks it up.
//! - A [`Host`] hands out the trait implementations:
//!   [`Host::event_channels`], [`Host::foreign_memory`], [`Host::grants`],
//!   [`Host::domain_states`], [`Host::dom0_store`], [`Host::toolstack`],
//!   [`Host::shares`] (Xen Share).
//!
//! Files: `protocol` (messages and framing) and `peer` (who is dom0 on
//! a socket) are shared; `client`,
//! `evtchn`, `memory` and `toolstack` are a process's side; `hypervisor`
//! is the hypervisor's.

mod client;
mod evtchn;
#[cfg(feature = "hosted-hypervisor")]
mod hypervisor;
mod memory;
pub mod peer;
pub(crate) mod protocol;
mod share;
pub mod tap;
mod toolstack;

pub use client::Host;
pub use evtchn::HostedEventChannels;
#[cfg(feature = "hosted-hypervisor")]
pub use hypervisor::{Confinement, Hypervisor, Isolation, StopHandle, GUEST_UID_BASE};
pub use memory::{HostedForeignMemory, HostedGrants};
pub use share::{HostedShare, HostedShares};
pub use toolstack::{HostedDom0Store, HostedToolstack};

use std::path::{Path, PathBuf};

use crate::{DomId, MappedPages, Port};

/// The gfn of every hosted domain's xenstore page (Xen's x86 HVM magic
/// xenstore pfn).
pub const STORE_GFN: u64 = 0xfeffc;

/// Environment variable naming the inherited hypervisor socket fd of a
/// hosted guest.
pub const ENV_HYPERVISOR_FD: &str = "XSIM_HYPERVISOR_FD";

/// Environment variable holding a hosted guest's domid.
pub const ENV_DOMID: &str = "XSIM_DOMID";

/// The environment variable naming the `/dev/fuse` descriptor a guest
/// created with `DomainConfig::fuse` serves (its `/mnt`).
pub const ENV_FUSE_FD: &str = "XSIM_FUSE_FD";

/// The environment variable naming the descriptor of the TAP interface
/// (`xsn0`, attached, frames without packet information) of a guest
/// created with `DomainConfig::netns`: the guest needs no access to
/// `/dev/net/tun`, which hosts often keep to root.
pub const ENV_TAP_FD: &str = "XSIM_TAP_FD";

/// The hypervisor's socket inside a state directory.
pub fn hypervisor_socket(state_dir: &Path) -> PathBuf {
    state_dir.join("hypervisor.sock")
}

/// What a hosted guest is handed at start.
#[derive(Debug)]
pub struct GuestStart {
    /// Its domid.
    pub domid: DomId,
    /// Its xenstore page, mapped.
    pub store_page: MappedPages,
    /// Its xenstore port (claim it on an event-channel handle with
    /// [`HostedEventChannels::claim`]).
    pub store_port: Port,
}
