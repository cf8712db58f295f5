//! The XTF scenario: two guests exchange 10,000 messages each way through
//! XenStore, with many requests in flight and watches, and both report
//! success (no message lost, duplicated or reordered; see `xsim::ipc`).

mod support;

use std::time::Duration;

use support::{guest_program, TestHost};

#[test]
fn two_guests_exchange_ten_thousand_messages_each_way() {
    let mut host = TestHost::up();
    let report = xsim::ipc::run(&mut host.ts, &guest_program(), 10_000, Duration::from_secs(300))
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(report.count, 10_000);
    for console in &report.consoles {
        assert!(console.contains("sent and received 10000 messages each way"), "console:\n{console}");
    }
    // Both domains are gone, and so is everything the run wrote.
    let domains = host.ts.list().expect("list");
    assert_eq!(domains.len(), 1, "only dom0 remains: {domains:?}");
    use xenstore::Store;
    for d in report.domids {
        assert!(!host.ts.store().exists(&format!("/local/domain/{d}")).expect("exists"));
    }
    assert!(!host.ts.store().exists("/ipc").expect("exists"));
}
