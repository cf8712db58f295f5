//! The journal file: a header, then checksummed records appended one per
//! group commit.
//!
//! ```text
//! header:  "XSJOURN1" (8 bytes), generation (u64 LE)
//! record:  length (u32 LE, of the payload), crc32 (u32 LE, of the payload), payload
//! ```
//!
//! A record's payload is [`super::codec`]'s: the requests of one loop
//! iteration, each with its entries, written with one `write` and made
//! durable with one `fdatasync` before any of their replies leaves.
//!
//! Reading ([`scan`]) stops at the first record that is not whole and
//! sound. What follows decides what it was:
//! - a **torn tail**: the record runs past the end of the file, or it is
//!   bad and no sound record follows it. A crash during the last group's
//!   write (or power lost before its `fdatasync`) leaves exactly that; the
//!   group was never acknowledged, so the file is truncated before it
//!   (logged) and the daemon starts;
//! - **corruption**: a bad record followed by a sound one. Something
//!   changed bytes that were synced and acknowledged: the daemon refuses
//!   to start, naming the file and the offset.
//!
//! An empty payload is never written, so a zero-filled tail (a file
//! extended but not written when the power went) reads as torn, not as
//! empty records.

use std::fmt;

/// The journal's magic.
pub(crate) const MAGIC: &[u8; 8] = b"XSJOURN1";
/// Header bytes: magic and generation.
pub(crate) const HEADER_LEN: usize = 16;
/// Record header bytes: length and checksum.
pub(crate) const RECORD_HEADER: usize = 8;
/// The largest payload accepted: one commit of the biggest transaction
/// (65536 nodes of 4 KiB) fits, a garbage length is refused before
/// anything is allocated.
pub(crate) const MAX_PAYLOAD: usize = 1 << 30;

/// A journal's header bytes.
pub(crate) fn header(generation: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..].copy_from_slice(&generation.to_le_bytes());
    h
}

/// Appends one framed record holding `payload`.
pub(crate) fn frame(payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// What reading a journal found.
#[derive(Debug)]
pub(crate) struct Scan<'a> {
    /// The generation in its header.
    pub(crate) generation: u64,
    /// Each sound record: its offset in the file and its payload.
    pub(crate) records: Vec<(usize, &'a [u8])>,
    /// Where the sound records end: the file's length, or where a torn
    /// tail starts.
    pub(crate) end: usize,
    /// Why the tail is torn, if it is.
    pub(crate) torn: Option<String>,
}

/// Why a journal cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Corrupt {
    /// Offset of the bad bytes.
    pub(crate) offset: usize,
    /// What is wrong.
    pub(crate) what: String,
}

impl fmt::Display for Corrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at offset {}: {}", self.offset, self.what)
    }
}

/// The record at `at`: `Ok(Some((payload, next)))` when whole and sound,
/// `Ok(None)` when it runs past the end, `Err(why)` when it is bad.
fn record_at(bytes: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, String> {
    let Some(head) = bytes.get(at..at + RECORD_HEADER) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if len == 0 || len > MAX_PAYLOAD {
        return Err(format!("record length {len}"));
    }
    let start = at + RECORD_HEADER;
    let Some(payload) = bytes.get(start..start + len) else {
        return Ok(None);
    };
    if crc32fast::hash(payload) != crc {
        return Err("checksum mismatch".into());
    }
    Ok(Some((payload, start + len)))
}

/// Reads a journal's bytes (see the module's docs for torn tails and
/// corruption). A bad header is corruption: the header is synced when the
/// file is created, before anything is appended.
pub(crate) fn scan(bytes: &[u8]) -> Result<Scan<'_>, Corrupt> {
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
        return Err(Corrupt { offset: 0, what: "not a journal (bad header)".into() });
    }
    let mut g = [0u8; 8];
    g.copy_from_slice(&bytes[8..HEADER_LEN]);
    let mut scan = Scan { generation: u64::from_le_bytes(g), records: Vec::new(), end: HEADER_LEN, torn: None };
    let mut at = HEADER_LEN;
    while at < bytes.len() {
        match record_at(bytes, at) {
            Ok(Some((payload, next))) => {
                scan.records.push((at, payload));
                at = next;
            }
            Ok(None) => {
                scan.torn = Some(format!("incomplete record at offset {at} ({} bytes)", bytes.len() - at));
                break;
            }
            Err(why) => {
                // Bad: torn unless a sound record follows where its length
                // says the next one starts.
                let head = &bytes[at..at + RECORD_HEADER];
                let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
                let next = at.saturating_add(RECORD_HEADER).saturating_add(len);
                if len > 0 && len <= MAX_PAYLOAD && matches!(record_at(bytes, next), Ok(Some(_))) {
                    return Err(Corrupt {
                        offset: at,
                        what: format!("{why} in a record followed by sound ones (not a torn tail)"),
                    });
                }
                scan.torn = Some(format!("{why} at offset {at} ({} bytes to the end)", bytes.len() - at));
                break;
            }
        }
    }
    scan.end = at;
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = header(3).to_vec();
        for p in payloads {
            frame(p, &mut out);
        }
        out
    }

    #[test]
    fn sound_records_are_read_in_order() {
        let bytes = journal(&[b"one", b"two"]);
        let scan = scan(&bytes).expect("sound");
        assert_eq!(scan.generation, 3);
        let payloads: Vec<&[u8]> = scan.records.iter().map(|(_, p)| *p).collect();
        assert_eq!(payloads, [&b"one"[..], b"two"]);
        assert_eq!((scan.end, scan.torn), (bytes.len(), None));
    }

    #[test]
    fn a_tail_cut_anywhere_in_the_last_record_is_torn_at_its_start() {
        let bytes = journal(&[b"one", b"second record"]);
        let second = HEADER_LEN + RECORD_HEADER + 3;
        for cut in second + 1..bytes.len() {
            let scan = scan(&bytes[..cut]).expect("torn, not corrupt");
            assert_eq!((scan.records.len(), scan.end), (1, second), "cut at {cut}");
            assert!(scan.torn.is_some());
        }
    }

    #[test]
    fn a_garbled_or_zero_filled_last_record_is_torn() {
        let mut bytes = journal(&[b"one", b"second record"]);
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        let s = scan(&bytes).expect("torn");
        assert_eq!(s.records.len(), 1);
        assert!(s.torn.as_deref().is_some_and(|t| t.contains("checksum")), "{:?}", s.torn);
        let mut zeros = journal(&[b"one"]);
        zeros.extend_from_slice(&[0u8; 100]);
        let s = scan(&zeros).expect("torn");
        assert_eq!((s.records.len(), s.end), (1, HEADER_LEN + RECORD_HEADER + 3));
    }

    #[test]
    fn a_corrupt_record_followed_by_a_sound_one_is_refused_with_its_offset() {
        let mut bytes = journal(&[b"one", b"two", b"three"]);
        let second = HEADER_LEN + RECORD_HEADER + 3;
        bytes[second + RECORD_HEADER] ^= 0x01;
        let e = scan(&bytes).expect_err("corrupt");
        assert_eq!(e.offset, second);
        assert!(e.what.contains("checksum"), "{e}");
    }

    #[test]
    fn a_bad_header_is_refused() {
        assert_eq!(scan(b"XSJOURN0\0\0\0\0\0\0\0\0").map(|s| s.end).map_err(|e| e.offset), Err(0));
        assert!(scan(b"short").is_err());
    }
}
