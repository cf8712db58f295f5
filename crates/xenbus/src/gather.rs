//! Several keys of one directory read or written together, in one
//! transaction (Linux's `xenbus_gather`, and `xenbus_printf` calls inside a
//! transaction as `talk_to_netback` makes them), so a reader never sees
//! half of a peer's update.

use std::str::FromStr;

use xenstore::Store;

use crate::conn::{self, Conn};
use crate::error::Error;
use crate::paths;

/// Parses a node's value as `T` (decimal text for numbers, as Linux's
/// `%u`/`%d` reads them, without trailing bytes), or [`Error::Parse`]
/// naming the node.
pub fn parse_value<T: FromStr>(path: &str, value: &[u8]) -> Result<T, Error> {
    let bad = || Error::Parse { path: path.to_owned(), value: value.to_vec(), expected: std::any::type_name::<T>() };
    std::str::from_utf8(value).map_err(|_| bad())?.trim_ascii().parse().map_err(|_| bad())
}

/// Reads `<dir>/<key>` for every key, in one transaction.
pub fn gather_raw<const N: usize>(conn: &dyn Conn, dir: &str, keys: [&str; N]) -> Result<[Vec<u8>; N], Error> {
    let values = conn::transaction(conn, |tx| {
        let mut values: [Vec<u8>; N] = std::array::from_fn(|_| Vec::new());
        for (value, key) in values.iter_mut().zip(keys) {
            *value = tx.read(&paths::child(dir, key))?;
        }
        Ok(values)
    })?;
    Ok(values)
}

/// Reads and parses `<dir>/<key>` for every key, in one transaction:
/// `let [ring, port]: [u32; 2] = gather(conn, dir, ["ring-ref", "event-channel"])?`.
pub fn gather<T: FromStr, const N: usize>(conn: &dyn Conn, dir: &str, keys: [&str; N]) -> Result<[T; N], Error> {
    let raw = gather_raw(conn, dir, keys)?;
    let mut parsed = Vec::with_capacity(N);
    for (value, key) in raw.iter().zip(keys) {
        parsed.push(parse_value::<T>(&paths::child(dir, key), value)?);
    }
    parsed.try_into().map_err(|_| Error::driver(5, "gather: length changed"))
}

/// Reads and parses one node.
pub fn read_value<T: FromStr>(store: &dyn Store, path: &str) -> Result<T, Error> {
    let value = store.read(path)?;
    parse_value(path, &value)
}

/// Writes `<dir>/<key> = <value>` for every pair, in one transaction.
pub fn scatter(conn: &dyn Conn, dir: &str, pairs: &[(&str, &dyn std::fmt::Display)]) -> Result<(), Error> {
    conn::transaction(conn, |tx| {
        for (key, value) in pairs {
            tx.write(&paths::child(dir, key), value.to_string().as_bytes())?;
        }
        Ok(())
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_value_reads_decimal_and_names_the_node_on_failure() {
        assert_eq!(parse_value::<u32>("/d/ring-ref", b"8").unwrap(), 8);
        assert_eq!(parse_value::<u32>("/d/ring-ref", b" 8\n").unwrap(), 8);
        let err = parse_value::<u32>("/d/ring-ref", b"8x").unwrap_err();
        match err {
            Error::Parse { path, value, expected } => {
                assert_eq!(path, "/d/ring-ref");
                assert_eq!(value, b"8x");
                assert_eq!(expected, "u32");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse_value::<u16>("/d/x", b"70000"), Err(Error::Parse { .. })));
        assert!(matches!(parse_value::<u32>("/d/x", b"\xff"), Err(Error::Parse { .. })));
    }
}
