//! What a device driver implements. The framework runs the handshake
//! ([`crate::handshake`]); a driver only says how to start and stop its
//! device, so the usual driver overrides `connect` and little else.
//!
//! Linux drivers each carry their own `otherend_changed` switch (netback's
//! is about 100 lines with `set_backend_state`); here that switch is the
//! framework's, and a driver that needs another reaction to some state
//! overrides [`Frontend::otherend_changed`] and returns [`Flow::Handled`]
//! for it.

use crate::device::DeviceCtx;
use crate::error::Error;
use crate::state::XenbusState;

/// Whether the framework should still run its own reaction to a peer's
/// state after the driver's `otherend_changed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Run the framework's reaction.
    Standard,
    /// The driver handled it; do nothing more.
    Handled,
}

/// A frontend driver (one instance per device).
pub trait Frontend {
    /// The state the frontend announces its rings with: `Initialised`
    /// (blkfront, the default) or `Connected` (netfront).
    fn published_state(&self) -> XenbusState {
        XenbusState::Initialised
    }

    /// The device was found (own state `Initialising`); read its settings.
    /// An error keeps the device from being used (Linux: probe failure).
    fn probe(&mut self, _dev: &DeviceCtx<'_>) -> Result<(), Error> {
        Ok(())
    }

    /// The backend waits (`InitWait`): allocate and publish rings, event
    /// channels and features, e.g. with [`DeviceCtx::publish`]. Runs again
    /// on every reconnect. An error is fatal to the device.
    fn connect(&mut self, dev: &DeviceCtx<'_>) -> Result<(), Error>;

    /// The backend is `Connected` (again: a repeated `Connected` means
    /// "re-read my details", as blkfront reads a changed disk size).
    fn backend_connected(&mut self, _dev: &DeviceCtx<'_>) -> Result<(), Error> {
        Ok(())
    }

    /// The device is closing: stop using and free what `connect` made. Called
    /// once per successful `connect`.
    fn disconnect(&mut self, _dev: &DeviceCtx<'_>) {}

    /// The device is gone from the bus.
    fn remove(&mut self, _dev: &DeviceCtx<'_>) {}

    /// Called first on every change of the backend's state.
    fn otherend_changed(&mut self, _dev: &DeviceCtx<'_>, _state: XenbusState) -> Result<Flow, Error> {
        Ok(Flow::Standard)
    }
}

/// A backend driver (one instance per device).
pub trait Backend {
    /// The device was found: write the features the frontend may read
    /// (before the framework switches to `InitWait`).
    fn probe(&mut self, _dev: &DeviceCtx<'_>) -> Result<(), Error> {
        Ok(())
    }

    /// The frontend published its rings (`Initialised` or `Connected`):
    /// read and map them, e.g. with [`DeviceCtx::gather_otherend`]; the
    /// framework then switches to `Connected`. An error is fatal.
    fn connect(&mut self, dev: &DeviceCtx<'_>) -> Result<(), Error>;

    /// Unmap and free what `connect` set up. Called once per successful `connect`.
    fn disconnect(&mut self, _dev: &DeviceCtx<'_>) {}

    /// The device is gone from the bus (removed, or unregistered once
    /// closed with `online` 0).
    fn remove(&mut self, _dev: &DeviceCtx<'_>) {}

    /// Called first on every change of the frontend's state.
    fn otherend_changed(&mut self, _dev: &DeviceCtx<'_>, _state: XenbusState) -> Result<Flow, Error> {
        Ok(Flow::Standard)
    }
}

/// Both traits as one, for the device and the bus.
pub(crate) trait Hooks {
    fn published_state(&self) -> XenbusState;
    fn probe(&mut self, dev: &DeviceCtx<'_>) -> Result<(), Error>;
    fn connect(&mut self, dev: &DeviceCtx<'_>) -> Result<(), Error>;
    fn peer_connected(&mut self, dev: &DeviceCtx<'_>) -> Result<(), Error>;
    fn disconnect(&mut self, dev: &DeviceCtx<'_>);
    fn remove(&mut self, dev: &DeviceCtx<'_>);
    fn otherend_changed(&mut self, dev: &DeviceCtx<'_>, state: XenbusState) -> Result<Flow, Error>;
}

/// A [`Frontend`] seen as [`Hooks`].
pub(crate) struct AsFrontend<F>(pub F);

/// A [`Backend`] seen as [`Hooks`].
pub(crate) struct AsBackend<B>(pub B);

impl<F: Frontend> Hooks for AsFrontend<F> {
    fn published_state(&self) -> XenbusState {
        self.0.published_state()
    }
    fn probe(&mut self, dev: &DeviceCtx<'_>) -> Result<(), Error> {
        self.0.probe(dev)
    }
    fn connect(&mut self, dev: &DeviceCtx<'_>) -> Result<(), Error> {
        self.0.connect(dev)
    }
    fn peer_connected(&mut self, dev: &DeviceCtx<'_>) -> Result<(), Error> {
        self.0.backend_connected(dev)
    }
    fn disconnect(&mut self, dev: &DeviceCtx<'_>) {
        self.0.disconnect(dev)
    }
    fn remove(&mut self, dev: &DeviceCtx<'_>) {
        self.0.remove(dev)
    }
    fn otherend_changed(&mut self, dev: &DeviceCtx<'_>, state: XenbusState) -> Result<Flow, Error> {
        self.0.otherend_changed(dev, state)
    }
}

impl<B: Backend> Hooks for AsBackend<B> {
    fn published_state(&self) -> XenbusState {
        // A backend publishes nothing to a frontend's table; unused.
        XenbusState::Connected
    }
    fn probe(&mut self, dev: &DeviceCtx<'_>) -> Result<(), Error> {
        self.0.probe(dev)
    }
    fn connect(&mut self, dev: &DeviceCtx<'_>) -> Result<(), Error> {
        self.0.connect(dev)
    }
    fn peer_connected(&mut self, _dev: &DeviceCtx<'_>) -> Result<(), Error> {
        Ok(())
    }
    fn disconnect(&mut self, dev: &DeviceCtx<'_>) {
        self.0.disconnect(dev)
    }
    fn remove(&mut self, dev: &DeviceCtx<'_>) {
        self.0.remove(dev)
    }
    fn otherend_changed(&mut self, dev: &DeviceCtx<'_>, state: XenbusState) -> Result<Flow, Error> {
        self.0.otherend_changed(dev, state)
    }
}
