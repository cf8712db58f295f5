//! dom0's share service (`xen_platform::relay_share`) against a hostile
//! guest member: any bytes as its control page's requests and raised
//! triggers, served one after the other. Nothing panics, and every
//! request gets an answer a member can read.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    xen_platform::relay_share::fuzz_hostile_guest(data);
});
