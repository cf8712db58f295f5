//! A connection's output queue, and the policy that keeps it bounded.
//!
//! Replies are never dropped: each answers a request the client sent, and
//! the loop stops reading a connection's requests while its queue is above
//! [`Limits::pause_reading_above`] bytes, so replies are bounded by
//! backpressure. Watch events are caused by other clients, so a client that
//! never reads could otherwise make the daemon grow without bound. Two rules
//! bound them, both safe under the protocol ("watches may be triggered
//! spuriously", so a client must re-read state on an event anyway):
//!
//! 1. **Coalesce**: an event identical (same path and token) to one still
//!    queued and unsent is not queued again; the queued one already tells the
//!    client to look at that path.
//! 2. **Expire**: an event still unsent [`Limits::event_timeout`] after it
//!    was queued (20 s, the C daemon's `timeout_watch_event_msec`) is
//!    dropped. A watcher that pauses for less loses nothing, however much
//!    another domain writes meanwhile.
//! 3. **Cap**: past [`Limits::max_event_bytes`] of queued events (a bound
//!    far above what 20 s of a normal store makes, against a client that
//!    never reads while a flood lasts), the oldest events are dropped.
//!
//! Dropped events are counted; the daemon logs the count per connection at
//! most once per interval, never one line per event.
//!
//! Messages leave in the order they were queued, replies and events
//! interleaved as produced.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::io::{self, IoSlice, Write};
use std::time::{Duration, Instant};

/// Bounds of one connection's queue.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Stop reading requests while more than this many bytes are queued.
    pub pause_reading_above: usize,
    /// Queued watch-event bytes above which the oldest events are dropped
    /// whatever their age.
    pub max_event_bytes: usize,
    /// Age at which an unsent watch event is dropped.
    pub event_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            pause_reading_above: 256 * 1024,
            max_event_bytes: 16 * 1024 * 1024,
            event_timeout: Duration::from_secs(20),
        }
    }
}

#[derive(Debug)]
struct Message {
    bytes: Vec<u8>,
    /// `None` for a reply; what an event needs besides its bytes.
    event: Option<EventMeta>,
}

/// A queued watch event's coalescing key and age.
#[derive(Debug, Clone, Copy)]
struct EventMeta {
    /// The keyed hash of its payload (path and token), computed once when
    /// queued: hashing every event twice was a tenth of the daemon's time
    /// under a watch-event storm.
    key: u64,
    /// When it was queued (events expire).
    at: Instant,
}

/// The queue.
#[derive(Debug, Default)]
pub struct Outbox {
    queue: VecDeque<Message>,
    /// Bytes of the front message already written.
    front_sent: usize,
    queued_bytes: usize,
    /// Replies queued (the `outstanding` quota's count: requests answered
    /// but not yet handed to the client).
    queued_replies: usize,
    event_bytes: usize,
    /// Unsent events by a keyed 64-bit hash of their payload, with how many
    /// copies are queued (at most one, except for one already partly
    /// written). The keys are random per outbox, so nobody can make two
    /// different events collide on purpose; by chance it is a 2^-64 event.
    pending_events: HashMap<u64, usize>,
    hasher: RandomState,
    /// Events dropped by the cap since the last [`Outbox::take_counters`].
    dropped: u64,
    /// Events not queued because an identical one was pending.
    coalesced: u64,
}

impl Outbox {
    /// Queues a reply (never dropped).
    pub fn push_reply(&mut self, bytes: Vec<u8>) {
        self.queued_bytes += bytes.len();
        self.queued_replies += 1;
        self.queue.push_back(Message { bytes, event: None });
    }

    /// Queues a watch event (header included) at `now`, coalescing,
    /// expiring old ones and capping.
    pub fn push_event(&mut self, bytes: Vec<u8>, limits: &Limits, now: Instant) {
        self.expire(limits, now);
        let key = self.hasher.hash_one(event_key(&bytes));
        // A message partly written still counts as pending until it is fully
        // sent (see `advance`): the client has not seen it yet.
        let count = self.pending_events.entry(key).or_insert(0);
        if *count > 0 {
            self.coalesced += 1;
            return;
        }
        *count += 1;
        self.queued_bytes += bytes.len();
        self.event_bytes += bytes.len();
        self.queue.push_back(Message { bytes, event: Some(EventMeta { key, at: now }) });
        while self.event_bytes > limits.max_event_bytes {
            if !self.drop_oldest_event() {
                break;
            }
        }
    }

    /// Counts an event the daemon dropped before queueing it.
    pub fn count_dropped(&mut self) {
        self.dropped += 1;
    }

    /// Drops the events unsent for [`Limits::event_timeout`] at `now`.
    /// They are at the front (the queue is in time order): the scan stops
    /// at the first younger event, passing over replies.
    pub fn expire(&mut self, limits: &Limits, now: Instant) {
        let mut i = usize::from(self.front_sent > 0);
        while let Some(msg) = self.queue.get(i) {
            let Some(meta) = msg.event else {
                i += 1;
                continue;
            };
            if now.duration_since(meta.at) < limits.event_timeout {
                return;
            }
            if let Some(msg) = self.queue.remove(i) {
                self.forget_event(&msg);
                self.dropped += 1;
            }
        }
    }

    fn drop_oldest_event(&mut self) -> bool {
        // Never drop the front message if it is partly written.
        let skip = usize::from(self.front_sent > 0);
        let Some(i) = self.queue.iter().skip(skip).position(|m| m.event.is_some()).map(|i| i + skip) else {
            return false;
        };
        let Some(msg) = self.queue.remove(i) else { return false };
        self.forget_event(&msg);
        self.dropped += 1;
        true
    }

    fn forget_event(&mut self, msg: &Message) {
        self.queued_bytes -= msg.bytes.len();
        self.event_bytes -= msg.bytes.len();
        let Some(EventMeta { key, .. }) = msg.event else { return };
        if let Some(n) = self.pending_events.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.pending_events.remove(&key);
            }
        }
    }

    /// Bytes waiting to be written.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Replies queued and not yet written.
    pub fn queued_replies(&self) -> usize {
        self.queued_replies
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Events dropped by the cap and coalesced since the last call.
    pub fn take_counters(&mut self) -> (u64, u64) {
        (std::mem::take(&mut self.dropped), std::mem::take(&mut self.coalesced))
    }

    /// Writes as much as the sink takes, many messages per call
    /// (`writev`). Returns the bytes written; `WouldBlock` is not an error.
    pub fn flush_to(&mut self, sink: &mut impl Write) -> io::Result<usize> {
        let mut total = 0;
        while !self.queue.is_empty() {
            let slices: Vec<IoSlice<'_>> = self
                .queue
                .iter()
                .take(64)
                .enumerate()
                .map(|(i, m)| {
                    IoSlice::new(if i == 0 { m.bytes.get(self.front_sent..).unwrap_or_default() } else { &m.bytes })
                })
                .collect();
            let written = match sink.write_vectored(&slices) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(total),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            total += written;
            self.advance(written);
        }
        Ok(total)
    }

    fn advance(&mut self, mut written: usize) {
        while written > 0 {
            let Some(front) = self.queue.front() else { break };
            let left = front.bytes.len() - self.front_sent;
            if written < left {
                self.front_sent += written;
                return;
            }
            written -= left;
            self.front_sent = 0;
            if let Some(msg) = self.queue.pop_front() {
                if msg.event.is_some() {
                    self.forget_event(&msg);
                } else {
                    self.queued_bytes -= msg.bytes.len();
                    self.queued_replies -= 1;
                }
            }
        }
    }
}

/// An outbox's queued output as plain data: what a live update hands to
/// the new process so that nothing queued for a client is lost, a
/// partly written message included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxState {
    /// The queued messages, oldest first: each encoded message and whether
    /// it is a watch event (which may be coalesced or dropped) or a reply.
    pub messages: Vec<(Vec<u8>, bool)>,
    /// Bytes of the first message already written.
    pub front_sent: usize,
}

/// Why an [`OutboxState`] cannot be restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxStateError {
    /// A queued message is empty.
    EmptyMessage,
    /// More of the first message is marked written than it has (or some
    /// is marked written with nothing queued).
    FrontSentPastMessage {
        /// The bytes marked written.
        front_sent: usize,
        /// The first message's length (0 with nothing queued).
        len: usize,
    },
}

impl std::fmt::Display for OutboxStateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OutboxStateError::EmptyMessage => f.write_str("an empty queued message"),
            OutboxStateError::FrontSentPastMessage { front_sent, len } => {
                write!(f, "{front_sent} bytes of a {len}-byte first message marked written")
            }
        }
    }
}

impl std::error::Error for OutboxStateError {}

impl Outbox {
    /// The queued output, as plain data.
    pub fn export(&self) -> OutboxState {
        OutboxState {
            messages: self.queue.iter().map(|m| (m.bytes.clone(), m.event.is_some())).collect(),
            front_sent: self.front_sent,
        }
    }

    /// An outbox holding `state`'s messages, in order, with the first one
    /// as far written as it was. Events are queued as they were (not
    /// coalesced again, not capped: nothing the client was owed is lost).
    pub fn import(state: OutboxState) -> Result<Outbox, OutboxStateError> {
        let len = state.messages.first().map_or(0, |(bytes, _)| bytes.len());
        if state.front_sent > 0 && state.front_sent >= len {
            return Err(OutboxStateError::FrontSentPastMessage { front_sent: state.front_sent, len });
        }
        let mut outbox = Outbox::default();
        for (bytes, event) in state.messages {
            if bytes.is_empty() {
                return Err(OutboxStateError::EmptyMessage);
            }
            outbox.queued_bytes += bytes.len();
            let meta = if event {
                outbox.event_bytes += bytes.len();
                let key = outbox.hasher.hash_one(event_key(&bytes));
                *outbox.pending_events.entry(key).or_insert(0) += 1;
                Some(EventMeta { key, at: Instant::now() })
            } else {
                outbox.queued_replies += 1;
                None
            };
            outbox.queue.push_back(Message { bytes, event: meta });
        }
        outbox.front_sent = state.front_sent;
        Ok(outbox)
    }
}

/// The part of an event message that identifies it: its payload.
fn event_key(bytes: &[u8]) -> &[u8] {
    bytes.get(xenstore_wire::HEADER_LEN..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use xenstore_wire::WatchEvent;

    fn event(path: &str, token: &str) -> Vec<u8> {
        let mut out = Vec::new();
        assert!(WatchEvent { path: path.into(), token: token.as_bytes().into() }.encode(&mut out));
        out
    }

    #[test]
    fn identical_pending_events_coalesce() {
        let mut outbox = Outbox::default();
        let limits = Limits::default();
        for _ in 0..100 {
            outbox.push_event(event("/a", "t"), &limits, Instant::now());
        }
        outbox.push_event(event("/b", "t"), &limits, Instant::now());
        assert_eq!(outbox.queue.len(), 2);
        assert_eq!(outbox.take_counters(), (0, 99));
    }

    #[test]
    fn event_bytes_are_capped_oldest_first_and_replies_kept() {
        let mut outbox = Outbox::default();
        let limits = Limits { pause_reading_above: 1 << 20, max_event_bytes: 1000, ..Limits::default() };
        outbox.push_reply(b"reply-one".to_vec());
        for i in 0..1000 {
            outbox.push_event(event(&format!("/n/{i}"), "t"), &limits, Instant::now());
        }
        assert!(outbox.event_bytes <= 1000);
        assert!(!outbox.queue.iter().any(|m| m.event.is_some() && event_key(&m.bytes).starts_with(b"/n/0\0")));
        assert_eq!(outbox.queue.front().map(|m| m.bytes.as_slice()), Some(&b"reply-one"[..]));
        let (dropped, _) = outbox.take_counters();
        assert!(dropped > 900);
    }

    #[test]
    fn events_expire_after_the_timeout_and_replies_stay() {
        let mut outbox = Outbox::default();
        let limits = Limits::default();
        let start = Instant::now();
        outbox.push_event(event("/old", "t"), &limits, start);
        outbox.push_reply(b"reply".to_vec());
        outbox.push_event(event("/young", "t"), &limits, start + Duration::from_secs(15));
        outbox.expire(&limits, start + Duration::from_secs(19));
        assert_eq!(outbox.queue.len(), 3, "nothing is 20 s old yet");
        outbox.push_event(event("/new", "t"), &limits, start + Duration::from_secs(21));
        assert_eq!(outbox.take_counters(), (1, 0));
        let kept: Vec<bool> = outbox.queue.iter().map(|m| m.event.is_some()).collect();
        assert_eq!(kept, [false, true, true], "the reply and the younger events stay");
    }

    #[test]
    fn export_import_keeps_every_message_and_the_partly_written_front() {
        let limits = Limits::default();
        let mut outbox = Outbox::default();
        outbox.push_reply(b"first-reply".to_vec());
        outbox.push_event(event("/a", "t"), &limits, Instant::now());
        outbox.push_reply(b"second".to_vec());
        outbox.advance(4);
        let state = outbox.export();
        let mut restored = Outbox::import(state.clone()).unwrap();
        assert_eq!(restored.export(), state);
        assert_eq!(restored.queued_bytes(), outbox.queued_bytes());
        // The restored queue still coalesces against the queued event.
        restored.push_event(event("/a", "t"), &limits, Instant::now());
        assert_eq!(restored.take_counters(), (0, 1));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        outbox.flush_to(&mut a).unwrap();
        restored.flush_to(&mut b).unwrap();
        assert_eq!(a, b);
        assert!(a.starts_with(b"t-reply"));
    }

    #[test]
    fn import_refuses_inconsistent_state() {
        let empty = OutboxState { messages: vec![(Vec::new(), false)], front_sent: 0 };
        assert_eq!(Outbox::import(empty).unwrap_err(), OutboxStateError::EmptyMessage);
        let past = OutboxState { messages: vec![(b"abc".to_vec(), false)], front_sent: 3 };
        assert_eq!(Outbox::import(past).unwrap_err(), OutboxStateError::FrontSentPastMessage { front_sent: 3, len: 3 });
        let nothing = OutboxState { messages: Vec::new(), front_sent: 1 };
        assert!(Outbox::import(nothing).is_err());
    }

    #[test]
    fn flush_writes_in_order_across_partial_writes() {
        struct Trickle(Vec<u8>);
        impl Write for Trickle {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                let n = buf.len().min(3);
                self.0.extend_from_slice(&buf[..n]);
                Ok(n)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut outbox = Outbox::default();
        let limits = Limits::default();
        outbox.push_reply(b"first".to_vec());
        let ev = event("/x", "tok");
        outbox.push_event(ev.clone(), &limits, Instant::now());
        outbox.push_reply(b"last".to_vec());
        let mut sink = Trickle(Vec::new());
        outbox.flush_to(&mut sink).unwrap();
        let mut want = b"first".to_vec();
        want.extend_from_slice(&ev);
        want.extend_from_slice(b"last");
        assert_eq!(sink.0, want);
        assert!(outbox.is_empty());
        assert_eq!(outbox.queued_bytes(), 0);
        // Once sent, the same event may be queued again.
        outbox.push_event(ev, &limits, Instant::now());
        assert_eq!(outbox.queue.len(), 1);
    }
}
