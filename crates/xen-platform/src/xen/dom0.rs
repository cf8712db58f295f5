//! Dom0's own xenstore ring, when xenstored runs in dom0.
//!
//! A Linux dom0 that finds no xenstore at boot allocates its xenbus page
//! and an unbound port for a local daemon and exposes them through xenfs:
//! `/proc/xen/xsd_kva` maps the page, `/proc/xen/xsd_port` holds the port
//! as text; `/dev/xen/xenbus_backend`'s `IOCTL_XENBUS_BACKEND_EVTCHN`
//! answers the port too (the C daemon's `xenbus_map` and
//! `xenbus_evtchn`). Dom0's kernel then waits for the daemon's first
//! notification on that port before it probes its backends.

use std::fmt;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use super::abi::IOCTL_XENBUS_BACKEND_EVTCHN;
use super::{context, errno, ioctl, non_negative, open_device, XENBUS_BACKEND_DEVICE, XSD_KVA, XSD_PORT};
use crate::{Dom0Store, MappedPages, Port};

/// Dom0's xenstore page and port from xenfs and the xenbus backend device.
pub struct XenDom0Store {
    kva: PathBuf,
    port_file: PathBuf,
    backend: PathBuf,
}

impl XenDom0Store {
    /// Reads `/proc/xen/xsd_kva`, `/dev/xen/xenbus_backend` and
    /// `/proc/xen/xsd_port` when asked.
    pub fn new() -> XenDom0Store {
        XenDom0Store::at(Path::new(XSD_KVA), Path::new(XSD_PORT), Path::new(XENBUS_BACKEND_DEVICE))
    }

    /// The same files elsewhere (tests).
    pub(crate) fn at(kva: &Path, port_file: &Path, backend: &Path) -> XenDom0Store {
        XenDom0Store { kva: kva.to_owned(), port_file: port_file.to_owned(), backend: backend.to_owned() }
    }

    /// Dom0's port: the backend device's ioctl, else the xsd_port file.
    fn port(&self) -> io::Result<Port> {
        let by_ioctl = open_device(&self.backend, false, "a dom0 kernel with CONFIG_XEN_BACKEND?").and_then(|file| {
            // SAFETY: IOCTL_XENBUS_BACKEND_EVTCHN takes no argument and
            // returns the port.
            let result = unsafe { ioctl(file.as_fd(), IOCTL_XENBUS_BACKEND_EVTCHN, std::ptr::null_mut::<u8>()) };
            non_negative(result.map_err(|e| context(e, format!("asking {} for dom0's port", self.backend.display())))?)
        });
        let ioctl_error = match by_ioctl {
            Ok(port) => return Ok(port),
            Err(e) => e,
        };
        let text = std::fs::read_to_string(&self.port_file).map_err(|e| {
            let what = format!("reading {} (and before that, {ioctl_error})", self.port_file.display());
            context(e, what)
        })?;
        parse_port(&text).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} holds {text:?}, not a port number", self.port_file.display()),
            )
        })
    }
}

impl Default for XenDom0Store {
    fn default() -> XenDom0Store {
        XenDom0Store::new()
    }
}

/// A port number as the C daemon reads it (`strtoul(text, NULL, 0)`):
/// decimal, `0x` hex or leading-zero octal, surrounded by white space.
fn parse_port(text: &str) -> Option<Port> {
    let text = text.trim();
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Port::from_str_radix(hex, 16).ok()
    } else if text.len() > 1 && text.starts_with('0') {
        Port::from_str_radix(&text[1..], 8).ok()
    } else {
        text.parse().ok()
    }
}

impl Dom0Store for XenDom0Store {
    /// `None` when `/proc/xen/xsd_kva` does not exist (xenfs not mounted,
    /// or a dom0 whose xenstore runs elsewhere, e.g. in a stub domain).
    fn dom0_ring(&mut self) -> io::Result<Option<(MappedPages, Port)>> {
        let kva = match open_device(&self.kva, false, "is xenfs mounted on /proc/xen?") {
            Ok(kva) => kva,
            Err(e) if errno(&e) == Some(libc::ENOENT) => return Ok(None),
            Err(e) => return Err(e),
        };
        let page = MappedPages::map(kva.as_fd(), 0, 1, true)
            .map_err(|e| context(e, format!("mapping {}", self.kva.display())))?;
        Ok(Some((page, self.port()?)))
    }
}

impl fmt::Debug for XenDom0Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XenDom0Store")
            .field("kva", &self.kva)
            .field("port_file", &self.port_file)
            .field("backend", &self.backend)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_text_parses_as_strtoul_base_0() {
        assert_eq!(parse_port("3\n"), Some(3));
        assert_eq!(parse_port(" 42 "), Some(42));
        assert_eq!(parse_port("0x1f"), Some(31));
        assert_eq!(parse_port("010"), Some(8));
        assert_eq!(parse_port("0"), Some(0));
        assert_eq!(parse_port(""), None);
        assert_eq!(parse_port("port 3"), None);
    }

    #[test]
    fn no_ring_without_xsd_kva() {
        let dir = tempfile::tempdir().unwrap();
        let mut store =
            XenDom0Store::at(&dir.path().join("xsd_kva"), &dir.path().join("xsd_port"), &dir.path().join("be"));
        assert!(store.dom0_ring().unwrap().is_none());
    }

    #[test]
    fn ring_page_is_mapped_and_port_read_from_the_file_without_the_device() {
        let dir = tempfile::tempdir().unwrap();
        let kva = dir.path().join("xsd_kva");
        std::fs::write(&kva, vec![0u8; crate::PAGE_SIZE]).unwrap();
        let port_file = dir.path().join("xsd_port");
        std::fs::write(&port_file, "5\n").unwrap();
        let mut store = XenDom0Store::at(&kva, &port_file, &dir.path().join("xenbus_backend"));
        let (page, port) = store.dom0_ring().unwrap().unwrap();
        assert_eq!((page.len(), port), (crate::PAGE_SIZE, 5));
    }

    #[test]
    fn missing_port_says_where_it_looked() {
        let dir = tempfile::tempdir().unwrap();
        let kva = dir.path().join("xsd_kva");
        std::fs::write(&kva, vec![0u8; crate::PAGE_SIZE]).unwrap();
        let mut store = XenDom0Store::at(&kva, &dir.path().join("xsd_port"), &dir.path().join("xenbus_backend"));
        let e = store.dom0_ring().unwrap_err();
        let text = e.to_string();
        assert!(text.contains("xsd_port") && text.contains("xenbus_backend"), "{text}");
    }
}
