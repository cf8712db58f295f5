//! Splitting payloads into nul-terminated fields, strictly.

use crate::error::ErrorCode;

/// Splits a payload made of exactly `N` nul-terminated strings. Anything
/// else (a missing final nul, fewer or more strings) is `EINVAL`.
pub(crate) fn exact<const N: usize>(payload: &[u8]) -> Result<[&[u8]; N], ErrorCode> {
    let body = payload.strip_suffix(b"\0").ok_or(ErrorCode::EINVAL)?;
    let mut out = [&b""[..]; N];
    let mut parts = body.split(|b| *b == 0);
    for slot in out.iter_mut() {
        *slot = parts.next().ok_or(ErrorCode::EINVAL)?;
    }
    if parts.next().is_some() {
        return Err(ErrorCode::EINVAL);
    }
    Ok(out)
}

/// Splits a payload of zero or more nul-terminated strings, at most `max`.
pub(crate) fn up_to<const N: usize>(payload: &[u8]) -> Result<(usize, [&[u8]; N]), ErrorCode> {
    if payload.is_empty() {
        return Ok((0, [&b""[..]; N]));
    }
    let body = payload.strip_suffix(b"\0").ok_or(ErrorCode::EINVAL)?;
    let mut out = [&b""[..]; N];
    let mut count = 0;
    for part in body.split(|b| *b == 0) {
        *out.get_mut(count).ok_or(ErrorCode::EINVAL)? = part;
        count += 1;
    }
    Ok((count, out))
}

/// Splits at the first nul: the string before it and everything after.
pub(crate) fn head(payload: &[u8]) -> Result<(&[u8], &[u8]), ErrorCode> {
    let nul = payload.iter().position(|b| *b == 0).ok_or(ErrorCode::EINVAL)?;
    Ok((payload.get(..nul).unwrap_or_default(), payload.get(nul + 1..).unwrap_or_default()))
}

/// Parses an unsigned decimal number strictly: digits only, no sign, no
/// blanks, at most 20 digits, no overflow.
pub(crate) fn parse_decimal(digits: &[u8]) -> Result<u64, ErrorCode> {
    if digits.is_empty() || digits.len() > 20 {
        return Err(ErrorCode::EINVAL);
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        if !d.is_ascii_digit() {
            return Err(ErrorCode::EINVAL);
        }
        acc.checked_mul(10).and_then(|v| v.checked_add(u64::from(d - b'0'))).ok_or(ErrorCode::EINVAL)
    })
}

/// Parses a decimal `u32`.
pub(crate) fn parse_u32(digits: &[u8]) -> Result<u32, ErrorCode> {
    u32::try_from(parse_decimal(digits)?).map_err(|_| ErrorCode::EINVAL)
}

/// Bytes as text, for fields the protocol defines as strings.
pub(crate) fn text(bytes: &[u8]) -> Result<&str, ErrorCode> {
    std::str::from_utf8(bytes).map_err(|_| ErrorCode::EINVAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_requires_terminator_and_count() {
        assert_eq!(exact::<1>(b"a\0"), Ok([&b"a"[..]]));
        assert_eq!(exact::<2>(b"a\0b\0"), Ok([&b"a"[..], &b"b"[..]]));
        assert_eq!(exact::<1>(b"a"), Err(ErrorCode::EINVAL));
        assert_eq!(exact::<1>(b""), Err(ErrorCode::EINVAL));
        assert_eq!(exact::<1>(b"a\0b\0"), Err(ErrorCode::EINVAL));
        assert_eq!(exact::<2>(b"a\0"), Err(ErrorCode::EINVAL));
    }

    #[test]
    fn up_to_counts_strings() {
        assert_eq!(up_to::<2>(b"").map(|r| r.0), Ok(0));
        assert_eq!(up_to::<2>(b"x\0").map(|r| r.0), Ok(1));
        assert_eq!(up_to::<2>(b"x\0y\0").map(|r| r.0), Ok(2));
        assert_eq!(up_to::<2>(b"x\0y\0z\0").map(|r| r.0), Err(ErrorCode::EINVAL));
        assert_eq!(up_to::<2>(b"x").map(|r| r.0), Err(ErrorCode::EINVAL));
    }

    #[test]
    fn decimal_is_strict() {
        assert_eq!(parse_decimal(b"0"), Ok(0));
        assert_eq!(parse_decimal(b"18446744073709551615"), Ok(u64::MAX));
        for bad in [&b""[..], b"-1", b"+1", b" 1", b"1 ", b"18446744073709551616", b"0x1"] {
            assert_eq!(parse_decimal(bad), Err(ErrorCode::EINVAL), "{bad:?}");
        }
        assert_eq!(parse_u32(b"4294967296"), Err(ErrorCode::EINVAL));
    }
}
