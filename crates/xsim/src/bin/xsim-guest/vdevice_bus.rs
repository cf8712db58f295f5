//! A guest's vdevice bus with one driver, run for as long as the domain
//! lives: what `xsim-guest xensnet` and `xsim-guest xensblk` each are.

use std::time::Duration;

use anyhow::{Context, Result};
use xen_platform::hosted::Host;
use xen_platform::share::{Share, Shares};
use xen_share::{Bus, Driver};

/// This domain's vdevice page, attached.
pub fn page(host: &Host) -> Result<Box<dyn Share>> {
    let shares = host.shares();
    shares.attach(shares.vdevice(host.domid())?).context("attaching the vdevice page")
}

/// Runs a bus with `driver` on `page` until the domain goes, printing
/// each event after `label` (and `waiting` first).
pub fn serve(mut page: Box<dyn Share>, driver: Box<dyn Driver>, label: &str, waiting: &str) -> Result<()> {
    let mut bus = Bus::new();
    bus.register(driver);
    println!("{label}: {waiting}");
    loop {
        for event in bus.poll(&mut *page)? {
            println!("{label}: {event:?}");
        }
        page.wait(Some(Duration::from_secs(1)))?;
    }
}
