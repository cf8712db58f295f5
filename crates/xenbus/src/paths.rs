//! Where a device's nodes live, as libxl writes them (XEN-NOTES A.4).
//!
//! - frontend directory `/local/domain/<fe>/device/<type>/<devid>`, with
//!   `backend`, `backend-id` and `state`;
//! - backend directory `/local/domain/<be>/backend/<type>/<fe>/<devid>`,
//!   with `frontend`, `frontend-id`, `online` and `state`;
//! - a fatal error of a device goes to `error/<device>/error` under the
//!   writer's home, `<device>` being the device's path relative to that
//!   home (Linux's `dev->nodename`, e.g. `device/vif/0`).

use xenstore_wire::DomId;

use crate::transitions::Role;

/// `/local/domain/<domid>`.
pub fn home(domid: DomId) -> String {
    xenstore_wire::path::domain_home(domid)
}

/// The directory a bus of `role` enumerates: `<home>/device/<type>` for
/// frontends, `<home>/backend/<type>` for backends.
pub fn bus_root(role: Role, domid: DomId, devtype: &str) -> String {
    match role {
        Role::Frontend => format!("{}/device/{devtype}", home(domid)),
        Role::Backend => format!("{}/backend/{devtype}", home(domid)),
    }
}

/// How many path components below [`bus_root`] name one device: `<devid>`
/// for frontends, `<fe>/<devid>` for backends (Linux's `levels` 2 and 3,
/// counting the type).
pub fn device_depth(role: Role) -> usize {
    match role {
        Role::Frontend => 1,
        Role::Backend => 2,
    }
}

/// The frontend directory of device `devid` of `devtype` in domain `fe`.
pub fn frontend_dir(fe: DomId, devtype: &str, devid: u32) -> String {
    format!("{}/{devid}", bus_root(Role::Frontend, fe, devtype))
}

/// The backend directory in domain `be` serving device `devid` of domain `fe`.
pub fn backend_dir(be: DomId, fe: DomId, devtype: &str, devid: u32) -> String {
    format!("{}/{fe}/{devid}", bus_root(Role::Backend, be, devtype))
}

/// The node naming the other end's directory: `backend` in a frontend
/// directory, `frontend` in a backend directory.
pub fn otherend_key(role: Role) -> &'static str {
    match role {
        Role::Frontend => "backend",
        Role::Backend => "frontend",
    }
}

/// The node naming the other end's domain (`backend-id`, `frontend-id`).
pub fn otherend_id_key(role: Role) -> &'static str {
    match role {
        Role::Frontend => "backend-id",
        Role::Backend => "frontend-id",
    }
}

/// `<dir>/<key>`.
pub fn child(dir: &str, key: &str) -> String {
    xenstore_wire::path::join(dir, key)
}

/// Where `xenbus_dev_fatal` of a device at `dir` (absolute, below the
/// writer's home `home`) writes: `<home>/error/<dir relative to home>/error`.
/// A device outside the home (not a layout libxl makes) reports under its
/// whole path.
pub fn error_node(home: &str, dir: &str) -> String {
    let relative = dir.strip_prefix(home).map_or(dir, |rest| rest.trim_start_matches('/'));
    format!("{home}/error/{}/error", relative.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_where_libxl_puts_them() {
        assert_eq!(frontend_dir(3, "vif", 0), "/local/domain/3/device/vif/0");
        assert_eq!(backend_dir(0, 3, "vbd", 51712), "/local/domain/0/backend/vbd/3/51712");
        assert_eq!(bus_root(Role::Backend, 2, "vif"), "/local/domain/2/backend/vif");
    }

    #[test]
    fn error_node_is_the_device_path_relative_to_home_under_error() {
        let home = home(3);
        assert_eq!(error_node(&home, "/local/domain/3/device/vif/0"), "/local/domain/3/error/device/vif/0/error");
        assert_eq!(
            error_node("/local/domain/0", "/local/domain/0/backend/vif/3/0"),
            "/local/domain/0/error/backend/vif/3/0/error"
        );
        assert_eq!(error_node(&home, "/elsewhere/dev"), "/local/domain/3/error/elsewhere/dev/error");
    }
}
