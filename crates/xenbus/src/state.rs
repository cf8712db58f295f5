//! The device state (`xen/include/public/io/xenbus.h`, `enum xenbus_state`)
//! and its text form in the `state` node: a decimal number.
//!
//! # What the `state` node may hold
//!
//! Linux reads the node with `xenbus_gather(..., "state", "%d", ...)`, i.e.
//! the kernel's `vsscanf`: it skips leading white space, takes an optional
//! `-` but not a `+`, then decimal digits, and ignores whatever follows. We
//! accept the same leading white space and leading zeros, and also trailing
//! ASCII white space (a value written by `echo` or a shell script ends in a
//! newline). We are stricter than Linux in two places, on purpose: other
//! trailing bytes (`"4abc"`, which Linux reads as 4) and numbers outside
//! 0..=8 (which Linux hands to the driver as an unnamed enum value) are a
//! [`ParseStateError`], because a peer that writes them is broken or
//! hostile and the framework should say so instead of guessing. A `+4` is
//! rejected, as Linux rejects it.

use std::fmt;
use std::str::FromStr;

/// The state of one end of a device, as written in its `state` node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum XenbusState {
    /// 0: the node is missing or unreadable (Linux reads a missing node as this).
    Unknown = 0,
    /// 1: the toolstack created the device; no driver has run yet.
    Initialising = 1,
    /// 2: "Finished early initialisation but waiting for information from
    /// the peer or hotplug scripts" (a backend after probe).
    InitWait = 2,
    /// 3: "Waiting for a connection from the peer" (blkfront after publishing its rings).
    Initialised = 3,
    /// 4: the device works.
    Connected = 4,
    /// 5: "The device is being closed due to an error or an unplug event".
    Closing = 5,
    /// 6: the device is closed; a reconnect starts from here.
    Closed = 6,
    /// 7: a frontend asks to change a connected device's settings (netfront XDP).
    Reconfiguring = 7,
    /// 8: the backend applied the new settings.
    Reconfigured = 8,
}

impl XenbusState {
    /// Every state, in numeric order.
    pub const ALL: [XenbusState; 9] = [
        XenbusState::Unknown,
        XenbusState::Initialising,
        XenbusState::InitWait,
        XenbusState::Initialised,
        XenbusState::Connected,
        XenbusState::Closing,
        XenbusState::Closed,
        XenbusState::Reconfiguring,
        XenbusState::Reconfigured,
    ];

    /// The number in the `state` node.
    pub fn number(self) -> u8 {
        self as u8
    }

    /// The state with this number, if there is one.
    pub fn from_number(number: u8) -> Option<XenbusState> {
        XenbusState::ALL.get(usize::from(number)).copied()
    }

    /// The value to write to the `state` node: the decimal number, no terminator.
    pub fn to_node_value(self) -> Vec<u8> {
        self.number().to_string().into_bytes()
    }

    /// Parses the `state` node's value (see the module documentation for
    /// exactly what is accepted).
    pub fn parse(value: &[u8]) -> Result<XenbusState, ParseStateError> {
        let trimmed = value.trim_ascii();
        if trimmed.is_empty() {
            return Err(ParseStateError::Empty);
        }
        let (negative, digits) = match trimmed.strip_prefix(b"-") {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        let numeric = digits.iter().take_while(|b| b.is_ascii_digit()).count();
        if numeric == 0 {
            return Err(ParseStateError::NotDecimal(value.to_vec()));
        }
        if numeric != digits.len() {
            return Err(ParseStateError::TrailingBytes(value.to_vec()));
        }
        let out_of_range = || ParseStateError::OutOfRange(String::from_utf8_lossy(trimmed).into_owned());
        if negative {
            // "-0" is zero to `%d`; every other negative number is out of range.
            return if digits.iter().all(|&b| b == b'0') { Ok(XenbusState::Unknown) } else { Err(out_of_range()) };
        }
        let significant = digits.iter().skip_while(|&&b| b == b'0').copied().collect::<Vec<u8>>();
        match significant.as_slice() {
            [] => Ok(XenbusState::Unknown),
            [digit] => XenbusState::from_number(digit - b'0').ok_or_else(out_of_range),
            _ => Err(out_of_range()),
        }
    }

    /// The name Linux's `xenbus_strstate` prints.
    pub fn name(self) -> &'static str {
        match self {
            XenbusState::Unknown => "Unknown",
            XenbusState::Initialising => "Initialising",
            XenbusState::InitWait => "InitWait",
            XenbusState::Initialised => "Initialised",
            XenbusState::Connected => "Connected",
            XenbusState::Closing => "Closing",
            XenbusState::Closed => "Closed",
            XenbusState::Reconfiguring => "Reconfiguring",
            XenbusState::Reconfigured => "Reconfigured",
        }
    }
}

impl fmt::Display for XenbusState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.number())
    }
}

impl FromStr for XenbusState {
    type Err = ParseStateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        XenbusState::parse(s.as_bytes())
    }
}

/// Why a `state` value is not a state.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseStateError {
    /// The value is empty or only white space.
    Empty,
    /// The value does not start with decimal digits (after white space and
    /// an optional `-`): `"Connected"`, `"+4"`, `"0x4"`.
    NotDecimal(Vec<u8>),
    /// Digits followed by something other than white space: `"4abc"`, `"4 5"`.
    TrailingBytes(Vec<u8>),
    /// A decimal number that names no state: `"9"`, `"-1"`, `"4294967300"`.
    OutOfRange(String),
}

impl fmt::Display for ParseStateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseStateError::Empty => write!(f, "empty state value"),
            ParseStateError::NotDecimal(v) => {
                write!(f, "state {:?} is not a decimal number", String::from_utf8_lossy(v))
            }
            ParseStateError::TrailingBytes(v) => {
                write!(f, "state {:?} has bytes after its number", String::from_utf8_lossy(v))
            }
            ParseStateError::OutOfRange(n) => write!(f, "state {n} is not in 0..=8"),
        }
    }
}

impl std::error::Error for ParseStateError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_round_trips_through_its_node_value() {
        for (n, state) in XenbusState::ALL.into_iter().enumerate() {
            assert_eq!(usize::from(state.number()), n);
            assert_eq!(state.to_node_value(), n.to_string().into_bytes());
            assert_eq!(XenbusState::parse(&state.to_node_value()), Ok(state));
        }
    }

    #[test]
    fn parse_accepts_what_linux_percent_d_accepts_within_range() {
        let ok: &[(&[u8], XenbusState)] = &[
            (b"4", XenbusState::Connected),
            (b" 4", XenbusState::Connected),
            (b"\t\n2", XenbusState::InitWait),
            (b"4\n", XenbusState::Connected),
            (b"04", XenbusState::Connected),
            (b"0", XenbusState::Unknown),
            (b"-0", XenbusState::Unknown),
            (b"000", XenbusState::Unknown),
            (b"8", XenbusState::Reconfigured),
        ];
        for (value, state) in ok {
            assert_eq!(XenbusState::parse(value), Ok(*state), "{:?}", String::from_utf8_lossy(value));
        }
    }

    #[test]
    fn parse_rejects_everything_else_with_a_typed_error() {
        use ParseStateError::*;
        type Expect = fn(&ParseStateError) -> bool;
        let bad: &[(&[u8], Expect)] = &[
            (b"", |e| *e == Empty),
            (b"  \n", |e| *e == Empty),
            (b"+4", |e| matches!(e, NotDecimal(_))),
            (b"Connected", |e| matches!(e, NotDecimal(_))),
            (b"0x4", |e| matches!(e, TrailingBytes(_))),
            (b"-", |e| matches!(e, NotDecimal(_))),
            (b"4abc", |e| matches!(e, TrailingBytes(_))),
            (b"4 5", |e| matches!(e, TrailingBytes(_))),
            (b"4\0", |e| matches!(e, TrailingBytes(_))),
            (b"9", |e| matches!(e, OutOfRange(_))),
            (b"-1", |e| matches!(e, OutOfRange(_))),
            (b"10", |e| matches!(e, OutOfRange(_))),
            (b"99999999999999999999", |e| matches!(e, OutOfRange(_))),
            (b"\xff", |e| matches!(e, NotDecimal(_))),
        ];
        for (value, expected) in bad {
            let err = XenbusState::parse(value).expect_err(&String::from_utf8_lossy(value));
            assert!(expected(&err), "{:?}: {err:?}", String::from_utf8_lossy(value));
        }
    }

    #[test]
    fn from_number_names_only_zero_to_eight() {
        assert_eq!(XenbusState::from_number(7), Some(XenbusState::Reconfiguring));
        assert_eq!(XenbusState::from_number(9), None);
        assert_eq!(XenbusState::from_number(255), None);
    }
}
