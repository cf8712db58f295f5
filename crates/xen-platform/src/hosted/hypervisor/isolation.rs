//! How guests are kept from dom0 and from each other, decided once when
//! the hypervisor starts and said in its log and by `xsim up`.
//!
//! A guest must not reach dom0's sockets (xenstored's, the hypervisor's:
//! both would make it privileged), nor another domain's pages (memfds a
//! process holds, reachable through `/proc/PID/fd` and `/proc/PID/mem`),
//! nor signal dom0's daemons. In layers:
//!
//! - [`Isolation::Uid`] (the hypervisor runs as root): each guest runs
//!   as a user of its own, with no supplementary groups, from a range of
//!   uids this hypervisor holds alone (see [`super::uid_range`]).
//!   The sockets are the owner's alone (mode 0600), and the kernel
//!   refuses a guest `/proc/PID` access to and signals for any process
//!   not of its user. On destroy, every process left with that uid is
//!   killed, so that the next domain with the same id finds none.
//! - [`Isolation::UserNamespace`] (not root): guests run as the caller's
//!   user, each in a user namespace of its own (mapping that user to
//!   itself). It is the mark dom0's sockets check ([`crate::hosted::peer`]):
//!   a guest cannot leave its namespace, so every connection it or its
//!   descendants make is refused. dom0's daemons make themselves
//!   non-dumpable, which keeps a same-user guest out of their
//!   `/proc/PID` files.
//! - Landlock, in either mode when the kernel has it (see
//!   [`super::landlock`]): each guest in a domain of its own, which keeps
//!   it out of every other process's `/proc/PID` files (a sibling guest's
//!   included, which nothing else does for a same-user guest), and from
//!   ABI 6 scopes its signals and abstract sockets.
//! - [`Isolation::None`]: no user namespaces for this user; only the
//!   sockets' permissions and Landlock, said as a warning.
//!
//! Every guest also runs with no_new_privs (set-user-id programs do not
//! raise its privileges), which Landlock requires anyway.

use std::fmt;
use std::str::FromStr;

/// What separates a guest from dom0 and its siblings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// A uid per guest (needs root).
    Uid,
    /// The caller's uid, a user namespace per guest.
    UserNamespace,
    /// The caller's uid and namespace: nothing beyond Landlock.
    None,
}

impl Isolation {
    /// The strongest this process can have: a uid per guest as root, else
    /// user namespaces where the kernel lets this user make them.
    /// As root, a uid per guest needs the guest programs to be reachable
    /// by other users: when the directories above this executable (where
    /// `xsim-guest` and the tools are) are not, as under `/root` (mode
    /// 0700), user namespaces are the strongest that still runs them.
    pub fn strongest() -> Isolation {
        if rustix::process::geteuid().is_root() && programs_reachable_by_other_users() {
            Isolation::Uid
        } else if super::helper::can_unshare_user() {
            Isolation::UserNamespace
        } else {
            Isolation::None
        }
    }

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Isolation::Uid => "uid",
            Isolation::UserNamespace => "userns",
            Isolation::None => "none",
        }
    }
}

/// Whether another user could run the programs beside this executable:
/// every directory from `/` down to it searchable by others.
pub fn programs_reachable_by_other_users() -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Ok(exe) = std::env::current_exe() else { return false };
    exe.ancestors().skip(1).all(|dir| std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

impl FromStr for Isolation {
    type Err = String;

    fn from_str(name: &str) -> Result<Isolation, String> {
        match name {
            "uid" => Ok(Isolation::Uid),
            "userns" => Ok(Isolation::UserNamespace),
            "none" => Ok(Isolation::None),
            _ => Err(format!("unknown isolation {name:?} (uid, userns or none)")),
        }
    }
}

/// The isolation in force and what the kernel adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confinement {
    /// How guests are told apart from dom0.
    pub isolation: Isolation,
    /// The kernel's Landlock ABI, if it has Landlock.
    pub landlock: Option<u32>,
}

impl Confinement {
    /// The strongest confinement available here.
    pub fn strongest() -> Confinement {
        Confinement::with(Isolation::strongest())
    }

    /// `isolation`, with Landlock if the kernel has it ([`Confinement::check`]
    /// says whether this process can carry it out).
    pub fn with(isolation: Isolation) -> Confinement {
        Confinement { isolation, landlock: super::landlock::abi() }
    }

    /// Whether this process can carry it out: an error rather than a
    /// weaker confinement than was asked for.
    pub fn check(&self) -> Result<(), String> {
        match self.isolation {
            Isolation::Uid if !rustix::process::geteuid().is_root() => {
                Err("a uid per guest needs the hypervisor to run as root".into())
            }
            Isolation::UserNamespace if !super::helper::can_unshare_user() => {
                Err("this user cannot make user namespaces (see /proc/sys/user/max_user_namespaces)".into())
            }
            _ => Ok(()),
        }
    }
}

/// One paragraph for a log or `xsim up`: what is in force, and, as a
/// warning, what is not.
impl fmt::Display for Confinement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.isolation {
            Isolation::Uid => f.write_str(
                "each guest runs as a user of its own: dom0's sockets, other domains' /proc files \
                 and signals to them are refused by the kernel",
            )?,
            Isolation::UserNamespace => f.write_str(
                "guests run as this user, each in a user namespace of its own: dom0's sockets refuse \
                 them (peer credentials), dom0's daemons are not dumpable",
            )?,
            Isolation::None => f.write_str(
                "WARNING: guests run as this user in its namespaces: dom0's sockets cannot tell them \
                 from dom0 and accept them",
            )?,
        }
        match self.landlock {
            Some(abi) if abi >= 6 => write!(
                f,
                "; Landlock ABI {abi}: a guest cannot open another domain's /proc/PID files (fd, mem) \
                 nor ptrace, signal or reach the abstract sockets of a process outside it"
            ),
            Some(abi) => write!(
                f,
                "; Landlock ABI {abi}: a guest cannot open another domain's /proc/PID files (fd, mem) \
                 nor ptrace it (signals are not scoped before ABI 6)"
            ),
            None if self.isolation == Isolation::Uid => f.write_str("; no Landlock"),
            None => f.write_str(
                "; WARNING: no Landlock: guests can open each other's /proc/PID/fd, and so each \
                 other's pages, and signal dom0's processes",
            ),
        }
    }
}
