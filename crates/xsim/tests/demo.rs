//! The main job's integration test: `scripts/demo`, over the debug build
//! (`DEMO_BIN`), end to end: the host comes up, the demo guests write
//! over their rings, a guest writes and reads a disk through its block
//! frontend served by dom0's backend, another reads it read-only, and
//! everything is torn down.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn the_demo_runs_guests_and_a_block_device_end_to_end() {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_xsim")).parent().expect("the binaries' directory").to_owned();
    for program in ["xsim", "xsim-guest", "xenstored", "xenstore", "xen-blkback", "blkfront"] {
        assert!(
            bin.join(program).is_file(),
            "{program} is missing in {}: cargo build --workspace --bins",
            bin.display()
        );
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let state = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg(root.join("scripts/demo"))
        .env("DEMO_BIN", &bin)
        .env("XSIM_STATE", state.path())
        .env_remove("XENSTORED_PATH")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "scripts/demo failed:\n{text}");
    // Both block guests passed: the writer (write, flush, verify) and the
    // read-only reader (verify of what the writer wrote).
    assert_eq!(text.matches("PASS blkfront").count(), 2, "{text}");
    assert!(text.contains("read-only true"), "the second guest's disk is read-only:\n{text}");
    assert!(text.contains("disk-writer (") && text.contains("shutdown (poweroff)"), "{text}");
    // The rest of the demo: guests greeted over their rings, guest2 reboots.
    assert!(text.contains("---sr-"), "{text}");
    assert!(String::from_utf8_lossy(&out.stdout).trim_end().ends_with("stopped"), "{text}");
}
