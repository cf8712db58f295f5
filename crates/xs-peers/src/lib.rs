//! Debian's reference XenStore daemons, run by the project's tests and
//! benchmarks without a hypervisor, and a test harness that reports a test
//! whose Debian packages are missing as ignored rather than passed.
//!
//! Why: our xenstored is checked against the C `xenstored` and `oxenstored`
//! of Xen 4.17 (Debian's `xen-utils-4.17`), byte for byte through Debian's
//! own clients. Those daemons want a hypervisor; [`Reference`] starts one
//! socket-only as dom0 at a socket path of the caller's choice, with a small
//! `LD_PRELOAD` library of ours (`src/shim.c`, compiled at run time with
//! `gcc` against `libxen-dev`'s headers) answering what they ask Xen. It
//! needs root (the daemons' sockets, and oxenstored's mount namespace).
//!
//! The newer references, Xen 4.20's C `xenstored` and `oxenstored`
//! (Debian 13's `xen-utils-4.20`, [`Flavor::C420`] and
//! [`Flavor::OCaml420`]), need Debian 13's glibc: they run chrooted in a
//! minimal Debian 13 root that [`trixie::prepare`] builds once with
//! `mmdebstrap`, each in a private mount namespace, with the same shim plus
//! `src/shim420.c` (what changed in Xen's tools interface) built there with
//! the root's `gcc`.
//!
//! What a test needs is a list of [`Need`]s. [`harness::run`] (for tests
//! with `harness = false`) checks them when the test is about to run: a
//! missing one makes the test *ignored*, with the package to install as the
//! reason, and counted so in libtest's summary line; with
//! `XS_REQUIRE_PEERS=1` in the environment (`.ci/run` sets it) a missing one
//! fails the test instead.
//!
//! The packages are looked for under `$XS_PEERS_ROOT` (default `/`): point
//! it at a directory that lacks a package's file to see the skip path.

use std::fmt;
use std::path::PathBuf;

pub mod c_program;
mod daemon;
pub mod harness;
mod shim;
pub mod trixie;

pub use daemon::{Flavor, Launch, Reference};

/// Something a test needs from the machine: a Debian package (known by one
/// file it installs) or root.
#[derive(Debug, Clone, Copy)]
pub enum Need {
    /// The Debian package `name`, present when `file` exists (under
    /// `$XS_PEERS_ROOT`).
    Package {
        /// The package, as `apt-get install` takes it.
        name: &'static str,
        /// An absolute path the package installs.
        file: &'static str,
    },
    /// Running as root (effective uid 0).
    Root,
    /// Something else of the machine's, checked by `met`; `missing` says
    /// what is missing and how to get it.
    Check {
        /// What a skip or failure says.
        missing: &'static str,
        /// Whether the machine has it.
        met: fn() -> bool,
    },
}

/// Xen 4.17's C `xenstored`, `oxenstored`, `test-xenstore` and
/// `xenstore-control`.
pub const XEN_UTILS: Need = Need::Package { name: "xen-utils-4.17", file: "/usr/lib/xen-4.17/bin/xenstored" };
/// Debian's libxenstore tools: `xenstore-read`, `xenstore-ls`, `xenstore`, ...
pub const XENSTORE_UTILS: Need = Need::Package { name: "xenstore-utils", file: "/usr/bin/xenstore-read" };
/// The Xen headers the shim is compiled against.
pub const LIBXEN_DEV: Need = Need::Package { name: "libxen-dev", file: "/usr/include/xenctrl.h" };
/// Linux's user-space headers, among them the `/dev/xen` devices' ioctls
/// (`<xen/evtchn.h>`, `<xen/gntdev.h>`, `<xen/gntalloc.h>`).
pub const LINUX_LIBC_DEV: Need = Need::Package { name: "linux-libc-dev", file: "/usr/include/xen/evtchn.h" };
/// The C compiler that builds the shim.
pub const GCC: Need = Need::Package { name: "gcc", file: "/usr/bin/gcc" };
/// iputils' `ping`, which hosted guests run over a xensnet LAN.
pub const PING: Need = Need::Package { name: "iputils-ping", file: "/usr/bin/ping" };
/// iproute2's `ip`, with which the hosted hypervisor sets up a guest's
/// network namespace.
pub const IPROUTE2: Need = Need::Package { name: "iproute2", file: "/usr/sbin/ip" };
/// Python 3, for the pyxs client checks.
pub const PYTHON3: Need = Need::Package { name: "python3", file: "/usr/bin/python3" };
/// pyxs, an independent Python XenStore client.
pub const PYXS: Need = Need::Package { name: "python3-pyxs", file: "/usr/lib/python3/dist-packages/pyxs/__init__.py" };
/// util-linux's `unshare`, which gives oxenstored its private mount namespace.
pub const UTIL_LINUX: Need = Need::Package { name: "util-linux", file: "/usr/bin/unshare" };

/// tmux, the terminal in which `xenstore top` is tested as a person uses it.
pub const TMUX: Need = Need::Package { name: "tmux", file: "/usr/bin/tmux" };
/// The Prometheus project's Python client, whose parser checks what
/// `xenstored --metrics` serves.
pub const PROMETHEUS_CLIENT: Need = Need::Package {
    name: "python3-prometheus-client",
    file: "/usr/lib/python3/dist-packages/prometheus_client/parser.py",
};

/// `mmdebstrap`, which builds the Debian 13 root of the Xen 4.20 references.
pub const MMDEBSTRAP: Need = Need::Package { name: "mmdebstrap", file: "/usr/bin/mmdebstrap" };

/// A ready Debian 13 root for the Xen 4.20 references ([`trixie::ready`]),
/// or [`MMDEBSTRAP`] to build one when a daemon first starts.
pub const TRIXIE_ROOT_OR_MMDEBSTRAP: Need = Need::Check {
    missing: "no ready Debian 13 root for the Xen 4.20 references (at $XS_TRIXIE_ROOT, default \
              /var/cache/xs-peers/trixie) and no mmdebstrap to build one: apt-get install mmdebstrap",
    met: trixie::ready_or_buildable,
};

/// A ready Debian 13 root for the Xen 4.20 references, already built: what
/// a test needs that must not start a download of its own (see
/// [`XEN_420_READY`]).
pub const TRIXIE_ROOT_READY: Need = Need::Check {
    missing: "no ready Debian 13 root for the Xen 4.20 references (at $XS_TRIXIE_ROOT, default \
              /var/cache/xs-peers/trixie): the first start of a 4.20 reference builds it, as root with \
              mmdebstrap (e.g. `xs-bench compare --daemons c-4.20 --only latency --reps 1 --no-store`)",
    met: trixie::ready,
};

/// Everything [`Reference`] needs to run the C xenstored.
pub const C_XENSTORED: &[Need] = &[XEN_UTILS, LIBXEN_DEV, GCC, Need::Root];
/// Everything [`Reference`] needs to run oxenstored.
pub const OXENSTORED: &[Need] = &[XEN_UTILS, LIBXEN_DEV, GCC, UTIL_LINUX, Need::Root];
/// Everything [`Reference`] needs to run Xen 4.20's C xenstored: the
/// Debian 13 root or `mmdebstrap` to build it (the root brings the daemon,
/// the headers and the compiler), `unshare` for its mount namespace, root.
pub const C_XENSTORED_420: &[Need] = &[TRIXIE_ROOT_OR_MMDEBSTRAP, UTIL_LINUX, Need::Root];
/// Everything [`Reference`] needs to run Xen 4.20's oxenstored (as
/// [`C_XENSTORED_420`]).
pub const OXENSTORED_420: &[Need] = &[TRIXIE_ROOT_OR_MMDEBSTRAP, UTIL_LINUX, Need::Root];
/// What a test of the Xen 4.20 references needs: as [`C_XENSTORED_420`],
/// but with the Debian 13 root already built ([`TRIXIE_ROOT_READY`]), so
/// that running the tests never starts a download of a few hundred
/// megabytes. Such a test is best required with
/// [`harness::Test::required_by`]`("XS_REQUIRE_PEERS_420")`, see there.
pub const XEN_420_READY: &[Need] = &[TRIXIE_ROOT_READY, UTIL_LINUX, Need::Root];

/// Where the Debian packages' files are looked for: `$XS_PEERS_ROOT`, else `/`.
pub fn root() -> PathBuf {
    std::env::var_os("XS_PEERS_ROOT").map_or_else(|| PathBuf::from("/"), PathBuf::from)
}

/// `installed` (an absolute path as a package installs it) under [`root`].
pub fn path(installed: &str) -> PathBuf {
    root().join(installed.trim_start_matches('/'))
}

impl Need {
    /// Whether the machine has it.
    pub fn is_met(&self) -> bool {
        match self {
            Need::Package { file, .. } => path(file).exists(),
            Need::Root => rustix::process::geteuid().is_root(),
            Need::Check { met, .. } => met(),
        }
    }
}

impl fmt::Display for Need {
    /// What is missing and how to get it, for a skip or failure message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Need::Package { name, file } => {
                write!(f, "{name} is missing ({} not found): apt-get install {name}", path(file).display())
            }
            Need::Root => f.write_str("not root: the reference daemons need root"),
            Need::Check { missing, .. } => f.write_str(missing),
        }
    }
}

/// The first of `needs` that the machine lacks.
pub fn missing(needs: &[Need]) -> Option<Need> {
    needs.iter().copied().find(|n| !n.is_met())
}

/// Whether a missing need must fail rather than skip: `XS_REQUIRE_PEERS=1`.
pub fn required() -> bool {
    required_by("XS_REQUIRE_PEERS")
}

/// Whether the environment variable `var` is `1` (a missing need of a test
/// required by `var` then fails it).
pub fn required_by(var: &str) -> bool {
    std::env::var_os(var).is_some_and(|v| v == "1")
}

/// Why a reference daemon did not start.
#[derive(Debug)]
pub enum Error {
    /// The machine lacks something it needs.
    Missing(Need),
    /// It was there but did not start (or the shim did not build).
    Failed(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Missing(need) => need.fmt(f),
            Error::Failed(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for Error {}

/// `Err(Missing)` for the first of `needs` the machine lacks.
pub fn check(needs: &[Need]) -> Result<(), Error> {
    missing(needs).map_or(Ok(()), |n| Err(Error::Missing(n)))
}
