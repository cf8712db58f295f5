//! The per-domain statistics (CONTROL `stats`, which `xenstore top`
//! reads) in the stepped world: what is counted for whom, paging over
//! many domains, and what goes when a domain or a connection does.

mod xsa_support;

use xen_platform::{DomainConfig, Toolstack};
use xenstore::Op;
use xenstore_db::{Config, QuotaKind};
use xenstored::testing::World;
use xenstored::Limits;
use xsa_support::{line_of, stats};

#[test]
fn a_guests_requests_bytes_refusals_and_quota_use_are_its_own() {
    let mut config = Config::default();
    config.quotas.set(QuotaKind::Nodes, 4);
    let mut w = World::with(config, Limits::default());
    let dom0 = w.dom0();
    let guest = w.create_guest("counted");
    assert_eq!(w.introduce(guest).unwrap(), b"OK\0");
    let domid = w.domid(guest);
    let home = format!("/local/domain/{domid}");
    w.call(dom0, Op::Mkdir, format!("{home}\0").as_bytes()).unwrap();
    w.call(dom0, Op::SetPerms, format!("{home}\0b{domid}\0").as_bytes()).unwrap();
    w.call(dom0, Op::Write, format!("{home}/name\0web server").as_bytes()).unwrap();

    let requests: Vec<(Op, Vec<u8>)> = vec![
        (Op::Write, b"a\0x".to_vec()),
        (Op::Read, b"a\0".to_vec()),
        (Op::Read, b"/tool/xenstored\0".to_vec()), // EACCES
        (Op::Write, b"b\0x".to_vec()),
        (Op::Write, b"c\0x".to_vec()),
        (Op::Write, b"d\0x".to_vec()), // over the nodes quota (home + name + a + b + c... )
        (Op::Watch, b"a\0tok\0".to_vec()),
    ];
    let mut bytes_in = 0;
    for (op, payload) in &requests {
        bytes_in += 16 + payload.len();
        let _ = w.call(guest, *op, payload);
    }
    let (lines, pages) = stats(&mut w, dom0);
    assert_eq!(pages, 1);
    let g = line_of(&lines, domid.into());
    assert_eq!(g["name"], "web server", "the name is the rest of the line");
    assert_eq!(g["introduced"], "1");
    assert_eq!(g["connections"], "1");
    assert_eq!(g["requests"], requests.len().to_string());
    assert_eq!(g["bytes-in"], bytes_in.to_string());
    assert_eq!(g["refused-access"], "1");
    assert!(g["refused-quota"].parse::<u32>().unwrap() >= 1, "{g:?}");
    assert_eq!(g["watches"], "1");
    assert_eq!(g["quota-nodes"], "4");
    assert_eq!(g["quota-memory"], QuotaKind::Memory.default_value().to_string());
    let memory: u64 = g["memory"].parse().unwrap();
    assert!(memory > 3 * "x".len() as u64 + "web server".len() as u64, "its nodes are charged: {g:?}");
    assert_eq!(g["nodes"], "4", "the guest owns what it could write and its home: {g:?}");
    // Replies and the watch's first event went out to the guest.
    assert!(g["bytes-out"].parse::<u64>().unwrap() > 16 * requests.len() as u64);
    assert_eq!(g["events"], "1");
    // dom0's own requests are dom0's, and dom0 has no quota.
    let d0 = line_of(&lines, 0);
    assert_eq!(d0["quota-nodes"], "-");
    assert!(d0["requests"].parse::<u32>().unwrap() >= 4, "{d0:?}");
    assert_eq!(d0["refused-access"], "0");
}

#[test]
fn many_domains_page_without_loss_or_repetition() {
    let mut w = World::new();
    let dom0 = w.dom0();
    // Naming an existing domain in a permission makes the store know it
    // (as a toolstack does before INTRODUCE): 300 domains, 50 to a node.
    for i in 0..300 {
        let config = DomainConfig {
            name: format!("d{i}"),
            program: Vec::new(),
            env: Vec::new(),
            cwd: None,
            netns: false,
            fuse: false,
        };
        w.hv.toolstack().create(&config).unwrap();
    }
    for chunk in 0..6u32 {
        let mut payload = format!("/many/{chunk}\0n0\0").into_bytes();
        for d in 1 + chunk * 50..=(chunk + 1) * 50 {
            payload.extend_from_slice(format!("r{d}\0").as_bytes());
        }
        w.call(dom0, Op::Write, format!("/many/{chunk}\0").as_bytes()).unwrap();
        w.call(dom0, Op::SetPerms, &payload).unwrap();
    }
    let (lines, pages) = stats(&mut w, dom0);
    assert!(pages >= 3, "300 domains cannot fit in one page ({pages})");
    let ids: Vec<u32> = lines.iter().map(|l| l["domid"].parse().unwrap()).collect();
    assert_eq!(ids, (0..=300).collect::<Vec<u32>>());
    assert!(lines.iter().skip(1).all(|l| l["introduced"] == "0" && l["name"] == "-"));
}

#[test]
fn closed_connections_still_count_and_a_destroyed_domain_goes() {
    let mut w = World::new();
    let dom0 = w.dom0();
    let guest = w.create_guest("brief");
    w.introduce(guest).unwrap();
    let domid = w.domid(guest);
    w.call(guest, Op::GetDomainPath, b"0\0").unwrap();
    let (before, _) = stats(&mut w, dom0);
    assert_eq!(line_of(&before, domid.into())["requests"], "1");
    let d0_before: u64 = line_of(&before, 0)["requests"].parse().unwrap();

    let other = w.dom0();
    for _ in 0..5 {
        w.call(other, Op::Read, b"/tool\0").unwrap();
    }
    w.close(other);
    w.destroy(guest);
    let (after, _) = stats(&mut w, dom0);
    let d0_after: u64 = line_of(&after, 0)["requests"].parse().unwrap();
    // The closed client's 5 reads, plus this client's first stats page.
    assert_eq!(d0_after - d0_before, 5 + 1);
    assert!(after.iter().all(|l| l["domid"] != domid.to_string()), "a destroyed domain is not listed");
}

#[test]
fn stats_is_for_dom0_only_and_checks_its_argument() {
    let mut w = World::new();
    let dom0 = w.dom0();
    let guest = w.create_guest("nosy");
    w.introduce(guest).unwrap();
    let refused = w.call(guest, Op::Control, b"stats\0").unwrap_err();
    assert_eq!(refused.code(), Some(xenstore::ErrorCode::EACCES));
    for bad in [&b"stats\0x\0"[..], b"stats\x0070000\0", b"stats\0-1\0"] {
        let e = w.call(dom0, Op::Control, bad).unwrap_err();
        assert_eq!(e.code(), Some(xenstore::ErrorCode::EINVAL), "{bad:?}");
    }
    let help = w.call(dom0, Op::Control, b"help\0").unwrap();
    assert!(String::from_utf8_lossy(&help).contains("stats\t[<first domid>]"));
}
