//! The Debian 13 ("trixie") root file system in which the Xen 4.20
//! references run.
//!
//! Why a root: Debian 13's `xen-utils-4.20` daemons need trixie's glibc,
//! which a Debian 12 host does not have, so they run chrooted in a minimal
//! trixie system built once from the Debian archive. [`prepare`] builds it
//! when it is missing: `mmdebstrap --variant=apt` with `xen-utils-4.20`,
//! `libxen-dev`, `gcc` and `libc6-dev` (no Recommends, no manuals, docs or
//! locales; about 370 MB), a download of half a minute to a few minutes,
//! depending on the mirror, the first time. It is
//!
//! - at `$XS_TRIXIE_ROOT`, by default `/var/cache/xs-peers/trixie` (where
//!   the shell scripts of the same shape, if any, put theirs: a root they
//!   made is used as it is), from `$XS_TRIXIE_MIRROR` (default
//!   `http://deb.debian.org/debian`);
//! - built into `ROOT.new` and renamed to `ROOT` only when complete, marked
//!   ready by the stamp file `ROOT/.xs-peers-ready`; concurrent builders
//!   (tests, benchmark runs) wait for each other on `ROOT.lock`;
//! - built by `mmdebstrap` run inside `unshare -m` (a private mount
//!   namespace), so that none of the mounts it makes in the new root (its
//!   `/proc`, `/dev`) can stay behind on the host, and a `ROOT.new` left by
//!   an interrupted build is removed only when nothing is mounted below it.
//!
//! The shim for 4.20 is `shim420.c` (which includes `shim.c` unchanged),
//! built with the root's `gcc` (chrooted) against the root's Xen 4.20
//! headers into `ROOT/opt/xs-peers/`, named by a hash of its sources and of
//! the root's stamp, so that a changed source or a rebuilt root gets a
//! fresh one.
//!
//! Remove the root with `rm -rf --one-file-system ROOT` after stopping every
//! 4.20 daemon (nothing is ever left mounted in it on the host).

use std::collections::hash_map::DefaultHasher;
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{check, path, Error, Need, MMDEBSTRAP, UTIL_LINUX};

/// Where the root is when `$XS_TRIXIE_ROOT` is not set.
pub const DEFAULT_ROOT: &str = "/var/cache/xs-peers/trixie";

/// The file whose presence marks a complete root.
const STAMP: &str = ".xs-peers-ready";

/// The packages installed into the root, besides trixie's `apt` variant.
const PACKAGES: &str = "xen-utils-4.20,libxen-dev,gcc,libc6-dev";

/// Where the 4.20 daemons are, inside the root.
pub(crate) const XEN_BIN: &str = "/usr/lib/xen-4.20/bin";

/// The directory inside the root where the daemon sees its state directory
/// (a bind mount in its private mount namespace).
pub(crate) const STATE_IN_ROOT: &str = "/xs";

/// Our files inside the root (the shim, its sources while it builds, the
/// package versions).
const OURS_IN_ROOT: &str = "/opt/xs-peers";

const SOURCE: &str = include_str!("shim.c");
const SOURCE_420: &str = include_str!("shim420.c");

/// The root: `$XS_TRIXIE_ROOT`, else [`DEFAULT_ROOT`].
pub fn root() -> PathBuf {
    std::env::var_os("XS_TRIXIE_ROOT").map_or_else(|| PathBuf::from(DEFAULT_ROOT), PathBuf::from)
}

/// `inner` (an absolute path inside the root) as a path on the host.
pub(crate) fn host_path(inner: &str) -> PathBuf {
    root().join(inner.trim_start_matches('/'))
}

/// Whether the root is complete: its stamp and both daemons are there.
pub fn ready() -> bool {
    let root = root();
    root.join(STAMP).is_file()
        && ["xenstored", "oxenstored"].iter().all(|d| host_path(&format!("{XEN_BIN}/{d}")).is_file())
}

/// What [`ready`] checks, as a [`Need::Check`] function: a ready root, or
/// `mmdebstrap` to build one.
pub(crate) fn ready_or_buildable() -> bool {
    ready() || MMDEBSTRAP.is_met()
}

/// Builds the root if it is not [`ready`], and returns its path. Waits for
/// another process building the same root. Needs root, `unshare` and, for
/// the build only, `mmdebstrap` and the Debian mirror.
pub fn prepare() -> Result<PathBuf, Error> {
    let root = root();
    if ready() {
        return Ok(root);
    }
    check(&[Need::Root, UTIL_LINUX, MMDEBSTRAP])?;
    let failed = |what: &str, e: &dyn std::fmt::Display| Error::Failed(format!("{what}: {e}"));
    if !root.is_absolute() || root.parent().is_none() {
        return Err(Error::Failed(format!("XS_TRIXIE_ROOT must be an absolute path below /: {}", root.display())));
    }
    let with_suffix = |suffix: &str| {
        let mut p = root.clone().into_os_string();
        p.push(suffix);
        PathBuf::from(p)
    };
    let parent = root.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(parent).map_err(|e| failed(&format!("create {}", parent.display()), &e))?;
    let lock_path = with_suffix(".lock");
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| failed(&format!("open {}", lock_path.display()), &e))?;
    // Released when `lock` is closed, at return.
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| failed(&format!("lock {}", lock_path.display()), &e))?;
    if ready() {
        return Ok(root);
    }
    if std::fs::symlink_metadata(&root).is_ok() {
        return Err(Error::Failed(format!(
            "{} exists but is not a complete Debian 13 root (no {STAMP}): remove it \
             (rm -rf --one-file-system {}) and try again",
            root.display(),
            root.display()
        )));
    }
    let new = with_suffix(".new");
    if std::fs::symlink_metadata(&new).is_ok() {
        if mounted_below(&new) {
            return Err(Error::Failed(format!("something is mounted below {}: unmount it first", new.display())));
        }
        std::fs::remove_dir_all(&new).map_err(|e| failed(&format!("remove {}", new.display()), &e))?;
    }
    let mirror = std::env::var("XS_TRIXIE_MIRROR").unwrap_or_else(|_| "http://deb.debian.org/debian".to_owned());
    let log_path = with_suffix(".log");
    let log = File::create(&log_path).map_err(|e| failed(&format!("create {}", log_path.display()), &e))?;
    eprintln!(
        "xs-peers: building the Debian 13 root of the Xen 4.20 references at {} with mmdebstrap from {mirror} \
         (half a minute to a few minutes, about 370 MB; log in {})",
        root.display(),
        log_path.display()
    );
    let status = Command::new(path("/usr/bin/unshare"))
        .args(["-m", "--propagation", "private"])
        .arg(path("/usr/bin/mmdebstrap"))
        .args(["--mode=root", "--variant=apt", "--format=directory"])
        .arg(format!("--include={PACKAGES}"))
        .args([
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            "--dpkgopt=path-include=/usr/share/locale/locale.alias",
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-include=/usr/share/doc/*/copyright",
            "--dpkgopt=path-exclude=/usr/share/info/*",
            "trixie",
        ])
        .arg(&new)
        .arg(&mirror)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| failed("log", &e))?)
        .stderr(log)
        .status()
        .map_err(|e| failed("run mmdebstrap", &e))?;
    if !status.success() {
        return Err(Error::Failed(format!(
            "mmdebstrap failed ({status}); the end of {}:\n{}",
            log_path.display(),
            tail(&log_path, 30)
        )));
    }
    if mounted_below(&new) {
        return Err(Error::Failed(format!("{} still has mounts after mmdebstrap", new.display())));
    }
    for daemon in ["xenstored", "oxenstored"] {
        let binary = new.join(format!("{}/{daemon}", XEN_BIN.trim_start_matches('/')));
        if !binary.is_file() {
            return Err(Error::Failed(format!("{} missing after mmdebstrap", binary.display())));
        }
    }
    let ours = new.join(OURS_IN_ROOT.trim_start_matches('/'));
    for dir in [new.join(STATE_IN_ROOT.trim_start_matches('/')), ours.clone()] {
        std::fs::create_dir_all(&dir).map_err(|e| failed(&format!("create {}", dir.display()), &e))?;
    }
    let versions = Command::new(path("/usr/sbin/chroot"))
        .arg(&new)
        .args(["dpkg-query", "-W", "-f", "${Package} ${Version}\\n", "xen-utils-4.20", "libxen-dev", "libc6", "gcc"])
        .output()
        .map_err(|e| failed("run dpkg-query in the new root", &e))?;
    std::fs::write(ours.join("versions"), &versions.stdout).map_err(|e| failed("write versions", &e))?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    std::fs::write(new.join(STAMP), format!("built by xs-peers at {now} (seconds since 1970, UTC)\n"))
        .map_err(|e| failed("write the stamp", &e))?;
    std::fs::rename(&new, &root).map_err(|e| failed(&format!("rename {} to {}", new.display(), root.display()), &e))?;
    eprintln!("xs-peers: Debian 13 root ready at {}", root.display());
    Ok(root)
}

/// The last `lines` lines of the file at `path`.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Whether anything is mounted at or below `dir` in this mount namespace
/// (such a tree is never removed: that would empty what is mounted there).
fn mounted_below(dir: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return true };
    info.lines().filter_map(|l| l.split(' ').nth(4)).map(unescape).any(|m| Path::new(&m).starts_with(dir))
}

/// A mount point as mountinfo writes it (`\040` for a space, ...), as it is.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal =
            bytes.get(i + 1..i + 4).filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        if let Some(digits) = octal {
            let value = digits.iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
            out.push(u8::try_from(value).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The 4.20 shim, built now (in the ready root) if it is not yet: its path
/// inside the root, as the daemon's `LD_PRELOAD` names it.
pub(crate) fn shim() -> Result<String, Error> {
    // One build at a time in this process; other processes are kept apart
    // by building under a private name and renaming into place.
    static BUILT: Mutex<Option<String>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let root = root();
    let stamp = std::fs::read_to_string(root.join(STAMP)).unwrap_or_default();
    let mut hash = DefaultHasher::new();
    (SOURCE, SOURCE_420, &root, &stamp).hash(&mut hash);
    let name = format!("shim420-{:016x}.so", hash.finish());
    let inner = format!("{OURS_IN_ROOT}/{name}");
    let host = host_path(&inner);
    if built.as_deref() == Some(inner.as_str()) && host.exists() {
        return Ok(inner);
    }
    if !host.exists() {
        let failed = |what: &str, e: std::io::Error| Error::Failed(format!("{what}: {e}"));
        let pid = std::process::id();
        let build_inner = format!("{OURS_IN_ROOT}/build-{pid}");
        let build = host_path(&build_inner);
        std::fs::create_dir_all(&build).map_err(|e| failed(&format!("create {}", build.display()), e))?;
        let written = std::fs::write(build.join("shim.c"), SOURCE)
            .and_then(|()| std::fs::write(build.join("shim420.c"), SOURCE_420));
        let partial = format!("{inner}.{pid}");
        let out = written.and_then(|()| {
            Command::new(path("/usr/sbin/chroot"))
                .arg(&root)
                .args(["/usr/bin/gcc", "-std=gnu11", "-O2", "-Wall", "-Wextra", "-fPIC", "-shared", "-o"])
                .arg(&partial)
                .arg(format!("{build_inner}/shim420.c"))
                .arg("-ldl")
                .output()
        });
        let _ = std::fs::remove_dir_all(&build);
        let out = out.map_err(|e| failed("build the 4.20 shim (chroot gcc)", e))?;
        if !out.status.success() {
            let _ = std::fs::remove_file(host_path(&partial));
            return Err(Error::Failed(format!(
                "the xs-peers 4.20 shim did not compile in {}:\n{}",
                root.display(),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        std::fs::rename(host_path(&partial), &host).map_err(|e| failed(&format!("rename to {}", host.display()), e))?;
    }
    *built = Some(inner.clone());
    Ok(inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_unescaped() {
        assert_eq!(unescape("/a\\040b/c"), "/a b/c");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/odd\\"), "/odd\\");
    }
}
