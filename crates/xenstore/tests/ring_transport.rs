//! The shared-ring transport against a fake server on the other mapping of
//! the same page, in one process (see `ring_fixture`).

mod ring_fixture;

use std::io::{self, Read};
use std::sync::Arc;
use std::time::Duration;

use ring_fixture::server::{message, POISON};
use ring_fixture::{within, ServerConfig, Setup};
use xenstore::transport::{ServerRingError, Transport};
use xenstore::{Error, Op, Store};
use xenstore_ring::{FEATURE_ERROR, FEATURE_RECONNECTION, RING_SIZE};

const LIMIT: Duration = Duration::from_secs(20);

fn features() -> ServerConfig {
    ServerConfig { features: FEATURE_ERROR | FEATURE_RECONNECTION, debris: Vec::new(), max_unread: 0 }
}

/// A value of `len` bytes that differs by `seed`, so misrouted replies show.
fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + u8::try_from((i * 7 + seed) % 26).unwrap()).collect()
}

#[test]
fn a_read_round_trips_over_the_ring() {
    let (client, _server, _) = Setup::client(features());
    let value = within(LIMIT, move || client.read("/local/domain/1/name").unwrap());
    assert_eq!(value, b"value of /local/domain/1/name");
}

#[test]
fn requests_in_flight_from_many_threads_fill_and_wrap_both_queues() {
    let (client, server, _) = Setup::client(features());
    let client = Arc::new(client);
    const THREADS: usize = 8;
    const ROUNDS: usize = 40;
    within(Duration::from_secs(60), move || {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let client = Arc::clone(&client);
                std::thread::spawn(move || {
                    for round in 0..ROUNDS {
                        let path = format!("/t{t}/r{round}");
                        // Small requests keep many in flight; every third
                        // value is bigger than the ring, so writers block on
                        // a full request queue and the server on a full
                        // response queue, with other threads' messages
                        // interleaved around them.
                        let len = if round % 3 == 0 { 1500 + 800 * (t % 4) } else { 10 + round };
                        let value = pattern(len, t * 1000 + round);
                        client.write(&path, &value).unwrap();
                        assert_eq!(client.read(&path).unwrap(), value, "{path}");
                        assert_eq!(
                            client.read(&format!("/none{t}")).unwrap(),
                            format!("value of /none{t}").into_bytes()
                        );
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
    });
    // Far more than a ring-full went each way, so the indices wrapped.
    assert_eq!(server.requests(), THREADS * ROUNDS * 3);
}

#[test]
fn a_payload_near_the_maximum_crosses_the_ring_in_several_notified_pieces() {
    let (client, _server, to_server) = Setup::client(features());
    let value = pattern(4000, 3);
    let before = to_server.get();
    let (client, written) = within(LIMIT, move || {
        client.write("/big", &value).unwrap();
        (client, value)
    });
    // 16 + 5 + 4000 bytes through a 1024-byte queue: at least four
    // ring-fulls, each announced to a server that had drained the last.
    let notifications = to_server.get() - before;
    assert!(notifications >= (16 + 5 + 4000) / RING_SIZE, "only {notifications} notifications");
    let back = within(LIMIT, move || client.read("/big").unwrap());
    assert_eq!(back, written);
}

#[test]
fn a_watch_event_arrives_after_the_watch_reply() {
    let (client, _server, _) = Setup::client(features());
    let event = within(LIMIT, move || {
        let watch = client.watch("/local/domain/1/device", "dev-token").unwrap();
        watch.recv_timeout(LIMIT).unwrap()
    });
    assert_eq!(event.path, "/local/domain/1/device");
    assert_eq!(&event.token[..], b"dev-token");
}

#[test]
fn the_error_indicator_without_reconnection_fails_the_call_instead_of_hanging() {
    let (client, _server, _) =
        Setup::client(ServerConfig { features: FEATURE_ERROR, debris: Vec::new(), max_unread: 0 });
    let err = within(LIMIT, move || client.read(POISON).unwrap_err());
    let Error::Io(err) = err else { panic!("expected an I/O error, got {err:?}") };
    assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted);
    assert!(err.to_string().contains("ERROR_PROTO"), "{err}");
}

#[test]
fn a_call_in_flight_when_the_indicator_is_set_fails_with_restarted_and_the_next_succeeds() {
    let (client, server, _) = Setup::client(features());
    let (first, second) = within(LIMIT, move || {
        let first = client.read(POISON).unwrap_err();
        let second = client.read("/after").unwrap();
        assert!(!client.is_closed());
        (first, second)
    });
    assert!(first.is_restarted(), "{first:?}");
    assert!(first.to_string().contains("may or may not have been applied"), "{first}");
    assert_eq!(second, b"value of /after");
    assert_eq!(server.reconnects(), 1);
}

#[test]
fn a_watch_is_registered_again_when_the_ring_is_resumed() {
    let (client, server, _) = Setup::client(features());
    let (before, after) = within(LIMIT, move || {
        let watch = client.watch("/local/domain/1/w", "resumed").unwrap();
        let before = watch.recv_timeout(LIMIT).unwrap();
        assert!(client.read(POISON).unwrap_err().is_restarted());
        // The fake server fires a watch once at registration, as xenstored
        // does: this event can only come from the registration the
        // resumption sent again.
        let after = watch.recv_timeout(LIMIT).unwrap();
        client.write("/later", b"v").unwrap();
        (before, after)
    });
    assert_eq!((before.path.as_str(), &before.token[..]), ("/local/domain/1/w", &b"resumed"[..]));
    assert_eq!((after.path.as_str(), &after.token[..]), ("/local/domain/1/w", &b"resumed"[..]));
    assert_eq!(server.reconnects(), 1);
}

#[test]
fn requests_from_many_threads_across_repeated_resumptions_fail_only_with_restarted() {
    let (client, server, _) = Setup::client(features());
    let client = Arc::new(client);
    const THREADS: usize = 6;
    const RESUMPTIONS: usize = 20;
    let (ok, restarted) = within(Duration::from_secs(60), move || {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (client, stop) = (Arc::clone(&client), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let (mut ok, mut restarted) = (0usize, 0usize);
                    let mut round = 0;
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        // Some values bigger than the ring, so that writers
                        // are cut off halfway through a message too.
                        let len = if round % 4 == 0 { 1500 } else { 20 };
                        match client.write(&format!("/t{t}"), &pattern(len, t + round)) {
                            Ok(()) => ok += 1,
                            Err(err) if err.is_restarted() => restarted += 1,
                            Err(err) => panic!("thread {t}: {err:?}"),
                        }
                        round += 1;
                    }
                    (ok, restarted)
                })
            })
            .collect();
        for _ in 0..RESUMPTIONS {
            assert!(client.read(POISON).unwrap_err().is_restarted());
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let counts: Vec<(usize, usize)> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        assert!(!client.is_closed());
        assert_eq!(client.read("/after").unwrap(), b"value of /after");
        counts.iter().fold((0, 0), |(a, b), (ok, r)| (a + ok, b + r))
    });
    assert!(ok > 0 && restarted > 0, "{ok} acknowledged, {restarted} restarted");
    assert_eq!(server.reconnects(), RESUMPTIONS);
}

#[test]
fn a_transaction_opened_before_a_resumption_fails_locally_with_restarted() {
    let (client, server, _) = Setup::client(features());
    let server = Arc::new(server);
    let counts = Arc::clone(&server);
    let (err, sent) = within(LIMIT, move || {
        let tx = client.transaction_start().unwrap();
        assert!(client.read(POISON).unwrap_err().is_restarted());
        let before = counts.requests();
        let err = tx.write("/in-tx", b"v").unwrap_err();
        drop(tx);
        client.write("/after", b"v").unwrap();
        (err, counts.requests() - before)
    });
    assert!(err.is_restarted(), "{err:?}");
    // Only the last write reached the server: neither the transaction's
    // write nor the abort of the dropped transaction was sent.
    assert_eq!(sent, 1);
    assert_eq!(server.reconnects(), 1);
}

#[test]
fn a_transaction_cut_off_by_a_resumption_starts_over() {
    let (client, server, _) = Setup::client(features());
    let attempts = within(LIMIT, move || {
        let mut attempts = 0;
        client
            .transaction(|tx| {
                attempts += 1;
                if attempts == 1 {
                    tx.read(POISON)?;
                }
                tx.write("/counted", b"once")
            })
            .unwrap();
        attempts
    });
    assert_eq!(attempts, 2);
    assert_eq!(server.reconnects(), 1);
}

#[test]
fn after_the_error_indicator_the_transport_reads_and_writes_fail_with_it() {
    let setup = Setup::new(features());
    let ring = setup.ring;
    let mut reader = ring.reader().unwrap();
    let (ring, err) = within(LIMIT, move || {
        ring.write_all(&message(Op::Read, 1, 0, format!("{POISON}\0").as_bytes())).unwrap();
        let err = reader.read(&mut [0u8; 64]).unwrap_err();
        (ring, err)
    });
    let indicator = err.get_ref().and_then(|e| e.downcast_ref::<ServerRingError>()).copied();
    assert_eq!(indicator.and_then(|e| e.name()), Some("ERROR_PROTO"), "{err}");
    let err = ring.write_all(b"anything").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted);
}

#[test]
fn shutdown_makes_a_blocked_reader_return_end_of_file() {
    let setup = Setup::new(features());
    let ring = Arc::new(setup.ring);
    let mut reader = ring.reader().unwrap();
    let blocked = std::thread::spawn(move || reader.read(&mut [0u8; 64]));
    // Let the reader block (it would also pass if it had not yet).
    std::thread::sleep(Duration::from_millis(100));
    ring.shutdown();
    let result = within(LIMIT, move || blocked.join().unwrap());
    assert_eq!(result.unwrap(), 0);
    assert_eq!(ring.write_all(b"late").unwrap_err().kind(), io::ErrorKind::NotConnected);
}

#[test]
fn reconnect_discards_what_an_earlier_user_left_in_the_ring() {
    // A partial message in the response queue: read as-is it would
    // desynchronise the framing for good.
    let debris = message(Op::Read, 99, 0, b"stale reply")[..10].to_vec();
    let setup = Setup::new(ServerConfig { debris, ..features() });
    let ring = setup.ring;
    let ring = within(LIMIT, move || {
        ring.reconnect().unwrap();
        ring
    });
    // The fake server counts the reconnection just after completing it,
    // which the guest may see first: wait for the count.
    let deadline = std::time::Instant::now() + LIMIT;
    while setup.server.reconnects() == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(setup.server.reconnects(), 1);
    let client = xenstore::Client::with_transport(Box::new(ring), xenstore::Options::default()).unwrap();
    let value = within(LIMIT, move || client.read("/after").unwrap());
    assert_eq!(value, b"value of /after");
}

#[test]
fn reconnect_without_the_feature_does_nothing() {
    let setup = Setup::new(ServerConfig { features: FEATURE_ERROR, debris: Vec::new(), max_unread: 0 });
    within(LIMIT, move || setup.ring.reconnect().unwrap());
}

#[cfg(feature = "tokio")]
#[test]
fn the_async_client_runs_over_the_ring_too() {
    use xenstore::tokio::AsyncClient;
    let setup = Setup::new(features());
    let client = AsyncClient::with_transport(Box::new(setup.ring), xenstore::Options::default()).unwrap();
    let (small, big) = within(LIMIT, move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let big = pattern(3000, 9);
            let (write, small) = tokio::join!(client.write("/async/big", &big), client.read("/async/small"));
            write.unwrap();
            assert_eq!(client.read("/async/big").await.unwrap(), big);
            let mut watch = client.watch("/async/w", "async-token").await.unwrap();
            assert_eq!(watch.next().await.unwrap().path, "/async/w");
            (small.unwrap(), big.len())
        })
    });
    assert_eq!(small, b"value of /async/small");
    assert_eq!(big, 3000);
}

/// Replies nobody waits for (the aborts of dropped transactions, the
/// `UNWATCH`es of dropped watch handles) are still read off the ring. A
/// daemon stops reading a guest whose replies pile up unread; when the
/// client left them unread because no caller waited (and no watch made
/// it read), its next write waited for ever (the storm attack of
/// `xs-bench`'s hosted phase hung so).
#[test]
fn replies_nobody_waits_for_are_read_so_the_daemon_keeps_reading() {
    let config = ServerConfig { max_unread: 256, ..features() };
    let (client, _server, _) = Setup::client(config);
    let value = within(LIMIT, move || {
        let transactions: Vec<_> = (0..200).map(|_| client.transaction_start().unwrap()).collect();
        // 200 aborts nobody waits for: more than the response queue (1 KiB,
        // about 50 replies), the server's 256 bytes and the request queue
        // (about 30 aborts) hold, so a client that left their replies
        // unread would fill both queues and then wait for ever to write.
        drop(transactions);
        client.read("/after").unwrap()
    });
    assert_eq!(value, b"value of /after");
}
