//! The sans-IO client: request ids, reply matching, watch-event routing,
//! and the paging of large directories. No sockets, threads or clocks.
//!
//! # Call order
//!
//! A driver owns one [`ClientCore`] per connection and:
//!
//! 1. to send a request, calls [`ClientCore::start`] (or
//!    [`ClientCore::start_raw`]), which picks a `req_id`, remembers that a
//!    reply is due, and appends the framed message to the driver's output
//!    buffer; the driver writes those bytes to the connection, whole and in
//!    order relative to the other messages it writes;
//! 2. before sending a `WATCH`, calls [`ClientCore::subscribe`] with the
//!    token, so that the event the daemon fires on registration (which may
//!    overtake the `WATCH` reply) is already routed;
//! 3. feeds whatever the connection yields, in any chunking, to
//!    [`ClientCore::receive`], then drains [`ClientCore::poll_event`]:
//!    each [`Event::Reply`] completes the request with that `req_id`, each
//!    [`Event::Watch`] goes to the named subscription;
//! 4. if a caller stops waiting (a cancelled future), calls
//!    [`ClientCore::abandon`]: the reply is still consumed when it comes,
//!    then dropped, so its `req_id` is not reused too early;
//! 5. when the connection ends, or `receive` reports a fatal
//!    [`ProtocolError`], calls [`ClientCore::close`] and fails every request
//!    it returns;
//! 6. when the connection was reset underneath (a guest's ring reconnected
//!    after the daemon set its error indicator), calls
//!    [`ClientCore::reset`] before feeding any byte of the new connection,
//!    fails every request it returns, and sends the `WATCH`es again (the
//!    subscriptions and their routes are kept).
//!
//! Replies may come in any order (`docs/misc/xenstore.txt`: "the
//! implementation happens to reply in order", clients must not rely on it).

use std::collections::{HashMap, VecDeque};

use xenstore_wire::{Decoder, ErrorCode, Op, Packet, Reply, Request, WatchEvent, PAYLOAD_MAX};

use crate::error::{Error, ProtocolError};

/// Names one watch subscriber (a watch handle) inside a [`ClientCore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(u64);

/// Something the driver must act on.
#[derive(Debug)]
pub enum Event {
    /// The answer to the request with this `req_id`: its payload, or why it
    /// failed (the daemon's error, or a malformed answer).
    Reply {
        /// The request's id, as [`ClientCore::start`] returned it.
        req_id: u32,
        /// The reply's payload, with its operation already checked.
        result: Result<Vec<u8>, Error>,
    },
    /// A watch event for this subscription.
    Watch {
        /// Whose token the event carries.
        subscription: SubscriptionId,
        /// The event.
        event: WatchEvent,
    },
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    op: Op,
    abandoned: bool,
}

/// The protocol state of one client connection. See the [module
/// documentation](self) for the order of calls.
#[derive(Debug)]
pub struct ClientCore {
    next_id: u32,
    pending: HashMap<u32, Pending>,
    decoder: Decoder,
    /// token -> subscriptions routed that token (one entry per
    /// registration, so a subscription may appear more than once).
    routes: HashMap<Box<[u8]>, Vec<SubscriptionId>>,
    next_subscription: u64,
    events: VecDeque<Event>,
    failed: Option<ProtocolError>,
    closed: bool,
    unrouted_events: u64,
}

impl Default for ClientCore {
    fn default() -> Self {
        ClientCore::new()
    }
}

impl ClientCore {
    /// A core for a fresh connection.
    pub fn new() -> Self {
        ClientCore {
            next_id: 1,
            pending: HashMap::new(),
            decoder: Decoder::new(),
            routes: HashMap::new(),
            next_subscription: 1,
            events: VecDeque::new(),
            failed: None,
            closed: false,
            unrouted_events: 0,
        }
    }

    /// Frames `request` in transaction `tx_id` (0 for none), appending the
    /// message to `out`, and returns its `req_id`. Fails with `E2BIG`
    /// (appending nothing) if the payload would exceed [`PAYLOAD_MAX`], and
    /// with an I/O error once the core is closed.
    pub fn start(&mut self, tx_id: u32, request: &Request<'_>, out: &mut Vec<u8>) -> Result<u32, Error> {
        self.check_open()?;
        let req_id = self.allocate_id();
        request.encode(req_id, tx_id, out)?;
        self.pending.insert(req_id, Pending { op: request.op(), abandoned: false });
        Ok(req_id)
    }

    /// Like [`ClientCore::start`] with a payload the caller built, for
    /// requests the typed [`Request`] cannot express.
    pub fn start_raw(&mut self, op: Op, tx_id: u32, payload: &[u8], out: &mut Vec<u8>) -> Result<u32, Error> {
        self.check_open()?;
        let len = u32::try_from(payload.len()).ok().filter(|len| *len as usize <= PAYLOAD_MAX);
        let len = len.ok_or(Error::Xs(ErrorCode::E2BIG))?;
        let req_id = self.allocate_id();
        let header = xenstore_wire::Header { op: op as u32, req_id, tx_id, len };
        out.extend_from_slice(&header.encode());
        out.extend_from_slice(payload);
        self.pending.insert(req_id, Pending { op, abandoned: false });
        Ok(req_id)
    }

    /// Whether any request awaits its reply, abandoned ones included
    /// (their replies must still be read off the connection).
    pub fn awaiting_replies(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Nobody waits for `req_id` any more: its reply will be dropped.
    pub fn abandon(&mut self, req_id: u32) {
        if let Some(pending) = self.pending.get_mut(&req_id) {
            pending.abandoned = true;
        }
        self.events.retain(|event| !matches!(event, Event::Reply { req_id: id, .. } if *id == req_id));
    }

    /// A new subscription receiving the events that carry `token`.
    pub fn subscribe(&mut self, token: &[u8]) -> SubscriptionId {
        let id = SubscriptionId(self.next_subscription);
        self.next_subscription += 1;
        self.add_route(id, token);
        id
    }

    /// Also routes `token` to `subscription` (one handle watching several
    /// paths). Adding a token twice needs two [`ClientCore::remove_route`]s.
    pub fn add_route(&mut self, subscription: SubscriptionId, token: &[u8]) {
        self.routes.entry(Box::from(token)).or_default().push(subscription);
    }

    /// Undoes one [`ClientCore::add_route`].
    pub fn remove_route(&mut self, subscription: SubscriptionId, token: &[u8]) {
        if let Some(subs) = self.routes.get_mut(token) {
            if let Some(pos) = subs.iter().position(|s| *s == subscription) {
                subs.remove(pos);
            }
            if subs.is_empty() {
                self.routes.remove(token);
            }
        }
    }

    /// Drops every route to `subscription`, and its queued events.
    pub fn unsubscribe(&mut self, subscription: SubscriptionId) {
        self.routes.retain(|_, subs| {
            subs.retain(|s| *s != subscription);
            !subs.is_empty()
        });
        self.events.retain(|event| !matches!(event, Event::Watch { subscription: s, .. } if *s == subscription));
    }

    /// Feeds bytes received from the connection. Complete messages become
    /// [`Event`]s. A fatal error (see [`ProtocolError::is_fatal`]) means the
    /// connection must be closed; the core then refuses further input.
    pub fn receive(&mut self, mut bytes: &[u8]) -> Result<(), ProtocolError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        while !bytes.is_empty() {
            match self.decoder.decode(&mut bytes) {
                Ok(Some(packet)) => self.handle(packet)?,
                Ok(None) => break,
                Err(err) => return Err(self.fail(ProtocolError::Frame(err))),
            }
        }
        Ok(())
    }

    /// The next thing the driver must act on.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The connection is gone: returns the `req_id`s that were still
    /// waiting (abandoned ones excluded), forgets them, and makes every later
    /// [`ClientCore::start`] fail.
    pub fn close(&mut self) -> Vec<u32> {
        self.closed = true;
        let mut waiting: Vec<u32> = self.pending.drain().filter(|(_, p)| !p.abandoned).map(|(id, _)| id).collect();
        waiting.sort_unstable();
        waiting
    }

    /// The connection was reset (the daemon forgot its requests, watches
    /// and transactions): returns the `req_id`s that were still waiting
    /// (abandoned ones excluded), forgets them and any partial message
    /// received, and stays open. Subscriptions and routes are kept.
    pub fn reset(&mut self) -> Vec<u32> {
        self.decoder = Decoder::new();
        self.events.retain(|event| matches!(event, Event::Watch { .. }));
        let mut waiting: Vec<u32> = self.pending.drain().filter(|(_, p)| !p.abandoned).map(|(id, _)| id).collect();
        waiting.sort_unstable();
        waiting
    }

    /// Whether [`ClientCore::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// How many requests await a reply (abandoned ones included).
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Watch events dropped because no subscription had their token
    /// (after an unsubscribe, or spurious ones) or because they were
    /// malformed.
    pub fn unrouted_events(&self) -> u64 {
        self.unrouted_events
    }

    fn check_open(&self) -> Result<(), Error> {
        if self.closed || self.failed.is_some() {
            Err(Error::closed())
        } else {
            Ok(())
        }
    }

    /// The next id not in use. Skips 0 (libxenstore's fixed id) so a trace
    /// of this client is easy to tell apart; the loop ends because at most
    /// `pending.len()` ids are taken.
    fn allocate_id(&mut self) -> u32 {
        loop {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1);
            if id != 0 && !self.pending.contains_key(&id) {
                return id;
            }
        }
    }

    fn fail(&mut self, err: ProtocolError) -> ProtocolError {
        self.failed = Some(err.clone());
        err
    }

    fn handle(&mut self, packet: Packet) -> Result<(), ProtocolError> {
        let Packet { header, payload } = packet;
        if header.op == Op::WatchEvent as u32 {
            self.route(&payload);
            return Ok(());
        }
        let Some(pending) = self.pending.remove(&header.req_id) else {
            return Err(self.fail(ProtocolError::UnexpectedReply { req_id: header.req_id, op: header.op }));
        };
        if pending.abandoned {
            return Ok(());
        }
        let result = if header.op == Op::Error as u32 {
            match ErrorCode::parse(&payload) {
                Some(code) => Err(Error::Xs(code)),
                None => Err(Error::Protocol(ProtocolError::UnknownError(payload))),
            }
        } else if header.op == pending.op as u32 {
            Ok(payload)
        } else {
            Err(Error::Protocol(ProtocolError::WrongReplyOp { expected: pending.op, got: header.op }))
        };
        self.events.push_back(Event::Reply { req_id: header.req_id, result });
        Ok(())
    }

    fn route(&mut self, payload: &[u8]) {
        let Ok(event) = WatchEvent::parse(payload) else {
            self.unrouted_events += 1;
            return;
        };
        let Some(subs) = self.routes.get(&*event.token) else {
            self.unrouted_events += 1;
            return;
        };
        let mut delivered: Vec<SubscriptionId> = Vec::with_capacity(subs.len());
        for sub in subs {
            if !delivered.contains(sub) {
                delivered.push(*sub);
            }
        }
        let last = delivered.len().saturating_sub(1);
        let mut event = Some(event);
        for (i, subscription) in delivered.into_iter().enumerate() {
            // Move the event into the last delivery, clone for the others.
            let ev = if i == last { event.take() } else { event.clone() };
            if let Some(event) = ev {
                self.events.push_back(Event::Watch { subscription, event });
            }
        }
    }
}

/// Decodes a reply payload for `op` into a typed [`Reply`]; a payload that
/// does not parse is a [`ProtocolError::MalformedReply`].
pub fn decode_reply(op: Op, payload: &[u8]) -> Result<Reply, Error> {
    Reply::parse(op as u32, payload).map_err(|_| Error::Protocol(ProtocolError::MalformedReply { op }))
}

/// How many times [`DirectoryListing`] starts over because the directory
/// changed between two `DIRECTORY_PART`s before giving up with `EAGAIN`.
pub const DIRECTORY_RESTARTS: u32 = 64;

/// Lists a directory, whatever its size: `DIRECTORY` first and, if that
/// answers `E2BIG` (children names over one payload), `DIRECTORY_PART` from
/// offset 0 until the part that ends the list. Every part carries the
/// directory's generation count; if it changes, the children changed under
/// us and the listing starts over (at most [`DIRECTORY_RESTARTS`] times).
///
/// Sans-IO: send [`DirectoryListing::request`], give the answer to
/// [`DirectoryListing::on_reply`], repeat until it returns the names.
#[derive(Debug, Clone)]
pub struct DirectoryListing<'p> {
    path: &'p str,
    paged: Option<Paging>,
    restarts: u32,
}

#[derive(Debug, Clone, Default)]
struct Paging {
    offset: u32,
    generation: Option<u64>,
    names: Vec<u8>,
}

impl<'p> DirectoryListing<'p> {
    /// Starts listing `path`.
    pub fn new(path: &'p str) -> Self {
        DirectoryListing { path, paged: None, restarts: 0 }
    }

    /// The request to send next.
    pub fn request(&self) -> Request<'p> {
        match &self.paged {
            None => Request::Directory(self.path),
            Some(paging) => Request::DirectoryPart { path: self.path, offset: paging.offset },
        }
    }

    /// Takes the answer to [`DirectoryListing::request`]: `Ok(Some(names))`
    /// when done, `Ok(None)` when another request is due.
    pub fn on_reply(&mut self, reply: Result<Reply, Error>) -> Result<Option<Vec<String>>, Error> {
        let Some(paging) = &mut self.paged else {
            return match reply {
                Ok(Reply::Directory(names)) => Ok(Some(names.iter().map(|n| n.to_string()).collect())),
                Ok(_) => Err(ProtocolError::MalformedReply { op: Op::Directory }.into()),
                Err(Error::Xs(ErrorCode::E2BIG)) => {
                    self.paged = Some(Paging::default());
                    Ok(None)
                }
                Err(err) => Err(err),
            };
        };
        let (generation, names, complete) = match reply? {
            Reply::DirectoryPart { generation, names, complete } => (generation, names, complete),
            _ => return Err(ProtocolError::MalformedReply { op: Op::DirectoryPart }.into()),
        };
        if paging.generation.is_some_and(|g| g != generation) {
            self.restarts += 1;
            if self.restarts > DIRECTORY_RESTARTS {
                return Err(Error::Xs(ErrorCode::EAGAIN));
            }
            *paging = Paging::default();
            return Ok(None);
        }
        paging.generation = Some(generation);
        if names.is_empty() && !complete {
            return Err(ProtocolError::DirectoryPart.into());
        }
        let advance = u32::try_from(names.len()).map_err(|_| ProtocolError::DirectoryPart)?;
        paging.offset = paging.offset.checked_add(advance).ok_or(ProtocolError::DirectoryPart)?;
        paging.names.extend_from_slice(&names);
        if !complete {
            return Ok(None);
        }
        split_names(&paging.names).map(Some)
    }
}

/// `a\0b\0` -> `["a", "b"]`; names must be UTF-8 (path bytes are ASCII).
fn split_names(list: &[u8]) -> Result<Vec<String>, Error> {
    if list.is_empty() {
        return Ok(Vec::new());
    }
    let malformed = || Error::Protocol(ProtocolError::MalformedReply { op: Op::DirectoryPart });
    let body = list.strip_suffix(b"\0").ok_or_else(malformed)?;
    body.split(|b| *b == 0).map(|name| std::str::from_utf8(name).map(str::to_owned).map_err(|_| malformed())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use xenstore_wire::Header;

    fn frame(op: Op, req_id: u32, payload: &[u8]) -> Vec<u8> {
        let header = Header { op: op as u32, req_id, tx_id: 0, len: u32::try_from(payload.len()).unwrap() };
        let mut out = header.encode().to_vec();
        out.extend_from_slice(payload);
        out
    }

    fn replies(core: &mut ClientCore) -> Vec<(u32, Result<Vec<u8>, Error>)> {
        let mut out = Vec::new();
        while let Some(event) = core.poll_event() {
            if let Event::Reply { req_id, result } = event {
                out.push((req_id, result));
            }
        }
        out
    }

    #[test]
    fn start_frames_request_with_fresh_ids() {
        let mut core = ClientCore::new();
        let mut out = Vec::new();
        let a = core.start(0, &Request::Read("/a"), &mut out).unwrap();
        let b = core.start(7, &Request::Read("/b"), &mut out).unwrap();
        assert_ne!(a, b);
        assert_ne!(a, 0);
        let header = Header::decode(out[..16].try_into().unwrap());
        assert_eq!(header, Header { op: Op::Read as u32, req_id: a, tx_id: 0, len: 3 });
        assert_eq!(&out[16..19], b"/a\0");
        let second = Header::decode(out[19..35].try_into().unwrap());
        assert_eq!((second.req_id, second.tx_id), (b, 7));
        assert_eq!(core.in_flight(), 2);
    }

    #[test]
    fn out_of_order_replies_match_their_requests() {
        let mut core = ClientCore::new();
        let mut out = Vec::new();
        let a = core.start(0, &Request::Read("/a"), &mut out).unwrap();
        let b = core.start(0, &Request::Read("/b"), &mut out).unwrap();
        let c = core.start(0, &Request::Read("/c"), &mut out).unwrap();
        let mut input = frame(Op::Read, c, b"C");
        input.extend(frame(Op::Error, a, b"ENOENT\0"));
        input.extend(frame(Op::Read, b, b"B"));
        core.receive(&input).unwrap();
        let got = replies(&mut core);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].0, c);
        assert_eq!(got[0].1.as_ref().unwrap(), b"C");
        assert_eq!(got[1].0, a);
        assert!(matches!(got[1].1, Err(Error::Xs(ErrorCode::ENOENT))));
        assert_eq!(got[2].0, b);
        assert_eq!(core.in_flight(), 0);
    }

    #[test]
    fn receive_reassembles_any_chunking() {
        let mut core = ClientCore::new();
        let mut out = Vec::new();
        let id = core.start(0, &Request::Read("/a"), &mut out).unwrap();
        let token = core.subscribe(b"tok");
        let mut input = frame(Op::WatchEvent, 0, b"/a\0tok\0");
        input.extend(frame(Op::Read, id, b"value"));
        for byte in input.chunks(1) {
            core.receive(byte).unwrap();
        }
        match core.poll_event() {
            Some(Event::Watch { subscription, event }) => {
                assert_eq!(subscription, token);
                assert_eq!(event.path, "/a");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(core.poll_event(), Some(Event::Reply { req_id, result: Ok(v) }) if req_id == id && v == b"value")
        );
    }

    #[test]
    fn watch_events_interleaved_with_replies_are_routed_by_token() {
        let mut core = ClientCore::new();
        let mut out = Vec::new();
        let one = core.subscribe(b"one");
        let two = core.subscribe(b"two");
        let id = core.start(0, &Request::Write { path: "/x", value: b"1" }, &mut out).unwrap();
        let mut input = frame(Op::WatchEvent, 0, b"/x\0two\0");
        input.extend(frame(Op::WatchEvent, 0, b"/x\0one\0"));
        input.extend(frame(Op::Write, id, b"OK\0"));
        input.extend(frame(Op::WatchEvent, 0, b"/y\0nobody\0"));
        input.extend(frame(Op::WatchEvent, 0, b"/x/y\0two\0"));
        core.receive(&input).unwrap();
        let mut seen = Vec::new();
        while let Some(event) = core.poll_event() {
            match event {
                Event::Watch { subscription, event } => seen.push(format!("{:?}:{}", subscription, event.path)),
                Event::Reply { req_id, result } => seen.push(format!("reply {}:{}", req_id == id, result.is_ok())),
            }
        }
        assert_eq!(
            seen,
            vec![format!("{two:?}:/x"), format!("{one:?}:/x"), "reply true:true".to_owned(), format!("{two:?}:/x/y"),]
        );
        assert_eq!(core.unrouted_events(), 1);
    }

    #[test]
    fn one_token_fans_out_to_every_subscription_once() {
        let mut core = ClientCore::new();
        let a = core.subscribe(b"t");
        let b = core.subscribe(b"t");
        core.add_route(a, b"t"); // a watches two paths with one token
        core.receive(&frame(Op::WatchEvent, 0, b"/p\0t\0")).unwrap();
        let mut subs = Vec::new();
        while let Some(Event::Watch { subscription, .. }) = core.poll_event() {
            subs.push(subscription);
        }
        assert_eq!(subs, vec![a, b]);
        core.remove_route(a, b"t");
        core.unsubscribe(b);
        core.receive(&frame(Op::WatchEvent, 0, b"/p\0t\0")).unwrap();
        assert!(matches!(core.poll_event(), Some(Event::Watch { subscription, .. }) if subscription == a));
        core.unsubscribe(a);
        core.receive(&frame(Op::WatchEvent, 0, b"/p\0t\0")).unwrap();
        assert!(core.poll_event().is_none());
    }

    #[test]
    fn many_in_flight_complete_in_any_order() {
        let mut core = ClientCore::new();
        let mut out = Vec::new();
        let ids: Vec<u32> =
            (0..1000).map(|i| core.start(0, &Request::Read(&format!("/n{i}")), &mut out).unwrap()).collect();
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        let mut input = Vec::new();
        for (i, id) in ids.iter().enumerate().rev() {
            input.extend(frame(Op::Read, *id, format!("v{i}").as_bytes()));
        }
        core.receive(&input).unwrap();
        let got = replies(&mut core);
        assert_eq!(got.len(), 1000);
        for (req_id, result) in got {
            let i = ids.iter().position(|id| *id == req_id).unwrap();
            assert_eq!(result.unwrap(), format!("v{i}").into_bytes());
        }
    }

    #[test]
    fn ids_in_use_are_skipped_after_wraparound() {
        let mut core = ClientCore::new();
        let mut out = Vec::new();
        core.next_id = u32::MAX;
        let a = core.start(0, &Request::Read("/a"), &mut out).unwrap();
        let b = core.start(0, &Request::Read("/b"), &mut out).unwrap();
        assert_eq!((a, b), (u32::MAX, 1));
        core.next_id = u32::MAX;
        let c = core.start(0, &Request::Read("/c"), &mut out).unwrap();
        assert_eq!(c, 2, "skips MAX, 0 and 1, which are in use or reserved");
    }

    #[test]
    fn reply_to_unknown_id_is_fatal() {
        let mut core = ClientCore::new();
        let err = core.receive(&frame(Op::Read, 42, b"x")).unwrap_err();
        assert_eq!(err, ProtocolError::UnexpectedReply { req_id: 42, op: Op::Read as u32 });
        assert!(err.is_fatal());
        assert!(core.receive(b"").is_err());
        assert!(core.start(0, &Request::Read("/a"), &mut Vec::new()).is_err());
    }

    #[test]
    fn oversize_frame_is_fatal() {
        let mut core = ClientCore::new();
        let header = Header { op: Op::Read as u32, req_id: 1, tx_id: 0, len: 4097 };
        let err = core.receive(&header.encode()).unwrap_err();
        assert!(matches!(err, ProtocolError::Frame(_)));
    }

    #[test]
    fn wrong_reply_op_fails_only_that_request() {
        let mut core = ClientCore::new();
        let mut out = Vec::new();
        let id = core.start(0, &Request::Read("/a"), &mut out).unwrap();
        core.receive(&frame(Op::Directory, id, b"")).unwrap();
        let got = replies(&mut core);
        assert!(matches!(got[0].1, Err(Error::Protocol(ProtocolError::WrongReplyOp { expected: Op::Read, got: 1 }))));
    }

    #[test]
    fn unknown_error_name_is_reported() {
        let mut core = ClientCore::new();
        let mut out = Vec::new();
        let id = core.start(0, &Request::Read("/a"), &mut out).unwrap();
        core.receive(&frame(Op::Error, id, b"EWHAT\0")).unwrap();
        let got = replies(&mut core);
        assert!(matches!(&got[0].1, Err(Error::Protocol(ProtocolError::UnknownError(n))) if n == b"EWHAT\0"));
    }

    #[test]
    fn abandoned_reply_is_consumed_and_dropped() {
        let mut core = ClientCore::new();
        let mut out = Vec::new();
        let id = core.start(0, &Request::Read("/a"), &mut out).unwrap();
        core.abandon(id);
        core.receive(&frame(Op::Read, id, b"late")).unwrap();
        assert!(core.poll_event().is_none());
        assert_eq!(core.in_flight(), 0);
    }

    #[test]
    fn close_returns_waiting_ids_and_refuses_new_requests() {
        let mut core = ClientCore::new();
        let mut out = Vec::new();
        let a = core.start(0, &Request::Read("/a"), &mut out).unwrap();
        let b = core.start(0, &Request::Read("/b"), &mut out).unwrap();
        core.abandon(b);
        assert_eq!(core.close(), vec![a]);
        assert!(matches!(core.start(0, &Request::Read("/c"), &mut out), Err(Error::Io(_))));
    }

    #[test]
    fn oversize_request_is_e2big_and_not_sent() {
        let mut core = ClientCore::new();
        let mut out = Vec::new();
        let value = vec![b'x'; 4096];
        let err = core.start(0, &Request::Write { path: "/a", value: &value }, &mut out).unwrap_err();
        assert!(matches!(err, Error::Xs(ErrorCode::E2BIG)));
        assert!(out.is_empty());
        assert_eq!(core.in_flight(), 0);
        let err = core.start_raw(Op::Write, 0, &[0u8; 4097], &mut out).unwrap_err();
        assert!(matches!(err, Error::Xs(ErrorCode::E2BIG)));
        assert!(core.start_raw(Op::Write, 0, &[0u8; 4096], &mut out).is_ok());
    }

    #[test]
    fn reset_returns_waiting_ids_drops_partial_input_and_keeps_routes() {
        let mut core = ClientCore::new();
        let mut out = Vec::new();
        let sub = core.subscribe(b"tok");
        let a = core.start(0, &Request::Read("/a"), &mut out).unwrap();
        let b = core.start(0, &Request::Read("/b"), &mut out).unwrap();
        core.abandon(b);
        core.receive(&frame(Op::Read, a, b"half")[..10]).unwrap();
        assert_eq!(core.reset(), vec![a]);
        assert_eq!(core.in_flight(), 0);
        let c = core.start(0, &Request::Read("/c"), &mut out).unwrap();
        let mut input = frame(Op::WatchEvent, 0, b"/w\0tok\0");
        input.extend(frame(Op::Read, c, b"C"));
        core.receive(&input).unwrap();
        assert!(matches!(core.poll_event(), Some(Event::Watch { subscription, .. }) if subscription == sub));
        assert!(matches!(core.poll_event(), Some(Event::Reply { req_id, result: Ok(v) }) if req_id == c && v == b"C"));
    }

    fn part(generation: u64, names: &[u8], complete: bool) -> Result<Reply, Error> {
        Ok(Reply::DirectoryPart { generation, names: names.to_vec(), complete })
    }

    #[test]
    fn directory_listing_uses_directory_when_it_fits() {
        let mut listing = DirectoryListing::new("/d");
        assert_eq!(listing.request(), Request::Directory("/d"));
        let names = listing.on_reply(Ok(Reply::Directory(vec!["a".into(), "b".into()]))).unwrap();
        assert_eq!(names, Some(vec!["a".to_owned(), "b".to_owned()]));
    }

    #[test]
    fn directory_listing_pages_after_e2big() {
        let mut listing = DirectoryListing::new("/d");
        assert_eq!(listing.on_reply(Err(Error::Xs(ErrorCode::E2BIG))).unwrap(), None);
        assert_eq!(listing.request(), Request::DirectoryPart { path: "/d", offset: 0 });
        assert_eq!(listing.on_reply(part(5, b"alpha\0be", false)).unwrap(), None);
        assert_eq!(listing.request(), Request::DirectoryPart { path: "/d", offset: 8 });
        let names = listing.on_reply(part(5, b"ta\0gamma\0", true)).unwrap();
        assert_eq!(names, Some(vec!["alpha".to_owned(), "beta".to_owned(), "gamma".to_owned()]));
    }

    #[test]
    fn directory_listing_restarts_when_generation_changes() {
        let mut listing = DirectoryListing::new("/d");
        listing.on_reply(Err(Error::Xs(ErrorCode::E2BIG))).unwrap();
        listing.on_reply(part(5, b"a\0", false)).unwrap();
        assert_eq!(listing.on_reply(part(6, b"c\0", true)).unwrap(), None);
        assert_eq!(listing.request(), Request::DirectoryPart { path: "/d", offset: 0 });
        listing.on_reply(part(6, b"a\0", false)).unwrap();
        assert_eq!(listing.on_reply(part(6, b"b\0", true)).unwrap(), Some(vec!["a".to_owned(), "b".to_owned()]));
    }

    #[test]
    fn directory_listing_gives_up_with_eagain_on_endless_change() {
        let mut listing = DirectoryListing::new("/d");
        listing.on_reply(Err(Error::Xs(ErrorCode::E2BIG))).unwrap();
        let mut generation = 0;
        let err = loop {
            generation += 1;
            match listing.on_reply(part(generation, b"a\0", false)) {
                Ok(None) => continue,
                Ok(Some(_)) => panic!("cannot finish"),
                Err(err) => break err,
            }
        };
        assert!(err.is_eagain());
    }

    #[test]
    fn directory_listing_rejects_parts_without_progress() {
        let mut listing = DirectoryListing::new("/d");
        listing.on_reply(Err(Error::Xs(ErrorCode::E2BIG))).unwrap();
        assert!(matches!(listing.on_reply(part(1, b"", false)), Err(Error::Protocol(ProtocolError::DirectoryPart))));
    }

    #[test]
    fn directory_listing_passes_other_errors_through() {
        let mut listing = DirectoryListing::new("/d");
        assert!(matches!(listing.on_reply(Err(Error::Xs(ErrorCode::ENOENT))), Err(Error::Xs(ErrorCode::ENOENT))));
    }
}
