//! Where a hosted host keeps its state.

use std::path::{Path, PathBuf};

/// A host's state directory: sockets, pid files, logs and consoles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// `$XSIM_STATE`, else `$XDG_RUNTIME_DIR/xsim`, else `/tmp/xsim-<uid>`.
    pub fn from_env() -> StateDir {
        if let Some(dir) = std::env::var_os("XSIM_STATE").filter(|d| !d.is_empty()) {
            return StateDir::at(PathBuf::from(dir));
        }
        if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
            return StateDir::at(PathBuf::from(dir).join("xsim"));
        }
        StateDir::at(std::env::temp_dir().join(format!("xsim-{}", rustix::process::getuid().as_raw())))
    }

    /// The state directory at `root` (made absolute).
    pub fn at(root: PathBuf) -> StateDir {
        let root =
            if root.is_absolute() { root } else { std::env::current_dir().map(|cwd| cwd.join(&root)).unwrap_or(root) };
        StateDir { root }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The hypervisor's socket (dom0 processes connect here).
    pub fn hypervisor_socket(&self) -> PathBuf {
        xen_platform::hosted::hypervisor_socket(&self.root)
    }

    /// dom0's connection to the host's hypervisor, with an error that says
    /// how to start one.
    pub fn connect_hypervisor(&self) -> anyhow::Result<xen_platform::hosted::Host> {
        use anyhow::Context as _;
        xen_platform::hosted::Host::connect(&self.hypervisor_socket())
            .with_context(|| format!("no host is running in {} (start one with `xsim up`)", self.root.display()))
    }

    /// xenstored's socket: what `XENSTORED_PATH` names for dom0 tools.
    pub fn xenstored_socket(&self) -> PathBuf {
        self.root.join("xenstored.sock")
    }

    /// The hypervisor's pid file.
    pub fn hypervisor_pid(&self) -> PathBuf {
        self.root.join("hypervisor.pid")
    }

    /// xenstored's pid file.
    pub fn xenstored_pid(&self) -> PathBuf {
        self.root.join("xenstored.pid")
    }

    /// The hypervisor's log.
    pub fn hypervisor_log(&self) -> PathBuf {
        self.root.join("hypervisor.log")
    }

    /// xenstored's log.
    pub fn xenstored_log(&self) -> PathBuf {
        self.root.join("xenstored.log")
    }

    /// A domain's console log (the guest program's stdout and stderr).
    pub fn console(&self, domid: u16) -> PathBuf {
        self.root.join("console").join(format!("{domid}.log"))
    }
}
