//! Command-line options parsed the way glibc's `getopt_long` parses them
//! for the C tools (optstring `hfspturn:R`), so that odd command lines give
//! the same result and the same complaints: options and operands may be
//! mixed (operands are collected in order), `--` ends the options, short
//! options cluster (`-pR`, `-n5`), long options may be abbreviated to any
//! unambiguous prefix, and every complaint goes to stderr prefixed with the
//! `argv[0]` getopt was given.

use std::io::Write;

/// A long option: its name, whether it takes an argument, and the short
/// option it stands for.
#[derive(Debug, Clone, Copy)]
pub struct LongOpt {
    pub name: &'static str,
    pub has_arg: bool,
    pub short: u8,
}

/// What [`Getopt::next`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// An option (`-x`, or the long option standing for it) and its argument.
    Opt(u8, Option<Vec<u8>>),
    /// A bad option; the complaint has been printed (getopt's `'?'`).
    Bad,
}

/// An option parser over `args` (`args[0]` names the program in
/// complaints).
#[derive(Debug)]
pub struct Getopt<'a> {
    args: &'a [Vec<u8>],
    shorts: &'a [u8],
    longs: &'a [LongOpt],
    /// Index of the next argument to look at.
    index: usize,
    /// Position inside a cluster of short options (`-abc`), 0 if none.
    cluster: usize,
    operands: Vec<Vec<u8>>,
    /// `POSIXLY_CORRECT`: stop at the first operand.
    require_order: bool,
    done: bool,
    /// Complaints are not printed (unit tests).
    quiet: bool,
}

impl<'a> Getopt<'a> {
    /// `shorts` is the optstring without colons; a short option takes an
    /// argument when its long form does.
    pub fn new(args: &'a [Vec<u8>], shorts: &'a [u8], longs: &'a [LongOpt]) -> Self {
        Getopt {
            args,
            shorts,
            longs,
            index: 1,
            cluster: 0,
            operands: Vec::new(),
            require_order: std::env::var_os("POSIXLY_CORRECT").is_some(),
            done: false,
            quiet: false,
        }
    }

    fn progname(&self) -> &[u8] {
        self.args.first().map_or(&b""[..], Vec::as_slice)
    }

    fn complain(&self, parts: &[&[u8]]) {
        if self.quiet {
            return;
        }
        let mut msg = self.progname().to_vec();
        msg.extend_from_slice(b": ");
        for part in parts {
            msg.extend_from_slice(part);
        }
        msg.push(b'\n');
        let _ = std::io::stderr().write_all(&msg);
    }

    fn takes_arg(&self, c: u8) -> bool {
        self.longs.iter().any(|l| l.short == c && l.has_arg)
    }

    /// The next option, or `None` when there are no more.
    pub fn next_opt(&mut self) -> Option<Found> {
        if self.cluster > 0 {
            return Some(self.short_option());
        }
        while !self.done {
            let arg = self.args.get(self.index)?;
            if arg == b"--" {
                self.index += 1;
                self.done = true;
                break;
            }
            if arg.len() < 2 || arg[0] != b'-' {
                if self.require_order {
                    self.done = true;
                    break;
                }
                self.operands.push(arg.clone());
                self.index += 1;
                continue;
            }
            if let Some(long) = arg.strip_prefix(b"--") {
                self.index += 1;
                return Some(self.long_option(long));
            }
            self.cluster = 1;
            return Some(self.short_option());
        }
        None
    }

    fn short_option(&mut self) -> Found {
        let arg = &self.args[self.index];
        let c = arg[self.cluster];
        self.cluster += 1;
        let rest_empty = self.cluster >= arg.len();
        if !self.shorts.contains(&c) || c == b':' {
            if rest_empty {
                self.cluster = 0;
                self.index += 1;
            }
            self.complain(&[b"invalid option -- '", &[c], b"'"]);
            return Found::Bad;
        }
        if !self.takes_arg(c) {
            if rest_empty {
                self.cluster = 0;
                self.index += 1;
            }
            return Found::Opt(c, None);
        }
        // The rest of the cluster, or else the next argument, is the value.
        let value =
            if !rest_empty { Some(arg[self.cluster..].to_vec()) } else { self.args.get(self.index + 1).cloned() };
        self.index += if rest_empty { 2 } else { 1 };
        self.cluster = 0;
        match value {
            Some(value) => Found::Opt(c, Some(value)),
            None => {
                self.index = self.args.len();
                self.complain(&[b"option requires an argument -- '", &[c], b"'"]);
                Found::Bad
            }
        }
    }

    fn long_option(&mut self, text: &[u8]) -> Found {
        let (name, value) = match text.iter().position(|b| *b == b'=') {
            Some(eq) => (&text[..eq], Some(text[eq + 1..].to_vec())),
            None => (text, None),
        };
        let exact = self.longs.iter().find(|l| l.name.as_bytes() == name);
        let found = match exact {
            Some(opt) => *opt,
            None => {
                let matches: Vec<&LongOpt> =
                    self.longs.iter().filter(|l| l.name.as_bytes().starts_with(name)).collect();
                match matches.as_slice() {
                    [] => {
                        self.complain(&[b"unrecognized option '--", text, b"'"]);
                        return Found::Bad;
                    }
                    [one] => **one,
                    many => {
                        let mut parts: Vec<Vec<u8>> = vec![b"option '--".to_vec(), text.to_vec()];
                        parts.push(b"' is ambiguous; possibilities:".to_vec());
                        for opt in many {
                            parts.push(format!(" '--{}'", opt.name).into_bytes());
                        }
                        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
                        self.complain(&refs);
                        return Found::Bad;
                    }
                }
            }
        };
        if !found.has_arg {
            if value.is_some() {
                self.complain(&[b"option '--", found.name.as_bytes(), b"' doesn't allow an argument"]);
                return Found::Bad;
            }
            return Found::Opt(found.short, None);
        }
        if let Some(value) = value {
            return Found::Opt(found.short, Some(value));
        }
        match self.args.get(self.index).cloned() {
            Some(value) => {
                self.index += 1;
                Found::Opt(found.short, Some(value))
            }
            None => {
                self.complain(&[b"option '--", found.name.as_bytes(), b"' requires an argument"]);
                Found::Bad
            }
        }
    }

    /// The operands (non-options) in order, once [`Getopt::next_opt`] has
    /// returned `None`.
    pub fn operands(mut self) -> Vec<Vec<u8>> {
        let rest = self.args.get(self.index..).unwrap_or_default();
        self.operands.extend(rest.iter().cloned());
        self.operands
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONGS: &[LongOpt] = &[
        LongOpt { name: "help", has_arg: false, short: b'h' },
        LongOpt { name: "prefix", has_arg: false, short: b'p' },
        LongOpt { name: "recurse", has_arg: false, short: b'r' },
        LongOpt { name: "number", has_arg: true, short: b'n' },
        LongOpt { name: "raw", has_arg: false, short: b'R' },
    ];

    fn parse(args: &[&str]) -> (Vec<Found>, Vec<String>) {
        let args: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
        let mut g = Getopt::new(&args, b"hprnR", LONGS);
        g.require_order = false;
        g.quiet = true;
        let mut found = Vec::new();
        while let Some(f) = g.next_opt() {
            found.push(f);
        }
        let ops = g.operands().into_iter().map(|o| String::from_utf8(o).unwrap()).collect();
        (found, ops)
    }

    fn opt(c: u8, arg: Option<&str>) -> Found {
        Found::Opt(c, arg.map(|a| a.as_bytes().to_vec()))
    }

    #[test]
    fn options_and_operands_mix_in_any_order() {
        let (found, ops) = parse(&["prog", "/a", "-p", "/b", "-R"]);
        assert_eq!(found, vec![opt(b'p', None), opt(b'R', None)]);
        assert_eq!(ops, vec!["/a", "/b"]);
    }

    #[test]
    fn clusters_and_attached_arguments() {
        let (found, ops) = parse(&["prog", "-pRn5", "-n", "7", "x"]);
        assert_eq!(found, vec![opt(b'p', None), opt(b'R', None), opt(b'n', Some("5")), opt(b'n', Some("7"))]);
        assert_eq!(ops, vec!["x"]);
    }

    #[test]
    fn double_dash_ends_options() {
        let (found, ops) = parse(&["prog", "-p", "--", "-R", "x"]);
        assert_eq!(found, vec![opt(b'p', None)]);
        assert_eq!(ops, vec!["-R", "x"]);
    }

    #[test]
    fn long_options_abbreviate_unless_ambiguous() {
        let (found, _) = parse(&["prog", "--pre", "--num=3", "--number", "4", "--r", "--ra"]);
        assert_eq!(
            found,
            vec![opt(b'p', None), opt(b'n', Some("3")), opt(b'n', Some("4")), Found::Bad, opt(b'R', None)]
        );
    }

    #[test]
    fn bad_options_are_reported_and_skipped() {
        let (found, ops) = parse(&["prog", "-x", "--bogus", "--raw=1", "a", "-n"]);
        assert_eq!(found, vec![Found::Bad, Found::Bad, Found::Bad, Found::Bad]);
        assert_eq!(ops, vec!["a"]);
    }

    #[test]
    fn lone_dash_is_an_operand() {
        let (found, ops) = parse(&["prog", "-", "-p"]);
        assert_eq!(found, vec![opt(b'p', None)]);
        assert_eq!(ops, vec!["-"]);
    }
}
