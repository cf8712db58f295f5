//! The seam between the control plane and the machine it runs on.
//!
//! Everything above this crate (xenstored, the client library's ring
//! transport, xenbus drivers, vchan, the xsim toolstack) reaches the
//! hypervisor only through the traits here:
//!
//! - [`EventChannels`]: one process's handle on event channels, as Linux's
//!   `/dev/xen/evtchn` gives it: bind ports, signal them, and one pollable
//!   file descriptor that becomes readable when any bound port is pending;
//! - [`ForeignMemory`]: a privileged domain mapping another domain's page
//!   by frame number (`/dev/xen/privcmd`; xenstored maps each guest's
//!   xenstore ring this way);
//! - [`Grants`]: sharing pages between domains by grant reference
//!   (`/dev/xen/gntalloc` to offer, `/dev/xen/gntdev` to map);
//! - [`DomainStates`]: which domains exist and whether they shut down
//!   (what xenstored reads on VIRQ_DOM_EXC);
//! - [`Dom0Store`]: dom0's own xenstore ring, when the daemon serves dom0
//!   over one (`/proc/xen/xsd_kva` and `xsd_port` on Xen);
//! - [`Toolstack`]: domain lifecycle as a toolstack drives it (create
//!   paused, unpause, pause, shutdown with a reason, destroy, list with
//!   names).
//!
//! The first five are what the daemon needs; [`Toolstack`] is for
//! toolstacks only.
//!
//! Implementations sit behind Cargo features, so that a crate using only
//! the traits compiles none of them:
//!
//! - `hosted`: the process side of the hosted platform (`hosted` module:
//!   `Host`, `HostedEventChannels`, `HostedForeignMemory`, `HostedGrants`,
//!   `HostedToolstack`), where a host process plays the hypervisor, each
//!   domain is a process, pages are shared memory passed as file
//!   descriptors and event channels are eventfds. It brings serde and
//!   serde_json (the hypervisor protocol is JSON).
//! - `hosted-hypervisor` (implies `hosted`): that hypervisor process
//!   itself (`hosted::Hypervisor`, `hosted::StopHandle`): domains as
//!   spawned processes, signals, consoles. Only a toolstack that runs the
//!   hypervisor (xsim) and tests that start one need it.
//! - `test-utils`: in-memory twins of every trait in one process
//!   (`testing` module, `testing::TestHypervisor`), for tests that step a daemon, rings and clients
//!   without processes.
//!
//! - `xen`: real Xen, over Linux's `/dev/xen/*` devices (`xen` module:
//!   `XenEventChannels`, `XenForeignMemory`, `XenGrants`,
//!   `XenDomainStates`, `XenDom0Store`, and `xen::detect` to tell a Xen
//!   control domain). It brings libc (the devices' ioctls).
//!
//! Callers hold trait objects, so choosing an implementation is a
//! start-up decision, not a recompilation.
//!
//! No feature is on by default: the traits and [`MappedPages`] are what
//! every user needs, and a daemon or driver built for real Xen must not
//! carry a simulator, its JSON protocol and serde. Each dependent says
//! which implementation it uses (the client library enables `hosted`, the
//! daemon `hosted` and `xen`, the xsim toolstack `hosted-hypervisor`,
//! tests `test-utils`).
//!
//! Unsafe code lives in these files, each block with its `// SAFETY:`
//! argument and each unsafe fn with its `# Safety` section: [`pages`]
//! (mapping and unmapping pages; taking over a mapping with the owner's
//! unmap), `inherit.rs` (taking descriptors inherited across exec back by
//! number), `hosted/client.rs` (adopting the hypervisor socket a hosted
//! guest inherits by number), `hosted/hypervisor/spawn.rs` and
//! `hosted/hypervisor/signals.rs` (starting guest processes and routing
//! SIGTERM/SIGINT into the hypervisor's loop), and the `xen` module's
//! files (`xen/mod.rs`: the ioctl call; `xen/evtchn.rs`,
//! `xen/foreign.rs`, `xen/grants.rs`, `xen/domains.rs`, `xen/dom0.rs`:
//! each device's ioctls and mappings, the hypercall buffer).

#[cfg(feature = "hosted")]
pub mod hosted;
pub mod inherit;
pub mod pages;
pub mod pair_share;
pub mod rate_limit;
pub mod relay_share;
pub mod share;
#[cfg(feature = "test-utils")]
pub mod testing;
#[cfg(feature = "xen")]
pub mod xen;

use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

pub use pages::{MappedPages, UnmapFn};
pub use rate_limit::RateLimit;

/// A domain id (`domid_t`). Dom0 is 0.
pub type DomId = u16;

/// An event-channel port, local to the domain that holds it.
pub type Port = u32;

/// A grant reference, local to the granting domain.
pub type GrantRef = u32;

/// Bytes in a page.
pub const PAGE_SIZE: usize = 4096;

/// The virtual interrupts a domain may bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "hosted", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum Virq {
    /// `VIRQ_DOM_EXC` (3): some domain shut down, crashed or is dying.
    /// Privileged; xenstored binds it to learn of deaths.
    DomExc,
}

impl Virq {
    /// The number Xen gives it.
    pub fn number(self) -> u32 {
        match self {
            Virq::DomExc => 3,
        }
    }
}

/// Why a domain shut down (`SHUTDOWN_*` in `xen/sched.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "hosted", derive(serde::Serialize, serde::Deserialize))]
pub enum ShutdownReason {
    /// Clean halt (0).
    Poweroff,
    /// Restart requested (1).
    Reboot,
    /// Suspended for save or migration (2).
    Suspend,
    /// Crashed (3).
    Crash,
    /// Restart by the watchdog (4).
    Watchdog,
    /// Soft reset (5).
    SoftReset,
}

impl ShutdownReason {
    /// The `SHUTDOWN_*` code.
    pub fn code(self) -> u32 {
        match self {
            ShutdownReason::Poweroff => 0,
            ShutdownReason::Reboot => 1,
            ShutdownReason::Suspend => 2,
            ShutdownReason::Crash => 3,
            ShutdownReason::Watchdog => 4,
            ShutdownReason::SoftReset => 5,
        }
    }

    /// The name `xl` and the `control/shutdown` node use.
    pub fn name(self) -> &'static str {
        match self {
            ShutdownReason::Poweroff => "poweroff",
            ShutdownReason::Reboot => "reboot",
            ShutdownReason::Suspend => "suspend",
            ShutdownReason::Crash => "crash",
            ShutdownReason::Watchdog => "watchdog",
            ShutdownReason::SoftReset => "soft_reset",
        }
    }

    /// Parses [`ShutdownReason::name`].
    pub fn from_name(name: &str) -> Option<ShutdownReason> {
        [
            ShutdownReason::Poweroff,
            ShutdownReason::Reboot,
            ShutdownReason::Suspend,
            ShutdownReason::Crash,
            ShutdownReason::Watchdog,
            ShutdownReason::SoftReset,
        ]
        .into_iter()
        .find(|r| r.name() == name)
    }
}

/// Where a domain is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "hosted", derive(serde::Serialize, serde::Deserialize))]
pub enum DomainState {
    /// Created or paused: exists, does not run.
    Paused,
    /// Running.
    Running,
    /// Stopped for the given reason; exists until destroyed.
    Shutdown(ShutdownReason),
    /// Being destroyed: its resources are going away.
    Dying,
}

impl DomainState {
    /// Whether xenstored should consider the domain gone or going
    /// (`@releaseDomain` fires for it).
    pub fn is_shutdown_or_dying(self) -> bool {
        matches!(self, DomainState::Shutdown(_) | DomainState::Dying)
    }
}

impl fmt::Display for DomainState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainState::Paused => f.write_str("paused"),
            DomainState::Running => f.write_str("running"),
            DomainState::Shutdown(reason) => write!(f, "shutdown ({})", reason.name()),
            DomainState::Dying => f.write_str("dying"),
        }
    }
}

/// One domain as the hypervisor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "hosted", derive(serde::Serialize, serde::Deserialize))]
pub struct DomainInfo {
    /// Its id.
    pub domid: DomId,
    /// Its name (the hypervisor does not know names on Xen, where this is
    /// read from XenStore; the hosted hypervisor keeps it for listing).
    pub name: String,
    /// Its state.
    pub state: DomainState,
    /// Hosted: the process running the guest while it has one (none for
    /// dom0, after the guest's process has ended, and on Xen), so that
    /// tools can show what it uses as `xl list` shows a domain's memory
    /// and CPU time.
    #[cfg_attr(feature = "hosted", serde(default))]
    pub pid: Option<u32>,
}

/// What to create: a domain and, when hosted, the program it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "hosted", derive(serde::Serialize, serde::Deserialize))]
pub struct DomainConfig {
    /// The domain's name.
    pub name: String,
    /// Hosted: the program and its arguments (`argv[0]` first).
    pub program: Vec<String>,
    /// Hosted: extra environment for the program.
    pub env: Vec<(String, String)>,
    /// Hosted: the working directory for the program (the host's when
    /// `None`).
    pub cwd: Option<String>,
    /// Hosted: run the program in a network namespace of its own, with a
    /// TAP interface ([`share::LAN_TAP`], with [`share::lan_mac`] and
    /// [`share::lan_ip`] of its domid) for a xensnet LAN to carry, and loopback; needs a
    /// hypervisor running as root.
    #[cfg_attr(feature = "hosted", serde(default))]
    pub netns: bool,
    /// Hosted: run the program in a mount namespace of its own whose
    /// `/mnt` is a FUSE filesystem, mounted by the hypervisor for the
    /// guest's user, which the guest serves on the `/dev/fuse` descriptor
    /// named by `XSIM_FUSE_FD` (a hosted guest may not mount); needs a
    /// hypervisor running as root.
    #[cfg_attr(feature = "hosted", serde(default))]
    pub fuse: bool,
}

/// A domain just created, paused, with what a toolstack needs to introduce
/// it to xenstored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "hosted", derive(serde::Serialize, serde::Deserialize))]
pub struct NewDomain {
    /// Its id.
    pub domid: DomId,
    /// The frame number of its xenstore page (`store/ring-ref`, the `gfn`
    /// of INTRODUCE).
    pub store_gfn: u64,
    /// Its xenstore event-channel port, unbound for dom0 to bind
    /// (`store/port`).
    pub store_port: Port,
}

/// Signals the remote end of one event channel. Cheap to clone and to
/// call, usable from any thread: it is what a ring end holds to wake its
/// peer.
#[derive(Clone)]
pub struct Notifier {
    signal: Arc<dyn Fn() -> io::Result<()> + Send + Sync>,
}

impl Notifier {
    /// A notifier that calls `signal`.
    pub fn new(signal: impl Fn() -> io::Result<()> + Send + Sync + 'static) -> Notifier {
        Notifier { signal: Arc::new(signal) }
    }

    /// Signals the peer. An event channel is a level, not a queue: several
    /// notifications before the peer looks are one.
    pub fn notify(&self) -> io::Result<()> {
        (self.signal)()
    }
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Notifier")
    }
}

/// What a port an event-channel handle holds is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Binding {
    /// Made by [`EventChannels::alloc_unbound`] for `remote`, which may
    /// have bound it since (whether it has is the hypervisor's to know).
    Unbound {
        /// The domain it was offered to.
        remote: DomId,
    },
    /// Made by [`EventChannels::bind_interdomain`]: connected to
    /// `remote_port` of domain `remote`.
    Interdomain {
        /// The peer domain.
        remote: DomId,
        /// The peer's port.
        remote_port: Port,
    },
    /// Made by [`EventChannels::bind_virq`].
    Virq(Virq),
    /// Hosted and in-memory twins only: a port of this domain made by
    /// someone else and taken over with a claim (a guest's xenstore port).
    /// Released, not closed, when the handle goes.
    Claimed,
}

/// One port of a handle and what it is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BoundPort {
    /// The local port.
    pub port: Port,
    /// What it is bound to.
    pub binding: Binding,
}

/// An event-channel handle taken apart to be adopted by another process
/// (live update: the new daemon binary takes over the old one's handle)
/// or another owner: its descriptors and the ports bound through it.
///
/// The descriptors carry the bindings (on Linux the bound ports belong
/// to the open `/dev/xen/evtchn` file); each implementation documents
/// their order and rebuilds a handle from them with its own `adopt`
/// function, after which the ports keep working: events that arrived
/// meanwhile are still pending, notifications still reach the peers.
/// Dropping the parts closes the descriptors, and with them (once no
/// copy is left) the bindings.
#[derive(Debug)]
pub struct EventChannelParts {
    /// The handle's descriptors, in the implementation's documented order.
    pub fds: Vec<OwnedFd>,
    /// Its ports, in port order.
    pub ports: Vec<BoundPort>,
}

/// Why [`EventChannels::into_parts`] failed, with the handle it was
/// called on, unchanged.
pub struct IntoPartsError {
    /// The handle, whole.
    pub handle: Box<dyn EventChannels>,
    /// What failed.
    pub error: io::Error,
}

impl fmt::Debug for IntoPartsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntoPartsError").field("error", &self.error).finish_non_exhaustive()
    }
}

impl fmt::Display for IntoPartsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot take the event-channel handle apart: {}", self.error)
    }
}

impl std::error::Error for IntoPartsError {}

/// One process's event channels (`/dev/xen/evtchn`).
///
/// Ports bound through a handle are pending-tracked by that handle: its
/// [`AsFd`] file descriptor polls readable when any is pending, and
/// [`EventChannels::take_pending`] says which (and re-arms them). Dropping
/// the handle unbinds everything it bound.
pub trait EventChannels: AsFd + Send + fmt::Debug {
    /// Allocates a port in this domain that `remote` may bind.
    fn alloc_unbound(&mut self, remote: DomId) -> io::Result<Port>;

    /// Binds a new local port to `remote_port` of domain `remote`, which
    /// must be unbound and offered to this domain.
    fn bind_interdomain(&mut self, remote: DomId, remote_port: Port) -> io::Result<Port>;

    /// Binds a new local port to a virtual interrupt.
    fn bind_virq(&mut self, virq: Virq) -> io::Result<Port>;

    /// Closes a port this handle bound.
    fn unbind(&mut self, port: Port) -> io::Result<()>;

    /// A handle that signals the remote end of `port`.
    fn notifier(&self, port: Port) -> io::Result<Notifier>;

    /// Signals the remote end of `port`.
    fn notify(&self, port: Port) -> io::Result<()> {
        self.notifier(port)?.notify()
    }

    /// Appends the ports that became pending since the last call, without
    /// blocking, and re-arms them.
    fn take_pending(&mut self, out: &mut Vec<Port>) -> io::Result<()>;

    /// Where ports can be polled one by one (hosted: each is an eventfd),
    /// hands `port`'s wake-ups to the caller: from now on the handle's own
    /// descriptor and [`EventChannels::take_pending`] no longer report it,
    /// and the returned descriptor (the caller's own duplicate) is to be
    /// polled edge-triggered (`EPOLLET`): each signal is a new edge. It is
    /// never to be read or written: the peer holds the same file (hosted:
    /// the eventfd it writes, or for a guest an epoll set holding it).
    ///
    /// This is for a caller that waits on one port (a guest's xenstore
    /// ring) or polls many in its own loop (xenstored): a notification
    /// then wakes it without the handle's shared set in between and
    /// without the look that says which port fired, two system calls a
    /// round trip. `Ok(None)` where ports share one descriptor (Xen's
    /// `/dev/xen/evtchn`): keep using `take_pending`.
    fn poll_directly(&mut self, port: Port) -> io::Result<Option<std::os::fd::OwnedFd>> {
        let _ = port;
        Ok(None)
    }

    /// Undoes [`EventChannels::poll_directly`]: the handle reports `port`
    /// again (for a caller that could not poll the descriptor after all).
    fn poll_through_handle(&mut self, port: Port) -> io::Result<()> {
        let _ = port;
        Ok(())
    }

    /// The ports this handle holds and what each is bound to, in port
    /// order (what a live update records).
    fn bindings(&self) -> Vec<BoundPort>;

    /// Takes the handle apart without unbinding anything, for
    /// [`EventChannelParts`]' adoption by another owner. On failure (a
    /// descriptor cannot be duplicated: the process is out of them;
    /// `Unsupported` where a handle cannot be handed on) the handle comes
    /// back whole in the error, every port still bound: a live update that
    /// cannot proceed must not cost the daemon its rings.
    fn into_parts(self: Box<Self>) -> Result<EventChannelParts, IntoPartsError>;

    /// Blocks until some port is pending or `timeout` passes; returns
    /// whether one is. Does not consume anything.
    fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
        wait_readable(self.as_fd(), timeout)
    }
}

/// Mapping another domain's pages by frame number (`/dev/xen/privcmd`);
/// privileged.
pub trait ForeignMemory: Send + fmt::Debug {
    /// Maps `count` pages of domain `domid` starting at frame `gfn`,
    /// writable.
    fn map_foreign(&mut self, domid: DomId, gfn: u64, count: usize) -> io::Result<MappedPages>;

    /// Maps domain `domid`'s xenstore page, writable, for INTRODUCE
    /// (`gfn` is the frame it names). This is what xenstored calls.
    ///
    /// On Xen the toolstack also puts the page in the guest's grant
    /// table, as reserved grant reference 1 (`GNTTAB_RESERVED_XENSTORE`),
    /// and the C daemon's `map_interface` maps that grant through gntdev
    /// (it never maps by frame; oxenstored maps by frame only). The Xen
    /// implementation does the grant first and maps frame `gfn` when the
    /// grant is not there or gntdev is missing. Elsewhere (hosted, the
    /// in-memory twins) there are no grant-table entries to prefer: the
    /// default maps frame `gfn` with [`ForeignMemory::map_foreign`].
    fn map_store_page(&mut self, domid: DomId, gfn: u64) -> io::Result<MappedPages> {
        self.map_foreign(domid, gfn, 1)
    }
}

/// Pages this domain allocated and granted to another; the grants end
/// (and the pages are unmapped here) when this is dropped.
pub struct GrantedPages {
    pages: MappedPages,
    refs: Vec<GrantRef>,
    on_drop: Option<Box<dyn FnOnce() + Send>>,
}

impl GrantedPages {
    /// Pages and their grant references; `on_drop` ends the grants.
    pub fn new(pages: MappedPages, refs: Vec<GrantRef>, on_drop: Option<Box<dyn FnOnce() + Send>>) -> GrantedPages {
        GrantedPages { pages, refs, on_drop }
    }

    /// The pages, mapped here.
    pub fn pages(&self) -> &MappedPages {
        &self.pages
    }

    /// One grant reference per page, in order.
    pub fn refs(&self) -> &[GrantRef] {
        &self.refs
    }
}

impl Drop for GrantedPages {
    fn drop(&mut self) {
        if let Some(end) = self.on_drop.take() {
            end();
        }
    }
}

impl fmt::Debug for GrantedPages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrantedPages").field("pages", &self.pages).field("refs", &self.refs).finish()
    }
}

/// Sharing pages by grant (`/dev/xen/gntalloc` and `/dev/xen/gntdev`).
pub trait Grants: Send + fmt::Debug {
    /// Allocates `count` zeroed pages and grants each to `remote`
    /// (read-only unless `writable`).
    fn grant_pages(&mut self, remote: DomId, count: usize, writable: bool) -> io::Result<GrantedPages>;

    /// Maps pages domain `remote` granted to this domain, contiguously,
    /// in the order of `refs`. Unmapped when dropped.
    fn map_grants(&mut self, remote: DomId, refs: &[GrantRef], writable: bool) -> io::Result<MappedPages>;
}

/// Domain states, as xenstored reads them when VIRQ_DOM_EXC fires
/// (`xc_domain_getinfolist` in the C daemon); privileged.
///
/// This is all the daemon needs of domain lifecycle: it never creates or
/// destroys domains, it learns that they shut down or went away.
pub trait DomainStates: Send + fmt::Debug {
    /// Every domain's state, by id. A domain missing from the list does
    /// not exist (any more).
    fn states(&mut self) -> io::Result<Vec<(DomId, DomainState)>>;

    /// One domain's state, or `None` if there is no such domain.
    fn state(&mut self, domid: DomId) -> io::Result<Option<DomainState>> {
        Ok(self.states()?.into_iter().find(|&(id, _)| id == domid).map(|(_, state)| state))
    }

    /// The domains whose state changed since this caller last asked, so
    /// that a VIRQ_DOM_EXC costs the daemon the domains that changed, not
    /// every domain (Xen 4.21's `XEN_DOMCTL_get_domain_state`, which its
    /// xenstored calls instead of `xc_domain_getinfolist`).
    ///
    /// `fresh` asks for a full look, and for the changes after it to be
    /// tracked: the daemon asks so at its start, after a live update and
    /// after recovery, when what it knew of domains may be stale. A
    /// platform that cannot track changes (Xen 4.17's hypercalls) lists
    /// every domain each time, which is what this default does.
    fn changed_states(&mut self, fresh: bool) -> io::Result<DomainChanges> {
        let _ = fresh;
        Ok(DomainChanges::Everything(self.states()?))
    }
}

/// What [`DomainStates::changed_states`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainChanges {
    /// Every domain's state: a domain missing from it does not exist.
    Everything(Vec<(DomId, DomainState)>),
    /// Only the domains whose state changed since the last call, in
    /// domid order; `None` for a domain that is gone. A domain destroyed
    /// and then created again with its id comes twice: `None`, then the
    /// new domain's state.
    Changed(Vec<(DomId, Option<DomainState>)>),
}

impl DomainChanges {
    /// What [`DomainChanges::Changed`] holds on a platform that tracks
    /// changes: for each changed domid in order, with whether a domain
    /// with that id was destroyed since the last question, "gone" if so,
    /// then the state of the domain that has the id now (`state_of`), if
    /// any.
    pub fn list_changed(
        changed: impl IntoIterator<Item = (DomId, bool)>,
        mut state_of: impl FnMut(DomId) -> Option<DomainState>,
    ) -> Vec<(DomId, Option<DomainState>)> {
        let mut changes = Vec::new();
        for (domid, destroyed) in changed {
            let now = state_of(domid);
            if destroyed || now.is_none() {
                changes.push((domid, None));
            }
            if now.is_some() {
                changes.push((domid, now));
            }
        }
        changes
    }
}

/// Dom0's own xenstore ring, if the daemon serves dom0 over a ring.
///
/// On Xen, a dom0 kernel whose xenstored runs in dom0 itself exposes the
/// page of its xenbus ring at `/proc/xen/xsd_kva` (mapped with `mmap`) and
/// the dom0 side of its event channel at `/proc/xen/xsd_port` (or by the
/// `IOCTL_XENBUS_BACKEND_EVTCHN` ioctl on `/dev/xen/xenbus_backend`); the
/// C daemon's `dom0_init` maps the one, binds the other with
/// `bind_interdomain(0, port)` and serves dom0 like any introduced domain.
/// Hosted, dom0's processes talk to the daemon over its socket and there
/// is no such ring: the answer is `None`.
pub trait Dom0Store: Send + fmt::Debug {
    /// Dom0's xenstore page, mapped, and dom0's port of its xenstore
    /// event channel (the remote port to bind with
    /// [`EventChannels::bind_interdomain`] with domain 0), or `None` when
    /// dom0 has no xenstore ring.
    fn dom0_ring(&mut self) -> io::Result<Option<(MappedPages, Port)>>;
}

/// Domain lifecycle, as a toolstack drives it; privileged.
///
/// A toolstack also reads states, so every toolstack is a
/// [`DomainStates`]; the daemon holds only the latter.
pub trait Toolstack: DomainStates {
    /// Creates a paused domain with a xenstore page and an unbound
    /// xenstore port for dom0.
    fn create(&mut self, config: &DomainConfig) -> io::Result<NewDomain>;
    /// Lets a paused domain run.
    fn unpause(&mut self, domid: DomId) -> io::Result<()>;
    /// Stops a running domain from running.
    fn pause(&mut self, domid: DomId) -> io::Result<()>;
    /// Shuts a domain down for `reason`; it exists until destroyed.
    fn shutdown(&mut self, domid: DomId, reason: ShutdownReason) -> io::Result<()>;
    /// Destroys a domain and frees its resources.
    fn destroy(&mut self, domid: DomId) -> io::Result<()>;
    /// Every domain, by id, with its name.
    fn list(&mut self) -> io::Result<Vec<DomainInfo>>;
    /// One domain, or `None` if there is no such domain.
    fn info(&mut self, domid: DomId) -> io::Result<Option<DomainInfo>> {
        Ok(self.list()?.into_iter().find(|d| d.domid == domid))
    }
}

/// Blocks until `fd` is readable or `timeout` passes; returns whether it
/// is readable.
pub fn wait_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
    wait_any_readable(&[fd], timeout)
}

/// Blocks until one of `fds` is readable or `timeout` passes; returns
/// whether one is (a device's event channels and its xenstore watch's
/// doorbell, waited on together).
pub fn wait_any_readable(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> io::Result<bool> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let timeout = timeout.map(|t| Timespec {
        tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(t.subsec_nanos()),
    });
    let mut polled: Vec<PollFd<'_>> = fds.iter().map(|fd| PollFd::from_borrowed_fd(*fd, PollFlags::IN)).collect();
    loop {
        match poll(&mut polled, timeout.as_ref()) {
            Ok(n) => return Ok(n > 0),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
