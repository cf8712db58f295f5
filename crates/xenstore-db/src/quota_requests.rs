//! GET_QUOTA and SET_QUOTA (`xenstore.txt`, "Domain management and
//! xenstored communications"): reading and setting the global and
//! per-domain quota values. The kinds and defaults are
//! [`crate::quota`]'s; charging requests against them is
//! `quota_charge.rs`'s.

use xenstore_wire::{DomId, ErrorCode, Reply};

use crate::applied::Applied;
use crate::permissions::{privileged_only, Caller};
use crate::quota::QuotaKind;
use crate::{Engine, Outcome};

impl Engine {
    /// GET_QUOTA.
    pub(crate) fn get_quota(&self, caller: Caller, domid: Option<DomId>, quota: Option<&str>) -> Outcome {
        if let Err(e) = privileged_only(caller) {
            return Outcome::error(e);
        }
        let Some(name) = quota else {
            return Outcome::ok(Reply::Names(QuotaKind::ALL.iter().map(|q| q.name().to_owned()).collect()));
        };
        let Some(kind) = QuotaKind::from_name(name) else {
            return Outcome::error(ErrorCode::EINVAL);
        };
        let quotas = match domid {
            None => self.config.quotas,
            Some(d) => match self.domains.get(&d) {
                Some(dom) => dom.quotas,
                None => return Outcome::error(ErrorCode::ENOENT),
            },
        };
        Outcome::ok(Reply::Number(u64::from(quotas.get(kind))))
    }

    /// SET_QUOTA. The global value is what domains get when first known;
    /// a domain's own value changes only that domain.
    pub(crate) fn set_quota(&mut self, caller: Caller, domid: Option<DomId>, quota: &str, value: u32) -> Outcome {
        if let Err(e) = privileged_only(caller) {
            return Outcome::error(e);
        }
        let Some(kind) = QuotaKind::from_name(quota) else {
            return Outcome::error(ErrorCode::EINVAL);
        };
        let applied = match domid {
            None => {
                self.config.quotas.set(kind, value);
                Applied::GlobalQuota { kind, value }
            }
            Some(d) => match self.domains.get_mut(&d) {
                Some(dom) => {
                    dom.quotas.set(kind, value);
                    Applied::DomainQuota { domid: d, kind, value }
                }
                None => return Outcome::error(ErrorCode::ENOENT),
            },
        };
        Outcome { applied: vec![applied], ..Outcome::ok(Reply::Ok) }
    }
}
