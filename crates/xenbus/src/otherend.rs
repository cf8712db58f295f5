//! Finding a device's other end, and telling its events from stale ones.
//!
//! Linux's `talk_to_otherend` reads `backend` + `backend-id` (or
//! `frontend` + `frontend-id`) and watches `<otherend>/state`; its
//! `xenbus_otherend_changed` ignores an event whose path does not start
//! with the current other end ("watches firing on old details"). Here an
//! event counts only if it carries the token of the current registration
//! and its path is the current other end's `state` node (or the other end
//! directory itself, which a recursive removal reports); the other end is
//! read again before each event is acted on, so a changed `backend` node
//! retires the old registration first.

use xenstore::Store;
use xenstore_wire::DomId;

use crate::error::Error;
use crate::gather::parse_value;
use crate::paths;
use crate::transitions::Role;

/// The other end of a device: its directory and domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherEnd {
    /// The other end's directory (absolute).
    pub dir: String,
    /// Its domain.
    pub domid: DomId,
}

impl OtherEnd {
    /// Reads the other end named in device directory `dir` of a `role`
    /// device. Missing, empty or unparseable nodes, or a named directory
    /// that does not exist, are [`Error::NoOtherEnd`].
    pub fn read(store: &dyn Store, role: Role, dir: &str) -> Result<OtherEnd, Error> {
        let (key_path, id_path) = OtherEnd::nodes(role, dir);
        let other = OtherEnd::parse(dir, store.read(&key_path), &id_path, store.read(&id_path))?;
        // A directory we may not read is one we cannot use (the daemon also
        // answers EACCES for a missing node below an unreadable one).
        match store.exists(&other.dir) {
            Ok(true) => Ok(other),
            Ok(false) => Err(Error::NoOtherEnd { device: dir.to_owned() }),
            Err(err) if err.code() == Some(xenstore::ErrorCode::EACCES) => {
                Err(Error::NoOtherEnd { device: dir.to_owned() })
            }
            Err(err) => Err(err.into()),
        }
    }

    /// The nodes naming the other end of a `role` device at `dir`: its
    /// directory's, and its domain's.
    pub fn nodes(role: Role, dir: &str) -> (String, String) {
        (paths::child(dir, paths::otherend_key(role)), paths::child(dir, paths::otherend_id_key(role)))
    }

    /// The other end from the two reads of [`OtherEnd::nodes`] (pure: the
    /// async flavour reads them its own way). A missing, empty, relative
    /// or unparseable value is [`Error::NoOtherEnd`].
    pub fn parse(
        dir: &str,
        other: Result<Vec<u8>, xenstore::Error>,
        id_path: &str,
        id: Result<Vec<u8>, xenstore::Error>,
    ) -> Result<OtherEnd, Error> {
        let missing = || Error::NoOtherEnd { device: dir.to_owned() };
        let (other, id) = match (other, id) {
            (Ok(other), Ok(id)) => (other, id),
            (Err(err), _) | (_, Err(err)) if err.code() != Some(xenstore::ErrorCode::ENOENT) => return Err(err.into()),
            _ => return Err(missing()),
        };
        let other = String::from_utf8(other).map_err(|_| missing())?;
        if !other.starts_with('/') || other.len() < 2 {
            return Err(missing());
        }
        let domid = parse_value::<DomId>(id_path, &id)?;
        Ok(OtherEnd { dir: other, domid })
    }

    /// The `state` node the device watches.
    pub fn state_node(&self) -> String {
        paths::child(&self.dir, "state")
    }

    /// Whether a watch event (`path`, `token`) is about this other end as
    /// registered with `current_token`.
    pub fn is_current(&self, path: &str, token: &str, current_token: &str) -> bool {
        token == current_token && (path == self.state_node() || path == self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end() -> OtherEnd {
        OtherEnd { dir: "/local/domain/0/backend/vif/1/0".into(), domid: 0 }
    }

    #[test]
    fn events_of_the_current_registration_count() {
        let e = end();
        assert!(e.is_current("/local/domain/0/backend/vif/1/0/state", "t2", "t2"));
        assert!(e.is_current("/local/domain/0/backend/vif/1/0", "t2", "t2"));
    }

    #[test]
    fn parse_needs_an_absolute_directory_and_a_domid() {
        let ok = OtherEnd::parse("/d", Ok(b"/be".to_vec()), "/d/backend-id", Ok(b"3".to_vec())).unwrap();
        assert_eq!(ok, OtherEnd { dir: "/be".into(), domid: 3 });
        let enoent = || Err(xenstore::Error::Xs(xenstore::ErrorCode::ENOENT));
        for (other, id) in [
            (Ok(b"".to_vec()), Ok(b"3".to_vec())),
            (Ok(b"be".to_vec()), Ok(b"3".to_vec())),
            (Ok(b"/".to_vec()), Ok(b"3".to_vec())),
            (enoent(), Ok(b"3".to_vec())),
            (Ok(b"/be".to_vec()), enoent()),
        ] {
            assert!(matches!(OtherEnd::parse("/d", other, "/d/backend-id", id), Err(Error::NoOtherEnd { .. })));
        }
        let bad_id = OtherEnd::parse("/d", Ok(b"/be".to_vec()), "/d/backend-id", Ok(b"x".to_vec()));
        assert!(matches!(bad_id, Err(Error::Parse { .. })));
        let eacces = OtherEnd::parse("/d", Err(xenstore::Error::Xs(xenstore::ErrorCode::EACCES)), "/i", Ok(vec![]));
        assert!(matches!(eacces, Err(Error::Xs(_))));
    }

    #[test]
    fn events_of_an_old_registration_or_another_path_are_stale() {
        let e = end();
        assert!(!e.is_current("/local/domain/0/backend/vif/1/0/state", "t1", "t2"));
        assert!(!e.is_current("/local/domain/5/backend/vif/1/0/state", "t2", "t2"));
        assert!(!e.is_current("/local/domain/0/backend/vif/1/0/state-x", "t2", "t2"));
        assert!(!e.is_current("/local/domain/0/backend/vif/1/00/state", "t2", "t2"));
    }
}
