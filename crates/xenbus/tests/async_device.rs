//! The async flavour: two `AsyncDevice`s over tokio clients to the real
//! server (in a thread), driven by plain async loops, connect, close and
//! follow the toolstack's detach; switch_state and the waits, async.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::threaded::Server;
use xenbus::switch::Switched;
use xenbus::tokio::{self as xtokio, AsyncDevice, HookCall};
use xenbus::toolstack::{self, DeviceSpec};
use xenbus::{Error, Role, XenbusState};
use xenstore::tokio::AsyncClient;
use xenstore::{Options, Store};

fn async_client(server: &mut Server) -> Arc<AsyncClient> {
    let socket = server.socket();
    socket.set_nonblocking(true).unwrap();
    let stream = tokio::net::UnixStream::from_std(socket).unwrap();
    Arc::new(AsyncClient::from_stream(stream, Options::default()))
}

/// A frontend driver as an async loop: publish on Connect, record what it did.
async fn frontend(client: Arc<AsyncClient>, dir: String, domid: u16) -> Result<Vec<HookCall>, Error> {
    let mut dev = AsyncDevice::open(client.clone(), Role::Frontend, &dir, domid, XenbusState::Initialised).await?;
    let mut calls = Vec::new();
    loop {
        let call = match dev.next().await {
            Ok(call) => call,
            Err(Error::Gone { .. }) => return Ok(calls),
            Err(err) => return Err(err),
        };
        calls.push(call);
        if call == HookCall::Connect {
            client.write(&format!("{dir}/ring-ref"), b"33").await?;
        }
    }
}

/// A backend driver as an async loop: InitWait first, map on Connect.
async fn backend(client: Arc<AsyncClient>, dir: String) -> Result<Vec<HookCall>, Error> {
    let mut dev = AsyncDevice::open(client.clone(), Role::Backend, &dir, 0, XenbusState::Connected).await?;
    dev.set_state(XenbusState::InitWait).await?;
    let mut calls = Vec::new();
    loop {
        let call = dev.next().await?;
        calls.push(call);
        match call {
            HookCall::Connect => {
                let ring = client.read(&format!("{}/ring-ref", dev.otherend().dir)).await?;
                client.write(&format!("{dir}/mapped"), &ring).await?;
            }
            HookCall::Unregister => return Ok(calls),
            _ => {}
        }
    }
}

#[test]
fn async_devices_connect_and_follow_a_detach() {
    let mut server = Server::start(3, 1);
    let fe = server.guests[0];
    let toolstack = server.conn();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (fe_client, be_client) = (async_client(&mut server), async_client(&mut server));
        let spec = DeviceSpec::new("demo", 0, fe, 0);
        toolstack::attach(&toolstack, &spec).unwrap();
        let front = tokio::spawn(frontend(fe_client.clone(), spec.frontend_dir(), fe));
        let back = tokio::spawn(backend(be_client.clone(), spec.backend_dir()));
        let wait = Duration::from_secs(10);
        xtokio::wait_for_state(&fe_client, &spec.frontend_dir(), XenbusState::Connected, wait).await.unwrap();
        xtokio::wait_for_state(&fe_client, &spec.backend_dir(), XenbusState::Connected, wait).await.unwrap();
        assert_eq!(be_client.read(&format!("{}/mapped", spec.backend_dir())).await.unwrap(), b"33");
        // The toolstack detaches: backend Closing, frontend Closed, backend
        // Closed and unregistered; then both directories go.
        toolstack::begin_detach(&toolstack, &spec).unwrap();
        let back = back.await.unwrap().unwrap();
        // Its cached state was Connected (libxl wrote the Closing): the
        // walk to Closed disconnects it first.
        assert_eq!(back, [HookCall::Connect, HookCall::Disconnect, HookCall::Unregister]);
        xtokio::wait_for_state(&fe_client, &spec.backend_dir(), XenbusState::Closed, wait).await.unwrap();
        toolstack::remove_dirs(&toolstack, &spec).unwrap();
        let front = tokio::time::timeout(wait, front).await.unwrap().unwrap().unwrap();
        assert_eq!(front, [HookCall::Connect, HookCall::PeerConnected, HookCall::Disconnect]);
        assert!(!toolstack.client().exists(&spec.frontend_dir()).unwrap());
    });
}

#[test]
fn async_switch_state_does_not_recreate_a_removed_directory() {
    let mut server = Server::start(2, 1);
    let fe = server.guests[0];
    let toolstack = server.conn();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = async_client(&mut server);
        let spec = DeviceSpec::new("demo", 0, fe, 0);
        toolstack::attach(&toolstack, &spec).unwrap();
        let dir = spec.backend_dir();
        assert_eq!(xtokio::switch_state(&client, &dir, XenbusState::InitWait).await.unwrap(), Switched::Written);
        assert_eq!(xtokio::read_state(&client, &dir).await.unwrap(), XenbusState::InitWait);
        toolstack.client().rm(&dir).unwrap();
        assert_eq!(xtokio::switch_state(&client, &dir, XenbusState::Closed).await.unwrap(), Switched::Gone);
        assert!(!toolstack.client().exists(&dir).unwrap());
        let err = xtokio::wait_for_state(&client, &dir, XenbusState::Closed, Duration::from_millis(50)).await;
        assert!(matches!(err, Err(Error::Timeout { last: Some(XenbusState::Unknown), .. })), "{err:?}");
    });
}

#[test]
fn async_illegal_state_is_fatal() {
    let mut server = Server::start(2, 1);
    let fe = server.guests[0];
    let toolstack = server.conn();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = async_client(&mut server);
        let spec = DeviceSpec::new("demo", 0, fe, 0);
        toolstack::attach(&toolstack, &spec).unwrap();
        let mut dev =
            AsyncDevice::open(client.clone(), Role::Frontend, &spec.frontend_dir(), fe, XenbusState::Connected)
                .await
                .unwrap();
        let err = dev.set_state(XenbusState::InitWait).await.unwrap_err();
        assert!(matches!(err, Error::Illegal(_)), "{err:?}");
        // The switch to Closing is carried out by the next call; the
        // backend never answers, so bound the wait.
        let _ = tokio::time::timeout(Duration::from_millis(100), dev.next()).await;
        assert_eq!(dev.state(), XenbusState::Closing);
        let node = format!("/local/domain/{fe}/error/device/demo/0/error");
        let text = String::from_utf8(toolstack.client().read(&node).unwrap()).unwrap();
        assert_eq!(text, "22 illegal frontend transition from Initialising (1) to InitWait (2)");
    });
}
