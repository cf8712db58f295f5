//! The snapshot file: the persistent state at the start of one journal
//! generation, as a Xen migration stream.
//!
//! ```text
//! "XSSNAPS1" (8 bytes), generation (u64 LE), one record framed as the
//! journal's (length, crc32, payload)
//! ```
//!
//! The payload is [`xenstore_migration::daemon::encode`] of the engine's
//! state without what does not survive a crash: no socket connections, no
//! watches, no open transactions. A domain's ring connection stays (with
//! no transport): the introduced domain keeps its record, and the daemon
//! attaches the ring again after recovery. Generations, owned counts and
//! the order of children are carried exactly, so permission staleness is
//! the original's.
//!
//! `generation` says which journal continues it: the snapshot holds
//! everything of the journals before it.

use xenstore_db::state::EngineState;
use xenstore_db::Engine;
use xenstore_migration::daemon::{self, DaemonState};

use super::journal::{self, Corrupt, RECORD_HEADER};

/// The snapshot's magic.
pub(crate) const MAGIC: &[u8; 8] = b"XSSNAPS1";

/// The engine's persistent state: its export without socket connections,
/// watches and transactions.
pub(crate) fn persistent_state(engine: &Engine) -> EngineState {
    let mut state = engine.export();
    let rings: std::collections::BTreeSet<_> = state.domains.iter().filter_map(|d| d.ring_conn).collect();
    state.conns.retain(|c| rings.contains(&c.id));
    for c in &mut state.conns {
        c.watches.clear();
        c.transactions.clear();
    }
    state.watches.clear();
    state.transactions.clear();
    state
}

/// The bytes of a snapshot of `engine` continued by journal `generation`.
pub(crate) fn encode(engine: &Engine, generation: u64) -> Result<Vec<u8>, xenstore_migration::Error> {
    let stream = daemon::encode(&DaemonState {
        engine: persistent_state(engine),
        global: None,
        conns: Vec::new(),
        daemon: None,
    })?;
    let mut out = Vec::with_capacity(stream.len() + 24);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&generation.to_le_bytes());
    journal::frame(&stream, &mut out);
    Ok(out)
}

/// Reads a snapshot: its generation and the engine state. Anything wrong
/// is corruption (a snapshot is synced whole before it is renamed into
/// place), with the offset of the bad bytes.
pub(crate) fn decode(bytes: &[u8]) -> Result<(u64, Engine), Corrupt> {
    let corrupt = |offset: usize, what: String| Corrupt { offset, what };
    if bytes.len() < 16 + RECORD_HEADER || &bytes[..8] != MAGIC {
        return Err(corrupt(0, "not a snapshot (bad header)".into()));
    }
    let mut g = [0u8; 8];
    g.copy_from_slice(&bytes[8..16]);
    let generation = u64::from_le_bytes(g);
    let head = &bytes[16..16 + RECORD_HEADER];
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    let start = 16 + RECORD_HEADER;
    if start.checked_add(len) != Some(bytes.len()) {
        return Err(corrupt(16, format!("record length {len}, but {} bytes follow", bytes.len() - start)));
    }
    let payload = &bytes[start..];
    if crc32fast::hash(payload) != crc {
        return Err(corrupt(16, "checksum mismatch".into()));
    }
    let state = daemon::decode(payload).map_err(|e| corrupt(start, format!("migration stream: {e}")))?;
    let engine = Engine::import(state.engine).map_err(|e| corrupt(start, format!("state refused: {e:?}")))?;
    Ok((generation, engine))
}

#[cfg(test)]
mod tests {
    use xenstore_db::Caller;
    use xenstore_wire::Request;

    use super::*;

    #[test]
    fn a_snapshot_round_trips_the_store_without_connections() {
        let mut engine = Engine::default();
        let dom0 = engine.connect(Caller::DOM0);
        for (p, v) in [("/a", "1"), ("/a/b", "2"), ("/c", "3")] {
            assert!(engine.handle(dom0, 0, &Request::Write { path: p, value: v.as_bytes() }).reply.is_ok());
        }
        assert!(engine.handle(dom0, 0, &Request::Introduce { domid: 5, gfn: 9, port: 3 }).reply.is_ok());
        assert!(engine.handle(dom0, 0, &Request::Watch { path: "/a", token: b"t", depth: None }).reply.is_ok());
        let bytes = encode(&engine, 7).expect("encodes");
        let (generation, back) = decode(&bytes).expect("decodes");
        assert_eq!(generation, 7);
        assert_eq!(back.export().nodes, engine.export().nodes);
        assert_eq!(back.introduced(5), Some((9, 3)));
        assert_eq!((back.watch_count(), back.caller(dom0)), (0, None));
    }

    #[test]
    fn a_flipped_byte_is_refused_with_its_offset() {
        let bytes = encode(&Engine::default(), 1).expect("encodes");
        for at in [0, 20, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x40;
            assert!(decode(&bad).is_err(), "flip at {at}");
        }
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
