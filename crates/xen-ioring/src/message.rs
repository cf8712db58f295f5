//! What travels in a ring slot: a request or response type with the C
//! layout of the device protocol, encoded into and decoded from bytes.

#![forbid(unsafe_code)]

/// A request or response of a ring protocol (`blkif_request`,
/// `netif_tx_response`, ...).
///
/// A message is copied between its Rust value and the ring slot through a
/// private buffer, never through a reference into shared memory: the peer
/// may rewrite the slot while we read it, and a copy is what `io/ring.h`
/// asks for (`RING_COPY_REQUEST`). `SIZE` and `ALIGN` are the C type's
/// `sizeof` and `alignof`, which fix the slot size of the ring (see
/// [`crate::entry_size`]).
pub trait Message: Sized {
    /// `sizeof` of the C type: the bytes [`Message::encode`] writes and
    /// [`Message::decode`] reads.
    const SIZE: usize;
    /// `alignof` of the C type. With the other message's, it rounds the
    /// slot size up as the C union of the two does.
    const ALIGN: usize;

    /// Writes the message into `out`, exactly [`Message::SIZE`] bytes, in
    /// the C layout (native byte order, padding as the C compiler lays
    /// it out; zero it rather than leave stale bytes).
    fn encode(&self, out: &mut [u8]);

    /// Reads a message from `bytes`, exactly [`Message::SIZE`] bytes.
    ///
    /// The bytes come from the peer and may be anything: decoding must not
    /// fail or panic. Checking what the fields mean (an operation code, a
    /// segment count) is the protocol layer's job, on the decoded copy.
    fn decode(bytes: &[u8]) -> Self;
}

/// Fixed-size integers in native byte order, as a C `uint32_t` request
/// would be; for tests, models and protocols whose messages are one word.
macro_rules! int_message {
    ($($t:ty),*) => {$(
        impl Message for $t {
            const SIZE: usize = core::mem::size_of::<$t>();
            const ALIGN: usize = core::mem::align_of::<$t>();

            fn encode(&self, out: &mut [u8]) {
                out.copy_from_slice(&self.to_ne_bytes());
            }

            fn decode(bytes: &[u8]) -> Self {
                let mut raw = [0u8; core::mem::size_of::<$t>()];
                raw.copy_from_slice(bytes);
                <$t>::from_ne_bytes(raw)
            }
        }
    )*};
}

int_message!(u8, u16, u32, u64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u32_message_round_trips_in_native_order() {
        let mut out = [0u8; 4];
        0x0102_0304u32.encode(&mut out);
        assert_eq!(out, 0x0102_0304u32.to_ne_bytes());
        assert_eq!(u32::decode(&out), 0x0102_0304);
    }
}
