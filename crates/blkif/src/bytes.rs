//! Native-order fields at fixed offsets of a message's bytes, as the C
//! compiler lays out the structs of `blkif.h`. Callers pass offsets that
//! lie inside the message; the ring hands them buffers of the message's
//! `SIZE`, so an offset outside is a bug here, not a peer's doing.

pub(crate) fn get_u8(bytes: &[u8], at: usize) -> u8 {
    bytes[at]
}

pub(crate) fn get_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([bytes[at], bytes[at + 1]])
}

pub(crate) fn get_u32(bytes: &[u8], at: usize) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&bytes[at..at + 4]);
    u32::from_ne_bytes(raw)
}

pub(crate) fn get_u64(bytes: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[at..at + 8]);
    u64::from_ne_bytes(raw)
}

pub(crate) fn put(out: &mut [u8], at: usize, value: &[u8]) {
    out[at..at + value.len()].copy_from_slice(value);
}
