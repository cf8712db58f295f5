//! Shares of any members on Xen, relayed by a dom0 service
//! (`docs/xen-share.md`, "On Xen"): what a share of several guests can be
//! on a stock Linux dom0, where a program can grant a page to one domain
//! only (`gntalloc`).
//!
//! - Each guest member gets its own copy of the share's pages, granted to
//!   it alone, and a control page; dom0's copy is the service's memory.
//!   Bytes cross between members only by transfers, which the service
//!   copies from the sender's copy into the receiver's buffer after
//!   checking every segment. A protocol that reads another member's
//!   bytes in place needs a two-domain share ([`crate::pair_share`]) or
//!   a kernel that grants one page to several domains.
//! - A trigger is the member's bits in its control page and a notify on
//!   its channel to dom0; the service ORs them into every other member's
//!   word and notifies it: one relay hop, two channels per guest member
//!   instead of a channel per pair.
//! - Registration, transfers and refresh are requests in the control
//!   page, answered on a second channel; each names the generation the
//!   member knows, refused with `ESTALE` after a change, as hosted.
//! - Removal ends the removed member's grants and channels, after its
//!   control page says so (its calls then fail with `EPERM`); the others
//!   keep their copies and see [`crate::share::TRIGGER_CHANGED`].
//!
//! It is written over the platform's [`crate::Grants`] and
//! [`crate::EventChannels`], so the same code runs on the in-process
//! twin, hosted and on Xen.

mod buffers;
mod layout;
mod member;
mod service;

use std::io;

pub use member::{RelayMember, ANSWER_PATIENCE};
#[doc(hidden)]
pub use service::fuzz_hostile_guest;
pub use service::{LocalMember, RelayShares, GNTALLOC_LIMIT};

use crate::share::{ShareRef, MAX_SHARE_PAGES};
use crate::{GrantRef, Port};

/// What a guest needs to accept its membership of a relayed share: the
/// grants of its copy and control page, and dom0's ends of its two
/// channels (through the store, as a frontend learns its backend's ring).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayOffer {
    /// The share.
    pub share: ShareRef,
    /// This guest's copy of the pages, in order.
    pub refs: Vec<GrantRef>,
    /// Its control page.
    pub control: GrantRef,
    /// dom0's end of the trigger channel, unbound, for the guest.
    pub trigger: Port,
    /// dom0's end of the request channel.
    pub request: Port,
}

impl RelayOffer {
    /// The offer as one line: `share=1 refs=2,3 control=4 trigger=5 request=6`.
    pub fn to_text(&self) -> String {
        let refs: Vec<String> = self.refs.iter().map(ToString::to_string).collect();
        format!(
            "share={} refs={} control={} trigger={} request={}",
            self.share,
            refs.join(","),
            self.control,
            self.trigger,
            self.request
        )
    }

    /// Reads [`RelayOffer::to_text`]'s line. `InvalidInput` for anything
    /// else, or for no pages or more than [`MAX_SHARE_PAGES`].
    pub fn parse(text: &str) -> io::Result<RelayOffer> {
        let invalid = || io::Error::new(io::ErrorKind::InvalidInput, format!("not a relayed share's offer: {text:?}"));
        let (mut share, mut refs, mut control, mut trigger, mut request) = (None, None, None, None, None);
        for field in text.split_whitespace() {
            let (key, value) = field.split_once('=').ok_or_else(invalid)?;
            let number = || value.parse::<u32>().map_err(|_| invalid());
            match key {
                "share" if share.is_none() => share = Some(number()?),
                "refs" if refs.is_none() => {
                    let list = value.split(',').map(str::parse).collect::<Result<Vec<GrantRef>, _>>();
                    refs = Some(list.map_err(|_| invalid())?);
                }
                "control" if control.is_none() => control = Some(number()?),
                "trigger" if trigger.is_none() => trigger = Some(number()?),
                "request" if request.is_none() => request = Some(number()?),
                _ => return Err(invalid()),
            }
        }
        let (Some(share), Some(refs), Some(control), Some(trigger), Some(request)) =
            (share, refs, control, trigger, request)
        else {
            return Err(invalid());
        };
        if refs.is_empty() || refs.len() > MAX_SHARE_PAGES {
            return Err(invalid());
        }
        Ok(RelayOffer { share, refs, control, trigger, request })
    }
}

#[cfg(all(test, feature = "test-utils"))]
mod tests;

#[cfg(test)]
mod offer_tests {
    use super::*;

    #[test]
    fn an_offer_reads_back_what_it_wrote() {
        let offer = RelayOffer { share: 3, refs: vec![8, 9], control: 10, trigger: 11, request: 12 };
        assert_eq!(offer.to_text(), "share=3 refs=8,9 control=10 trigger=11 request=12");
        assert_eq!(RelayOffer::parse(&offer.to_text()).unwrap(), offer);
        for text in [
            "",
            "share=1 refs=1 control=2 trigger=3",
            "share=1 refs= control=2 trigger=3 request=4",
            "share=1 refs=1 control=2 trigger=3 request=4 request=5",
            "share=x refs=1 control=2 trigger=3 request=4",
        ] {
            assert_eq!(RelayOffer::parse(text).unwrap_err().kind(), io::ErrorKind::InvalidInput, "{text:?}");
        }
    }
}
