//! The blocking client against a scripted fake daemon: request bytes,
//! demultiplexing under concurrency, watches, the transaction helper and
//! directory paging.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::Duration;

use common::FakeDaemon;
use xenstore::{Error, ErrorCode, Op, Options, Perm, PermList, ProtocolError, Store};
use xenstore_wire::Access;

#[test]
fn read_sends_path_with_nul_and_returns_value_bytes() {
    let (client, mut daemon) = FakeDaemon::pair(Options::default());
    let server = thread::spawn(move || {
        let req = daemon.expect(Op::Read);
        assert_eq!(req.payload, b"/a/b\0");
        assert_eq!(req.header.tx_id, 0);
        daemon.reply(&req, b"v\0\xff");
        daemon
    });
    assert_eq!(client.read("/a/b").unwrap(), b"v\0\xff");
    server.join().unwrap();
}

#[test]
fn write_sends_value_without_terminator() {
    let (client, mut daemon) = FakeDaemon::pair(Options::default());
    let server = thread::spawn(move || {
        let req = daemon.expect(Op::Write);
        assert_eq!(req.payload, b"/a\0xyz");
        daemon.ok(&req);
        daemon
    });
    client.write("/a", b"xyz").unwrap();
    server.join().unwrap();
}

#[test]
fn set_perms_sends_each_entry_with_nul() {
    let (client, mut daemon) = FakeDaemon::pair(Options::default());
    let server = thread::spawn(move || {
        let req = daemon.expect(Op::SetPerms);
        assert_eq!(req.payload, b"/a\0n0\0r5\0");
        daemon.ok(&req);
        let req = daemon.expect(Op::GetPerms);
        daemon.reply(&req, b"b3\0w1\0");
        daemon
    });
    let perms =
        PermList::new(vec![Perm { domid: 0, access: Access::None }, Perm { domid: 5, access: Access::Read }]).unwrap();
    client.set_perms("/a", &perms).unwrap();
    assert_eq!(client.get_perms("/a").unwrap().to_string(), "b3 w1");
    server.join().unwrap();
}

#[test]
fn daemon_error_is_the_exact_code() {
    let (client, mut daemon) = FakeDaemon::pair(Options::default());
    let server = thread::spawn(move || {
        let req = daemon.expect(Op::Read);
        daemon.error(&req, ErrorCode::EACCES);
        daemon
    });
    assert!(matches!(client.read("/secret"), Err(Error::Xs(ErrorCode::EACCES))));
    server.join().unwrap();
}

#[test]
fn oversize_write_is_e2big_and_never_sent() {
    let (client, mut daemon) = FakeDaemon::pair(Options::default());
    let server = thread::spawn(move || {
        // The first thing on the wire is the READ that follows.
        let req = daemon.expect(Op::Read);
        daemon.reply(&req, b"ok");
        daemon
    });
    let err = client.write("/a", &[b'x'; 4096]).unwrap_err();
    assert!(matches!(err, Error::Xs(ErrorCode::E2BIG)));
    assert_eq!(client.read("/a").unwrap(), b"ok");
    server.join().unwrap();
}

#[test]
fn concurrent_threads_get_their_own_replies_when_answered_out_of_order() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 40;
    let (client, mut daemon) = FakeDaemon::pair(Options::default());
    let server = thread::spawn(move || {
        // Answer in batches, each batch in reverse arrival order, so that
        // no reply comes in the order its request went out.
        let mut left = THREADS * PER_THREAD;
        let mut max_batch = 0;
        while left > 0 {
            let mut batch = vec![daemon.expect(Op::Read)];
            // Gather whatever else is already in flight (every thread
            // blocks on its one request, so at most THREADS).
            while batch.len() < THREADS.min(left) {
                batch.push(daemon.expect(Op::Read));
            }
            max_batch = max_batch.max(batch.len());
            for req in batch.iter().rev() {
                let path = req.payload.strip_suffix(b"\0").unwrap().to_vec();
                daemon.reply(req, &path);
            }
            left -= batch.len();
        }
        (daemon, max_batch)
    });
    thread::scope(|s| {
        for t in 0..THREADS {
            let client = &client;
            s.spawn(move || {
                for i in 0..PER_THREAD {
                    let path = format!("/t{t}/n{i}");
                    assert_eq!(client.read(&path).unwrap(), path.as_bytes());
                }
            });
        }
    });
    let (_daemon, max_batch) = server.join().unwrap();
    assert_eq!(max_batch, THREADS, "all threads had a request in flight at once");
}

#[test]
fn watch_events_interleaved_with_replies_reach_their_handles() {
    let (client, mut daemon) = FakeDaemon::pair(Options::default());
    let server = thread::spawn(move || {
        let w1 = daemon.expect(Op::Watch);
        assert_eq!(w1.payload, b"/a\0one\0");
        // The registration event may come before the WATCH reply.
        daemon.event("/a", b"one");
        daemon.ok(&w1);
        let w2 = daemon.expect(Op::Watch);
        assert_eq!(w2.payload, b"/b\0two\0");
        daemon.ok(&w2);
        daemon.event("/b", b"two");
        let read = daemon.expect(Op::Read);
        daemon.event("/a/x", b"one");
        daemon.event("/z", b"unknown-token");
        daemon.reply(&read, b"r");
        daemon.event("/b/y", b"two");
        daemon
    });
    let one = client.watch("/a", "one").unwrap();
    let two = client.watch("/b", "two").unwrap();
    assert_eq!(client.read("/r").unwrap(), b"r");
    let paths = |w: &xenstore::Watch, n: usize| -> Vec<String> {
        (0..n).map(|_| w.recv_timeout(Duration::from_secs(5)).unwrap().path).collect()
    };
    assert_eq!(paths(&one, 2), vec!["/a", "/a/x"]);
    assert_eq!(paths(&two, 2), vec!["/b", "/b/y"]);
    assert!(one.try_recv().is_err());
    server.join().unwrap();
}

#[test]
fn one_handle_keeps_the_order_of_several_watches() {
    let (client, mut daemon) = FakeDaemon::pair(Options::default());
    let server = thread::spawn(move || {
        for path in ["/a", "/b"] {
            let w = daemon.expect(Op::Watch);
            daemon.ok(&w);
            daemon.event(path, path.as_bytes());
        }
        daemon.event("/b/1", b"/b");
        daemon.event("/a/2", b"/a");
        daemon
    });
    let mut watch = client.watch("/a", "/a").unwrap();
    watch.add("/b", "/b").unwrap();
    let got: Vec<String> = watch.by_ref().take(4).map(|e| e.path).collect();
    assert_eq!(got, vec!["/a", "/b", "/b/1", "/a/2"]);
    server.join().unwrap();
}

#[test]
fn dropping_a_watch_sends_unwatch_and_stops_its_events() {
    let (client, mut daemon) = FakeDaemon::pair(Options::default());
    let server = thread::spawn(move || {
        let w = daemon.expect(Op::Watch);
        daemon.ok(&w);
        let u = daemon.expect(Op::Unwatch);
        assert_eq!(u.payload, b"/a\0tok\0");
        daemon.event("/a", b"tok"); // a late event, dropped
        daemon.ok(&u);
        let r = daemon.expect(Op::Read);
        daemon.reply(&r, b"still fine");
        daemon
    });
    let watch = client.watch("/a", "tok").unwrap();
    drop(watch);
    assert_eq!(client.read("/x").unwrap(), b"still fine");
    server.join().unwrap();
}

#[test]
fn removing_one_watch_of_a_handle_stops_only_its_events() {
    let (client, mut daemon) = FakeDaemon::pair(Options::default());
    let server = thread::spawn(move || {
        for _ in 0..2 {
            let w = daemon.expect(Op::Watch);
            daemon.ok(&w);
        }
        let u = daemon.expect(Op::Unwatch);
        assert_eq!(u.payload, b"/b\0tb\0");
        daemon.ok(&u);
        daemon.event("/b", b"tb"); // after the UNWATCH: not routed any more
        daemon.event("/a", b"ta");
        daemon
    });
    let mut watch = client.watch("/a", "ta").unwrap();
    watch.add("/b", "tb").unwrap();
    watch.remove("/b", "tb").unwrap();
    let left: Vec<(&str, &[u8])> = watch.registrations().collect();
    assert_eq!(left, vec![("/a", &b"ta"[..])]);
    assert_eq!(watch.next().map(|e| e.path).as_deref(), Some("/a"));
    assert!(watch.try_recv().is_err(), "the removed watch's event was routed");
    server.join().unwrap();
}

/// The doorbell polls readable while an event may wait, and not once
/// `try_recv` has drained it: a program waiting on other descriptors too
/// is woken by each event.
#[test]
fn a_watch_doorbell_rings_for_each_event_and_try_recv_drains_it() {
    use std::sync::mpsc;
    let readable = |fd: &std::os::fd::OwnedFd, ms: i32| {
        let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
        let timeout =
            rustix::event::Timespec { tv_sec: i64::from(ms / 1000), tv_nsec: i64::from(ms % 1000) * 1_000_000 };
        rustix::event::poll(&mut fds, Some(&timeout)).unwrap() > 0
    };
    let (client, mut daemon) = FakeDaemon::pair(Options::default());
    let (go, went) = mpsc::channel::<()>();
    let server = thread::spawn(move || {
        let w = daemon.expect(Op::Watch);
        daemon.ok(&w);
        went.recv().unwrap();
        daemon.event("/a/x", b"tok");
        daemon
    });
    let watch = client.watch("/a", "tok").unwrap();
    let bell = watch.doorbell().unwrap();
    // Readable at first (events may have come before it was asked for).
    assert!(readable(&bell, 0));
    assert!(watch.try_recv().is_err());
    assert!(!readable(&bell, 0), "drained");
    go.send(()).unwrap();
    assert!(readable(&bell, 5000), "rung by the event");
    assert_eq!(watch.try_recv().unwrap().path, "/a/x");
    assert!(!readable(&bell, 0));
    server.join().unwrap();
}

#[test]
fn watch_token_with_nul_is_einval_locally() {
    let (client, _daemon) = FakeDaemon::pair(Options::default());
    assert!(matches!(client.watch("/a", b"a\0b"), Err(Error::Xs(ErrorCode::EINVAL))));
}

/// Serves transactions: TRANSACTION_END T fails with EAGAIN `conflicts`
/// times; everything else succeeds. Returns (daemon, commits, aborts).
fn serve_transactions(mut daemon: FakeDaemon, conflicts: u32) -> thread::JoinHandle<(u32, u32)> {
    thread::spawn(move || {
        let mut failed = 0;
        let (mut commits, mut aborts) = (0, 0);
        let mut next_tx = 10;
        while let Some(req) = daemon.recv() {
            match req.op() {
                Op::TransactionStart => {
                    assert_eq!(req.payload, b"\0");
                    next_tx += 1;
                    daemon.reply(&req, format!("{next_tx}\0").as_bytes());
                }
                Op::Read => {
                    assert_eq!(req.header.tx_id, next_tx, "read inside the transaction");
                    daemon.reply(&req, b"1");
                }
                Op::Write => daemon.ok(&req),
                Op::TransactionEnd if req.payload == b"T\0" => {
                    if failed < conflicts {
                        failed += 1;
                        daemon.error(&req, ErrorCode::EAGAIN);
                    } else {
                        commits += 1;
                        daemon.ok(&req);
                    }
                }
                Op::TransactionEnd => {
                    assert_eq!(req.payload, b"F\0");
                    aborts += 1;
                    daemon.ok(&req);
                }
                other => panic!("unexpected {other}"),
            }
        }
        (commits, aborts)
    })
}

#[test]
fn transaction_helper_retries_on_eagain_then_commits() {
    let (client, daemon) = FakeDaemon::pair(Options::default());
    let server = serve_transactions(daemon, 3);
    let runs = AtomicU32::new(0);
    let value = client
        .transaction(|tx| {
            runs.fetch_add(1, Ordering::SeqCst);
            let v = tx.read("/counter")?;
            tx.write("/counter", b"2")?;
            Ok(v)
        })
        .unwrap();
    assert_eq!(value, b"1");
    assert_eq!(runs.load(Ordering::SeqCst), 4);
    drop(client);
    assert_eq!(server.join().unwrap(), (1, 0));
}

#[test]
fn transaction_helper_returns_eagain_after_its_retries() {
    let (client, daemon) = FakeDaemon::pair(Options::default().transaction_retries(2));
    let server = serve_transactions(daemon, u32::MAX);
    let runs = AtomicU32::new(0);
    let err = client
        .transaction(|tx| {
            runs.fetch_add(1, Ordering::SeqCst);
            tx.write("/x", b"1")
        })
        .unwrap_err();
    assert!(err.is_eagain());
    assert_eq!(runs.load(Ordering::SeqCst), 3, "one try and two retries");
    drop(client);
    assert_eq!(server.join().unwrap(), (0, 0));
}

#[test]
fn transaction_helper_default_retries_are_sixteen() {
    let (client, daemon) = FakeDaemon::pair(Options::default());
    let server = serve_transactions(daemon, u32::MAX);
    let runs = AtomicU32::new(0);
    let err = client.transaction(|_| Ok(runs.fetch_add(1, Ordering::SeqCst))).unwrap_err();
    assert!(err.is_eagain());
    assert_eq!(runs.load(Ordering::SeqCst), 17);
    drop(client);
    server.join().unwrap();
}

#[test]
fn transaction_helper_aborts_and_returns_the_body_error() {
    let (client, daemon) = FakeDaemon::pair(Options::default());
    let server = serve_transactions(daemon, 0);
    let runs = AtomicU32::new(0);
    let err = client
        .transaction(|_| -> Result<(), Error> {
            runs.fetch_add(1, Ordering::SeqCst);
            Err(Error::Xs(ErrorCode::ENOENT))
        })
        .unwrap_err();
    assert!(matches!(err, Error::Xs(ErrorCode::ENOENT)));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    drop(client);
    assert_eq!(server.join().unwrap(), (0, 1));
}

#[test]
fn dropped_transaction_is_aborted() {
    let (client, daemon) = FakeDaemon::pair(Options::default());
    let server = serve_transactions(daemon, 0);
    {
        let tx = client.transaction_start().unwrap();
        tx.write("/x", b"1").unwrap();
    }
    client.transaction_start().unwrap().commit().unwrap();
    drop(client);
    assert_eq!(server.join().unwrap(), (1, 1));
}

#[test]
fn directory_falls_back_to_directory_part_on_e2big() {
    let (client, mut daemon) = FakeDaemon::pair(Options::default());
    let server = thread::spawn(move || {
        let d = daemon.expect(Op::Directory);
        assert_eq!(d.payload, b"/big\0");
        daemon.error(&d, ErrorCode::E2BIG);
        let p = daemon.expect(Op::DirectoryPart);
        assert_eq!(p.payload, b"/big\x000\0");
        daemon.reply(&p, b"7\0alpha\0beta\0");
        let p = daemon.expect(Op::DirectoryPart);
        assert_eq!(p.payload, b"/big\x0011\0");
        daemon.reply(&p, b"7\0gamma\0\0");
        daemon
    });
    assert_eq!(client.directory("/big").unwrap(), vec!["alpha", "beta", "gamma"]);
    server.join().unwrap();
}

#[test]
fn directory_part_starts_over_when_the_generation_changes() {
    let (client, mut daemon) = FakeDaemon::pair(Options::default());
    let server = thread::spawn(move || {
        let d = daemon.expect(Op::Directory);
        daemon.error(&d, ErrorCode::E2BIG);
        let p = daemon.expect(Op::DirectoryPart);
        daemon.reply(&p, b"7\0a\0");
        let p = daemon.expect(Op::DirectoryPart);
        assert_eq!(p.payload, b"/d\x002\0");
        daemon.reply(&p, b"8\0c\0\0"); // children changed meanwhile
        let p = daemon.expect(Op::DirectoryPart);
        assert_eq!(p.payload, b"/d\x000\0", "starts over");
        daemon.reply(&p, b"8\0a\0b\0c\0\0");
        daemon
    });
    assert_eq!(client.directory("/d").unwrap(), vec!["a", "b", "c"]);
    server.join().unwrap();
}

#[test]
fn control_sends_each_argument_with_nul_and_returns_text() {
    let (client, mut daemon) = FakeDaemon::pair(Options::default());
    let server = thread::spawn(move || {
        let c = daemon.expect(Op::Control);
        assert_eq!(c.payload, b"print\0hello\0");
        daemon.reply(&c, b"OK\0");
        daemon
    });
    assert_eq!(client.control(&[b"print", b"hello"]).unwrap(), b"OK");
    server.join().unwrap();
}

#[test]
fn domain_requests_send_decimal_domids() {
    let (client, mut daemon) = FakeDaemon::pair(Options::default());
    let server = thread::spawn(move || {
        let r = daemon.expect(Op::GetDomainPath);
        assert_eq!(r.payload, b"7\0");
        daemon.reply(&r, b"/local/domain/7\0");
        let r = daemon.expect(Op::IsDomainIntroduced);
        daemon.reply(&r, b"F\0");
        let r = daemon.expect(Op::Introduce);
        assert_eq!(r.payload, b"7\x0012345\x003\0");
        daemon.ok(&r);
        let r = daemon.expect(Op::Release);
        assert_eq!(r.payload, b"7\0");
        daemon.ok(&r);
        daemon
    });
    assert_eq!(client.get_domain_path(7).unwrap(), "/local/domain/7");
    assert!(!client.is_domain_introduced(7).unwrap());
    client.introduce(7, 12345, 3).unwrap();
    client.release(7).unwrap();
    server.join().unwrap();
}

#[test]
fn hang_up_fails_requests_in_flight_and_later_ones_and_ends_watches() {
    let (client, mut daemon) = FakeDaemon::pair(Options::default());
    let server = thread::spawn(move || {
        let w = daemon.expect(Op::Watch);
        daemon.ok(&w);
        daemon.expect(Op::Read);
        daemon.hang_up();
    });
    let watch = client.watch("/a", "t").unwrap();
    assert!(matches!(client.read("/a"), Err(Error::Io(_))));
    server.join().unwrap();
    assert!(matches!(client.read("/a"), Err(Error::Io(_))));
    assert!(client.is_closed());
    assert_eq!(watch.count(), 0, "the event stream ends");
}

#[test]
fn reply_to_an_unknown_req_id_closes_the_connection() {
    let (client, mut daemon) = FakeDaemon::pair(Options::default());
    let server = thread::spawn(move || {
        let r = daemon.expect(Op::Read);
        daemon.send(Op::Read, r.header.req_id.wrapping_add(1000), 0, b"stray");
        daemon
    });
    let err = client.read("/a").unwrap_err();
    assert!(matches!(err, Error::Protocol(ProtocolError::UnexpectedReply { .. })), "{err:?}");
    let _daemon = server.join().unwrap();
    assert!(client.is_closed());
}

#[test]
fn dropping_the_client_closes_the_connection() {
    let (client, mut daemon) = FakeDaemon::pair(Options::default());
    drop(client);
    assert!(daemon.recv().is_none());
}

#[test]
fn client_types_can_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<xenstore::Client>();
    send_sync::<xenstore::Transaction<'_>>();
    send::<xenstore::Watch>();
    send_sync::<Error>();
}
