//! The accessors over real memory: placement, bounds, alignment.

#![forbid(unsafe_code)]
#![cfg(not(loom))]

use xen_shared_mem::{Ordering, OwnedMem, PAGE_SIZE};

#[test]
fn owned_mem_is_zeroed_and_page_aligned() {
    let owned = OwnedMem::pages(2);
    let mem = owned.mem();
    assert_eq!(mem.len(), 2 * PAGE_SIZE);
    assert_eq!(mem.as_ptr().addr() % PAGE_SIZE, 0);
    let mut buf = vec![1u8; mem.len()];
    mem.read_bytes(0, &mut buf);
    assert!(buf.iter().all(|&b| b == 0));
}

#[test]
fn store_u32_lands_in_native_byte_order_at_its_offset() {
    let owned = OwnedMem::new(64);
    let mem = owned.mem();
    mem.store_u32(60, 0x0102_0304, Ordering::SeqCst);
    let mut raw = [0u8; 4];
    mem.read_bytes(60, &mut raw);
    assert_eq!(u32::from_ne_bytes(raw), 0x0102_0304);
    assert_eq!(mem.load_u32(60, Ordering::Acquire), 0x0102_0304);
}

#[test]
fn bytes_round_trip_and_fill() {
    let owned = OwnedMem::new(100);
    let mem = owned.mem();
    mem.write_bytes(90, b"0123456789");
    mem.fill(92, 3, b'x');
    let mut back = [0u8; 10];
    mem.read_bytes(90, &mut back);
    assert_eq!(&back, b"01xxx56789");
}

#[test]
#[should_panic(expected = "out of bounds")]
fn word_past_the_end_panics() {
    let owned = OwnedMem::new(64);
    owned.mem().load_u32(64, Ordering::Relaxed);
}

#[test]
#[should_panic(expected = "unaligned")]
fn unaligned_word_panics() {
    let owned = OwnedMem::new(64);
    owned.mem().store_u32(2, 1, Ordering::Relaxed);
}

#[test]
#[should_panic(expected = "out of bounds")]
fn byte_range_past_the_end_panics() {
    let owned = OwnedMem::new(16);
    owned.mem().write_bytes(10, &[0; 7]);
}

#[test]
#[should_panic(expected = "out of bounds")]
fn byte_range_whose_end_overflows_panics() {
    let owned = OwnedMem::new(16);
    let mut buf = [0u8; 2];
    owned.mem().read_bytes(usize::MAX, &mut buf);
}

#[test]
fn views_are_shared_between_threads() {
    let owned = OwnedMem::new(8);
    let mem = owned.mem();
    std::thread::scope(|s| {
        s.spawn(|| mem.store_u32(4, 7, Ordering::Release));
    });
    assert_eq!(mem.load_u32(4, Ordering::Acquire), 7);
}

/// Copies are done a word at a time where the memory is 8-aligned: at
/// every offset and length the bytes written are the bytes read, and the
/// bytes around them are untouched.
#[test]
fn copies_at_every_alignment_and_length_touch_exactly_their_range() {
    let owned = OwnedMem::new(96);
    let mem = owned.mem();
    for offset in 0..17 {
        for len in 0..41 {
            mem.fill(0, 96, 0xee);
            let src: Vec<u8> = (0..len).map(|i| u8::try_from((i * 7 + offset) % 251).unwrap()).collect();
            mem.write_bytes(offset, &src);
            let mut back = vec![0; len];
            mem.read_bytes(offset, &mut back);
            assert_eq!(back, src, "offset {offset} len {len}");
            let mut all = [0u8; 96];
            mem.read_bytes(0, &mut all);
            for (i, &b) in all.iter().enumerate() {
                if !(offset..offset + len).contains(&i) {
                    assert_eq!(b, 0xee, "byte {i} changed by a copy of {len} at {offset}");
                }
            }
        }
    }
}
