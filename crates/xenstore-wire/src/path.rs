//! Path syntax (`docs/misc/xenstore.txt`, "Paths are /-separated ...").
//!
//! Legal bytes are ASCII alphanumerics and `-/_@`. An absolute path starts
//! with `/` and is at most [`ABS_PATH_MAX`] bytes; a relative path is taken
//! from `/local/domain/<domid>` and is at most [`REL_PATH_MAX`] bytes. Doubled
//! slashes, a trailing slash (except the root itself) and the empty path are
//! illegal. A path starting with `@` names a special watch (`@introduceDomain`,
//! `@releaseDomain`, `@releaseDomain/<domid>`) and is accepted only where the
//! operation allows it.

use std::borrow::Cow;

use crate::error::ErrorCode;
use crate::limits::{ABS_PATH_MAX, REL_PATH_MAX};
use crate::DomId;

/// Special path fired when a domain is introduced.
pub const INTRODUCE_DOMAIN: &str = "@introduceDomain";
/// Special path fired when a domain is released, shuts down or dies.
pub const RELEASE_DOMAIN: &str = "@releaseDomain";

/// What kind of path a valid path string is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// Starts with `/`.
    Absolute,
    /// Relative to the caller's home, `/local/domain/<domid>`.
    Relative,
    /// Starts with `@`: a special watch path.
    Special,
}

/// Whether `byte` may appear in a node path.
pub fn is_path_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'/' | b'_' | b'@')
}

/// Checks the syntax of `path`; `allow_special` admits `@` paths.
///
/// Special paths may have any syntax except a nul (the specification says
/// only the listed names ever match), up to [`REL_PATH_MAX`] bytes.
pub fn check(path: &[u8], allow_special: bool) -> Result<PathKind, ErrorCode> {
    let first = *path.first().ok_or(ErrorCode::EINVAL)?;
    if first == b'@' {
        if !allow_special || path.len() > REL_PATH_MAX || path.contains(&0) {
            return Err(ErrorCode::EINVAL);
        }
        return Ok(PathKind::Special);
    }
    let (kind, max) =
        if first == b'/' { (PathKind::Absolute, ABS_PATH_MAX) } else { (PathKind::Relative, REL_PATH_MAX) };
    if path.len() > max || !path.iter().all(|b| is_path_byte(*b)) {
        return Err(ErrorCode::EINVAL);
    }
    if path.windows(2).any(|w| w == b"//") {
        return Err(ErrorCode::EINVAL);
    }
    if path.len() > 1 && path.ends_with(b"/") {
        return Err(ErrorCode::EINVAL);
    }
    if kind == PathKind::Relative && path == b"/" {
        return Err(ErrorCode::EINVAL);
    }
    Ok(kind)
}

/// `/local/domain/<domid>`: where a domain's relative paths start.
pub fn domain_home(domid: DomId) -> String {
    format!("/local/domain/{domid}")
}

/// Makes a checked path absolute for a caller in domain `domid`. Absolute and
/// special paths come back unchanged (borrowed).
pub fn canonicalize(path: &str, domid: DomId) -> Cow<'_, str> {
    if path.starts_with('/') || path.starts_with('@') {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(format!("/local/domain/{domid}/{path}"))
    }
}

/// The parent of an absolute path (`None` for `/`).
pub fn parent(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => path.get(..i),
        None => None,
    }
}

/// The last component of an absolute path (empty for `/`).
pub fn basename(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => path.get(i + 1..).unwrap_or(""),
        None => path,
    }
}

/// Joins a parent path and a child name.
pub fn join(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// Whether `path` is `ancestor` or lies below it (the specification's
/// "child" relation, which includes the path itself; `/` is everyone's).
pub fn is_at_or_below(path: &str, ancestor: &str) -> bool {
    if ancestor == "/" {
        return path.starts_with('/');
    }
    match path.strip_prefix(ancestor) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// How many components `path` has below `ancestor`, if it is at or below it.
pub fn depth_below(path: &str, ancestor: &str) -> Option<usize> {
    if !is_at_or_below(path, ancestor) {
        return None;
    }
    let rest = if ancestor == "/" { path.get(1..)? } else { path.get(ancestor.len()..)? };
    Some(rest.split('/').filter(|c| !c.is_empty()).count())
}

/// The upper bound (exclusive) of the key range holding the strict
/// descendants of `path` in byte order: descendants of `/a` are the keys in
/// `["/a/", "/a0")`, because `0` is the byte after `/`.
pub fn descendants_range(path: &str) -> (String, String) {
    if path == "/" {
        ("/".to_owned(), "0".to_owned())
    } else {
        (format!("{path}/"), format!("{path}0"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_accepts_root_absolute_relative() {
        assert_eq!(check(b"/", false), Ok(PathKind::Absolute));
        assert_eq!(check(b"/local/domain/1", false), Ok(PathKind::Absolute));
        assert_eq!(check(b"data/x-y_z@w", false), Ok(PathKind::Relative));
    }

    #[test]
    fn check_rejects_bad_syntax_with_einval() {
        for bad in [&b""[..], b"//", b"/a//b", b"/a/", b"a/", b"/a b", b"/a\0", b"/\xff", b"/a.b"] {
            assert_eq!(check(bad, false), Err(ErrorCode::EINVAL), "{bad:?}");
        }
    }

    #[test]
    fn check_special_only_when_allowed() {
        assert_eq!(check(b"@releaseDomain", false), Err(ErrorCode::EINVAL));
        assert_eq!(check(b"@releaseDomain/7", true), Ok(PathKind::Special));
    }

    #[test]
    fn check_enforces_length_limits() {
        let mut abs = vec![b'/'];
        abs.extend(std::iter::repeat_n(b'a', ABS_PATH_MAX - 1));
        assert_eq!(check(&abs, false), Ok(PathKind::Absolute));
        abs.push(b'a');
        assert_eq!(check(&abs, false), Err(ErrorCode::EINVAL));
        let rel = vec![b'a'; REL_PATH_MAX + 1];
        assert_eq!(check(&rel, false), Err(ErrorCode::EINVAL));
        assert_eq!(check(&rel[1..], false), Ok(PathKind::Relative));
    }

    #[test]
    fn canonicalize_prefixes_relative_paths() {
        assert_eq!(canonicalize("data/x", 7), "/local/domain/7/data/x");
        assert_eq!(canonicalize("/data/x", 7), "/data/x");
    }

    #[test]
    fn parent_basename_join_agree() {
        assert_eq!(parent("/"), None);
        assert_eq!(parent("/a"), Some("/"));
        assert_eq!(parent("/a/b"), Some("/a"));
        assert_eq!(basename("/a/b"), "b");
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/a", "b"), "/a/b");
    }

    #[test]
    fn at_or_below_respects_component_boundaries() {
        assert!(is_at_or_below("/a/b", "/a"));
        assert!(is_at_or_below("/a", "/a"));
        assert!(!is_at_or_below("/ab", "/a"));
        assert!(is_at_or_below("/ab", "/"));
        assert_eq!(depth_below("/a/b/c", "/a"), Some(2));
        assert_eq!(depth_below("/a", "/"), Some(1));
        assert_eq!(depth_below("/", "/"), Some(0));
        assert_eq!(depth_below("/b", "/a"), None);
    }

    #[test]
    fn descendants_range_brackets_exactly_the_subtree() {
        let (lo, hi) = descendants_range("/a");
        for inside in ["/a/b", "/a/b/c", "/a/_", "/a/@", "/a/z"] {
            assert!(lo.as_str() <= inside && inside < hi.as_str(), "{inside}");
        }
        for outside in ["/a", "/a-b", "/ab", "/a0", "/b"] {
            assert!(!(lo.as_str() <= outside && outside < hi.as_str()), "{outside}");
        }
    }
}
