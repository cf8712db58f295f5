//! What a guest's child does to itself between fork and exec to be
//! confined as [`Confinement`] says (see [`super::isolation`]): prepared
//! in the hypervisor, carried out in the child with async-signal-safe
//! system calls only (no allocation: the map lines are formatted before
//! the fork).

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::process::Command;

use rustix::fs::{open, Mode, OFlags};
use rustix::thread::UnshareFlags;

use super::isolation::{Confinement, Isolation};
use super::landlock;

/// One guest's confinement, ready for its child.
#[derive(Debug)]
pub(super) struct Confine {
    /// `"U U 1"`: the uid map (and gid map) of its user namespace, this
    /// user mapped to itself; none outside [`Isolation::UserNamespace`].
    user_namespace: Option<(String, String)>,
    /// Its Landlock ruleset, if the kernel has Landlock.
    ruleset: Option<OwnedFd>,
}

impl Confine {
    /// Prepares a guest's confinement and sets the child's credentials on
    /// `command`: `uid` (and the gid of that number) under
    /// [`Isolation::Uid`]; `std` drops the supplementary groups, then sets
    /// the gid and the uid, before the pre-exec steps run.
    pub(super) fn prepare(confinement: &Confinement, uid: Option<u32>, command: &mut Command) -> io::Result<Confine> {
        use std::os::unix::process::CommandExt;
        let user_namespace = match (confinement.isolation, uid) {
            (Isolation::Uid, Some(uid)) => {
                command.uid(uid).gid(uid);
                None
            }
            (Isolation::Uid, None) => return Err(io::Error::other("no uid for the guest")),
            (Isolation::UserNamespace, _) => {
                let uid = rustix::process::geteuid().as_raw();
                let gid = rustix::process::getegid().as_raw();
                Some((format!("{uid} {uid} 1"), format!("{gid} {gid} 1")))
            }
            (Isolation::None, _) => None,
        };
        let ruleset = confinement.landlock.map(landlock::ruleset).transpose()?;
        Ok(Confine { user_namespace, ruleset })
    }

    /// In the child: enters its user namespace, sets no_new_privs, enters
    /// its Landlock domain. Async-signal-safe.
    pub(super) fn apply(&self) -> io::Result<()> {
        if let Some((uid_map, gid_map)) = &self.user_namespace {
            // SAFETY: the forked child has one thread and its own
            // descriptor table; a new user namespace affects it alone.
            unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWUSER) }?;
            // An unprivileged process may map only its own ids, and its
            // gids only once setgroups is denied.
            write_file(c"/proc/self/uid_map", uid_map.as_bytes())?;
            write_file(c"/proc/self/setgroups", b"deny")?;
            write_file(c"/proc/self/gid_map", gid_map.as_bytes())?;
        }
        rustix::thread::set_no_new_privs(true)?;
        if let Some(ruleset) = &self.ruleset {
            landlock::restrict_self(ruleset.as_fd())?;
        }
        Ok(())
    }
}

/// Writes `bytes` to the file at `path` in one write.
fn write_file(path: &CStr, bytes: &[u8]) -> io::Result<()> {
    let fd = open(path, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())?;
    let written = rustix::io::write(&fd, bytes)?;
    if written == bytes.len() {
        Ok(())
    } else {
        Err(rustix::io::Errno::IO.into())
    }
}
