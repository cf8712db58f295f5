//! Which machine the backend runs on: hosted (domains as processes, the
//! `xsim` hypervisor's socket) or real Xen (`/dev/xen/gntdev` and
//! `/dev/xen/evtchn`), each behind a Cargo feature; chosen at start.

use std::path::PathBuf;

use anyhow::Result;
use xen_platform::{EventChannels, Grants};

/// A platform the backend can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Platform {
    /// The hosted platform: xsim's hypervisor process.
    Hosted,
    /// Real Xen, through Linux's `/dev/xen` devices.
    Xen,
}

/// The platform to use when none is asked for: Xen when running on it
/// (and built with its support), else hosted.
///
/// On Xen means a control domain (`xen_platform::xen::detect`, dom0), or
/// any domain with the grant-mapping device (a driver domain, where
/// `xl devd` runs the disk backend: not a control domain, but it maps its
/// guests' grants all the same).
pub fn detect() -> Platform {
    #[cfg(feature = "xen")]
    if xen_platform::xen::detect() || std::path::Path::new(xen_platform::xen::GNTDEV_DEVICE).exists() {
        return Platform::Xen;
    }
    Platform::Hosted
}

/// The platform's handles the backend needs, and what keeps them
/// working.
#[derive(Debug)]
pub struct Machine {
    /// Grant mapping.
    pub grants: Box<dyn Grants>,
    /// Event channels.
    pub events: Box<dyn EventChannels>,
    /// Hosted: the connection to the hypervisor process.
    #[cfg(feature = "hosted")]
    _host: Option<xen_platform::hosted::Host>,
}

/// Opens `platform`; `hypervisor` names the hosted hypervisor's socket.
pub fn open(platform: Platform, hypervisor: impl FnOnce() -> PathBuf) -> Result<Machine> {
    match platform {
        Platform::Hosted => hosted(hypervisor),
        Platform::Xen => xen(),
    }
}

#[cfg(feature = "hosted")]
fn hosted(hypervisor: impl FnOnce() -> PathBuf) -> Result<Machine> {
    use anyhow::Context;
    let path = hypervisor();
    let host = xen_platform::hosted::Host::connect(&path)
        .with_context(|| format!("connecting to the hosted hypervisor at {}", path.display()))?;
    let events = host.event_channels().context("opening event channels")?;
    Ok(Machine { grants: Box::new(host.grants()), events: Box::new(events), _host: Some(host) })
}

#[cfg(not(feature = "hosted"))]
fn hosted(_hypervisor: impl FnOnce() -> PathBuf) -> Result<Machine> {
    anyhow::bail!("this xen-blkback was built without the hosted platform (the hosted feature)")
}

/// Xen: grants mapped through `/dev/xen/gntdev` (each map an ioctl and
/// an mmap, which persistent grants keep to one per page per
/// connection), event channels through `/dev/xen/evtchn`.
#[cfg(feature = "xen")]
fn xen() -> Result<Machine> {
    use anyhow::Context;
    let grants = xen_platform::xen::XenGrants::open().context("opening the grant device (/dev/xen/gntdev)")?;
    let events =
        xen_platform::xen::XenEventChannels::open().context("opening the event channel device (/dev/xen/evtchn)")?;
    Ok(Machine {
        grants: Box::new(grants),
        events: Box::new(events),
        #[cfg(feature = "hosted")]
        _host: None,
    })
}

#[cfg(not(feature = "xen"))]
fn xen() -> Result<Machine> {
    anyhow::bail!("this xen-blkback was built without Xen support (the xen feature)")
}

/// The xsim state directory, found as xsim finds it: `explicit`, else
/// `$XSIM_STATE`, else `$XDG_RUNTIME_DIR/xsim`, else `/tmp/xsim-<uid>`.
pub fn state_dir(explicit: Option<PathBuf>) -> PathBuf {
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    explicit
        .or_else(|| env("XSIM_STATE"))
        .or_else(|| env("XDG_RUNTIME_DIR").map(|d| d.join("xsim")))
        .unwrap_or_else(|| std::env::temp_dir().join(format!("xsim-{}", rustix::process::getuid().as_raw())))
}

/// The hosted hypervisor's socket in the state directory.
#[cfg(feature = "hosted")]
pub fn hypervisor_socket(state: Option<PathBuf>) -> PathBuf {
    xen_platform::hosted::hypervisor_socket(&state_dir(state))
}

/// The hosted hypervisor's socket in the state directory.
#[cfg(not(feature = "hosted"))]
pub fn hypervisor_socket(state: Option<PathBuf>) -> PathBuf {
    state_dir(state).join("hypervisor.sock")
}
