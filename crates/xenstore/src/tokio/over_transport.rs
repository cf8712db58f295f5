//! The async client over a blocking [`Transport`] (a guest's shared ring,
//! the xenbus device): the same hub and request futures, with two threads
//! instead of the two tasks, since a transport's reads and writes block.

use std::io::{self, Read};
use std::sync::{Arc, Mutex, Weak};

use ::tokio::sync::mpsc;

use super::{AsyncClient, Inner};
use crate::error::Error;
use crate::hub::Hub;
use crate::sync::Options;
use crate::transport::Transport;

/// Starts the reader and writer threads. The reader holds the connection's
/// state until the transport ends (dropping the client shuts it down); the
/// writer holds it weakly, so that it ends when the last handle goes and
/// the queue's sender with it.
pub(super) fn start(transport: Box<dyn Transport>, options: Options) -> Result<AsyncClient, Error> {
    let transport: Arc<dyn Transport> = Arc::from(transport);
    let reader = transport.reader()?;
    let (outgoing, rx) = mpsc::unbounded_channel();
    let inner = Arc::new(Inner {
        hub: Mutex::new(Hub::new()),
        outgoing,
        tasks: Mutex::new(Vec::new()),
        options,
        transport: Some(Arc::clone(&transport)),
    });
    let weak = Arc::downgrade(&inner);
    let writer_transport = Arc::clone(&transport);
    spawn("xenstore-writer", move || write_loop(&weak, rx, &*writer_transport))?;
    let for_reader = Arc::clone(&inner);
    if let Err(err) = spawn("xenstore-reader", move || read_loop(&for_reader, reader)) {
        transport.shutdown();
        return Err(err);
    }
    Ok(AsyncClient { inner })
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> Result<(), Error> {
    std::thread::Builder::new().name(name.into()).spawn(body).map(drop).map_err(Error::Io)
}

fn write_loop(inner: &Weak<Inner>, mut rx: mpsc::UnboundedReceiver<Vec<u8>>, transport: &dyn Transport) {
    while let Some(bytes) = rx.blocking_recv() {
        if let Err(err) = transport.write_all(&bytes) {
            // Half a message may be on the wire: end the connection.
            transport.shutdown();
            if let Some(inner) = inner.upgrade() {
                inner.close(Error::Io(err));
            }
            break;
        }
    }
}

fn read_loop(inner: &Inner, mut reader: Box<dyn Read + Send>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break inner.close(Error::closed()),
            Ok(n) => {
                if inner.hub().receive(buf.get(..n).unwrap_or_default()).is_err() {
                    // The hub closed itself; drop the connection too.
                    break inner.shutdown_transport();
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => break inner.close(Error::Io(err)),
        }
    }
}
