//! A hostile block frontend's requests against the backend's checks: any
//! 112 bytes decoded as a `blkif` request (plain, discard or indirect, as
//! the operation byte says), checked against any disk. Decoding never
//! fails or panics, and a request the checks accept touches only the
//! disk's sectors, whole pages' sectors, and no write reaches a read-only
//! disk.

#![no_main]

use blkif::abi::SECTORS_PER_PAGE;
use blkif::request::Request;
use blkif::validate::{check, Geometry, Plan};
use libfuzzer_sys::fuzz_target;
use xen_ioring::Message;

fuzz_target!(|data: &[u8]| {
    let Some((disk, raw)) = data.split_at_checked(9) else { return };
    let Some(raw) = raw.get(..Request::SIZE) else { return };
    let sectors = u64::from_le_bytes(disk[..8].try_into().unwrap_or_default());
    let geometry = Geometry { sectors, readonly: disk[8] & 1 != 0, discard: disk[8] & 2 != 0 };
    let request = Request::decode(raw);
    let Ok(plan) = check(&request, &geometry) else { return };
    match plan {
        Plan::Read { sector, segments } | Plan::Write { sector, segments, .. } => {
            let used = segments.as_slice();
            assert!(used.len() <= 11);
            for s in used {
                assert!(s.first_sect <= s.last_sect && s.last_sect < SECTORS_PER_PAGE, "{s:?}");
            }
            let end = sector.checked_add(segments.sectors()).expect("no overflow past the checks");
            assert!(end <= sectors, "past the disk: {sector}+{} of {sectors}", segments.sectors());
            if let Plan::Write { .. } = plan {
                assert!(used.is_empty() || !geometry.readonly, "a write to a read-only disk");
            }
        }
        Plan::Discard { sector, count } => {
            assert!(geometry.discard && !geometry.readonly);
            assert!(sector.checked_add(count).is_some_and(|end| end <= sectors));
        }
        Plan::Flush => {}
    }
});
