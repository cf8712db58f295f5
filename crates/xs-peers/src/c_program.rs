//! What the C compiler says: a small C program built against the system's
//! Xen headers and run, for the tests that check our layouts against
//! `<xen/io/ring.h>` and `<xen/io/blkif.h>` (`crates/xen-ioring` and
//! `crates/blkif`, `tests/c_layout`) and against Linux's `/dev/xen`
//! device headers (`crates/xen-platform`, which also needs
//! [`crate::LINUX_LIBC_DEV`]). Such a test needs [`C_HEADERS`];
//! under the [`crate::harness`] it is reported ignored without them, and
//! fails under `XS_REQUIRE_PEERS=1`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::{path, Need, GCC, LIBXEN_DEV};

/// What a C layout test needs: the compiler and Xen's public headers.
pub const C_HEADERS: &[Need] = &[LIBXEN_DEV, GCC];

/// Compiles `source` (C11, warnings are errors, the headers under
/// `$XS_PEERS_ROOT/usr/include`), runs it, and returns the `key value`
/// lines it prints. Panics if it does not build, run or print such lines:
/// the caller is a test whose needs include [`C_HEADERS`].
pub fn facts(source: &Path) -> BTreeMap<String, String> {
    facts_with(source, &[])
}

/// [`facts`] with more compiler flags, after the usual ones (so that
/// `-std=gnu11` replaces `-std=c11`, for headers that need GNU C, as
/// Xen's `<xen/domctl.h>` does).
pub fn facts_with(source: &Path, flags: &[&str]) -> BTreeMap<String, String> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let binary = dir.path().join("c-program");
    let gcc = path("/usr/bin/gcc");
    let built = Command::new(&gcc)
        .args(["-std=c11", "-Wall", "-Werror"])
        .args(flags)
        .arg("-I")
        .arg(path("/usr/include"))
        .arg("-o")
        .arg(&binary)
        .arg(source)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", gcc.display()));
    assert!(
        built.status.success(),
        "{} failed to build:\n{}",
        source.display(),
        String::from_utf8_lossy(&built.stderr)
    );
    let out = Command::new(&binary).output().unwrap_or_else(|e| panic!("running {}: {e}", source.display()));
    assert!(out.status.success(), "{} failed: {}", source.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .expect("the program prints text")
        .lines()
        .map(|line| {
            let (key, value) = line.split_once(' ').unwrap_or_else(|| panic!("not a `key value` line: {line:?}"));
            (key.to_owned(), value.to_owned())
        })
        .collect()
}
