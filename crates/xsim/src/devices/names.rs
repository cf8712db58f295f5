//! What may name a device type and a backend key on the command line.
//!
//! Both become path components under `/local/domain/<id>/`, so they are
//! held to XenStore's path alphabet (letters, digits, `-`, `_`, `@`)
//! before anything is written: a `/` in a type would put the device in
//! another directory, and a `..` or an empty component is no path at all.
//! A key may have `/` inside it (`params/extra` makes a subdirectory), not
//! at its ends. The keys the toolstack writes itself (`frontend`,
//! `frontend-id`, `online`, `state`) are refused as user keys: a user
//! value there would break the handshake.

/// The backend keys the toolstack writes itself.
pub const RESERVED_KEYS: [&str; 4] = ["frontend", "frontend-id", "online", "state"];

fn component_ok(c: &str) -> bool {
    !c.is_empty() && c.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'@'))
}

/// Checks a device type (`vbd`, `vif`, ...): one path component.
pub fn check_type(devtype: &str) -> Result<(), String> {
    if component_ok(devtype) {
        Ok(())
    } else {
        Err(format!("{devtype:?} is not a device type: want one word of letters, digits, '-', '_' (vbd, vif, ...)"))
    }
}

/// Parses a `KEY=VALUE` for the backend directory.
pub fn backend_pair(pair: &str) -> Result<(String, String), String> {
    let Some((key, value)) = pair.split_once('=') else { return Err(format!("{pair:?}: want KEY=VALUE")) };
    if !key.split('/').all(component_ok) {
        return Err(format!("{key:?} is not a key: want letters, digits, '-', '_', and '/' between them"));
    }
    if RESERVED_KEYS.contains(&key) {
        return Err(format!("{key:?} is written by xsim itself"));
    }
    Ok((key.to_owned(), value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_type_is_one_path_component() {
        for good in ["vbd", "vif", "9pfs", "my_dev-2"] {
            assert_eq!(check_type(good), Ok(()), "{good}");
        }
        for bad in ["", "vbd/x", "..", "v bd", "/vbd"] {
            assert!(check_type(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_are_relative_paths_and_not_the_toolstacks() {
        assert_eq!(backend_pair("params=/tmp/disk.img"), Ok(("params".into(), "/tmp/disk.img".into())));
        assert_eq!(backend_pair("mode=w"), Ok(("mode".into(), "w".into())));
        assert_eq!(backend_pair("a/b="), Ok(("a/b".into(), String::new())));
        assert_eq!(backend_pair("x==y"), Ok(("x".into(), "=y".into())));
        for bad in ["params", "=v", "/params=v", "a//b=v", "a/=v", "st ate=1"] {
            assert!(backend_pair(bad).is_err(), "{bad:?}");
        }
        assert!(backend_pair("state=4").unwrap_err().contains("written by xsim"));
        assert!(backend_pair("online=0").is_err());
    }
}
