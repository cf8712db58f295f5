//! Drivers that do the xenbus handshake and nothing else: no ring, no
//! event channel, no data. They let toolstack code (attach, detach,
//! listing, and its benchmarks) and one end of a new device be run
//! against a real other end before the device itself exists.
//!
//! [`NullBackend`] goes to InitWait when a device appears and to
//! Connected when its frontend publishes; [`NullFrontend`] answers
//! InitWait with Initialised and closes when the backend does. A bus of
//! either runs with [`serve`] (in a thread of dom0, [`BackendThread`]; in
//! a guest, `xsim-guest null-frontend TYPE` or `null-backend TYPE`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use xen_platform::DomId;
use xenbus::{Backend, Bus, DeviceCtx, Frontend, SyncConn};

/// How often [`serve`] looks at its stop flag while no event comes.
const STOP_POLL: Duration = Duration::from_millis(50);

/// A backend with nothing to serve.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullBackend;

impl Backend for NullBackend {
    fn connect(&mut self, _dev: &DeviceCtx<'_>) -> Result<(), xenbus::Error> {
        Ok(())
    }
}

/// A frontend with nothing to publish.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullFrontend;

impl Frontend for NullFrontend {
    fn connect(&mut self, _dev: &DeviceCtx<'_>) -> Result<(), xenbus::Error> {
        Ok(())
    }
}

/// Starts `bus` and handles its events until `stop` is set.
pub fn serve(bus: &mut Bus<SyncConn>, stop: &AtomicBool) -> Result<(), xenbus::Error> {
    bus.start()?;
    while !stop.load(Ordering::Relaxed) {
        bus.poll(Some(STOP_POLL))?;
    }
    Ok(())
}

/// A [`NullBackend`] bus served by a thread of this process, stopped when
/// dropped.
#[derive(Debug)]
pub struct BackendThread {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), xenbus::Error>>>,
}

impl BackendThread {
    /// Serves `devtype` devices of domain `domid` over `client` (a
    /// connection of its own: the bus consumes its watch events).
    pub fn start(client: xenstore::Client, domid: DomId, devtype: &str) -> BackendThread {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let devtype = devtype.to_owned();
        let thread = std::thread::spawn(move || {
            let mut bus = Bus::backend(SyncConn::new(client), domid, &devtype, |_| NullBackend);
            serve(&mut bus, &flag)
        });
        BackendThread { stop, thread: Some(thread) }
    }

    /// Stops the thread; returns how its bus ended.
    pub fn stop(mut self) -> Result<(), xenbus::Error> {
        self.finish()
    }

    fn finish(&mut self) -> Result<(), xenbus::Error> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            None => Ok(()),
        }
    }
}

impl Drop for BackendThread {
    fn drop(&mut self) {
        // Not `finish`: a panic of the thread must not be resumed in a drop.
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
