//! Short byte strings held inline, longer ones shared: the storage of a
//! node's value and of a child's leaf name.
//!
//! A store of a million nodes is mostly short values ("1", "online",
//! "1048576", "") under short names ("state", "feature-sg"). Giving each
//! its own reference-counted allocation cost 32 bytes of heap apiece (a
//! 16-byte header and the bytes, rounded up to the allocator's size
//! class) on top of a 16-byte fat pointer. [`SmallBytes`] is 16 bytes: up
//! to [`INLINE_MAX`] bytes live in it, and a longer string is one shared
//! allocation behind a thin pointer (a count, the length, the bytes), so
//! cloning a node never copies a long value.
//!
//! The type is 16 bytes because the inline length is an enum of 16
//! values: its spare values tag the shared case, whose pointer sits in
//! the second half (checked by a test).

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use triomphe::ThinArc;

/// The longest string held inline.
pub const INLINE_MAX: usize = 15;

/// Bytes a longer string costs besides itself: its allocation's count and
/// length.
pub const SHARED_HEADER: usize = 2 * std::mem::size_of::<usize>();

/// Bytes, inline up to [`INLINE_MAX`], else shared.
#[derive(Clone)]
pub struct SmallBytes(Repr);

#[derive(Clone)]
enum Repr {
    Inline(Inline),
    Shared(ThinArc<(), u8>),
}

/// Up to [`INLINE_MAX`] bytes and their length, the length first so that
/// its unused values can tag [`Repr`].
#[derive(Clone, Copy)]
#[repr(C)]
struct Inline {
    len: Len,
    bytes: [u8; INLINE_MAX],
}

/// A length from 0 to [`INLINE_MAX`].
#[derive(Clone, Copy)]
#[repr(u8)]
enum Len {
    L0,
    L1,
    L2,
    L3,
    L4,
    L5,
    L6,
    L7,
    L8,
    L9,
    L10,
    L11,
    L12,
    L13,
    L14,
    L15,
}

impl Len {
    const ALL: [Len; INLINE_MAX + 1] = [
        Len::L0,
        Len::L1,
        Len::L2,
        Len::L3,
        Len::L4,
        Len::L5,
        Len::L6,
        Len::L7,
        Len::L8,
        Len::L9,
        Len::L10,
        Len::L11,
        Len::L12,
        Len::L13,
        Len::L14,
        Len::L15,
    ];
}

impl SmallBytes {
    /// A copy of `bytes`.
    pub fn new(bytes: &[u8]) -> SmallBytes {
        match Len::ALL.get(bytes.len()) {
            Some(&len) => {
                let mut inline = Inline { len, bytes: [0; INLINE_MAX] };
                if let Some(dst) = inline.bytes.get_mut(..bytes.len()) {
                    dst.copy_from_slice(bytes);
                }
                SmallBytes(Repr::Inline(inline))
            }
            None => SmallBytes(Repr::Shared(ThinArc::from_header_and_slice((), bytes))),
        }
    }

    /// The bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline(inline) => inline.bytes.get(..inline.len as usize).unwrap_or_default(),
            Repr::Shared(shared) => &shared.slice,
        }
    }

    /// The bytes in a shared allocation of their own (a reply's).
    pub fn to_arc(&self) -> std::sync::Arc<[u8]> {
        std::sync::Arc::from(self.as_bytes())
    }

    /// Heap bytes this string holds besides itself: nothing when inline.
    pub fn heap_bytes(len: usize) -> usize {
        if len <= INLINE_MAX {
            0
        } else {
            SHARED_HEADER + len
        }
    }
}

impl Default for SmallBytes {
    fn default() -> SmallBytes {
        SmallBytes::new(b"")
    }
}

impl Deref for SmallBytes {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl Borrow<[u8]> for SmallBytes {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl From<&[u8]> for SmallBytes {
    fn from(bytes: &[u8]) -> SmallBytes {
        SmallBytes::new(bytes)
    }
}

impl PartialEq for SmallBytes {
    fn eq(&self, other: &SmallBytes) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for SmallBytes {}

impl PartialOrd for SmallBytes {
    fn partial_cmp(&self, other: &SmallBytes) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SmallBytes {
    fn cmp(&self, other: &SmallBytes) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl Hash for SmallBytes {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl std::fmt::Debug for SmallBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_bytes().escape_ascii().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_bytes_is_16_bytes_and_an_option_of_it_too() {
        assert_eq!(std::mem::size_of::<SmallBytes>(), 16);
        assert_eq!(std::mem::size_of::<Option<SmallBytes>>(), 16);
    }

    #[test]
    fn every_length_round_trips_inline_or_shared() {
        for len in 0..=INLINE_MAX * 3 {
            let bytes: Vec<u8> = (0..len).map(|i| b"0123456789abcdef".get(i % 16).copied().unwrap_or(0)).collect();
            let s = SmallBytes::new(&bytes);
            assert_eq!(s.as_bytes(), &bytes[..], "len {len}");
            assert_eq!(matches!(s.0, Repr::Inline(_)), len <= INLINE_MAX, "len {len}");
            assert_eq!(s.clone().as_bytes(), &bytes[..]);
            assert_eq!(SmallBytes::heap_bytes(len) == 0, len <= INLINE_MAX);
        }
    }

    #[test]
    fn order_and_equality_are_the_bytes_whatever_the_storage() {
        let long = [b'a'; INLINE_MAX + 1];
        let short = [b'a'; INLINE_MAX];
        let (l, s) = (SmallBytes::new(&long), SmallBytes::new(&short));
        assert!(s < l);
        assert_eq!(s.cmp(&l), short[..].cmp(&long[..]));
        assert_eq!(l, SmallBytes::new(&long));
        assert_ne!(l, s);
        assert_eq!(SmallBytes::default().as_bytes(), b"");
    }
}
