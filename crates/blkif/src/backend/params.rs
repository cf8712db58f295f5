//! The backend's `params` node: which image to serve.
//!
//! libxl writes `<format>:<target>` for a `qdisk` disk
//! (`libxl__device_disk_string_of_format`: `aio` for raw, `qcow`,
//! `qcow2`, `vhd`, `qed`; `aio:` with nothing after it for an empty
//! CD-ROM drive) and the bare target for a `phy` one; QEMU's xen-block
//! splits at the first `:`, takes `aio` as raw and any other prefix as
//! the name of a block driver, and a value without `:` as a raw path.
//!
//! This backend serves raw images only, so a prefix naming another
//! format is refused rather than served raw: a qcow2 file read as a raw
//! disk shows the guest its metadata, and the guest's writes corrupt it.
//! `raw`, and the `file` and `phy` of xend-era configurations, are
//! accepted as raw too. A prefix holding a `/` is no format but part of a
//! path with a `:` in it (QEMU would fail to open that one).

use std::fmt;

/// Why a `params` value names nothing this backend can serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamsError {
    /// A format other than raw (`qcow2:/images/a.qcow2`).
    Format(String),
    /// No image (`aio:` alone: libxl's empty CD-ROM drive), or an empty
    /// value.
    Empty,
}

impl fmt::Display for ParamsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamsError::Format(format) => {
                write!(f, "image format {format} is not supported (raw images only: aio:PATH, raw:PATH or PATH)")
            }
            ParamsError::Empty => f.write_str("no image (an empty drive is not supported)"),
        }
    }
}

impl std::error::Error for ParamsError {}

/// Prefixes that mean a raw image.
const RAW: [&str; 4] = ["aio", "raw", "file", "phy"];

/// The path of the raw image `params` names (surrounding whitespace
/// ignored), or why it names none.
pub fn image_path(params: &str) -> Result<&str, ParamsError> {
    let params = params.trim();
    let path = match params.split_once(':') {
        Some((format, path)) if RAW.contains(&format) => path,
        Some((format, _)) if !format.contains('/') => return Err(ParamsError::Format(format.to_owned())),
        _ => params,
    };
    if path.is_empty() {
        return Err(ParamsError::Empty);
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_libxl_and_qemu_write_is_read_as_they_read_it() {
        let rows: &[(&str, Result<&str, ParamsError>)] = &[
            ("/images/a.img", Ok("/images/a.img")),
            ("aio:/images/a.img", Ok("/images/a.img")),
            ("raw:/images/a.img", Ok("/images/a.img")),
            ("phy:/dev/vg/disk", Ok("/dev/vg/disk")),
            ("file:/images/a.img", Ok("/images/a.img")),
            (" aio:/images/a.img\n", Ok("/images/a.img")),
            ("/images/a:b.img", Ok("/images/a:b.img")),
            ("aio:/images/a:b.img", Ok("/images/a:b.img")),
            ("qcow2:/images/a.qcow2", Err(ParamsError::Format("qcow2".into()))),
            ("qcow:/images/a.qcow", Err(ParamsError::Format("qcow".into()))),
            ("vhd:/images/a.vhd", Err(ParamsError::Format("vhd".into()))),
            ("qed:/images/a.qed", Err(ParamsError::Format("qed".into()))),
            ("aio:", Err(ParamsError::Empty)),
            ("", Err(ParamsError::Empty)),
        ];
        for (params, expected) in rows {
            assert_eq!(&image_path(params), expected, "{params:?}");
        }
    }

    #[test]
    fn a_refused_format_says_what_is_served() {
        let err = image_path("qcow2:/a.qcow2").unwrap_err().to_string();
        assert!(err.contains("qcow2") && err.contains("raw images only"), "{err}");
    }
}
