//! The generic I/O ring (`io/ring.h`) with a hostile peer on either side:
//! arbitrary index values and slot bytes written into the shared memory
//! between the honest end's operations. Neither end may panic or touch
//! memory outside the ring; once an end reports the ring corrupt, it
//! stays so (the error is sticky, as blkback stops serving the ring).

#![no_main]

use libfuzzer_sys::fuzz_target;
use xen_ioring::{BackRing, FrontRing, Index};
use xen_shared_mem::{OwnedMem, Ordering};

fuzz_target!(|data: &[u8]| {
    let Some((&shape, mut input)) = data.split_first() else { return };
    // One to four pages, and one of three entry shapes (8, 16 or 112-byte
    // slots: the last is blkif's).
    let pages = 1 + usize::from(shape & 3);
    let owned = OwnedMem::pages(pages);
    match (shape >> 2) % 3 {
        0 => run::<u64, u32>(&owned, &mut input),
        1 => run::<Bytes<16>, u64>(&owned, &mut input),
        _ => run::<Bytes<112>, Bytes<16>>(&owned, &mut input),
    }
});

/// A message of N bytes, 8-aligned (blkif's request and response sizes).
struct Bytes<const N: usize>([u8; N]);

impl<const N: usize> Default for Bytes<N> {
    fn default() -> Self {
        Bytes([0x5a; N])
    }
}

impl<const N: usize> xen_ioring::Message for Bytes<N> {
    const SIZE: usize = N;
    const ALIGN: usize = 8;
    fn encode(&self, out: &mut [u8]) {
        out.copy_from_slice(&self.0);
    }
    fn decode(bytes: &[u8]) -> Self {
        let mut raw = [0; N];
        raw.copy_from_slice(bytes);
        Bytes(raw)
    }
}

/// What the fuzzer sends through the ring.
trait Fuzzed: xen_ioring::Message + Default {}
impl Fuzzed for u64 {}
impl Fuzzed for u32 {}
impl<const N: usize> Fuzzed for Bytes<N> {}

fn run<Req: Fuzzed, Rsp: Fuzzed>(owned: &OwnedMem, input: &mut &[u8]) {
    let mem = owned.mem();
    let (Ok(mut front), Ok(mut back)) = (FrontRing::<Req, Rsp>::new(mem), BackRing::<Req, Rsp>::new(mem)) else {
        return;
    };
    let mut back_failed = None;
    let mut front_failed = None;
    while let Some((&op, rest)) = input.split_first() {
        *input = rest;
        match op % 8 {
            0 => {
                let _ = front.push_request(&Req::default());
            }
            1 => {
                let _ = front.publish_requests();
            }
            2 => match back.take_request() {
                Ok(_) => assert!(back_failed.is_none(), "a failed back end took a request"),
                Err(e) => {
                    assert!(back_failed.is_none_or(|f| f == e), "the back's error changed");
                    back_failed = Some(e);
                }
            },
            3 => {
                let _ = back.push_response(&Rsp::default());
                let _ = back.publish_responses();
            }
            4 => match front.take_response() {
                Ok(_) => assert!(front_failed.is_none(), "a failed front end took a response"),
                Err(e) => {
                    assert!(front_failed.is_none_or(|f| f == e), "the front's error changed");
                    front_failed = Some(e);
                }
            },
            5 => {
                let _ = back.final_check_for_requests();
                let _ = front.final_check_for_responses();
            }
            // The hostile peer: any index to any value.
            6 => {
                let Some(bytes) = input.get(..5) else { return };
                let index = Index::ALL[usize::from(bytes[0]) % Index::ALL.len()];
                let value = u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
                mem.store_u32(index.offset(), value, Ordering::SeqCst);
                *input = input.get(5..).unwrap_or_default();
            }
            // ... or any bytes anywhere in the memory.
            _ => {
                let Some(&[hi, lo, len]) = input.get(..3) else { return };
                let offset = usize::from(u16::from_le_bytes([lo, hi])) % mem.len();
                let len = usize::from(len).min(mem.len() - offset);
                let junk: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31) ^ hi).collect();
                mem.write_bytes(offset, &junk);
                *input = input.get(3..).unwrap_or_default();
            }
        }
    }
}
