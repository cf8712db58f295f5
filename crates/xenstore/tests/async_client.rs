//! The tokio client against the scripted fake daemon.

#![cfg(feature = "tokio")]

mod common;

use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::FakeDaemon;
use xenstore::tokio::AsyncClient;
use xenstore::{Error, ErrorCode, Op, Options};

fn pair(options: Options) -> (AsyncClient, FakeDaemon) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    let stream = tokio::net::UnixStream::from_std(ours).unwrap();
    (AsyncClient::from_stream(stream, options), FakeDaemon::new(theirs))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_in_flight_get_their_own_replies() {
    const TASKS: usize = 64;
    let (client, mut daemon) = pair(Options::default());
    let server = thread::spawn(move || {
        // Wait until every request is in flight, then answer backwards.
        let batch: Vec<_> = (0..TASKS).map(|_| daemon.expect(Op::Read)).collect();
        for req in batch.iter().rev() {
            let path = req.payload.strip_suffix(b"\0").unwrap().to_vec();
            daemon.reply(req, &path);
        }
        daemon
    });
    let client = Arc::new(client);
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let client = Arc::clone(&client);
            tokio::spawn(async move {
                let path = format!("/n{i}");
                assert_eq!(client.read(&path).await.unwrap(), path.as_bytes());
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    server.join().unwrap();
}

#[tokio::test]
async fn watch_is_a_stream_and_unwatches_on_drop() {
    let (client, mut daemon) = pair(Options::default());
    let server = thread::spawn(move || {
        let w = daemon.expect(Op::Watch);
        assert_eq!(w.payload, b"/a\0tok\0");
        daemon.event("/a", b"tok");
        daemon.ok(&w);
        daemon.event("/a/b", b"tok");
        let u = daemon.expect(Op::Unwatch);
        assert_eq!(u.payload, b"/a\0tok\0");
        daemon.ok(&u);
        let r = daemon.expect(Op::Read);
        daemon.reply(&r, b"after");
        daemon
    });
    let mut watch = client.watch("/a", "tok").await.unwrap();
    assert_eq!(watch.next().await.unwrap().path, "/a");
    let second = std::future::poll_fn(|cx| futures_core::Stream::poll_next(Pin::new(&mut watch), cx)).await;
    assert_eq!(second.unwrap().path, "/a/b");
    drop(watch);
    assert_eq!(client.read("/x").await.unwrap(), b"after");
    server.join().unwrap();
}

#[tokio::test]
async fn cancelled_request_does_not_disturb_later_ones() {
    let (client, mut daemon) = pair(Options::default());
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let server = thread::spawn(move || {
        let slow = daemon.expect(Op::Read);
        wait.recv().unwrap();
        daemon.reply(&slow, b"too late");
        let next = daemon.expect(Op::Read);
        daemon.reply(&next, b"fresh");
        daemon
    });
    let timed_out = tokio::time::timeout(Duration::from_millis(50), client.read("/slow")).await;
    assert!(timed_out.is_err());
    go.send(()).unwrap();
    assert_eq!(client.read("/next").await.unwrap(), b"fresh");
    server.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_helper_retries_and_its_future_is_send() {
    let (client, mut daemon) = pair(Options::default());
    let server = thread::spawn(move || {
        let mut conflicts = 2;
        while let Some(req) = daemon.recv() {
            match req.op() {
                Op::TransactionStart => daemon.reply(&req, b"5\0"),
                Op::Write => {
                    assert_eq!(req.header.tx_id, 5);
                    daemon.ok(&req);
                }
                Op::TransactionEnd if conflicts > 0 => {
                    conflicts -= 1;
                    daemon.error(&req, ErrorCode::EAGAIN);
                }
                Op::TransactionEnd => {
                    assert_eq!(req.payload, b"T\0");
                    daemon.ok(&req);
                }
                other => panic!("unexpected {other}"),
            }
        }
    });
    let client = Arc::new(client);
    let runs = Arc::new(AtomicU32::new(0));
    let (c, r) = (Arc::clone(&client), Arc::clone(&runs));
    let value = tokio::spawn(async move {
        c.transaction(|tx| {
            let r = Arc::clone(&r);
            async move {
                r.fetch_add(1, Ordering::SeqCst);
                tx.write("/x", b"1").await?;
                Ok::<_, Error>(42)
            }
        })
        .await
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(value, 42);
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    drop(client);
    server.join().unwrap();
}

#[tokio::test]
async fn directory_pages_after_e2big() {
    let (client, mut daemon) = pair(Options::default());
    let server = thread::spawn(move || {
        let d = daemon.expect(Op::Directory);
        daemon.error(&d, ErrorCode::E2BIG);
        let p = daemon.expect(Op::DirectoryPart);
        daemon.reply(&p, b"1\0a\0");
        let p = daemon.expect(Op::DirectoryPart);
        assert_eq!(p.payload, b"/d\x002\0");
        daemon.reply(&p, b"1\0b\0\0");
        daemon
    });
    assert_eq!(client.directory("/d").await.unwrap(), vec!["a", "b"]);
    server.join().unwrap();
}

#[tokio::test]
async fn hang_up_fails_waiting_requests_and_ends_streams() {
    let (client, mut daemon) = pair(Options::default());
    let server = thread::spawn(move || {
        let w = daemon.expect(Op::Watch);
        daemon.ok(&w);
        daemon.expect(Op::Read);
        daemon.hang_up();
    });
    let mut watch = client.watch("/a", "t").await.unwrap();
    assert!(matches!(client.read("/a").await, Err(Error::Io(_))));
    server.join().unwrap();
    assert!(watch.next().await.is_none());
    assert!(client.is_closed());
}

#[test]
fn async_types_can_cross_tasks() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<AsyncClient>();
    send_sync::<xenstore::tokio::AsyncTransaction>();
    send::<xenstore::tokio::AsyncWatch>();
}

#[tokio::test]
async fn dropping_the_transaction_helper_future_aborts_the_transaction() {
    let (client, mut daemon) = pair(Options::default());
    let (started, wait_started) = tokio::sync::oneshot::channel::<()>();
    let server = thread::spawn(move || {
        let start = daemon.expect(Op::TransactionStart);
        daemon.reply(&start, b"9\0");
        let end = daemon.expect(Op::TransactionEnd);
        assert_eq!((end.header.tx_id, &end.payload[..]), (9, &b"F\0"[..]));
        daemon.ok(&end);
        daemon
    });
    let mut started = Some(started);
    let helper = client.transaction(|_tx| {
        if let Some(started) = started.take() {
            let _ = started.send(());
        }
        std::future::pending::<Result<(), Error>>()
    });
    tokio::select! {
        _ = helper => unreachable!("the body never finishes"),
        _ = wait_started => {}
    }
    // Join off the runtime: its writer task must still send the abort.
    tokio::task::spawn_blocking(move || server.join().unwrap()).await.unwrap();
}
