//! The adversarial suite, permissions: what a guest may see, change and
//! inherit. The table of every advisory is in `tests/xsa.rs`.
//!
//! | advisory | checks |
//! | --- | --- |
//! | XSA-115 | watch events only for nodes the watcher may read (or whose parent it may); special watches need permission; IS_DOMAIN_INTRODUCED privileged |
//! | XSA-322 | a new domain with a dead one's id inherits no grant; the dead one's nodes are gone |
//! | XSA-352 | a guest cannot change a node's owner |
//! | XSA-353 | permissions hold on `/` |
//! | XSA-417 | a grant made before the store knew the domain does not pass to its successor |

mod xsa_support;

use xenstore::{ErrorCode, Op};
use xenstored::testing::ClientId;
use xsa_support::*;

fn event_paths(h: &mut Host, g: ClientId) -> Vec<String> {
    h.w.take_events(g).into_iter().map(|e| e.path).collect()
}

/// "xenstore watch notifications lacking permission checks": a guest
/// watching `/`, another guest's home and the special paths learns nothing
/// of nodes it may not read (nor their parents), nor of other domains'
/// introduction; it still hears of its own nodes.
#[test]
fn xsa_115_watch_events_only_for_readable_nodes() {
    let mut h = Host::new();
    let spy = h.guest("spy");
    for path in ["/", "/local", &h.home_of(h.bystander), "@introduceDomain", "data"] {
        assert_eq!(h.w.watch(spy, path, path).unwrap(), b"OK\0", "{path}");
    }
    h.w.take_events(spy);
    // dom0's nodes, the bystander's secrets, a new domain: nothing.
    h.w.call(h.dom0, Op::Write, b"/tool/secret\0s").unwrap();
    h.w.call(h.bystander, Op::Write, b"data/secret\0s").unwrap();
    h.w.call(h.bystander, Op::Rm, b"data/secret\0").unwrap();
    let _late = h.guest("late");
    h.w.call(h.dom0, Op::Rm, b"/tool/secret\0").unwrap();
    assert_eq!(event_paths(&mut h, spy), Vec::<String>::new());
    // Its own node: the events come (relative for the relative watch).
    h.w.call(spy, Op::Write, b"data/own\0x").unwrap();
    let own = format!("{}/data/own", h.home_of(spy));
    assert_eq!(event_paths(&mut h, spy), [own.as_str(), &own, "data/own"], "from /, /local and data");
    h.still_serving();
}

/// The XSA-115 fix "check privilege for XS_IS_DOMAIN_INTRODUCED": a guest
/// may not ask whether another domain is introduced.
#[test]
fn xsa_115_is_domain_introduced_is_privileged() {
    let mut h = Host::new();
    let spy = h.guest("spy");
    let other = h.domid(h.bystander).to_string();
    assert_eq!(code(h.w.call(spy, Op::IsDomainIntroduced, &z(&[&other]))), Some(ErrorCode::EACCES));
    h.still_serving();
}

/// "Xenstore: new domains inheriting existing node permissions": dom0
/// grants domain N read and write on a node outside N's home; N dies; a
/// new domain gets id N and must have neither. N's own nodes outside its
/// home went with it.
#[test]
fn xsa_322_new_domain_inherits_no_permissions() {
    let mut h = Host::new();
    let old = h.guest("old");
    let n = h.domid(old);
    h.w.call(h.dom0, Op::Write, b"/shared/secret\0dom0 only now").unwrap();
    h.w.call(h.dom0, Op::SetPerms, &z(&["/shared/secret", "n0", &format!("b{n}")])).unwrap();
    h.w.call(h.dom0, Op::SetPerms, &z(&["/shared", "n0", &format!("b{n}")])).unwrap();
    assert_eq!(h.w.call(old, Op::Read, b"/shared/secret\0").unwrap(), b"dom0 only now");
    h.w.call(old, Op::Write, b"/shared/left-behind\0x").unwrap();
    h.w.destroy(old);
    h.w.run();
    assert_eq!(code(h.w.call(h.dom0, Op::Read, b"/shared/left-behind\0")), Some(ErrorCode::ENOENT));
    h.w.hv.reuse_domid_next(u16::try_from(n).unwrap());
    let new = h.guest("new");
    assert_eq!(h.domid(new), n, "the id was reused");
    assert_eq!(code(h.w.call(new, Op::Read, b"/shared/secret\0")), Some(ErrorCode::EACCES));
    assert_eq!(code(h.w.call(new, Op::Write, b"/shared/secret\0mine")), Some(ErrorCode::EACCES));
    assert_eq!(code(h.w.call(new, Op::Write, b"/shared/new\0x")), Some(ErrorCode::EACCES));
    let perms = h.w.call(h.dom0, Op::GetPerms, b"/shared/secret\0").unwrap();
    assert_eq!(perms, b"n0\0", "the dead domain's entry is not reported");
    h.still_serving();
}

/// "oxenstored: node ownership can be changed by unprivileged clients": a
/// guest owning a node cannot give it to another domain (which would
/// charge that domain's quota, or dom0's), however it writes the list.
#[test]
fn xsa_352_guest_cannot_change_the_owner() {
    let mut h = Host::new();
    let g = h.guest("giver");
    let victim = h.domid(h.bystander);
    let me = h.domid(g);
    h.w.call(g, Op::Write, b"data/gift\0x").unwrap();
    let perms = h.w.call(g, Op::GetPerms, b"data/gift\0").unwrap();
    let owned = (h.owned(g), h.owned(h.bystander));
    for owner in [format!("n{victim}"), "n0".to_owned(), format!("b{victim}")] {
        let got = code(h.w.call(g, Op::SetPerms, &z(&["data/gift", &owner, &format!("r{me}")])));
        assert!(matches!(got, Some(ErrorCode::EPERM | ErrorCode::EACCES)), "owner {owner}: {got:?}");
    }
    assert_eq!(h.w.call(g, Op::GetPerms, b"data/gift\0").unwrap(), perms, "the owner is unchanged");
    assert_eq!((h.owned(g), h.owned(h.bystander)), owned, "no quota moved");
    // Changing who else may read is its right.
    h.w.call(g, Op::SetPerms, &z(&["data/gift", &format!("n{me}"), &format!("r{victim}")])).unwrap();
    h.still_serving();
}

/// "oxenstored: permissions not checked on root node": a guest may not
/// write, list, remove or change the permissions of `/`.
#[test]
fn xsa_353_root_permissions_are_checked() {
    let mut h = Host::new();
    let g = h.guest("rooter");
    let me = h.domid(g);
    assert_eq!(code(h.w.call(g, Op::Write, b"/\0x")), Some(ErrorCode::EACCES));
    assert_eq!(code(h.w.call(g, Op::SetPerms, &z(&["/", &format!("n{me}")]))), Some(ErrorCode::EACCES));
    assert_eq!(code(h.w.call(g, Op::SetPerms, &z(&["/", "n0", &format!("b{me}")]))), Some(ErrorCode::EACCES));
    assert_eq!(code(h.w.call(g, Op::Directory, b"/\0")), Some(ErrorCode::EACCES));
    assert_eq!(code(h.w.call(g, Op::Read, b"/\0")), Some(ErrorCode::EACCES));
    assert!(code(h.w.call(g, Op::Rm, b"/\0")).is_some(), "RM / refused");
    assert_eq!(code(h.w.call(g, Op::Write, b"/top\0x")), Some(ErrorCode::EACCES));
    assert_eq!(h.w.call(h.dom0, Op::GetPerms, b"/\0").unwrap(), b"n0\0");
    assert_eq!(h.w.call(h.dom0, Op::Read, b"/\0").unwrap(), b"");
    h.still_serving();
}

/// "Xenstore: Guests can get access to Xenstore nodes of deleted domains"
/// (C's check of a permission whose domain the store had no record of):
/// dom0 grants a domain that exists but was never introduced; it dies
/// unintroduced; a new domain with its id must not have the grant.
#[test]
fn xsa_417_grant_to_an_unknown_domain_does_not_pass_to_its_successor() {
    let mut h = Host::new();
    let n = h.existing("never-introduced");
    h.w.call(h.dom0, Op::Write, b"/backend/secret\0key").unwrap();
    h.w.call(h.dom0, Op::SetPerms, &z(&["/backend/secret", "n0", &format!("r{n}")])).unwrap();
    h.destroy_domid(n);
    h.w.hv.reuse_domid_next(u16::try_from(n).unwrap());
    let new = h.guest("successor");
    assert_eq!(h.domid(new), n, "the id was reused");
    assert_eq!(code(h.w.call(new, Op::Read, b"/backend/secret\0")), Some(ErrorCode::EACCES));
    h.still_serving();
}
