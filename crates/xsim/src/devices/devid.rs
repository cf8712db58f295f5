//! Which device id a new device gets when the caller names none.
//!
//! libxl's `libxl__device_nextid` takes one more than the highest id in
//! the frontend's `device/<type>` directory, so ids are never reused
//! while a device lives and a gap left by a detach stays a gap. We do the
//! same for every type but `vbd`.
//!
//! A `vbd`'s id is not a counter: it is the `virtual-device` number that
//! blkfront turns into a disk name (Xen's `docs/misc/vbd-interface.txt`).
//! Id 0 would be no disk at all to Linux, so `vbd` ids are whole xvd
//! disks: `xvda` is 202 << 8 = 51712 and each next disk is 16 minors
//! further (`xvdb` 51728 ... `xvdp` 51952); from the seventeenth disk on,
//! the extended form `1 << 28 | disk << 8` (partition 0). The next id is
//! the first such disk after the highest one in use.

/// The major number of the xvd disks (`XENVBD_MAJOR`).
const XVD_MAJOR: u32 = 202;
/// Disks the old xvd encoding can name (`xvda` to `xvdp`).
const XVD_OLD_DISKS: u32 = 16;
/// Bit 28 marks the extended encoding.
const EXTENDED: u32 = 1 << 28;
/// Disks the extended encoding can name (its disk field is 20 bits).
const EXTENDED_DISKS: u32 = 1 << 20;

/// The `virtual-device` number of xvd disk `disk` (0 is `xvda`), partition
/// 0; `None` beyond what the encoding can name.
pub fn vbd_disk(disk: u32) -> Option<u32> {
    if disk < XVD_OLD_DISKS {
        Some((XVD_MAJOR << 8) | (disk << 4))
    } else if disk < EXTENDED_DISKS {
        Some(EXTENDED | (disk << 8))
    } else {
        None
    }
}

/// Which xvd disk (0 is `xvda`) a `virtual-device` number names, if it
/// is an xvd number.
fn disk_of(vdev: u32) -> Option<u32> {
    if vdev & EXTENDED != 0 {
        Some((vdev & !EXTENDED) >> 8)
    } else if vdev >> 8 == XVD_MAJOR {
        Some((vdev & 0xff) >> 4)
    } else {
        None
    }
}

/// Where an id stands in the order [`next_free`] counts from: the id
/// itself, or for a `vbd` its xvd disk (`None`: not an xvd number, which
/// the count ignores).
pub fn rank(devtype: &str, id: u32) -> Option<u32> {
    if devtype == "vbd" {
        disk_of(id)
    } else {
        Some(id)
    }
}

/// The id for a new device of `devtype`, given the ids in use (the
/// frontend's `device/<type>` entries that are numbers); `None` if the
/// ids are exhausted.
pub fn next_free(devtype: &str, in_use: &[u32]) -> Option<u32> {
    if devtype == "vbd" {
        let next_disk = in_use.iter().filter_map(|&id| disk_of(id)).max().map_or(Some(0), |d| d.checked_add(1))?;
        return vbd_disk(next_disk);
    }
    in_use.iter().max().map_or(Some(0), |&max| max.checked_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_count_up_from_the_highest_in_use() {
        assert_eq!(next_free("vif", &[]), Some(0));
        assert_eq!(next_free("vif", &[0, 1]), Some(2));
        // A gap left by a detach stays a gap, as in libxl.
        assert_eq!(next_free("vif", &[3, 0]), Some(4));
        assert_eq!(next_free("vif", &[u32::MAX]), None);
    }

    #[test]
    fn vbd_ids_are_xvd_disks() {
        assert_eq!(next_free("vbd", &[]), Some(51712), "xvda");
        assert_eq!(next_free("vbd", &[51712]), Some(51728), "xvdb");
        // A partition number in use still counts as its disk.
        assert_eq!(next_free("vbd", &[51712 + 16 + 1]), Some(51744), "xvdc");
        assert_eq!(next_free("vbd", &[51952]), Some(EXTENDED | (16 << 8)), "the 17th disk is extended");
        assert_eq!(next_free("vbd", &[EXTENDED | (16 << 8)]), Some(EXTENDED | (17 << 8)));
        // Numbers that are not xvd disks (a hand-picked 5) are not counted.
        assert_eq!(next_free("vbd", &[5]), Some(51712));
    }

    #[test]
    fn the_extended_encoding_runs_out() {
        assert_eq!(vbd_disk(EXTENDED_DISKS - 1), Some(EXTENDED | ((EXTENDED_DISKS - 1) << 8)));
        assert_eq!(vbd_disk(EXTENDED_DISKS), None);
    }
}
