//! xensblk, the Xen Share block device, end to end on a hosted host: a
//! guest with a FUSE mount of its own (`xsim create --fuse`) runs the
//! xensblk driver (`xsim-guest xensblk`), dom0 makes the disk with
//! `vdevice --create block FILE 0 GUEST` (which starts dom0's `xensblk`
//! server and waits for it), and the guest's ordinary tools use the disk:
//! `mkfs.ext4`, `debugfs` writes a file and reads it back, `fsck.ext4`
//! finds the filesystem clean, after dom0's server was killed and started
//! again between the steps; dom0 then reads the file from the image.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{guest_program, TestHost};
use xs_peers::harness::{run, Test};
use xs_peers::Need;
use xsim::DomainSpec;

mod support;

/// A root hypervisor (mount namespaces, a uid per guest) and FUSE.
const ROOT_AND_FUSE: Need = Need::Check {
    missing: "not root, or no /dev/fuse, or the build directory is not searchable by other users: hosted \
              guests get a FUSE mount in a mount namespace of their own from a root hypervisor",
    met: || {
        rustix::process::geteuid().is_root()
            && Path::new("/dev/fuse").exists()
            && xen_platform::hosted::Isolation::strongest() == xen_platform::hosted::Isolation::Uid
    },
};

/// e2fsprogs: the guest's mkfs.ext4, debugfs and fsck.ext4.
const E2FSPROGS: Need = Need::Package { name: "e2fsprogs", file: "/usr/sbin/mke2fs" };

fn a_guest_makes_a_filesystem_on_a_xensblk_disk_and_reads_back_what_it_wrote() {
    let mut host = TestHost::up();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let d = dir.path().display();
    let image = dir.path().join("disk.img");
    std::fs::File::create(&image).unwrap().set_len(32 << 20).unwrap();
    let script = dir.path().join("guest.sh");
    std::fs::write(
        &script,
        format!(
            "\"{}\" xensblk &\n\
             dd if=/dev/zero of=/mnt/disk bs=64k count=16 conv=fsync 2>/dev/null && echo DD-WRITE-OK\n\
             truncate -s 1M /mnt/disk 2>/dev/null || echo TRUNCATE-REFUSED\n\
             /usr/sbin/mkfs.ext4 -q -F /mnt/disk && echo MKFS-OK\n\
             until [ -e {d}/restarted ]; do sleep 0.05; done\n\
             T=$(mktemp -d); echo 'written by the guest' > $T/f\n\
             /usr/sbin/debugfs -w -R \"write $T/f note.txt\" /mnt/disk 2>/dev/null\n\
             echo \"READ: $(/usr/sbin/debugfs -R 'cat note.txt' /mnt/disk 2>/dev/null)\"\n\
             /usr/sbin/fsck.ext4 -fn /mnt/disk >/dev/null && echo FSCK-OK\n\
             dd if=/mnt/disk of=/dev/null bs=64k 2>/dev/null && echo DD-OK\n\
             wait",
            guest_program()
        ),
    )
    .unwrap();
    let spec = DomainSpec {
        name: "disk-user".into(),
        program: vec!["/bin/sh".into(), script.display().to_string()],
        env: Vec::new(),
        paused: false,
        netns: false,
        fuse: true,
    };
    let guest = host.ts.create(&spec).expect("xsim create --fuse").domid;
    let device = host.vdevice(&["--create", "block", &image.display().to_string(), "0", &guest.to_string()]);
    let device = device.trim().to_owned();
    host.wait_console(guest, "MKFS-OK");

    // dom0's server killed and started again: what it answered stays.
    let list = host.vdevice(&["--list"]);
    let pid: i32 = list.split("(pid ").nth(1).and_then(|r| r.split(')').next()).unwrap().parse().unwrap();
    rustix::process::kill_process(rustix::process::Pid::from_raw(pid).unwrap(), rustix::process::Signal::KILL).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let xensblk = Path::new(env!("CARGO_BIN_EXE_vdevice")).with_file_name("xensblk");
    let mut restarted = Command::new(xensblk)
        .arg("--state")
        .arg(host.state.root())
        .args(["--share", &device])
        .arg(&image)
        .spawn()
        .unwrap();
    std::fs::write(dir.path().join("restarted"), "").unwrap();

    let console = host.wait_console(guest, "DD-OK");
    assert!(console.contains("READ: written by the guest"), "{console}");
    assert!(console.contains("FSCK-OK"), "{console}");
    // `dd of=` opens with O_TRUNC, ignored as a block device ignores it;
    // a truncate of the disk is refused.
    assert!(console.contains("DD-WRITE-OK") && console.contains("TRUNCATE-REFUSED"), "{console}");
    restarted.kill().unwrap();
    restarted.wait().unwrap();
    host.ts.destroy(guest).unwrap();

    // dom0 reads the guest's file from the image.
    let out = Command::new("/usr/sbin/debugfs").args(["-R", "cat note.txt"]).arg(&image).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "written by the guest");
}

fn main() -> std::process::ExitCode {
    run(vec![Test::new(
        "a_guest_makes_a_filesystem_on_a_xensblk_disk_and_reads_back_what_it_wrote",
        a_guest_makes_a_filesystem_on_a_xensblk_disk_and_reads_back_what_it_wrote,
    )
    .needs(&[ROOT_AND_FUSE, E2FSPROGS])])
}
