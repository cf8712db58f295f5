//! The hosted platform: a host process plays the hypervisor.
//!
//! API outline (bodies to be written; signatures are what callers use):
//!
//! - [`Hypervisor::serve`] runs the hypervisor in the calling thread,
//!   listening on `<state>/hypervisor.sock`; every process that connects
//!   there is dom0 (privileged).
//! - Guest processes are spawned by the hypervisor with an inherited,
//!   pre-connected socket that identifies them as their domain;
//!   [`Host::from_guest_env`] picks it up.
//! - A [`Host`] hands out the trait objects: [`Host::event_channels`],
//!   [`Host::foreign_memory`], [`Host::grants`], [`Host::domains`].

use std::io;
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

/// The hypervisor's socket inside a state directory.
pub fn hypervisor_socket(state_dir: &Path) -> PathBuf {
    state_dir.join("hypervisor.sock")
}

/// The hypervisor process's state and loop.
#[derive(Debug)]
pub struct Hypervisor {
    _private: (),
}

impl Hypervisor {
    /// Binds `<state_dir>/hypervisor.sock` (consoles go to
    /// `<state_dir>/console/<domid>.log`).
    pub fn bind(state_dir: &Path) -> io::Result<Hypervisor> {
        let _ = state_dir;
        unimplemented!()
    }

    /// Serves until SIGTERM/SIGINT or [`Hypervisor::stop_handle`] is used;
    /// destroys every domain on the way out.
    pub fn serve(self) -> io::Result<()> {
        unimplemented!()
    }
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

/// One process's connection to the hosted hypervisor.
#[derive(Debug, Clone)]
pub struct Host {
    _private: (),
}

/// A hosted event-channel handle.
#[derive(Debug)]
pub struct HostedEventChannels {
    _private: (),
}
