//! Properties of the decoder and the parsers under random input.
//!
//! * Any sequence of valid messages, concatenated and cut into any chunks
//!   (one byte at a time included), frames to exactly those packets.
//! * A header announcing more than `PAYLOAD_MAX` fails as soon as its 16th
//!   byte arrives, before any payload, and nothing larger than
//!   `PAYLOAD_MAX` is allocated on the way.
//! * `Request::parse`, `Reply::parse` and `WatchEvent::parse` never panic,
//!   and whatever they accept survives encoding and parsing again.
//!
//! Allocation sizes are observed with a global allocator that records, per
//! thread, the largest single allocation requested while a probe is armed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use proptest::collection::vec;
use proptest::prelude::*;
use xenstore_wire::{
    Access, Decoder, FrameError, Header, Packet, Perm, PermList, Reply, Request, WatchEvent, HEADER_LEN, PAYLOAD_MAX,
};

/// A message to put on the stream: a typed request, or any framed bytes.
#[derive(Debug, Clone)]
enum Message {
    /// A valid request, described by owned fields (see [`Seed::request`]).
    Request { seed: Seed, req_id: u32, tx_id: u32 },
    /// Any header with a payload of its announced length.
    Raw { op: u32, req_id: u32, tx_id: u32, payload: Vec<u8> },
}

/// Owned material for one request; `kind` picks the operation.
#[derive(Debug, Clone)]
struct Seed {
    kind: u8,
    path: String,
    watch_path: String,
    token: Vec<u8>,
    value: Vec<u8>,
    quota: String,
    number: u32,
    domid: u16,
    other_domid: u16,
    flag: bool,
}

/// How many request shapes [`Seed::request`] knows.
const KINDS: u8 = 20;

impl Seed {
    fn request(&self) -> Request<'_> {
        let access = |n: u32| [Access::None, Access::Read, Access::Write, Access::Both][(n % 4) as usize];
        match self.kind % KINDS {
            0 => Request::Read(&self.path),
            1 => Request::Directory(&self.path),
            2 => Request::Mkdir(&self.path),
            3 => Request::Rm(&self.path),
            4 => Request::GetPerms(&self.watch_path),
            5 => Request::Write { path: &self.path, value: &self.value },
            6 => Request::Watch { path: &self.watch_path, token: &self.token, depth: self.flag.then_some(self.number) },
            7 => Request::Unwatch { path: &self.watch_path, token: &self.token },
            8 => Request::TransactionStart,
            9 => Request::TransactionEnd { commit: self.flag },
            10 => Request::Introduce { domid: self.domid, gfn: u64::from(self.number) << 12, port: self.number },
            11 => Request::Release(self.domid),
            12 => Request::SetPerms {
                path: &self.watch_path,
                perms: PermList::new(vec![
                    Perm { domid: self.domid, access: access(self.number) },
                    Perm { domid: self.other_domid, access: access(self.number / 4) },
                ])
                .expect("two entries"),
            },
            13 => Request::SetTarget { domid: self.domid, target: self.other_domid },
            14 => Request::GetFeature(self.flag.then_some(self.domid)),
            15 => Request::SetFeature { domid: self.domid, value: self.number },
            16 => {
                let quota = (self.number % 2 == 0).then_some(self.quota.as_str());
                let domid = if quota.is_some() && self.flag { Some(self.domid) } else { None };
                Request::GetQuota { domid, quota }
            }
            17 => Request::SetQuota { domid: self.flag.then_some(self.domid), quota: &self.quota, value: self.number },
            18 => Request::DirectoryPart { path: &self.path, offset: self.number },
            _ => Request::Control(&self.value),
        }
    }
}

fn node_path() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/".to_owned()),
        "(/[a-zA-Z0-9_@-]{1,8}){1,5}",
        "[a-zA-Z0-9_-][a-zA-Z0-9_@-]{0,7}(/[a-zA-Z0-9_@-]{1,8}){0,4}",
    ]
}

fn watch_path() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => node_path(),
        1 => Just("@introduceDomain".to_owned()),
        1 => Just("@releaseDomain".to_owned()),
        1 => "@releaseDomain/[0-9]{1,5}",
    ]
}

fn seed() -> impl Strategy<Value = Seed> {
    (
        (0..KINDS, node_path(), watch_path(), vec(1u8..=255, 0..16)),
        (vec(any::<u8>(), 0..300), "[a-z-]{0,12}", any::<u32>()),
        (any::<u16>(), any::<u16>(), any::<bool>()),
    )
        .prop_map(|((kind, path, watch_path, token), (value, quota, number), (domid, other_domid, flag))| {
            let mut seed = Seed { kind, path, watch_path, token, value, quota, number, domid, other_domid, flag };
            if seed.kind % KINDS == KINDS - 1 {
                // CONTROL needs a command before its first nul.
                let mut control = b"cmd\0".to_vec();
                control.append(&mut seed.value);
                seed.value = control;
            }
            seed
        })
}

fn raw_payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => vec(any::<u8>(), 0..64),
        1 => vec(any::<u8>(), PAYLOAD_MAX - 8..=PAYLOAD_MAX),
        1 => Just(Vec::new()),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        3 => (seed(), any::<u32>(), any::<u32>())
            .prop_map(|(seed, req_id, tx_id)| Message::Request { seed, req_id, tx_id }),
        1 => (any::<u32>(), any::<u32>(), any::<u32>(), raw_payload())
            .prop_map(|(op, req_id, tx_id, payload)| Message::Raw { op, req_id, tx_id, payload }),
    ]
}

/// Chunk sizes, used in turn and cycled.
fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![Just(vec![1]), vec(1usize..=32, 1..8), vec(1usize..=2 * (HEADER_LEN + PAYLOAD_MAX), 1..8),]
}

/// The bytes of `message` and the packet they must frame to.
fn encode(message: &Message) -> (Vec<u8>, Packet) {
    let bytes = match message {
        Message::Request { seed, req_id, tx_id } => {
            let mut bytes = Vec::new();
            seed.request().encode(*req_id, *tx_id, &mut bytes).expect("seeds fit in a payload");
            bytes
        }
        Message::Raw { op, req_id, tx_id, payload } => {
            let len = u32::try_from(payload.len()).expect("small");
            let mut bytes = Header { op: *op, req_id: *req_id, tx_id: *tx_id, len }.encode().to_vec();
            bytes.extend_from_slice(payload);
            bytes
        }
    };
    let (header, payload) = bytes.split_at(HEADER_LEN);
    let header = Header::decode(header.try_into().expect("16 bytes"));
    let packet = Packet { header, payload: payload.to_vec() };
    (bytes, packet)
}

/// Feeds `stream` to a new decoder in chunks of `sizes` (cycled). Returns the
/// packets and the largest allocation made inside `Decoder::decode`.
fn decode_chunked(stream: &[u8], sizes: &[usize]) -> (Vec<Packet>, usize) {
    let mut decoder = Decoder::new();
    let mut packets = Vec::new();
    let mut largest = 0;
    let mut rest = stream;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (mut chunk, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        loop {
            let (result, allocated) = largest_allocation(|| decoder.decode(&mut chunk));
            largest = largest.max(allocated);
            match result.expect("a valid stream frames") {
                Some(packet) => packets.push(packet),
                None => break,
            }
        }
        assert!(chunk.is_empty(), "decoder stopped with input left");
    }
    assert!(decoder.at_boundary(), "stream ended mid-message");
    (packets, largest)
}

fn too_long() -> impl Strategy<Value = u32> {
    let over = u32::try_from(PAYLOAD_MAX).expect("small") + 1;
    prop_oneof![Just(over), over..=over + 16, u32::MAX - 16..=u32::MAX, over..=u32::MAX,]
}

fn any_op() -> impl Strategy<Value = u32> {
    prop_oneof![4 => 0u32..=27, 1 => Just(0xffff), 1 => any::<u32>()]
}

/// Payloads for the parsers: random bytes, and concatenations of pieces
/// that appear in real payloads so the parsers get past their first check.
fn any_payload() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"\0".to_vec()),
        Just(b"\0".to_vec()),
        Just(b"/".to_vec()),
        Just(b"/local/domain/1".to_vec()),
        Just(b"data".to_vec()),
        Just(b"@releaseDomain".to_vec()),
        Just(b"T".to_vec()),
        Just(b"F".to_vec()),
        Just(b"OK".to_vec()),
        Just(b"EINVAL".to_vec()),
        Just(b" ".to_vec()),
        Just(b"nodes".to_vec()),
        "[nrwb]?[0-9]{1,6}".prop_map(String::into_bytes),
        vec(any::<u8>(), 1..4),
    ];
    prop_oneof![
        vec(any::<u8>(), 0..64),
        vec(any::<u8>(), 0..=PAYLOAD_MAX + 64),
        vec(piece, 0..12).prop_map(|pieces| pieces.concat()),
    ]
}

proptest! {
    #[test]
    fn valid_stream_in_any_chunks_frames_to_same_packets(
        messages in vec(message(), 0..12),
        sizes in chunk_sizes(),
    ) {
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for message in &messages {
            let (bytes, packet) = encode(message);
            stream.extend_from_slice(&bytes);
            expected.push(packet);
        }

        let (packets, largest) = decode_chunked(&stream, &sizes);
        prop_assert_eq!(&packets, &expected);
        prop_assert!(largest <= PAYLOAD_MAX, "allocated {} bytes", largest);

        let (one_byte_packets, _) = decode_chunked(&stream, &[1]);
        prop_assert_eq!(&one_byte_packets, &expected);

        for (message, packet) in messages.iter().zip(&packets) {
            if let Message::Request { seed, .. } = message {
                let parsed = Request::parse(packet.header.op, &packet.payload);
                prop_assert_eq!(parsed, Ok(seed.request()));
            }
        }
    }

    #[test]
    fn header_over_payload_max_fails_at_its_last_byte(
        prefix in vec(message(), 0..4),
        op in any::<u32>(),
        req_id in any::<u32>(),
        tx_id in any::<u32>(),
        len in too_long(),
        sizes in chunk_sizes(),
    ) {
        let mut stream = Vec::new();
        for message in &prefix {
            stream.extend_from_slice(&encode(message).0);
        }
        // The stream ends with the bad header: no payload byte is ever supplied.
        stream.extend_from_slice(&Header { op, req_id, tx_id, len }.encode());

        let mut decoder = Decoder::new();
        let mut fed = 0;
        let mut failure = None;
        let mut largest = 0;
        'feed: for &size in sizes.iter().cycle() {
            if fed == stream.len() {
                break;
            }
            let end = (fed + size).min(stream.len());
            let mut chunk = &stream[fed..end];
            loop {
                let (result, allocated) = largest_allocation(|| decoder.decode(&mut chunk));
                largest = largest.max(allocated);
                match result {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(err) => {
                        failure = Some(err);
                        fed = end - chunk.len();
                        break 'feed;
                    }
                }
            }
            prop_assert!(chunk.is_empty());
            fed = end;
        }
        prop_assert_eq!(failure, Some(FrameError::PayloadTooLong { len }));
        prop_assert_eq!(fed, stream.len(), "failed before the header was complete");
        prop_assert!(largest <= PAYLOAD_MAX, "allocated {} bytes", largest);

        // Failed for good: more bytes are neither consumed nor framed.
        let more = [0u8; 64];
        let mut input = &more[..];
        prop_assert_eq!(decoder.decode(&mut input), Err(FrameError::PayloadTooLong { len }));
        prop_assert_eq!(input.len(), more.len());
    }

    #[test]
    fn request_parse_never_panics_and_accepted_requests_round_trip(
        op in any_op(),
        payload in any_payload(),
    ) {
        if let Ok(request) = Request::parse(op, &payload) {
            prop_assert_eq!(request.op() as u32, op);
            let mut encoded = Vec::new();
            request.encode_payload(&mut encoded);
            prop_assert_eq!(Request::parse(op, &encoded), Ok(request));
        }
    }

    #[test]
    fn reply_parse_never_panics_and_accepted_replies_round_trip(
        op in any_op(),
        payload in any_payload(),
    ) {
        if let Ok(reply) = Reply::parse(op, &payload) {
            let mut encoded = Vec::new();
            reply.encode_payload(&mut encoded);
            prop_assert_eq!(reply.payload_len(), encoded.len());
            match (&reply, Reply::parse(op, &encoded)) {
                // GET_QUOTA's names list and value share a syntax: one
                // all-digit name reads back as a number (see `Reply::Names`).
                (Reply::Names(names), Ok(Reply::Number(n))) if is_one_decimal(names) => {
                    prop_assert_eq!(names[0].parse::<u64>(), Ok(n));
                }
                (_, again) => prop_assert_eq!(again, Ok(reply)),
            }
        }
    }

    #[test]
    fn watch_event_parse_never_panics_and_accepted_events_round_trip(payload in any_payload()) {
        if let Ok(event) = WatchEvent::parse(&payload) {
            let mut bytes = Vec::new();
            if event.encode(&mut bytes) {
                prop_assert_eq!(bytes.len(), HEADER_LEN + event.payload_len());
                prop_assert_eq!(WatchEvent::parse(&bytes[HEADER_LEN..]), Ok(event));
            }
        }
    }
}

/// Whether `names` is a single name made only of ASCII digits.
fn is_one_decimal(names: &[String]) -> bool {
    matches!(names, [name] if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()))
}

#[test]
fn header_with_len_u32_max_fails_at_sixteenth_byte() {
    let header = Header { op: 2, req_id: 1, tx_id: 0, len: u32::MAX }.encode();
    let mut decoder = Decoder::new();
    for (i, byte) in header.iter().enumerate() {
        let bytes = [*byte];
        let mut input = &bytes[..];
        let (result, allocated) = largest_allocation(|| decoder.decode(&mut input));
        assert_eq!(allocated, 0, "allocation while reading header byte {i}");
        if i + 1 < HEADER_LEN {
            assert_eq!(result, Ok(None), "byte {i}");
        } else {
            assert_eq!(result, Err(FrameError::PayloadTooLong { len: u32::MAX }));
        }
        assert!(input.is_empty());
    }
}

#[test]
fn header_with_len_payload_max_waits_for_payload() {
    let len = u32::try_from(PAYLOAD_MAX).expect("small");
    let header = Header { op: 11, req_id: 1, tx_id: 0, len }.encode();
    let mut decoder = Decoder::new();
    let mut input = &header[..];
    let (result, allocated) = largest_allocation(|| decoder.decode(&mut input));
    assert_eq!(result, Ok(None));
    assert!(allocated <= PAYLOAD_MAX, "allocated {allocated} bytes");
    assert!(!decoder.at_boundary());
    let payload = vec![7u8; PAYLOAD_MAX];
    let mut input = &payload[..];
    let packet = decoder.decode(&mut input).expect("frames").expect("complete");
    assert_eq!(packet.payload, payload);
    assert!(decoder.at_boundary());
}

/// Runs `f`, returning its result and the largest single allocation it
/// requested on this thread.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|largest| largest.set(0));
    let out = f();
    (out, LARGEST.with(Cell::get))
}

thread_local! {
    /// Largest allocation since the last reset. Const-initialised and
    /// without a destructor, so touching it never allocates.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation(size: usize) {
    let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
}

/// The system allocator, recording request sizes in [`LARGEST`].
struct RecordingAllocator;

// SAFETY: every method forwards its arguments unchanged to `System`, which
// implements `GlobalAlloc` correctly; the only extra work is updating a
// thread-local `Cell<usize>`, which neither allocates nor unwinds.
unsafe impl GlobalAlloc for RecordingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract for `layout`.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through this wrapper) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation(new_size);
        // SAFETY: `ptr` came from `System` with `layout`; the caller upholds
        // `GlobalAlloc::realloc`'s contract for `new_size`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: RecordingAllocator = RecordingAllocator;
