//! Recovery: the latest snapshot, then the journals that continue it.
//!
//! With `S` the snapshot's generation (1 without a snapshot, onto a new
//! engine): journals below `S` and a `snapshot.tmp` are leftovers of a
//! snapshot interrupted after its rename or before it, and are removed,
//! as is a `journal.G.new` (a journal's creation interrupted before its
//! header was renamed into place);
//! journals `S`, `S+1`, ... are replayed in order while they exist. Only
//! the last may end in a torn tail (a journal is synced before the next is
//! created), which is truncated away. Anything else wrong refuses to start
//! with the file and the offset.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tracing::{info, warn};
use xenstore_db::{Config, Engine};

use super::{codec, journal, snapshot, sync_dir};

/// What recovery found, for the log and the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// The snapshot's generation, if there was one.
    pub snapshot: Option<u64>,
    /// Journals replayed.
    pub journals: usize,
    /// Requests replayed from them.
    pub requests: usize,
    /// Bytes of torn tail truncated away.
    pub truncated: u64,
}

/// The journal file of a generation.
pub(crate) fn journal_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("journal.{generation}"))
}

/// Where a journal's header is written before it is renamed to
/// [`journal_path`].
pub(crate) fn new_journal_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("journal.{generation}.new"))
}

/// Removes journals whose creation was interrupted (`journal.G.new`):
/// nothing was ever appended to them.
fn remove_unfinished_journals(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        let unfinished = name
            .to_str()
            .and_then(|n| n.strip_prefix("journal.")?.strip_suffix(".new"))
            .is_some_and(|g| g.parse::<u64>().is_ok());
        if unfinished {
            let path = entry.path();
            warn!("{}: an interrupted journal creation, removed", path.display());
            fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}

/// The generations of the journals in `dir`.
fn journal_generations(dir: &Path) -> Result<Vec<u64>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        if let Some(g) = name.to_str().and_then(|n| n.strip_prefix("journal.")).and_then(|g| g.parse::<u64>().ok()) {
            found.push(g);
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// Rebuilds the engine from `dir`. Returns it, the generation of the
/// journal to append to (its file truncated to its sound records, or
/// missing), and what was found.
pub(crate) fn recover(dir: &Path, config: &Config) -> Result<(Engine, u64, Recovery)> {
    let mut report = Recovery::default();
    let tmp = dir.join("snapshot.tmp");
    if tmp.exists() {
        warn!("{}: an interrupted snapshot, removed", tmp.display());
        fs::remove_file(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    remove_unfinished_journals(dir)?;
    let snap = dir.join("snapshot");
    let (start, mut engine) = match fs::read(&snap) {
        Ok(bytes) => {
            let (generation, engine) =
                snapshot::decode(&bytes).map_err(|e| anyhow::anyhow!("{}: corrupt snapshot {e}", snap.display()))?;
            report.snapshot = Some(generation);
            (generation, engine)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (1, Engine::new(config.clone())),
        Err(e) => return Err(e).with_context(|| format!("reading {}", snap.display())),
    };
    let generations = journal_generations(dir)?;
    for &g in generations.iter().filter(|g| **g < start) {
        let old = journal_path(dir, g);
        info!("{}: already in the snapshot, removed", old.display());
        fs::remove_file(&old).with_context(|| format!("removing {}", old.display()))?;
    }
    let mut current = start;
    let mut g = start;
    loop {
        let path = journal_path(dir, g);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let scan = journal::scan(&bytes).map_err(|e| anyhow::anyhow!("{}: corrupt journal {e}", path.display()))?;
        if scan.generation != g {
            bail!("{}: corrupt journal at offset 8: its header says generation {}", path.display(), scan.generation);
        }
        for (offset, payload) in &scan.records {
            let requests = codec::decode_payload(payload).map_err(|e| {
                anyhow::anyhow!(
                    "{}: corrupt journal at offset {}: {}",
                    path.display(),
                    offset + journal::RECORD_HEADER + e.offset,
                    e.what
                )
            })?;
            for (i, request) in requests.iter().enumerate() {
                for entry in request {
                    engine.replay(entry).map_err(|e| {
                        anyhow::anyhow!(
                            "{}: the record at offset {offset} (request {i}) does not fit the store: {e}",
                            path.display()
                        )
                    })?;
                }
                report.requests += 1;
            }
        }
        report.journals += 1;
        current = g;
        let next_exists = journal_path(dir, g + 1).exists();
        if let Some(why) = &scan.torn {
            if next_exists {
                bail!("{}: corrupt journal: {why}, yet a later journal exists", path.display());
            }
            let keep = scan.end as u64;
            report.truncated = bytes.len() as u64 - keep;
            warn!("{}: torn tail truncated ({why}): a write that was never acknowledged", path.display());
            let file = fs::OpenOptions::new().write(true).open(&path)?;
            file.set_len(keep).with_context(|| format!("truncating {}", path.display()))?;
            file.sync_all()?;
        }
        if !next_exists {
            break;
        }
        g += 1;
    }
    sync_dir(dir)?;
    Ok((engine, current, report))
}
