//! Forking guests from a thread with a descriptor table of its own.
//!
//! `fork` copies the caller's descriptor table, and the child then
//! closes every descriptor it must not keep ([`spawn_paused`]): both cost
//! one step per open descriptor. The hypervisor holds several per domain
//! (a pidfd, a socket, the store page, event channels), so forking from
//! its loop made creating the 10,000th domain cost far more than the
//! 10th. This thread unshares its descriptor table at start and keeps it
//! nearly empty; a guest forked from it inherits only what it needs, and
//! the descriptors the loop needs (the guest's pidfd and the hypervisor's
//! end of its socket) come back over a socket pair as `SCM_RIGHTS`.
//!
//! The guest is still this process's child (a thread's children are its
//! process's), so the loop waits for it and reaps it as before.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::mpsc;

use rustix::io::Errno;
use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
use rustix::thread::UnshareFlags;
use serde::{Deserialize, Serialize};

use super::isolation::Confinement;
use super::namespaces::Handed;
use super::spawn::{close_all_but, spawn_paused, Spawned};
use crate::hosted::protocol::{encode, recv_record, send_record, Received};
use crate::{DomId, DomainConfig};

/// One guest to start, as [`spawn_paused`] takes it.
#[derive(Debug)]
struct Job {
    config: DomainConfig,
    domid: DomId,
    console: PathBuf,
    confinement: Confinement,
    uid: Option<u32>,
}

/// What the thread answers: the pid (with the pidfd and the socket as
/// descriptors), or the errno of the failure.
#[derive(Debug, Serialize, Deserialize)]
enum Outcome {
    Started { pid: u32 },
    Failed { errno: i32, message: String },
}

/// The spawning thread: jobs go in over a channel, results come back over
/// a socket pair (the only way a descriptor crosses between tables).
#[derive(Debug)]
pub(super) struct Spawner {
    jobs: mpsc::Sender<Job>,
    results: OwnedFd,
}

impl Spawner {
    /// Starts the thread; its descriptor table is unshared and emptied
    /// before the first job.
    pub(super) fn start() -> io::Result<Spawner> {
        let (results, theirs) = socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?;
        let (jobs, incoming) = mpsc::channel::<Job>();
        std::thread::Builder::new().name("xsim-spawner".into()).spawn(move || serve(&theirs, &incoming))?;
        Ok(Spawner { jobs, results })
    }

    /// [`spawn_paused`] on the thread, without handed descriptors.
    pub(super) fn spawn(
        &self,
        config: &DomainConfig,
        domid: DomId,
        console: PathBuf,
        confinement: Confinement,
        uid: Option<u32>,
    ) -> io::Result<Spawned> {
        let job = Job { config: config.clone(), domid, console, confinement, uid };
        self.jobs.send(job).map_err(|_| io::Error::other("the spawner thread is gone"))?;
        let Received::Record { payload, fds, .. } = recv_record(self.results.as_fd(), false)? else {
            return Err(io::Error::other("the spawner thread is gone"));
        };
        let outcome: Outcome = serde_json::from_slice(&payload).map_err(io::Error::other)?;
        match outcome {
            Outcome::Started { pid } => {
                let [pidfd, socket]: [OwnedFd; 2] =
                    fds.try_into().map_err(|_| io::Error::other("the spawner sent the wrong descriptors"))?;
                Ok(Spawned { pidfd, socket, pid })
            }
            Outcome::Failed { errno, message } => {
                let e = io::Error::from_raw_os_error(errno);
                Err(io::Error::new(e.kind(), format!("{message}: {e}")))
            }
        }
    }
}

/// The thread's loop: a private, emptied descriptor table, then one job
/// at a time until the hypervisor drops its [`Spawner`].
fn serve(results: &OwnedFd, jobs: &mpsc::Receiver<Job>) {
    let private = private_table(results);
    for job in jobs {
        let outcome = match &private {
            Ok(()) => spawn_paused(&job.config, job.domid, &job.console, &job.confinement, job.uid, Handed::default()),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        };
        let (outcome, fds) = match outcome {
            Ok(Spawned { pidfd, socket, pid }) => (Outcome::Started { pid }, vec![pidfd, socket]),
            Err(e) => (
                Outcome::Failed {
                    errno: e.raw_os_error().unwrap_or(Errno::INVAL.raw_os_error()),
                    message: e.to_string(),
                },
                Vec::new(),
            ),
        };
        // The descriptors are copies for the loop: ours close when the
        // record is dropped.
        let sent = encode(&outcome, fds)
            .and_then(|records| records.iter().try_for_each(|record| send_record(results.as_fd(), record, false)));
        if sent.is_err() {
            return;
        }
    }
}

/// Gives this thread a descriptor table of its own and closes in it every
/// descriptor but stdio and `keep`.
fn private_table(keep: &OwnedFd) -> io::Result<()> {
    // SAFETY: unsharing the descriptor table affects this thread alone;
    // every descriptor this thread's code owns (`keep`) keeps its number
    // in the copy, and those closed next are other threads' copies, which
    // no code on this thread uses.
    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::FILES) }?;
    let kept = u32::try_from(keep.as_raw_fd()).map_err(|_| Errno::BADF)?;
    close_all_but(&[kept])
}
