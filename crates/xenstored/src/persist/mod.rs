//! Crash recovery (`--persist DIR`): every acknowledged change is on disk
//! before its reply, or any watch event it causes, leaves the daemon.
//!
//! The engine lists what each request applied ([`xenstore_db::Applied`]);
//! the server appends each outcome's list here ([`Persist::append`])
//! between apply and reply, and before it writes anything to any
//! connection it calls [`Persist::sync`]: the requests of one loop
//! iteration are written as one journal record and made durable with one
//! `fdatasync` (group commit). A write or sync that fails stops the daemon:
//! it can no longer promise what it acknowledges.
//!
//! Files in `DIR` (formats: `journal.rs`, `snapshot.rs`):
//! - `journal.G`: the changes since snapshot generation `G`;
//! - `snapshot`: the state at the start of journal `G` (its header says
//!   `G`);
//! - `snapshot.tmp`: a snapshot being written;
//! - `journal.G.new`: a journal being created (its header written, then
//!   renamed to `journal.G`);
//! - `lock`: held (`flock`) while a daemon uses the directory.
//!
//! When journal `G` passes [`Persist::snapshot_bytes`], a snapshot is
//! taken, each step safe to crash after (`recover.rs` copes):
//! 1. journal `G` is synced (it always is when this runs);
//! 2. `journal.G+1` is created with its header (through
//!    `journal.G+1.new`), synced, and the
//!    directory synced: a crash now replays `G` then the empty `G+1`;
//! 3. the state is written to `snapshot.tmp` (generation `G+1`), synced,
//!    renamed to `snapshot`, and the directory synced: before the rename
//!    the old snapshot and both journals hold everything; after it, the new
//!    snapshot and `G+1` do;
//! 4. appends go to `journal.G+1`, and `journal.G` is removed (a crash
//!    before that leaves a journal below the snapshot's generation, which
//!    recovery removes).

mod codec;
mod journal;
mod recover;
mod snapshot;

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tracing::info;
use xenstore_db::{Applied, Config, Engine};

pub use recover::Recovery;

/// Journal bytes after which a snapshot is taken, unless told otherwise.
pub const DEFAULT_SNAPSHOT_BYTES: u64 = 64 << 20;

/// The open store directory: the journal being appended to and the group
/// of requests not yet written.
#[derive(Debug)]
pub struct Persist {
    dir: PathBuf,
    /// `journal.{generation}`, positioned at its end.
    file: File,
    generation: u64,
    /// Bytes in the journal file.
    journal_len: u64,
    /// The current group's payload: a request count (patched at the sync),
    /// then each request's entries.
    group: Vec<u8>,
    group_requests: u32,
    /// Journal bytes after which [`Persist::snapshot_due`] says so.
    pub snapshot_bytes: u64,
    /// What the syncs cost.
    pub stats: SyncStats,
    /// Held while this daemon uses the directory.
    _lock: nix::fcntl::Flock<File>,
}

/// What group commits cost, for the log and the benchmark.
#[derive(Debug, Clone, Copy, Default)]
pub struct SyncStats {
    /// Groups written and synced.
    pub syncs: u64,
    /// Requests in them.
    pub requests: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Time spent in write and `fdatasync`.
    pub time: Duration,
    /// The longest one.
    pub max: Duration,
    /// Snapshots taken.
    pub snapshots: u64,
}

/// Syncs a directory, so a file created or renamed in it stays.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("syncing the directory {}", dir.display()))
}

/// Creates `journal.{generation}` holding only its header, synced, with
/// its directory. The header is written to `journal.{generation}.new` and
/// renamed into place, so a crash at any point leaves either no journal
/// or a whole header: a kill between `open` and `write` used to leave an
/// empty `journal.G` that recovery then refused as corrupt (`recover.rs`
/// removes a leftover `.new`).
fn create_journal(dir: &Path, generation: u64) -> Result<File> {
    let path = recover::journal_path(dir, generation);
    let new = recover::new_journal_path(dir, generation);
    let mut file = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&new)
        .with_context(|| format!("creating {}", new.display()))?;
    file.write_all(&journal::header(generation)).with_context(|| format!("writing {}", new.display()))?;
    file.sync_all().with_context(|| format!("syncing {}", new.display()))?;
    fs::rename(&new, &path).with_context(|| format!("renaming {} to {}", new.display(), path.display()))?;
    sync_dir(dir)?;
    Ok(file)
}

impl Persist {
    /// Opens (creating it if missing) the store directory and rebuilds the
    /// engine from it (an engine with `config` when it is empty).
    pub fn open(dir: &Path, config: &Config) -> Result<(Persist, Engine, Recovery)> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let lock_path = dir.join("lock");
        let lock_file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        let lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| anyhow::anyhow!("{}: in use by another daemon ({e})", lock_path.display()))?;
        let (engine, generation, report) = recover::recover(dir, config)?;
        let path = recover::journal_path(dir, generation);
        let file = if path.exists() {
            fs::OpenOptions::new().append(true).open(&path).with_context(|| format!("opening {}", path.display()))?
        } else {
            create_journal(dir, generation)?
        };
        let journal_len = file.metadata()?.len();
        let persist = Persist {
            dir: dir.to_path_buf(),
            file,
            generation,
            journal_len,
            group: Vec::new(),
            group_requests: 0,
            snapshot_bytes: DEFAULT_SNAPSHOT_BYTES,
            stats: SyncStats::default(),
            _lock: lock,
        };
        Ok((persist, engine, report))
    }

    /// Adds one outcome's applied changes to the current group (nothing
    /// for an empty list).
    pub fn append(&mut self, applied: &[Applied]) {
        if applied.is_empty() {
            return;
        }
        if self.group.is_empty() {
            self.group.extend_from_slice(&[0; 4]);
        }
        codec::encode_request(applied, &mut self.group);
        self.group_requests += 1;
    }

    /// Whether changes wait to be written and synced: until they are, no
    /// connection may be written to.
    pub fn pending(&self) -> bool {
        self.group_requests > 0
    }

    /// Writes the current group as one record and `fdatasync`s it. An
    /// error is fatal to the daemon: the journal's tail is then unknown.
    pub fn sync(&mut self) -> Result<()> {
        if !self.pending() {
            return Ok(());
        }
        let started = Instant::now();
        self.group[..4].copy_from_slice(&self.group_requests.to_le_bytes());
        let mut record = Vec::with_capacity(self.group.len() + journal::RECORD_HEADER);
        journal::frame(&self.group, &mut record);
        let path = || recover::journal_path(&self.dir, self.generation).display().to_string();
        self.file.write_all(&record).with_context(|| format!("appending to {}", path()))?;
        self.file.sync_data().with_context(|| format!("syncing {}", path()))?;
        let took = started.elapsed();
        self.journal_len += record.len() as u64;
        self.stats.syncs += 1;
        self.stats.requests += u64::from(self.group_requests);
        self.stats.bytes += record.len() as u64;
        self.stats.time += took;
        self.stats.max = self.stats.max.max(took);
        self.group.clear();
        self.group_requests = 0;
        Ok(())
    }

    /// Whether the journal has grown past [`Persist::snapshot_bytes`].
    pub fn snapshot_due(&self) -> bool {
        self.journal_len > self.snapshot_bytes
    }

    /// Takes a snapshot of `engine` and starts the next journal (the
    /// protocol is in the module's docs). Syncs the current group first.
    pub fn snapshot(&mut self, engine: &Engine) -> Result<()> {
        self.sync()?;
        let started = Instant::now();
        let next = self.generation + 1;
        let file = create_journal(&self.dir, next)?;
        let bytes = snapshot::encode(engine, next).map_err(|e| anyhow::anyhow!("encoding the snapshot: {e}"))?;
        let tmp = self.dir.join("snapshot.tmp");
        {
            let mut f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
            f.write_all(&bytes).with_context(|| format!("writing {}", tmp.display()))?;
            f.sync_all().with_context(|| format!("syncing {}", tmp.display()))?;
        }
        fs::rename(&tmp, self.dir.join("snapshot")).context("renaming snapshot.tmp to snapshot")?;
        sync_dir(&self.dir)?;
        let old = recover::journal_path(&self.dir, self.generation);
        self.file = file;
        self.generation = next;
        self.journal_len = journal::HEADER_LEN as u64;
        fs::remove_file(&old).with_context(|| format!("removing {}", old.display()))?;
        self.stats.snapshots += 1;
        info!(
            generation = next,
            bytes = bytes.len(),
            ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "snapshot taken, journal restarted"
        );
        Ok(())
    }

    /// The generation of the journal being appended to.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use xenstore_wire::{Access, PermList};

    use super::*;

    fn write(path: &str, value: &str) -> Applied {
        Applied::Write {
            path: Arc::from(path),
            value: Arc::from(value.as_bytes()),
            perms: PermList::owned_by(0, Access::None),
        }
    }

    fn value(engine: &Engine, p: &str) -> Option<Vec<u8>> {
        engine.peek(p).map(|(v, _)| v.to_vec())
    }

    #[test]
    fn synced_groups_survive_a_reopen_and_unsynced_ones_do_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut p, _, _) = Persist::open(dir.path(), &Config::default()).expect("opens");
        p.append(&[write("/a", "1")]);
        p.append(&[write("/a/b", "2"), write("/c", "3")]);
        p.sync().expect("syncs");
        p.append(&[write("/d", "never synced")]);
        drop(p);
        let (_, engine, report) = Persist::open(dir.path(), &Config::default()).expect("reopens");
        assert_eq!(report.requests, 2);
        assert_eq!(value(&engine, "/a/b"), Some(b"2".to_vec()));
        assert_eq!(value(&engine, "/d"), None);
    }

    #[test]
    fn a_torn_tail_is_truncated_and_appending_continues_after_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut p, _, _) = Persist::open(dir.path(), &Config::default()).expect("opens");
        p.append(&[write("/a", "1")]);
        p.sync().expect("syncs");
        p.append(&[write("/b", "2")]);
        p.sync().expect("syncs");
        drop(p);
        let path = recover::journal_path(dir.path(), 1);
        let len = fs::metadata(&path).expect("journal").len();
        let f = fs::OpenOptions::new().write(true).open(&path).expect("opens");
        f.set_len(len - 3).expect("cuts");
        drop(f);
        let (mut p, engine, report) = Persist::open(dir.path(), &Config::default()).expect("torn tail accepted");
        assert!(report.truncated > 0);
        assert_eq!((value(&engine, "/a"), value(&engine, "/b")), (Some(b"1".to_vec()), None));
        p.append(&[write("/c", "3")]);
        p.sync().expect("syncs");
        drop(p);
        let (_, engine, report) = Persist::open(dir.path(), &Config::default()).expect("reopens");
        assert_eq!(report.truncated, 0);
        assert_eq!(value(&engine, "/c"), Some(b"3".to_vec()));
    }

    #[test]
    fn a_corrupt_record_before_sound_ones_refuses_to_start_naming_file_and_offset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut p, _, _) = Persist::open(dir.path(), &Config::default()).expect("opens");
        for (k, v) in [("/a", "1"), ("/b", "2"), ("/c", "3")] {
            p.append(&[write(k, v)]);
            p.sync().expect("syncs");
        }
        drop(p);
        let path = recover::journal_path(dir.path(), 1);
        let mut bytes = fs::read(&path).expect("reads");
        let at = journal::HEADER_LEN + journal::RECORD_HEADER + 2;
        bytes[at] ^= 0x20;
        fs::write(&path, &bytes).expect("writes");
        let e = Persist::open(dir.path(), &Config::default()).expect_err("refused").to_string();
        assert!(e.contains("journal.1") && e.contains("offset 16"), "{e}");
    }

    #[test]
    fn snapshots_restart_the_journal_and_recovery_reads_both() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut p, mut engine, _) = Persist::open(dir.path(), &Config::default()).expect("opens");
        p.snapshot_bytes = 200;
        let dom0 = engine.connect(xenstore_db::Caller::DOM0);
        for i in 0..50 {
            let (k, v) = (format!("/k{}", i % 7), format!("{i}"));
            let out = engine.handle(dom0, 0, &xenstore_wire::Request::Write { path: &k, value: v.as_bytes() });
            p.append(&out.applied);
            p.sync().expect("syncs");
            if p.snapshot_due() {
                p.snapshot(&engine).expect("snapshot");
            }
        }
        assert!(p.stats.snapshots > 2, "{:?}", p.stats);
        let generation = p.generation();
        drop(p);
        // One journal left: the snapshot's.
        let journals: Vec<_> = fs::read_dir(dir.path())
            .expect("lists")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("journal."))
            .collect();
        assert_eq!(journals, [format!("journal.{generation}")]);
        let (_, back, report) = Persist::open(dir.path(), &Config::default()).expect("reopens");
        assert_eq!(report.snapshot, Some(generation));
        assert_eq!(back.export().nodes, engine.export().nodes);
    }

    /// A kill while the next journal is being created (CI caught one
    /// between `open` and `write`: an empty `journal.G` that recovery
    /// refused as "not a journal"): whatever part of the header reached
    /// the disk, the daemon starts with everything it acknowledged.
    #[test]
    fn a_journal_creation_cut_short_is_removed_and_recovery_starts() {
        let header = journal::header(2);
        for cut in [0, 5, journal::HEADER_LEN] {
            let dir = tempfile::tempdir().expect("tempdir");
            let (mut p, _, _) = Persist::open(dir.path(), &Config::default()).expect("opens");
            p.append(&[write("/a", "1")]);
            p.sync().expect("syncs");
            drop(p);
            let new = recover::new_journal_path(dir.path(), 2);
            fs::write(&new, &header[..cut]).expect("writes");
            let (mut p, engine, _) = Persist::open(dir.path(), &Config::default())
                .unwrap_or_else(|e| panic!("a header cut at {cut} bytes: {e:#}"));
            assert_eq!(value(&engine, "/a"), Some(b"1".to_vec()));
            assert!(!new.exists(), "the unfinished journal stays");
            p.append(&[write("/b", "2")]);
            p.sync().expect("syncs");
            drop(p);
            let (_, engine, _) = Persist::open(dir.path(), &Config::default()).expect("reopens");
            assert_eq!(value(&engine, "/b"), Some(b"2".to_vec()));
        }
    }

    #[test]
    fn a_second_daemon_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _first = Persist::open(dir.path(), &Config::default()).expect("opens");
        let e = Persist::open(dir.path(), &Config::default()).expect_err("refused").to_string();
        assert!(e.contains("in use"), "{e}");
    }
}
