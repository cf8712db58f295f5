//! A reproducible test pattern: the bytes of each sector are a function
//! of a seed and the sector's number, so a write with one seed can be
//! verified by a later reader (another process, another domain) that
//! knows only the seed and the range.

use crate::abi::SECTOR_SIZE;

/// The pattern's bytes for `count` sectors from `sector`.
pub fn pattern(seed: u64, sector: u64, count: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(usize::try_from(count * SECTOR_SIZE).unwrap_or(0));
    for s in sector..sector + count {
        // splitmix64 over (seed, sector, word): cheap and well mixed.
        let mut state = seed ^ s.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for _ in 0..SECTOR_SIZE / 8 {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
    }
    out
}

/// The first sector (from `sector`) whose bytes in `data` differ from
/// the pattern, if any.
pub fn first_mismatch(seed: u64, sector: u64, data: &[u8]) -> Option<u64> {
    let expected = pattern(seed, sector, data.len() as u64 / SECTOR_SIZE);
    let size = usize::try_from(SECTOR_SIZE).unwrap_or(512);
    data.chunks(size).zip(expected.chunks(size)).position(|(a, b)| a != b).map(|i| sector + i as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_depends_on_seed_and_sector_only() {
        let whole = pattern(7, 10, 4);
        assert_eq!(whole.len(), 4 * 512);
        assert_eq!(&whole[512..1024], &pattern(7, 11, 1)[..]);
        assert_ne!(pattern(7, 10, 1), pattern(8, 10, 1));
        assert_eq!(first_mismatch(7, 10, &whole), None);
        let mut bad = whole;
        bad[3 * 512] ^= 1;
        assert_eq!(first_mismatch(7, 10, &bad), Some(13));
    }
}
