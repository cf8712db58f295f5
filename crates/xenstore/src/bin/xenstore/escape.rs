//! Value quoting as the C tools do it, and the bits of C library number
//! parsing whose quirks the tools' output depends on.

/// Quotes a value for display: printable ASCII stays, except `\`; tab,
/// newline, carriage return and `\` become `\t`, `\n`, `\r`, `\\`; bytes
/// below 8 become three octal digits (`\001`); anything else two hex digits
/// (`\x7f`).
pub fn sanitise(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    for &c in value {
        match c {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b' '..=b'~' => out.push(c),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0..=7 => out.extend_from_slice(format!("\\{c:03o}").as_bytes()),
            _ => out.extend_from_slice(format!("\\x{c:02x}").as_bytes()),
        }
    }
    out
}

/// Undoes [`sanitise`] for `xenstore-write` without `-R`, quirks included:
/// `\xHH` and `\OOO` are read the way `sscanf("%2x")` / `sscanf("%3o")`
/// read them (blanks skipped, a sign allowed, `0x` eaten by `%x`), an
/// unknown escape stands for its letter, `\x` without digits is `x`, and a
/// trailing `\` becomes a nul byte.
pub fn unsanitise(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&first) = input.get(i) {
        i += 1;
        let mut c = u32::from(first);
        if first == b'\\' {
            let next = input.get(i).copied().unwrap_or(0);
            i += 1;
            c = u32::from(next);
            match next {
                b't' => c = u32::from(b'\t'),
                b'n' => c = u32::from(b'\n'),
                b'r' => c = u32::from(b'\r'),
                b'\\' => c = u32::from(b'\\'),
                b'x' => {
                    if let Some((value, used)) = scan_unsigned(input.get(i..).unwrap_or_default(), 16, 2) {
                        c = value;
                        i += used;
                    }
                }
                b'0'..=b'7' => {
                    i -= 1;
                    if let Some((value, used)) = scan_unsigned(input.get(i..).unwrap_or_default(), 8, 3) {
                        c = value;
                        i += used;
                    }
                }
                // A trailing backslash: the terminator is read as the
                // escaped character (a nul byte is stored) and then ends
                // the loop.
                0 => i -= 1,
                _ => {}
            }
        }
        out.push(c.to_le_bytes()[0]);
    }
    out
}

fn is_c_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// `sscanf(s, "%<width>x%n")` (base 16) or `"%<width>o%n"` (base 8) into an
/// `unsigned int`, as glibc does it: `Some((value, bytes consumed))`, or
/// `None` when the conversion fails.
pub fn scan_unsigned(s: &[u8], base: u32, width: usize) -> Option<(u32, usize)> {
    let mut i = 0;
    while s.get(i).copied().is_some_and(is_c_space) {
        i += 1;
    }
    let mut width = width;
    let mut negative = false;
    let mut text_len = 0; // sign, prefix zero and digits taken into the number
    if let Some(&sign @ (b'+' | b'-')) = s.get(i) {
        if width > 0 {
            negative = sign == b'-';
            i += 1;
            width -= 1;
            text_len += 1;
        }
    }
    let mut value: u64 = 0;
    let mut digits = 0;
    if base == 16 && width > 0 && s.get(i) == Some(&b'0') {
        // A leading zero counts as a digit; "0x" after it is eaten if the
        // width allows.
        i += 1;
        width -= 1;
        digits += 1;
        if width > 0 && matches!(s.get(i), Some(b'x' | b'X')) {
            i += 1;
            width -= 1;
        }
    }
    while width > 0 {
        let Some(d) = s.get(i).and_then(|c| char::from(*c).to_digit(base)) else { break };
        value = value.saturating_mul(u64::from(base)).saturating_add(u64::from(d));
        i += 1;
        width -= 1;
        digits += 1;
    }
    text_len += digits;
    if digits == 0 || text_len == 0 {
        return None;
    }
    // strtoul semantics, then the store into an unsigned int.
    let value = if negative { value.wrapping_neg() } else { value };
    Some((value.to_le_bytes().first_chunk::<4>().map_or(0, |b| u32::from_le_bytes(*b)), i))
}

/// C's `atoi`: `(int)strtol(s, NULL, 10)`: blanks skipped, an optional
/// sign, digits up to the first non-digit, 0 if none; out-of-range values
/// saturate to `long` and are then truncated to `int`.
pub fn atoi(s: &[u8]) -> i32 {
    let mut i = 0;
    while s.get(i).copied().is_some_and(is_c_space) {
        i += 1;
    }
    let mut negative = false;
    if let Some(&sign @ (b'+' | b'-')) = s.get(i) {
        negative = sign == b'-';
        i += 1;
    }
    let mut value: i64 = 0;
    let mut overflow = false;
    while let Some(d) = s.get(i).filter(|c| c.is_ascii_digit()) {
        let digit = i64::from(d - b'0');
        match value.checked_mul(10).and_then(|v| v.checked_add(digit)) {
            Some(v) => value = v,
            None => overflow = true,
        }
        i += 1;
    }
    let long = match (overflow, negative) {
        (true, false) => i64::MAX,
        (true, true) => i64::MIN,
        (false, false) => value,
        (false, true) => -value,
    };
    // The (int) conversion keeps the low 32 bits.
    let bytes = long.to_le_bytes();
    i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitise_escapes_like_xenstore_utils() {
        assert_eq!(sanitise(b"plain text~"), b"plain text~");
        assert_eq!(sanitise(b"a\\b"), b"a\\\\b");
        assert_eq!(sanitise(b"\t\n\r"), b"\\t\\n\\r");
        assert_eq!(sanitise(b"\x00\x01\x07"), b"\\000\\001\\007");
        assert_eq!(sanitise(b"\x08\x1b\x7f\xff"), b"\\x08\\x1b\\x7f\\xff");
    }

    #[test]
    fn unsanitise_inverts_sanitise() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(unsanitise(&sanitise(&all)), all);
    }

    #[test]
    fn unsanitise_reproduces_scanf_quirks() {
        assert_eq!(unsanitise(b"\\x41"), b"A");
        assert_eq!(unsanitise(b"\\x4"), b"\x04");
        assert_eq!(unsanitise(b"\\x414"), b"A4");
        assert_eq!(unsanitise(b"\\xg"), b"xg");
        assert_eq!(unsanitise(b"\\x"), b"x");
        assert_eq!(unsanitise(b"\\x 41"), b"A");
        assert_eq!(unsanitise(b"\\x-1"), b"\xff");
        assert_eq!(unsanitise(b"\\x0x41"), b"\x0041");
        assert_eq!(unsanitise(b"\\101"), b"A");
        assert_eq!(unsanitise(b"\\0"), b"\0");
        assert_eq!(unsanitise(b"\\777"), b"\xff");
        assert_eq!(unsanitise(b"\\1018"), b"A8");
        assert_eq!(unsanitise(b"\\q"), b"q");
        assert_eq!(unsanitise(b"a\\"), b"a\0");
    }

    #[test]
    fn atoi_matches_c() {
        assert_eq!(atoi(b"12"), 12);
        assert_eq!(atoi(b"  -7x"), -7);
        assert_eq!(atoi(b"+3"), 3);
        assert_eq!(atoi(b"abc"), 0);
        assert_eq!(atoi(b""), 0);
        assert_eq!(atoi(b"4294967297"), 1);
        assert_eq!(atoi(b"99999999999999999999"), -1);
    }
}
