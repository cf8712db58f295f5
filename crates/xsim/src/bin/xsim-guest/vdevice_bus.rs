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

/// Whether this is a guest on real Xen (its event-channel device is
/// there, and it is no hosted guest).
pub fn on_xen() -> bool {
    std::path::Path::new("/dev/xen/evtchn").exists()
}

/// This domain's id, from the store.
pub fn xen_domid(client: &xenstore::Client) -> Result<xen_platform::DomId> {
    use xenstore::Store;
    Ok(String::from_utf8(client.read("domid")?)?.trim().parse()?)
}

/// On real Xen: this domain's vdevice page, accepted from the offer
/// `vdeviced` writes in `vdevice/page` (waited for as long as it takes:
/// the page comes with the first device).
pub fn xen_page(client: &xenstore::Client) -> Result<Box<dyn Share>> {
    use xen_platform::pair_share::{PairOffer, PairShare};
    use xen_platform::xen::{XenEventChannels, XenGrants};
    let me = xen_domid(client)?;
    // An offer that cannot be accepted is an old one (its grants ended
    // with the process that made them): wait for the next.
    let mut refused = None;
    loop {
        let text = client_read(client, "vdevice/page")?;
        if let Some(text) = text.filter(|t| refused.as_ref() != Some(t)) {
            let offer = PairOffer::parse(text.trim())?;
            let channels = Box::new(XenEventChannels::open()?);
            match PairShare::accept(0, &mut XenGrants::open()?, channels, me, &offer) {
                Ok(page) => return Ok(Box::new(page)),
                Err(e) => {
                    println!(
                        "vdevice bus: the page offered ({}) is not ours to map: {e}; waiting for a new one",
                        text.trim()
                    );
                    refused = Some(text);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// On real Xen: the offer `vdeviced` wrote for device `share` in
/// `vdevice/share/SHARE`.
pub fn xen_offer(share: xen_platform::share::ShareRef) -> std::io::Result<String> {
    let client = xenstore::Client::open().map_err(std::io::Error::other)?;
    client_read(&client, &format!("vdevice/share/{share}"))
        .map_err(std::io::Error::other)?
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("no offer for device {share}")))
}

/// `path`, or `None` where it does not exist.
fn client_read(client: &xenstore::Client, path: &str) -> Result<Option<String>> {
    use xenstore::{ErrorCode, Store};
    match client.read(path) {
        Ok(bytes) => Ok(Some(String::from_utf8(bytes)?)),
        Err(e) if e.code() == Some(ErrorCode::ENOENT) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {path}")),
    }
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
