//! A hand assembler of migration streams, in either byte order, independent
//! of the crate's writer.

#![allow(dead_code)]

/// One field of a record body.
#[derive(Clone, Copy)]
pub enum F<'a> {
    /// Raw octets.
    B(&'a [u8]),
    /// A 16-bit field.
    H(u16),
    /// A 32-bit field.
    W(u32),
    /// A 64-bit field.
    Q(u64),
}

/// A record: type, exact body length rounded up to 8 (as Xen writes it),
/// body, zero padding.
pub fn rec(big: bool, ty: u32, fields: &[F<'_>]) -> Vec<u8> {
    let body = body(big, fields);
    let len = (body.len() + 7) & !7;
    let mut out = word(big, ty);
    out.extend(word(big, u32::try_from(len).unwrap()));
    out.extend(&body);
    out.resize(8 + len, 0);
    out
}

/// A record with an explicit `len` and no padding added.
pub fn raw_rec(big: bool, ty: u32, len: u32, fields: &[F<'_>]) -> Vec<u8> {
    let mut out = word(big, ty);
    out.extend(word(big, len));
    out.extend(body(big, fields));
    out
}

pub fn body(big: bool, fields: &[F<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields {
        match *f {
            F::B(b) => out.extend_from_slice(b),
            F::H(v) => out.extend(if big { v.to_be_bytes() } else { v.to_le_bytes() }),
            F::W(v) => out.extend(word(big, v)),
            F::Q(v) => out.extend(if big { v.to_be_bytes() } else { v.to_le_bytes() }),
        }
    }
    out
}

fn word(big: bool, v: u32) -> Vec<u8> {
    if big { v.to_be_bytes() } else { v.to_le_bytes() }.to_vec()
}

/// The header of a stream.
pub fn header(version: u32, big: bool) -> Vec<u8> {
    let mut out = b"xenstore".to_vec();
    out.extend(version.to_be_bytes());
    out.extend(u32::from(big).to_be_bytes());
    out
}

/// Header, records, END.
pub fn stream(version: u32, big: bool, records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = header(version, big);
    for r in records {
        out.extend(r);
    }
    out.extend(rec(big, 0, &[]));
    out
}

/// A ring connection record with id `id` and no data.
pub fn conn(big: bool, id: u32) -> Vec<u8> {
    rec(big, 2, &[F::W(id), F::H(0), F::H(0), F::H(1), F::H(0x7ff4), F::W(3), F::H(0), F::H(0), F::W(0)])
}

/// A committed node owned by domain 0.
pub fn node(big: bool, path: &str) -> Vec<u8> {
    let mut p = path.as_bytes().to_vec();
    p.push(0);
    rec(
        big,
        5,
        &[
            F::W(0),
            F::W(0),
            F::H(u16::try_from(p.len()).unwrap()),
            F::H(0),
            F::H(0),
            F::H(1),
            F::B(b"n\0\0\0"),
            F::B(&p),
        ],
    )
}
