//! A guest that is one end of its devices and does nothing else: the
//! handshake-only drivers of `xsim::devices::null_driver` on a bus of this
//! domain, over its own ring. As a frontend it lets `xsim detach` finish
//! orderly (a backend closes once its frontend has); as a backend it is a
//! driver domain (`xsim attach --backend`).

use std::sync::atomic::AtomicBool;

use anyhow::{bail, Result};
use xenbus::{Bus, SyncConn};
use xenstore::{Client, Store};
use xsim::devices::null_driver::{serve, NullBackend, NullFrontend};

/// Runs `role` (`null-frontend` or `null-backend`) for devices of `args[0]`.
pub fn run(role: &str, args: &[String]) -> Result<()> {
    let [devtype] = args else { bail!("{role} TYPE") };
    let client = Client::open()?;
    let domid: u16 = String::from_utf8(client.read("domid")?)?.parse()?;
    let conn = SyncConn::new(client);
    let mut bus = if role == "null-frontend" {
        Bus::frontend(conn, domid, devtype, |_| NullFrontend)
    } else {
        Bus::backend(conn, domid, devtype, |_| NullBackend)
    };
    println!("{role} for {devtype} devices of domain {domid}: serving {}", bus.root());
    // Never stopped: the domain ends when it is destroyed.
    serve(&mut bus, &AtomicBool::new(false))?;
    Ok(())
}
