//! A share of two domains, dom0 and one guest, made of what Xen has: pages
//! dom0 grants to the guest, one more granted page of trigger words, and
//! one interdomain event channel (`docs/xen-share.md`, "The order to
//! build it in"). It needs no share service: the two ends map the same
//! pages, and Xen itself keeps everyone else out (a grant made to the
//! guest maps in no third domain).
//!
//! It is written over the platform's [`Grants`] and [`EventChannels`], so
//! the same code runs hosted (where the hypervisor process enforces the
//! grants) and on Xen (`gntalloc`, `gntdev`, `/dev/xen/evtchn`). The
//! vdevice page and xensblk need nothing more: neither transfers.
//!
//! Membership is fixed at the offer, so nothing here ever changes
//! generation. What needs the service (registered buffers and transfers)
//! fails with `EOPNOTSUPP`, said as such.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::Ordering;
use std::time::Duration;

use rustix::io::Errno;

use crate::share::{BufferId, Completed, Segment, Share, ShareRef, MAX_SHARE_PAGES, USER_TRIGGERS};
use crate::{DomId, EventChannels, GrantRef, GrantedPages, Grants, MappedPages, Port};

/// What dom0 tells the guest so that it can accept a share (through the
/// store, as a frontend learns its backend's ring): the share's grant
/// references, the trigger page's, and dom0's end of the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairOffer {
    /// The share's pages, in order.
    pub refs: Vec<GrantRef>,
    /// The page of trigger words (dom0's at 0, the guest's at 4).
    pub words: GrantRef,
    /// dom0's end of the event channel, unbound, for the guest.
    pub port: Port,
}

impl PairOffer {
    /// The offer as one line: `refs=1,2,3 words=4 port=5`.
    pub fn to_text(&self) -> String {
        let refs: Vec<String> = self.refs.iter().map(ToString::to_string).collect();
        format!("refs={} words={} port={}", refs.join(","), self.words, self.port)
    }

    /// Reads [`PairOffer::to_text`]'s line. `EINVAL` for anything else,
    /// or for no pages or more than [`MAX_SHARE_PAGES`].
    pub fn parse(text: &str) -> io::Result<PairOffer> {
        let invalid = || io::Error::new(io::ErrorKind::InvalidInput, format!("not a share offer: {text:?}"));
        let mut refs = None;
        let mut words = None;
        let mut port = None;
        for field in text.split_whitespace() {
            let (key, value) = field.split_once('=').ok_or_else(invalid)?;
            match key {
                "refs" if refs.is_none() => {
                    let list = value.split(',').map(str::parse).collect::<Result<Vec<GrantRef>, _>>();
                    refs = Some(list.map_err(|_| invalid())?);
                }
                "words" if words.is_none() => words = Some(value.parse().map_err(|_| invalid())?),
                "port" if port.is_none() => port = Some(value.parse().map_err(|_| invalid())?),
                _ => return Err(invalid()),
            }
        }
        let (Some(refs), Some(words), Some(port)) = (refs, words, port) else { return Err(invalid()) };
        if refs.is_empty() || refs.len() > MAX_SHARE_PAGES {
            return Err(invalid());
        }
        Ok(PairOffer { refs, words, port })
    }
}

/// The pages, as this end holds them.
#[derive(Debug)]
enum Held {
    /// dom0's: granted, and ended when the share goes.
    Granted { pages: GrantedPages, words: GrantedPages },
    /// The guest's: mapped from dom0's grants.
    Mapped { pages: MappedPages, words: MappedPages },
}

/// One end of a two-domain share (see the module).
#[derive(Debug)]
pub struct PairShare {
    share: ShareRef,
    members: [DomId; 2],
    me: usize,
    held: Held,
    channels: Box<dyn EventChannels>,
    port: Port,
}

impl PairShare {
    /// dom0 makes a share of `pages` pages with `guest`, named `share`
    /// (its reference in dom0's bookkeeping: a vdevice entry names it),
    /// on an event-channel handle of its own (polled for the triggers).
    /// The offer is what the guest needs to [`PairShare::accept`] it.
    pub fn offer(
        share: ShareRef,
        grants: &mut dyn Grants,
        mut channels: Box<dyn EventChannels>,
        guest: DomId,
        pages: usize,
    ) -> io::Result<(PairShare, PairOffer)> {
        if pages == 0 || pages > MAX_SHARE_PAGES || guest == 0 {
            return Err(Errno::INVAL.into());
        }
        let shared = grants.grant_pages(guest, pages, true)?;
        let words = grants.grant_pages(guest, 1, true)?;
        let port = channels.alloc_unbound(guest)?;
        let offer = PairOffer { refs: shared.refs().to_vec(), words: words.refs()[0], port };
        let held = Held::Granted { pages: shared, words };
        Ok((PairShare { share, members: [0, guest], me: 0, held, channels, port }, offer))
    }

    /// Guest `me` accepts dom0's offer: maps the pages and binds the
    /// channel. A domain the pages were not granted to is refused by the
    /// grants (`EPERM` hosted; on Xen gntdev's map fails with `EINVAL`,
    /// as `tests/xen` checks with a PV and a PVH guest).
    pub fn accept(
        share: ShareRef,
        grants: &mut dyn Grants,
        mut channels: Box<dyn EventChannels>,
        me: DomId,
        offer: &PairOffer,
    ) -> io::Result<PairShare> {
        if offer.refs.is_empty() || offer.refs.len() > MAX_SHARE_PAGES {
            return Err(Errno::INVAL.into());
        }
        let pages = grants.map_grants(0, &offer.refs, true)?;
        let words = grants.map_grants(0, &[offer.words], true)?;
        let port = channels.bind_interdomain(0, offer.port)?;
        let held = Held::Mapped { pages, words };
        Ok(PairShare { share, members: [0, me], me: 1, held, channels, port })
    }

    fn words(&self) -> &MappedPages {
        match &self.held {
            Held::Granted { words, .. } => words.pages(),
            Held::Mapped { words, .. } => words,
        }
    }

    /// What needs the share service, not built on Xen.
    fn unsupported<T>(what: &str) -> io::Result<T> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{what}: a two-domain share has no transfers (they need the share service)"),
        ))
    }
}

impl AsFd for PairShare {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.channels.as_fd()
    }
}

impl Share for PairShare {
    fn share_ref(&self) -> ShareRef {
        self.share
    }

    fn pages(&self) -> &MappedPages {
        match &self.held {
            Held::Granted { pages, .. } => pages.pages(),
            Held::Mapped { pages, .. } => pages,
        }
    }

    fn members(&self) -> &[DomId] {
        &self.members
    }

    fn me(&self) -> usize {
        self.me
    }

    fn generation(&self) -> u64 {
        1
    }

    fn trigger(&self, n: u32) -> io::Result<()> {
        if n >= USER_TRIGGERS {
            return Err(Errno::INVAL.into());
        }
        // The word first, so the woken end finds the bit.
        self.words().shared_mem().fetch_or_u32(4 * (1 - self.me), 1 << n, Ordering::Release);
        self.channels.notify(self.port)
    }

    fn take_pending(&mut self) -> io::Result<u32> {
        // The channel's events first: a trigger raised after the swap
        // below notifies again, so none is missed.
        let mut ports = Vec::new();
        self.channels.take_pending(&mut ports)?;
        Ok(self.words().shared_mem().swap_u32(4 * self.me, 0, Ordering::Acquire))
    }

    fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
        self.channels.wait(timeout)
    }

    fn refresh(&mut self) -> io::Result<()> {
        // The membership never changes.
        Ok(())
    }

    fn register(&mut self, _: u32, _: &[Segment]) -> io::Result<BufferId> {
        Self::unsupported("registering a buffer")
    }

    fn transfer(&self, _: u32, _: &[Segment]) -> io::Result<usize> {
        Self::unsupported("transferring")
    }

    fn take_completed(&mut self) -> io::Result<Vec<Completed>> {
        Self::unsupported("taking completed buffers")
    }

    fn unregister_all(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offer_reads_back_what_it_wrote() {
        let offer = PairOffer { refs: vec![8, 9, 10], words: 11, port: 12 };
        assert_eq!(offer.to_text(), "refs=8,9,10 words=11 port=12");
        assert_eq!(PairOffer::parse(&offer.to_text()).unwrap(), offer);
    }

    #[test]
    fn anything_else_is_not_an_offer() {
        for text in [
            "",
            "refs=1 words=2",
            "refs= words=2 port=3",
            "refs=1,x words=2 port=3",
            "refs=1 words=2 port=3 port=4",
            "refs=1 words=2 port=3 extra=1",
            "refs=1 words=-2 port=3",
            "refs=1 words=2 port",
        ] {
            let e = PairOffer::parse(text).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{text:?}");
        }
        let too_many = vec!["1"; MAX_SHARE_PAGES + 1].join(",");
        assert!(PairOffer::parse(&format!("refs={too_many} words=2 port=3")).is_err());
    }
}
