//! One sample of the daemon's statistics: every page of CONTROL `stats`,
//! parsed.
//!
//! The format (`xenstored-stats 1`) is our daemon's: totals as `name
//! value` lines, a `columns` line naming the fields of the `domain` lines
//! that follow, and `more <domid>` when the next page starts there.
//! Columns are found by name, so a daemon that adds some still works.

use std::collections::BTreeMap;

use xenstore::{Client, ErrorCode};

/// What one domain showed in one sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DomainSample {
    /// The domain.
    pub domid: u32,
    /// `/local/domain/<domid>/name`, if the toolstack wrote one.
    pub name: Option<String>,
    /// Every numeric column by name; a quota that does not apply is
    /// absent.
    pub figures: BTreeMap<String, u64>,
}

impl DomainSample {
    /// A column's value, 0 when absent.
    pub fn get(&self, column: &str) -> u64 {
        self.figures.get(column).copied().unwrap_or(0)
    }

    /// A column's value, `None` when absent (`-`: a quota dom0 does not
    /// have).
    pub fn maybe(&self, column: &str) -> Option<u64> {
        self.figures.get(column).copied()
    }
}

/// One whole sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// The daemon-wide lines (`uptime`, `nodes`, ...), by name.
    pub totals: BTreeMap<String, f64>,
    /// Every domain, in domid order.
    pub domains: Vec<DomainSample>,
}

/// Why no sample could be taken.
#[derive(Debug)]
pub enum SampleError {
    /// The daemon answered CONTROL `stats` with an error (a C or OCaml
    /// daemon has no such command: EINVAL).
    Refused(ErrorCode),
    /// The connection failed.
    Failed(xenstore::Error),
    /// The answer was not in the expected format.
    Garbled(String),
}

impl std::fmt::Display for SampleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SampleError::Refused(ErrorCode::EINVAL) => f.write_str(
                "this xenstored does not report statistics (CONTROL stats is unknown to it): \
                 xenstore top needs xen-control-plane's xenstored",
            ),
            SampleError::Refused(ErrorCode::EACCES) => {
                f.write_str("the daemon refused CONTROL stats: xenstore top needs a privileged (dom0) connection")
            }
            SampleError::Refused(code) => write!(f, "the daemon refused CONTROL stats: {code:?}"),
            SampleError::Failed(e) => write!(f, "talking to the daemon: {e}"),
            SampleError::Garbled(why) => write!(f, "the daemon's statistics are not in a known format: {why}"),
        }
    }
}

/// Reads every page.
pub fn take(client: &Client) -> Result<Sample, SampleError> {
    let mut sample = Sample::default();
    let mut from: u32 = 0;
    // Domain ids are 16 bits: a page always moves forward, so this ends;
    // the bound guards against a daemon that does not.
    for _ in 0..=u16::MAX {
        let arg = from.to_string();
        let text = client.control(&[b"stats", arg.as_bytes()]).map_err(|e| match e.code() {
            Some(code) => SampleError::Refused(code),
            None => SampleError::Failed(e),
        })?;
        let text = text.split(|&b| b == 0).next().unwrap_or_default();
        let text = std::str::from_utf8(text).map_err(|_| SampleError::Garbled("not UTF-8".into()))?;
        match parse_page(text, &mut sample)? {
            Some(next) if next > from => from = next,
            Some(_) => return Err(SampleError::Garbled("a page that does not move forward".into())),
            None => return Ok(sample),
        }
    }
    Err(SampleError::Garbled("too many pages".into()))
}

/// Adds one page to `sample`; returns where the next page starts.
pub fn parse_page(text: &str, sample: &mut Sample) -> Result<Option<u32>, SampleError> {
    let garbled = |why: String| SampleError::Garbled(why);
    let mut lines = text.lines();
    match lines.next() {
        Some("xenstored-stats 1") => {}
        other => return Err(garbled(format!("first line {other:?}"))),
    }
    let mut columns: Vec<&str> = Vec::new();
    let mut next = None;
    for line in lines {
        let (key, rest) = line.split_once(' ').unwrap_or((line, ""));
        match key {
            "columns" => columns = rest.split(' ').collect(),
            "domain" => {
                if columns.is_empty() {
                    return Err(garbled("a domain line before the columns line".into()));
                }
                // The name, last, may hold spaces: split only as many
                // fields as there are columns.
                let fields: Vec<&str> = rest.splitn(columns.len(), ' ').collect();
                let mut domain = DomainSample::default();
                for (column, field) in columns.iter().zip(&fields) {
                    match (*column, *field) {
                        ("name", "-") => {}
                        ("name", name) => domain.name = Some(name.to_owned()),
                        (_, "-") => {}
                        (column, field) => {
                            let value = field.parse().map_err(|_| garbled(format!("{column} {field:?}")))?;
                            domain.figures.insert(column.to_owned(), value);
                        }
                    }
                }
                domain.domid = u32::try_from(domain.get("domid")).map_err(|_| garbled("domid".into()))?;
                sample.domains.push(domain);
            }
            "more" => next = Some(rest.parse().map_err(|_| garbled(format!("more {rest:?}")))?),
            "" => {}
            name => {
                if let Ok(value) = rest.parse() {
                    sample.totals.insert(name.to_owned(), value);
                }
            }
        }
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "xenstored-stats 1\nuptime 12.5\nnodes 40\ncolumns domid introduced nodes requests \
quota-nodes name\ndomain 0 1 30 100 - Domain-0\ndomain 7 1 10 5 1000 my guest\nmore 8\n";

    #[test]
    fn a_page_parses_by_column_name() {
        let mut sample = Sample::default();
        assert_eq!(parse_page(PAGE, &mut sample).unwrap(), Some(8));
        assert_eq!(sample.totals["uptime"], 12.5);
        assert_eq!(sample.totals["nodes"], 40.0);
        assert_eq!(sample.domains.len(), 2);
        let dom0 = &sample.domains[0];
        assert_eq!((dom0.domid, dom0.name.as_deref(), dom0.get("nodes")), (0, Some("Domain-0"), 30));
        assert_eq!(dom0.maybe("quota-nodes"), None);
        let guest = &sample.domains[1];
        assert_eq!((guest.domid, guest.name.as_deref(), guest.maybe("quota-nodes")), (7, Some("my guest"), Some(1000)));
    }

    #[test]
    fn the_last_page_has_no_more_line() {
        let mut sample = Sample::default();
        let last = "xenstored-stats 1\ncolumns domid name\ndomain 9 -\n";
        assert_eq!(parse_page(last, &mut sample).unwrap(), None);
        assert_eq!(sample.domains[0].name, None);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in ["", "OK", "xenstored-stats 1\ndomain 1 2\n", "xenstored-stats 1\ncolumns domid\ndomain x\n"] {
            assert!(parse_page(bad, &mut Sample::default()).is_err(), "{bad:?}");
        }
    }
}
