//! Malformed requests, as rows of (operation, payload, expected error).
//!
//! `Request::parse` must answer `EINVAL` for a payload that breaks the
//! syntax of `docs/misc/xenstore.txt` (missing or extra nul, bad path, bad
//! number, special path where none is allowed) and `ENOSYS` for an
//! operation a client cannot send. Each rejection table is paired with a
//! row that is accepted, so a parser that rejects everything still fails.

use xenstore_wire::{ErrorCode, Op, Request, ABS_PATH_MAX, REL_PATH_MAX};

/// Operations whose payload is exactly `<path>|`.
const SINGLE_PATH_OPS: [Op; 5] = [Op::Read, Op::Directory, Op::Mkdir, Op::Rm, Op::GetPerms];

fn parse(op: Op, payload: &[u8]) -> Result<Request<'_>, ErrorCode> {
    Request::parse(op as u32, payload)
}

/// `path` followed by its nul.
fn terminated(path: &[u8]) -> Vec<u8> {
    let mut payload = path.to_vec();
    payload.push(0);
    payload
}

/// An absolute path of exactly `len` bytes.
fn absolute_path(len: usize) -> Vec<u8> {
    let mut path = b"/".to_vec();
    path.resize(len, b'a');
    path
}

/// A relative path of exactly `len` bytes.
fn relative_path(len: usize) -> Vec<u8> {
    vec![b'r'; len]
}

fn assert_all_einval(rows: &[(Op, Vec<u8>)]) {
    for (op, payload) in rows {
        assert_eq!(parse(*op, payload), Err(ErrorCode::EINVAL), "{op} {payload:?}");
    }
}

#[test]
fn single_path_op_with_empty_payload_returns_einval() {
    for op in SINGLE_PATH_OPS {
        assert_eq!(parse(op, b""), Err(ErrorCode::EINVAL), "{op}");
    }
}

#[test]
fn single_path_op_without_nul_returns_einval() {
    for op in SINGLE_PATH_OPS {
        for payload in [&b"/a"[..], b"a", b"/"] {
            assert_eq!(parse(op, payload), Err(ErrorCode::EINVAL), "{op} {payload:?}");
        }
    }
}

#[test]
fn single_path_op_with_bytes_after_nul_returns_einval() {
    for op in SINGLE_PATH_OPS {
        for payload in [&b"/a\0x"[..], b"/a\0\0", b"/a\0/b\0", b"/\0\0"] {
            assert_eq!(parse(op, payload), Err(ErrorCode::EINVAL), "{op} {payload:?}");
        }
    }
}

/// Paths that break the syntax, each with the rule it breaks.
fn invalid_paths() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("empty", b"".to_vec()),
        ("blank", b"/a b".to_vec()),
        ("dot", b"/a.b".to_vec()),
        ("colon", b"/a:b".to_vec()),
        ("backslash", b"/a\\b".to_vec()),
        ("non-ascii", b"/a\xff".to_vec()),
        ("utf-8 letter", "/\u{e9}".as_bytes().to_vec()),
        ("control byte", b"/a\x01".to_vec()),
        ("relative blank", b"a b".to_vec()),
        ("doubled slash", b"/a//b".to_vec()),
        ("only doubled slash", b"//".to_vec()),
        ("leading doubled slash", b"//a".to_vec()),
        ("relative doubled slash", b"a//b".to_vec()),
        ("trailing slash", b"/a/".to_vec()),
        ("relative trailing slash", b"a/".to_vec()),
        ("absolute too long", absolute_path(ABS_PATH_MAX + 1)),
        ("relative too long", relative_path(REL_PATH_MAX + 1)),
    ]
}

#[test]
fn single_path_op_with_invalid_path_returns_einval() {
    for op in SINGLE_PATH_OPS {
        for (rule, path) in invalid_paths() {
            let payload = terminated(&path);
            assert_eq!(parse(op, &payload), Err(ErrorCode::EINVAL), "{op} {rule}");
        }
    }
}

#[test]
fn single_path_op_with_valid_path_is_accepted() {
    let valid = [
        b"/".to_vec(),
        b"/local/domain/0".to_vec(),
        b"data/x-y_z@w".to_vec(),
        b"/Aa0-_@".to_vec(),
        absolute_path(ABS_PATH_MAX),
        relative_path(REL_PATH_MAX),
    ];
    for op in SINGLE_PATH_OPS {
        for path in &valid {
            let payload = terminated(path);
            let request = parse(op, &payload).unwrap_or_else(|e| panic!("{op} {path:?}: {e}"));
            assert_eq!(request.op(), op);
        }
    }
}

#[test]
fn unknown_or_server_only_op_returns_enosys() {
    let ops = [20, 27, 1000, 0xffff, 15, 16, 0xfffe, 0x1_0000, u32::MAX];
    for op in ops {
        for payload in [&b""[..], b"/a\0", b"T\0", b"0\0"] {
            assert_eq!(Request::parse(op, payload), Err(ErrorCode::ENOSYS), "{op} {payload:?}");
        }
    }
}

#[test]
fn transaction_end_other_than_t_or_f_returns_einval() {
    let payloads = [
        &b""[..],
        b"\0",
        b"T",
        b"F",
        b"t\0",
        b"f\0",
        b"TT\0",
        b"T\0\0",
        b"T\0F\0",
        b"F\0x",
        b"1\0",
        b"0\0",
        b"true\0",
        b" T\0",
    ];
    for payload in payloads {
        assert_eq!(parse(Op::TransactionEnd, payload), Err(ErrorCode::EINVAL), "{payload:?}");
    }
}

#[test]
fn transaction_end_t_or_f_is_accepted() {
    assert_eq!(parse(Op::TransactionEnd, b"T\0"), Ok(Request::TransactionEnd { commit: true }));
    assert_eq!(parse(Op::TransactionEnd, b"F\0"), Ok(Request::TransactionEnd { commit: false }));
}

/// Payloads carrying one domid, built around the domid's text: every field
/// of every operation that takes a domid.
fn domid_payloads(domid: &[u8]) -> Vec<(Op, Vec<u8>)> {
    let build = |before: &[u8], after: &[u8]| {
        let mut payload = before.to_vec();
        payload.extend_from_slice(domid);
        payload.push(0);
        payload.extend_from_slice(after);
        payload
    };
    vec![
        (Op::Release, build(b"", b"")),
        (Op::GetDomainPath, build(b"", b"")),
        (Op::IsDomainIntroduced, build(b"", b"")),
        (Op::Resume, build(b"", b"")),
        (Op::Introduce, build(b"", b"4096\x001\0")),
        (Op::SetTarget, build(b"", b"1\0")),
        (Op::SetTarget, build(b"1\0", b"")),
        (Op::GetFeature, build(b"", b"")),
        (Op::SetFeature, build(b"", b"1\0")),
        (Op::GetQuota, build(b"", b"nodes\0")),
        (Op::SetQuota, build(b"", b"nodes\x001\0")),
        (Op::SetPerms, build(b"/a\0r", b"")),
        (Op::SetPerms, build(b"/a\0n0\0b", b"")),
    ]
}

#[test]
fn bad_domid_returns_einval() {
    let bad =
        [&b"65536"[..], b"-1", b"1a", b"", b"+1", b" 1", b"1 ", b"0x1", b"4294967296", b"99999999999999999999999"];
    for domid in bad {
        for (op, payload) in domid_payloads(domid) {
            assert_eq!(parse(op, &payload), Err(ErrorCode::EINVAL), "{op} {payload:?}");
        }
    }
}

#[test]
fn domid_at_range_bounds_is_accepted() {
    for domid in [&b"0"[..], b"65535", b"00007"] {
        for (op, payload) in domid_payloads(domid) {
            let request = parse(op, &payload).unwrap_or_else(|e| panic!("{op} {payload:?}: {e}"));
            assert_eq!(request.op(), op);
        }
    }
}

const SPECIAL_PATHS: [&[u8]; 5] =
    [b"@releaseDomain", b"@introduceDomain", b"@releaseDomain/3", b"@", b"@any syntax.at all"];

/// For every operation that carries a path, a payload around that path.
fn path_payloads(path: &[u8]) -> Vec<(Op, Vec<u8>)> {
    let build = |after: &[u8]| {
        let mut payload = terminated(path);
        payload.extend_from_slice(after);
        payload
    };
    vec![
        (Op::Read, build(b"")),
        (Op::Directory, build(b"")),
        (Op::DirectoryPart, build(b"0\0")),
        (Op::Mkdir, build(b"")),
        (Op::Rm, build(b"")),
        (Op::Write, build(b"value")),
        (Op::GetPerms, build(b"")),
        (Op::SetPerms, build(b"r0\0")),
        (Op::Watch, build(b"token\0")),
        (Op::Watch, build(b"token\x001\0")),
        (Op::Unwatch, build(b"token\0")),
    ]
}

fn allows_special(op: Op) -> bool {
    matches!(op, Op::Watch | Op::Unwatch | Op::GetPerms | Op::SetPerms)
}

#[test]
fn special_path_outside_watch_and_perms_returns_einval() {
    for path in SPECIAL_PATHS {
        for (op, payload) in path_payloads(path).into_iter().filter(|(op, _)| !allows_special(*op)) {
            assert_eq!(parse(op, &payload), Err(ErrorCode::EINVAL), "{op} {payload:?}");
        }
    }
}

#[test]
fn special_path_in_watch_unwatch_and_perms_is_accepted() {
    for path in SPECIAL_PATHS {
        for (op, payload) in path_payloads(path).into_iter().filter(|(op, _)| allows_special(*op)) {
            let request = parse(op, &payload).unwrap_or_else(|e| panic!("{op} {payload:?}: {e}"));
            assert_eq!(request.op(), op);
        }
    }
}

#[test]
fn special_path_too_long_or_not_utf8_returns_einval() {
    let mut long = b"@".to_vec();
    long.resize(REL_PATH_MAX + 1, b'x');
    for path in [long, b"@\xff".to_vec()] {
        for (op, payload) in path_payloads(&path) {
            assert_eq!(parse(op, &payload), Err(ErrorCode::EINVAL), "{op} {path:?}");
        }
    }
}

#[test]
fn invalid_path_in_any_path_op_returns_einval() {
    for (rule, path) in invalid_paths() {
        for (op, payload) in path_payloads(&path) {
            assert_eq!(parse(op, &payload), Err(ErrorCode::EINVAL), "{op} {rule}");
        }
    }
}

#[test]
fn watch_with_wrong_field_count_returns_einval() {
    assert_all_einval(&[
        (Op::Watch, b"".to_vec()),
        (Op::Watch, b"/a\0".to_vec()),
        (Op::Watch, b"/a\0tok".to_vec()),
        (Op::Watch, b"/a\0tok\x001".to_vec()),
        (Op::Watch, b"/a\0tok\x001\0x\0".to_vec()),
        (Op::Unwatch, b"".to_vec()),
        (Op::Unwatch, b"/a\0".to_vec()),
        (Op::Unwatch, b"/a\0tok".to_vec()),
        (Op::Unwatch, b"/a\0tok\x001\0".to_vec()),
    ]);
}

#[test]
fn bad_number_field_returns_einval() {
    let mut rows = Vec::new();
    for number in [&b""[..], b"-1", b"x", b"1x", b" 1", b"4294967296"] {
        let with = |before: &[u8], after: &[u8]| {
            let mut payload = before.to_vec();
            payload.extend_from_slice(number);
            payload.push(0);
            payload.extend_from_slice(after);
            payload
        };
        rows.push((Op::Watch, with(b"/a\0tok\0", b"")));
        rows.push((Op::DirectoryPart, with(b"/a\0", b"")));
        rows.push((Op::SetFeature, with(b"1\0", b"")));
        rows.push((Op::SetQuota, with(b"nodes\0", b"")));
        rows.push((Op::SetQuota, with(b"1\0nodes\0", b"")));
        rows.push((Op::Introduce, with(b"1\x004096\0", b"")));
        if number != b"4294967296" {
            // The gfn is 64 bits wide: only u32 overflow is valid there.
            rows.push((Op::Introduce, with(b"1\0", b"1\0")));
        }
    }
    rows.push((Op::Introduce, b"1\x0018446744073709551616\x001\0".to_vec()));
    assert_all_einval(&rows);
}

#[test]
fn write_without_path_terminator_returns_einval() {
    assert_all_einval(&[(Op::Write, b"".to_vec()), (Op::Write, b"/a".to_vec())]);
}

#[test]
fn set_perms_with_bad_perm_list_returns_einval() {
    assert_all_einval(&[
        (Op::SetPerms, b"/a".to_vec()),
        (Op::SetPerms, b"/a\0".to_vec()),
        (Op::SetPerms, b"/a\0\0".to_vec()),
        (Op::SetPerms, b"/a\0r1".to_vec()),
        (Op::SetPerms, b"/a\0x1\0".to_vec()),
        (Op::SetPerms, b"/a\0R1\0".to_vec()),
        (Op::SetPerms, b"/a\0r1\0\0".to_vec()),
        (Op::SetPerms, b"/a\0r1\0w\0".to_vec()),
    ]);
}

#[test]
fn control_without_command_or_terminator_returns_einval() {
    assert_all_einval(&[
        (Op::Control, b"".to_vec()),
        (Op::Control, b"check".to_vec()),
        (Op::Control, b"\0".to_vec()),
        (Op::Control, b"\0check\0".to_vec()),
    ]);
}

#[test]
fn domain_op_with_wrong_field_count_returns_einval() {
    assert_all_einval(&[
        (Op::Release, b"1\x002\0".to_vec()),
        (Op::GetDomainPath, b"1".to_vec()),
        (Op::Resume, b"".to_vec()),
        (Op::IsDomainIntroduced, b"1\0\0".to_vec()),
        (Op::Introduce, b"1\x002\0".to_vec()),
        (Op::Introduce, b"1\x002\x003".to_vec()),
        (Op::SetTarget, b"1\0".to_vec()),
        (Op::SetTarget, b"1\x002\x003\0".to_vec()),
        (Op::GetFeature, b"1\x002\0".to_vec()),
        (Op::GetFeature, b"1".to_vec()),
        (Op::SetFeature, b"1\0".to_vec()),
        (Op::SetFeature, b"1\x002\x003\0".to_vec()),
    ]);
}

#[test]
fn quota_op_with_wrong_field_count_returns_einval() {
    assert_all_einval(&[
        (Op::GetQuota, b"1\0nodes\0x\0".to_vec()),
        (Op::GetQuota, b"nodes".to_vec()),
        (Op::SetQuota, b"".to_vec()),
        (Op::SetQuota, b"nodes\0".to_vec()),
        (Op::SetQuota, b"1\0nodes\x001\0x\0".to_vec()),
        (Op::SetQuota, b"nodes\x001".to_vec()),
    ]);
}

#[test]
fn quota_name_not_utf8_returns_einval() {
    assert_all_einval(&[
        (Op::GetQuota, b"\xff\0".to_vec()),
        (Op::GetQuota, b"1\0\xff\0".to_vec()),
        (Op::SetQuota, b"\xff\x001\0".to_vec()),
    ]);
}
