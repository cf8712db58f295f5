//! The client library against the C reference daemon (Xen 4.17's
//! xenstored, run without a hypervisor by the project's own launcher,
//! `xs-peers`). Needs root and Debian's xen-utils-4.17, libxen-dev and gcc;
//! where one is missing each test is reported ignored, saying what to
//! install (failed under `XS_REQUIRE_PEERS=1`, as in CI). The harness is
//! `xs_peers::harness` (`harness = false` in Cargo.toml).

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::Duration;

use common::CDaemon;
use xenstore::{Client, Error, ErrorCode, Options, Store};
use xs_peers::harness::{run, Test};

fn directory_over_one_payload_is_listed_through_directory_part() {
    let daemon = CDaemon::start();
    let client = daemon.client();
    let names: Vec<String> = (0..150).map(|i| format!("child-with-a-fairly-long-name-{i:03}")).collect();
    client
        .transaction(|tx| {
            for name in &names {
                tx.write(&format!("/big/{name}"), b"x")?;
            }
            Ok(())
        })
        .unwrap();
    let total: usize = names.iter().map(|n| n.len() + 1).sum();
    assert!(total > 4096, "the list must not fit in one payload ({total} bytes)");
    // DIRECTORY alone cannot answer this.
    let raw = client.request(&xenstore::Request::Directory("/big"));
    assert!(matches!(raw, Err(Error::Xs(ErrorCode::E2BIG))), "{raw:?}");
    assert_eq!(client.directory("/big").unwrap(), names, "all children, in creation order");
    // Inside a transaction too.
    let in_tx = client.transaction(|tx| tx.directory("/big")).unwrap();
    assert_eq!(in_tx, names);
}

fn transaction_helper_retries_after_real_conflicts() {
    let daemon = CDaemon::start();
    let client = daemon.client();
    let other = daemon.client();
    client.write("/counter", b"0").unwrap();
    let runs = AtomicU32::new(0);
    let result = client
        .transaction(|tx| {
            let run = runs.fetch_add(1, Ordering::SeqCst);
            let value: u32 = String::from_utf8(tx.read("/counter")?).unwrap().parse().unwrap();
            if run < 2 {
                // Someone else changes what we read: the commit must fail.
                other.write("/counter", format!("{}", 100 * (run + 1)).as_bytes()).unwrap();
            }
            tx.write("/counter", format!("{}", value + 1).as_bytes())?;
            Ok(value)
        })
        .unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    assert_eq!(result, 200);
    assert_eq!(client.read("/counter").unwrap(), b"201");
}

fn transaction_helper_returns_eagain_when_conflicts_persist() {
    let daemon = CDaemon::start();
    let client = Client::with_transport(
        xenstore::transport::connect_path(daemon.socket()).unwrap(),
        Options::default().transaction_retries(3),
    )
    .unwrap();
    let other = daemon.client();
    client.write("/hot", b"0").unwrap();
    let runs = AtomicU32::new(0);
    let err = client
        .transaction(|tx| {
            let run = runs.fetch_add(1, Ordering::SeqCst);
            tx.read("/hot")?;
            other.write("/hot", run.to_string().as_bytes()).unwrap();
            tx.write("/hot", b"mine")
        })
        .unwrap_err();
    assert!(err.is_eagain(), "{err:?}");
    assert_eq!(runs.load(Ordering::SeqCst), 4);
    assert_ne!(client.read("/hot").unwrap(), b"mine");
}

fn many_threads_share_one_connection() {
    let daemon = CDaemon::start();
    let client = daemon.client();
    thread::scope(|s| {
        for t in 0..8 {
            let client = &client;
            s.spawn(move || {
                for i in 0..50 {
                    let path = format!("/threads/t{t}/n{i}");
                    let value = format!("{t}:{i}\x00\x7f");
                    client.write(&path, value.as_bytes()).unwrap();
                    assert_eq!(client.read(&path).unwrap(), value.as_bytes());
                }
            });
        }
    });
    assert_eq!(client.directory("/threads").unwrap().len(), 8);
}

fn watch_delivers_events_and_unregisters_when_dropped() {
    let daemon = CDaemon::start();
    let client = daemon.client();
    let writer = daemon.client();
    client.mkdir("/w").unwrap();
    let watch = client.watch("/w", "tok").unwrap();
    let next = || watch.recv_timeout(Duration::from_secs(5)).unwrap();
    let first = next();
    assert_eq!((first.path.as_str(), &*first.token), ("/w", &b"tok"[..]), "fires once on registration");
    writer.write("/w/a", b"1").unwrap();
    assert_eq!(next().path, "/w/a");
    writer.rm("/w").unwrap();
    assert_eq!(next().path, "/w");
    drop(watch);
    // The same path and token can be registered again: the UNWATCH went
    // out before this WATCH on the same connection.
    let again = client.watch("/w", "tok").unwrap();
    assert_eq!(again.recv_timeout(Duration::from_secs(5)).unwrap().path, "/w");
    again.unwatch().unwrap();
    // A duplicate registration is refused with the daemon's EEXIST.
    let _one = client.watch("/dup", "t").unwrap();
    assert!(matches!(client.watch("/dup", "t"), Err(Error::Xs(ErrorCode::EEXIST))));
}

fn errors_and_domain_requests_match_the_daemon() {
    let daemon = CDaemon::start();
    let client = daemon.client();
    assert!(matches!(client.read("/nope"), Err(Error::Xs(ErrorCode::ENOENT))));
    assert!(matches!(client.rm("/nope/deeper"), Err(Error::Xs(ErrorCode::ENOENT))));
    assert!(matches!(client.read("bad path"), Err(Error::Xs(ErrorCode::EINVAL))));
    assert!(!client.exists("/nope").unwrap());
    assert!(matches!(client.write("/big", &[0; 4092]), Err(Error::Xs(ErrorCode::E2BIG))));
    client.write("/fits", &[0; 4090]).unwrap();
    assert_eq!(client.read("/fits").unwrap().len(), 4090);
    assert_eq!(client.get_domain_path(0).unwrap(), "/local/domain/0");
    assert!(client.is_domain_introduced(0).unwrap());
    assert_eq!(client.control(&[b"print", b"from the client test"]).unwrap(), b"OK");
    assert!(matches!(client.control(&[b"no-such-command"]), Err(Error::Xs(ErrorCode::EINVAL))));
}

#[cfg(feature = "tokio")]
fn async_client_works_against_the_c_daemon() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async_client_works_against_the_c_daemon_async());
}

#[cfg(feature = "tokio")]
async fn async_client_works_against_the_c_daemon_async() {
    let daemon = CDaemon::start();
    let client = std::sync::Arc::new(xenstore::tokio::AsyncClient::connect(daemon.socket()).await.unwrap());
    let mut watch = client.watch("/async", "tok").await.unwrap();
    assert_eq!(watch.next().await.unwrap().path, "/async");
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let client = std::sync::Arc::clone(&client);
            tokio::spawn(async move {
                let path = format!("/async/n{i}");
                client.write(&path, path.as_bytes()).await.unwrap();
                assert_eq!(client.read(&path).await.unwrap(), path.as_bytes());
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let mut seen = 0;
    while seen < 32 {
        let event = watch.next().await.unwrap();
        assert!(event.path.starts_with("/async/n"));
        seen += 1;
    }
    let names = client
        .transaction(|tx| async move {
            tx.write("/async/tx", b"1").await?;
            tx.directory("/async").await
        })
        .await
        .unwrap();
    assert_eq!(names.len(), 33);
}

fn main() -> std::process::ExitCode {
    let tests = vec![
        Test::new(
            "directory_over_one_payload_is_listed_through_directory_part",
            directory_over_one_payload_is_listed_through_directory_part,
        ),
        Test::new("transaction_helper_retries_after_real_conflicts", transaction_helper_retries_after_real_conflicts),
        Test::new(
            "transaction_helper_returns_eagain_when_conflicts_persist",
            transaction_helper_returns_eagain_when_conflicts_persist,
        ),
        Test::new("many_threads_share_one_connection", many_threads_share_one_connection),
        Test::new(
            "watch_delivers_events_and_unregisters_when_dropped",
            watch_delivers_events_and_unregisters_when_dropped,
        ),
        Test::new("errors_and_domain_requests_match_the_daemon", errors_and_domain_requests_match_the_daemon),
    ];
    #[cfg(feature = "tokio")]
    let tests = {
        let mut tests = tests;
        tests.push(Test::new("async_client_works_against_the_c_daemon", async_client_works_against_the_c_daemon));
        tests
    };
    run(tests.into_iter().map(|t| t.needs(xs_peers::C_XENSTORED)).collect())
}
