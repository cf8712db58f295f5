//! Permission strings (`n|r|w|b` followed by a decimal domid).
//!
//! A node's permission list is never empty. The first entry names the
//! owner, who always has full access, and its letter is the access for every
//! domain not listed later; each later entry overrides that for one domain.

use crate::error::ErrorCode;
use crate::DomId;

/// Read and/or write access, as one letter on the wire.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// `n`: no access.
    None,
    /// `r`: read only.
    Read,
    /// `w`: write only.
    Write,
    /// `b`: both.
    Both,
}

impl Access {
    /// The letter on the wire.
    pub fn letter(self) -> u8 {
        match self {
            Access::None => b'n',
            Access::Read => b'r',
            Access::Write => b'w',
            Access::Both => b'b',
        }
    }

    /// The access a letter stands for.
    pub fn from_letter(letter: u8) -> Option<Access> {
        match letter {
            b'n' => Some(Access::None),
            b'r' => Some(Access::Read),
            b'w' => Some(Access::Write),
            b'b' => Some(Access::Both),
            _ => None,
        }
    }

    /// Whether this grants reading.
    pub fn can_read(self) -> bool {
        matches!(self, Access::Read | Access::Both)
    }

    /// Whether this grants writing.
    pub fn can_write(self) -> bool {
        matches!(self, Access::Write | Access::Both)
    }
}

/// One permission entry: a domain and its access.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Perm {
    /// The domain this entry is about.
    pub domid: DomId,
    /// What it may do.
    pub access: Access,
}

impl Perm {
    /// Parses one entry such as `r5` (without a nul).
    pub fn parse(text: &[u8]) -> Result<Perm, ErrorCode> {
        let (&letter, digits) = text.split_first().ok_or(ErrorCode::EINVAL)?;
        let access = Access::from_letter(letter).ok_or(ErrorCode::EINVAL)?;
        let domid = parse_domid(digits)?;
        Ok(Perm { domid, access })
    }

    /// Appends the entry's text (without a nul).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.push(self.access.letter());
        out.extend_from_slice(self.domid.to_string().as_bytes());
    }
}

impl std::fmt::Display for Perm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", char::from(self.access.letter()), self.domid)
    }
}

/// A node's permissions: never empty, owner first.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PermList(Entries);

/// The entries, without an allocation for the common single-entry list
/// (a store holds one list per node).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Entries {
    One(Perm),
    Many(std::sync::Arc<[Perm]>),
}

impl PermList {
    fn from_vec(entries: Vec<Perm>) -> PermList {
        match entries.as_slice() {
            [one] => PermList(Entries::One(*one)),
            _ => PermList(Entries::Many(entries.into())),
        }
    }
}

impl PermList {
    /// A list from entries; `None` if `entries` is empty.
    pub fn new(entries: Vec<Perm>) -> Option<PermList> {
        if entries.is_empty() {
            None
        } else {
            Some(PermList::from_vec(entries))
        }
    }

    /// Owned by `owner`, with `default` access for everyone else.
    pub fn owned_by(owner: DomId, default: Access) -> PermList {
        PermList(Entries::One(Perm { domid: owner, access: default }))
    }

    /// The owner's entry.
    pub fn owner_entry(&self) -> Perm {
        // A PermList is never empty (see `new`), so index 0 exists.
        self.entries().first().copied().unwrap_or(Perm { domid: 0, access: Access::None })
    }

    /// The owning domain.
    pub fn owner(&self) -> DomId {
        self.owner_entry().domid
    }

    /// All entries, owner first.
    pub fn entries(&self) -> &[Perm] {
        match &self.0 {
            Entries::One(perm) => std::slice::from_ref(perm),
            Entries::Many(perms) => perms,
        }
    }

    /// The same list with another owner (other entries unchanged).
    pub fn with_owner(&self, owner: DomId) -> PermList {
        let mut entries = self.entries().to_vec();
        if let Some(first) = entries.first_mut() {
            first.domid = owner;
        }
        PermList::from_vec(entries)
    }

    /// Parses `<perm>|+` as found in SET_PERMS and GET_PERMS payloads: one or
    /// more nul-terminated entries.
    pub fn parse_nul_list(payload: &[u8]) -> Result<PermList, ErrorCode> {
        let body = payload.strip_suffix(b"\0").ok_or(ErrorCode::EINVAL)?;
        let entries = body.split(|b| *b == 0).map(Perm::parse).collect::<Result<Vec<_>, _>>()?;
        PermList::new(entries).ok_or(ErrorCode::EINVAL)
    }

    /// Appends every entry, each followed by a nul.
    pub fn write_nul_list(&self, out: &mut Vec<u8>) {
        for perm in self.entries() {
            perm.write_to(out);
            out.push(0);
        }
    }
}

impl std::fmt::Display for PermList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, perm) in self.entries().iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{perm}")?;
        }
        Ok(())
    }
}

/// Parses a decimal domid in 0..=65535, strictly (no sign, no spaces, no
/// leading `+`; the C daemon's `strtol` lets garbage through, we do not).
pub fn parse_domid(digits: &[u8]) -> Result<DomId, ErrorCode> {
    let value = crate::fields::parse_decimal(digits)?;
    DomId::try_from(value).map_err(|_| ErrorCode::EINVAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perm_parses_every_letter() {
        assert_eq!(Perm::parse(b"n0"), Ok(Perm { domid: 0, access: Access::None }));
        assert_eq!(Perm::parse(b"r5"), Ok(Perm { domid: 5, access: Access::Read }));
        assert_eq!(Perm::parse(b"w65535"), Ok(Perm { domid: 65535, access: Access::Write }));
        assert_eq!(Perm::parse(b"b12"), Ok(Perm { domid: 12, access: Access::Both }));
    }

    #[test]
    fn perm_rejects_bad_entries() {
        for bad in [&b""[..], b"r", b"x1", b"r-1", b"r65536", b"r 1", b"r1a", b"R1"] {
            assert_eq!(Perm::parse(bad), Err(ErrorCode::EINVAL), "{bad:?}");
        }
    }

    #[test]
    fn list_round_trips_and_keeps_order() {
        let list = PermList::parse_nul_list(b"n3\0r0\0b7\0").unwrap();
        assert_eq!(list.owner(), 3);
        let mut out = Vec::new();
        list.write_nul_list(&mut out);
        assert_eq!(out, b"n3\0r0\0b7\0");
        assert_eq!(list.to_string(), "n3 r0 b7");
    }

    #[test]
    fn list_rejects_empty_and_unterminated() {
        assert_eq!(PermList::parse_nul_list(b""), Err(ErrorCode::EINVAL));
        assert_eq!(PermList::parse_nul_list(b"\0"), Err(ErrorCode::EINVAL));
        assert_eq!(PermList::parse_nul_list(b"r1"), Err(ErrorCode::EINVAL));
        assert_eq!(PermList::parse_nul_list(b"r1\0\0"), Err(ErrorCode::EINVAL));
    }
}
