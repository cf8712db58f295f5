//! A hosted host (xsim's hypervisor and xenstored, the binaries of this
//! build) in a temporary directory, for the tests that run the backend
//! and guests as real processes (`tests/hosted.rs`, `tests/qemu_compat.rs`).

use std::path::PathBuf;

use xen_platform::hosted::Isolation;
use xsim::{host, StateDir, Toolstack};

/// A program of this workspace's build, beside `xen-blkback`.
pub fn binary(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_xen-blkback")).with_file_name(name);
    assert!(
        path.is_file(),
        "{} is missing: `cargo build --workspace --bins` first (scripts/test does)",
        path.display()
    );
    path
}

/// Starts a host in a new temporary directory: the directory, the host's
/// state (give it to `host::down` when done) and its toolstack.
pub fn up() -> (tempfile::TempDir, StateDir, Toolstack) {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = StateDir::at(dir.path().join("state"));
    std::fs::create_dir_all(state.root()).unwrap();
    let programs = host::Programs { xsim: binary("xsim"), xenstored: binary("xenstored") };
    host::up_with(&state, &programs, Isolation::strongest()).expect("xsim up");
    let ts = Toolstack::connect(&state).expect("toolstack");
    (dir, state, ts)
}
