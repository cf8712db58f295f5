//! Domain lifecycle as a toolstack drives it: the hypervisor's half
//! through [`xen_platform::Toolstack`], XenStore's half through a dom0
//! client, in the order libxl uses.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use xen_platform::{DomId, DomainConfig, DomainInfo, DomainState, NewDomain, ShutdownReason};
use xenstore::{Access, Perm, PermList, Store};

use crate::StateDir;

/// The memory target written for every hosted domain, in KiB (a hosted
/// domain's memory is its process's; the node is there because guests and
/// tools read it).
pub const MEMORY_TARGET_KIB: u64 = 131_072;

/// What to create.
#[derive(Debug, Clone)]
pub struct DomainSpec {
    /// The domain's name (unique among live domains).
    pub name: String,
    /// The guest program and its arguments.
    pub program: Vec<String>,
    /// Extra environment for the program.
    pub env: Vec<(String, String)>,
    /// Leave it paused.
    pub paused: bool,
    /// Give it a network namespace of its own with a xensnet TAP
    /// interface (`xsim create --netns`; needs root).
    pub netns: bool,
    /// Give it a mount namespace of its own whose `/mnt` is a FUSE
    /// filesystem it serves (`xsim create --fuse`: the xensblk disk's
    /// export; needs root).
    pub fuse: bool,
}

/// A dom0 toolstack connected to a running host.
#[derive(Debug)]
pub struct Toolstack {
    domains: Box<dyn xen_platform::Toolstack>,
    store: xenstore::Client,
    state: StateDir,
    /// The connection device waits consume watch events on (opened on
    /// first use): `store` must not see them.
    device_conn: Option<xenbus::SyncConn>,
}

impl Toolstack {
    /// Connects to the host running in `state`.
    pub fn connect(state: &StateDir) -> Result<Toolstack> {
        let host = state.connect_hypervisor()?;
        let domains = Box::new(host.toolstack());
        let store = xenstore::Client::connect(state.xenstored_socket())
            .with_context(|| format!("connecting to xenstored at {}", state.xenstored_socket().display()))?;
        Ok(Toolstack { domains, store, state: state.clone(), device_conn: None })
    }

    /// The dom0 XenStore client this toolstack uses.
    pub fn store(&self) -> &xenstore::Client {
        &self.store
    }

    /// The state directory.
    pub fn state(&self) -> &StateDir {
        &self.state
    }

    /// Creates a domain running `spec.program`: the hypervisor creates it
    /// paused; its XenStore nodes are written in one transaction; it is
    /// introduced to xenstored; then unpaused unless `spec.paused`.
    pub fn create(&mut self, spec: &DomainSpec) -> Result<NewDomain> {
        if spec.name.is_empty() || spec.name.contains('/') {
            bail!("invalid domain name {:?}", spec.name);
        }
        let Some(program) = spec.program.first() else { bail!("no guest program given") };
        let mut argv = spec.program.clone();
        argv[0] = resolve_program(program)?;
        let cwd = std::env::current_dir().ok().map(|d| d.to_string_lossy().into_owned());
        let config = DomainConfig {
            name: spec.name.clone(),
            program: argv,
            env: spec.env.clone(),
            cwd,
            netns: spec.netns,
            fuse: spec.fuse,
        };
        let new = match self.domains.create(&config) {
            Ok(new) => new,
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::EXIST.raw_os_error()) => {
                bail!("a domain named {:?} already exists", spec.name)
            }
            Err(e) => return Err(e).context("creating the domain"),
        };
        if let Err(e) = self.introduce(&spec.name, new) {
            let _ = self.domains.destroy(new.domid);
            let _ = self.remove_nodes(new.domid);
            return Err(e);
        }
        if !spec.paused {
            self.domains.unpause(new.domid).context("unpausing the domain")?;
        }
        Ok(new)
    }

    fn introduce(&mut self, name: &str, new: NewDomain) -> Result<()> {
        let id = new.domid;
        let dom = format!("/local/domain/{id}");
        let vm = format!("/vm/{}", pseudo_uuid(id));
        // As libxl: the domain's directory is dom0's and readable by the
        // guest; control/, data/, drivers/, feature/, attr/ and error/
        // are the guest's own (error/ is where a guest's drivers report a
        // failed device, as Linux's xenbus_dev_fatal writes it).
        let ro = perms(&[(0, Access::None), (id, Access::Read)]);
        let rw = perms(&[(id, Access::None)]);
        self.store
            .transaction(|t| {
                t.mkdir(&dom)?;
                t.set_perms(&dom, &ro)?;
                t.write(&format!("{dom}/name"), name.as_bytes())?;
                t.write(&format!("{dom}/domid"), id.to_string().as_bytes())?;
                t.write(&format!("{dom}/vm"), vm.as_bytes())?;
                t.mkdir(&format!("{dom}/device"))?;
                t.write(&format!("{dom}/memory/target"), MEMORY_TARGET_KIB.to_string().as_bytes())?;
                t.write(&format!("{dom}/store/port"), new.store_port.to_string().as_bytes())?;
                t.write(&format!("{dom}/store/ring-ref"), new.store_gfn.to_string().as_bytes())?;
                for sub in ["control", "data", "drivers", "feature", "attr", "error"] {
                    let p = format!("{dom}/{sub}");
                    t.mkdir(&p)?;
                    t.set_perms(&p, &rw)?;
                }
                let shutdown = format!("{dom}/control/shutdown");
                t.write(&shutdown, b"")?;
                t.set_perms(&shutdown, &rw)?;
                t.write(&format!("{vm}/name"), name.as_bytes())?;
                t.write(&format!("{vm}/uuid"), pseudo_uuid(id).as_bytes())?;
                t.set_perms(&vm, &ro)?;
                Ok(())
            })
            .context("writing the domain's XenStore nodes")?;
        self.store.introduce(id, new.store_gfn, new.store_port).context("introducing the domain to xenstored")?;
        Ok(())
    }

    /// A domain by name or id.
    pub fn resolve(&mut self, which: &str) -> Result<DomainInfo> {
        let list = self.domains.list()?;
        if let Ok(id) = which.parse::<DomId>() {
            if let Some(d) = list.iter().find(|d| d.domid == id) {
                return Ok(d.clone());
            }
        }
        list.into_iter().find(|d| d.name == which).ok_or_else(|| anyhow!("no domain {which:?}"))
    }

    /// A domain as error messages name it: `domain 3 (guest)`; an error if
    /// there is no such domain.
    pub fn describe(&mut self, domid: DomId) -> Result<String> {
        match self.domains.info(domid)? {
            Some(d) => Ok(format!("domain {} ({})", d.domid, d.name)),
            None => bail!("no domain {domid}"),
        }
    }

    /// The toolstack's second XenStore connection, for waits on device
    /// states: a wait consumes the watch events of its connection.
    pub fn device_conn(&mut self) -> Result<&xenbus::SyncConn> {
        if self.device_conn.is_none() {
            let socket = self.state.xenstored_socket();
            let client = xenstore::Client::connect(&socket)
                .with_context(|| format!("connecting to xenstored at {}", socket.display()))?;
            self.device_conn = Some(xenbus::SyncConn::new(client));
        }
        self.device_conn.as_ref().context("no device connection")
    }

    /// Lets a paused domain run.
    pub fn unpause(&mut self, domid: DomId) -> Result<()> {
        Ok(self.domains.unpause(domid)?)
    }

    /// Stops a domain from running.
    pub fn pause(&mut self, domid: DomId) -> Result<()> {
        Ok(self.domains.pause(domid)?)
    }

    /// Asks the guest to shut down (`control/shutdown`, as `xl shutdown`
    /// does); if it has not within `grace`, shuts it down by force.
    pub fn shutdown(&mut self, domid: DomId, reason: ShutdownReason, grace: Duration) -> Result<DomainState> {
        if let Err(e) = self.request_shutdown(domid, reason) {
            if domid == 0 {
                return Err(e);
            }
            eprintln!("xsim: {e:#}; shutting down by force");
        } else if let Some(state) = self.wait_shutdown(domid, grace)? {
            return Ok(state);
        }
        self.force_shutdown(domid, reason)
    }

    /// Asks the guest to shut down for `reason` (`control/shutdown`, which
    /// a PV guest watches); it reports the reason it shuts down with.
    pub fn request_shutdown(&mut self, domid: DomId, reason: ShutdownReason) -> Result<()> {
        if domid == 0 {
            bail!("dom0 cannot be shut down this way");
        }
        let node = format!("/local/domain/{domid}/control/shutdown");
        self.store.write(&node, reason.name().as_bytes()).with_context(|| format!("writing {node}"))
    }

    /// Shuts the domain down for `reason` without asking the guest.
    pub fn force_shutdown(&mut self, domid: DomId, reason: ShutdownReason) -> Result<DomainState> {
        if domid == 0 {
            bail!("dom0 cannot be shut down this way");
        }
        self.domains.shutdown(domid, reason)?;
        Ok(DomainState::Shutdown(reason))
    }

    /// Waits until the domain has shut down and returns its state, or
    /// `None` if it is still running after `timeout`; an error if it is
    /// gone.
    pub fn wait_shutdown(&mut self, domid: DomId, timeout: Duration) -> Result<Option<DomainState>> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.domains.info(domid)?.map(|d| d.state) {
                None => bail!("domain {domid} is gone"),
                Some(s @ DomainState::Shutdown(_)) => return Ok(Some(s)),
                Some(_) if Instant::now() >= deadline => return Ok(None),
                Some(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// Destroys a domain and removes what the toolstack wrote for it.
    ///
    /// In libxl's order: the domain's nodes first, then the domain.
    /// xenstored removes what a dead domain still owns, and finding that
    /// walks the whole store; removed first, there is nothing left to
    /// find, and a destroy costs the same among 10 domains or 10,000.
    pub fn destroy(&mut self, domid: DomId) -> Result<()> {
        if domid == 0 {
            bail!("dom0 cannot be destroyed");
        }
        // The domain goes even if its nodes could not (as libxl's
        // destroy goes on); the error is said after.
        let removed = self.remove_nodes(domid);
        self.domains.destroy(domid).context("destroying the domain")?;
        // xenstored learns of the death through VIRQ_DOM_EXC and removes
        // the domain's connection; RELEASE makes that certain before we
        // return (ENOENT if it already happened).
        match self.store.release(domid) {
            Ok(()) => {}
            Err(e) if e.code() == Some(xenstore::ErrorCode::ENOENT) => {}
            Err(e) => return Err(e).context("releasing the domain in xenstored"),
        }
        removed
    }

    /// Removes the domain's nodes, and the backend directories of its
    /// devices (libxl's destroy removes every device of the domain: a
    /// backend must not keep serving a frontend that is gone).
    fn remove_nodes(&mut self, domid: DomId) -> Result<()> {
        let dom = format!("/local/domain/{domid}");
        let vm = format!("/vm/{}", pseudo_uuid(domid));
        let devices = crate::devices::record::all(&self.store, domid)?;
        let backends = devices.into_iter().map(|d| d.backend);
        let paths = backends.chain([dom, vm, crate::devices::record::domain_dir(domid)]);
        for path in paths {
            match self.store.rm(&path) {
                Ok(()) => {}
                Err(e) if e.code() == Some(xenstore::ErrorCode::ENOENT) => {}
                Err(e) => return Err(e).with_context(|| format!("removing {path}")),
            }
        }
        Ok(())
    }

    /// Every domain.
    pub fn list(&mut self) -> Result<Vec<DomainInfo>> {
        Ok(self.domains.list()?)
    }
}

/// A permission list from `(domain, access)` entries, the first being the
/// owner and everyone else's access; an empty list means dom0's only.
pub fn perms(entries: &[(DomId, Access)]) -> PermList {
    let entries = entries.iter().map(|&(domid, access)| Perm { domid, access }).collect();
    PermList::new(entries).unwrap_or_else(|| PermList::owned_by(0, Access::None))
}

/// A stable per-domid UUID for `/vm/<uuid>` (hosted domains have no
/// configured UUID).
fn pseudo_uuid(domid: DomId) -> String {
    format!("00000000-0000-4000-8000-{:012x}", domid)
}

/// The absolute path of `program`, searched in `PATH` when it has no
/// slash (the hypervisor runs it from its own environment).
fn resolve_program(program: &str) -> Result<String> {
    if program.contains('/') {
        let path = std::path::Path::new(program);
        let abs = if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir()?.join(path) };
        return Ok(abs.to_string_lossy().into_owned());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(program);
        if candidate.is_file() {
            return Ok(candidate.to_string_lossy().into_owned());
        }
    }
    bail!("{program}: not found in PATH")
}
