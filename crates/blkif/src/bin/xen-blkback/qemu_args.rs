//! The QEMU command line libxl gives its device model, read for what a
//! disk backend needs, refused where it asks for something else.
//!
//! For a PV (or PVH) guest with a `qdisk` disk, libxl 4.17's
//! `libxl__build_device_model_args_new` runs (Debian's path):
//!
//! ```text
//! /usr/libexec/xen-qemu-system-i386 -xen-domid 5 -no-shutdown
//!   -chardev socket,id=libxl-cmd,path=/var/run/xen/qmp-libxl-5,server=on,wait=off
//!   -mon chardev=libxl-cmd,mode=control
//!   -chardev socket,id=libxenstat-cmd,path=/var/run/xen/qmp-libxenstat-5,server=on,wait=off
//!   -mon chardev=libxenstat-cmd,mode=control
//!   -nodefaults -no-user-config -xen-attach -name guest -vnc none -display none
//!   -nographic -machine xenpv -m 512
//! ```
//!
//! and `xl devd`'s `libxl__spawn_qdisk_backend` (a driver domain):
//! `-xen-domid 5 -xen-attach -name domain-5 -nographic -M xenpv -monitor
//! /dev/null -serial /dev/null -parallel /dev/null`. Xen 4.20 and later
//! first probe the binary (`-S ... -machine none,accel=xen` with a QMP
//! socket passed as `fd=N`, asking `query-command-line-options`): that is
//! [`Parsed::Probe`], answered by exiting at once, which libxl tolerates
//! ("Ignore all failure from the QEMU command line probe").
//!
//! What this accepts: options taking no value or one, single or double
//! dash, as QEMU does. Kept: the domain, its name, the QMP monitors
//! (socket chardevs with `path=`, listening), `-S`. Ignored because they
//! do not concern a disk backend: `-m`, `-k`, `-no-shutdown`,
//! `-nodefaults`, `-no-user-config`, `-nographic`, `-vnc none`, `-display
//! none`, `-monitor`/`-serial`/`-parallel` `/dev/null` or `none`. Anything
//! else is an error naming the option: a framebuffer (`-vnc` other than
//! `none`, `-display sdl`), channels (`-chardev pty`, a socket no monitor
//! uses), an HVM machine, `dm_restrict` (`-xen-domid-restrict`,
//! `-chroot`, `-runas`, a chardev on an inherited `fd=`), a restore
//! (`-incoming`), devices, or extra `device_model_args`: each is something
//! only QEMU does, and serving the disks while silently leaving it out
//! would fail later and less clearly.

use std::fmt;
use std::path::PathBuf;

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Serve the `qdisk` disks of a domain.
    Serve(DmArgs),
    /// Xen 4.20's probe of QEMU's options (`-machine none`): nothing to
    /// serve.
    Probe,
}

/// A device model's job, as far as a disk backend goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmArgs {
    /// `-xen-domid`: the guest.
    pub domid: u16,
    /// `-name`, for the log.
    pub name: Option<String>,
    /// The QMP monitors' sockets to listen on, in order.
    pub monitors: Vec<PathBuf>,
    /// `-S`: start in QMP's `prelaunch` state, reported running (and the
    /// readiness node written) only after `cont`.
    pub start_paused: bool,
}

/// Why a command line cannot be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgsError {
    /// An option this does not know (or know a value of).
    Unknown(String),
    /// An option that needs a value came last.
    MissingValue(String),
    /// A value that is malformed.
    Bad {
        /// The option.
        option: String,
        /// What is wrong.
        why: String,
    },
    /// Something only QEMU does.
    Unsupported {
        /// The option and value.
        what: String,
        /// Why it is refused, and what to change.
        why: &'static str,
    },
}

impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgsError::Unknown(option) => write!(
                f,
                "unknown option {option} (xen-blkback stands in for QEMU as a disk backend only; \
                 remove device_model_args)"
            ),
            ArgsError::MissingValue(option) => write!(f, "{option} needs a value"),
            ArgsError::Bad { option, why } => write!(f, "{option}: {why}"),
            ArgsError::Unsupported { what, why } => write!(f, "{what}: {why}"),
        }
    }
}

impl std::error::Error for ArgsError {}

/// Options that take no value and change nothing for a disk backend.
const IGNORED_FLAGS: [&str; 4] = ["no-shutdown", "nodefaults", "no-user-config", "nographic"];
/// Options whose value changes nothing for a disk backend.
const IGNORED_VALUES: [&str; 2] = ["m", "k"];

/// One `-chardev socket,...` that listens.
#[derive(Debug, Clone)]
struct Chardev {
    id: String,
    path: PathBuf,
}

/// Reads `args` (without the program name).
pub fn parse(args: &[String]) -> Result<Parsed, ArgsError> {
    // The probe is recognised whatever else its line holds (its QMP
    // socket comes as fd=, refused below).
    let machine_none = args.windows(2).any(|w| {
        matches!(w[0].as_str(), "-M" | "-machine" | "--machine") && parse_machine("", &w[1]) == Ok(Machine::None)
    });
    if machine_none {
        return Ok(Parsed::Probe);
    }
    let mut domid = None;
    let mut name = None;
    let mut machine = None;
    let mut attach = false;
    let mut start_paused = false;
    let mut chardevs: Vec<Chardev> = Vec::new();
    let mut mons: Vec<String> = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let Some(option) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')).filter(|o| !o.is_empty()) else {
            return Err(ArgsError::Unknown(arg.clone()));
        };
        let shown = format!("-{option}");
        let mut value = || rest.next().cloned().ok_or_else(|| ArgsError::MissingValue(shown.clone()));
        match option {
            "xen-attach" => attach = true,
            "S" => start_paused = true,
            flag if IGNORED_FLAGS.contains(&flag) => {}
            ignored if IGNORED_VALUES.contains(&ignored) => {
                value()?;
            }
            "xen-domid" => {
                let v = value()?;
                domid = Some(v.parse::<u16>().map_err(|_| bad(&shown, format!("{v:?} is not a domain id")))?);
            }
            "name" => {
                let v = value()?;
                name = Some(v.split(',').next().unwrap_or_default().trim_start_matches("guest=").to_owned());
            }
            "M" | "machine" => machine = Some(parse_machine(&shown, &value()?)?),
            "chardev" => chardevs.push(parse_chardev(&shown, &value()?)?),
            "mon" => mons.push(parse_mon(&shown, &value()?)?),
            "monitor" | "serial" | "parallel" => {
                let v = value()?;
                if v != "/dev/null" && v != "none" {
                    return Err(unsupported(&shown, &v, "only /dev/null or none (there is no emulated device)"));
                }
            }
            "vnc" | "display" => {
                let v = value()?;
                if v != "none" {
                    return Err(unsupported(&shown, &v, "a framebuffer (vfb) needs QEMU"));
                }
            }
            "xen-domid-restrict" | "chroot" | "runas" | "run-with" => {
                return Err(unsupported(
                    &shown,
                    "",
                    "dm_restrict is not supported by xen-blkback: drop dm_restrict from the domain's configuration",
                ))
            }
            "incoming" => {
                return Err(unsupported(
                    &shown,
                    "",
                    "restoring a device model's state needs QEMU (xl restore, migrate)",
                ))
            }
            _ => return Err(ArgsError::Unknown(shown)),
        }
    }
    match machine {
        Some(Machine::None) => return Ok(Parsed::Probe),
        Some(Machine::XenPv) => {}
        None => return Err(bad("-machine", "missing (xenpv expected)".into())),
    }
    let domid = domid.ok_or_else(|| bad("-xen-domid", "missing".into()))?;
    if !attach {
        return Err(bad("-xen-attach", "missing: xen-blkback serves a domain libxl built, it builds none".into()));
    }
    let mut monitors = Vec::new();
    for mon in &mons {
        let chardev = chardevs
            .iter()
            .find(|c| &c.id == mon)
            .ok_or_else(|| bad("-mon", format!("chardev {mon} is not defined by a -chardev")))?;
        monitors.push(chardev.path.clone());
    }
    if let Some(unused) = chardevs.iter().find(|c| !mons.contains(&c.id)) {
        return Err(unsupported("-chardev", &unused.id, "a chardev that is no QMP monitor (a channel?) needs QEMU"));
    }
    Ok(Parsed::Serve(DmArgs { domid, name, monitors, start_paused }))
}

/// The machine types this knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Machine {
    /// `xenpv`: PV backends for a PV or PVH guest.
    XenPv,
    /// `none`: Xen 4.20's probe.
    None,
}

/// `xenpv`, `xenpv,accel=xen`, `type=xenpv`, `none,accel=xen`.
fn parse_machine(option: &str, value: &str) -> Result<Machine, ArgsError> {
    let first = value.split(',').next().unwrap_or_default();
    let kind = first.strip_prefix("type=").unwrap_or(first);
    match kind {
        "xenpv" => Ok(Machine::XenPv),
        "none" => Ok(Machine::None),
        other => Err(unsupported(option, other, "only xenpv (PV and PVH guests): an HVM guest needs QEMU")),
    }
}

/// `socket,id=ID,path=PATH,server=on,wait=off` (or QEMU's older
/// `server,nowait`).
fn parse_chardev(option: &str, value: &str) -> Result<Chardev, ArgsError> {
    let mut items = value.split(',');
    let backend = items.next().unwrap_or_default();
    if backend != "socket" {
        return Err(unsupported(option, value, "only listening socket chardevs for QMP (channels need QEMU)"));
    }
    let (mut id, mut path, mut server) = (None, None, false);
    for item in items {
        let (key, val) = item.split_once('=').unwrap_or((item, "on"));
        match key {
            "id" => id = Some(val.to_owned()),
            "path" => path = Some(PathBuf::from(val)),
            "server" => server = matches!(val, "on" | "yes" | "true"),
            "wait" | "nowait" => {}
            "fd" => {
                return Err(unsupported(
                    option,
                    value,
                    "a socket passed as fd= (dm_restrict) is not supported: drop dm_restrict",
                ))
            }
            _ => return Err(bad(option, format!("{value}: unknown property {key}"))),
        }
    }
    let id = id.ok_or_else(|| bad(option, format!("{value}: no id")))?;
    let path = path.ok_or_else(|| bad(option, format!("{value}: no path")))?;
    if !server {
        return Err(unsupported(option, value, "only server sockets (QEMU listens, libxl connects)"));
    }
    Ok(Chardev { id, path })
}

/// `chardev=ID,mode=control`: a QMP monitor on chardev `ID`.
fn parse_mon(option: &str, value: &str) -> Result<String, ArgsError> {
    let mut chardev = None;
    for item in value.split(',') {
        match item.split_once('=') {
            Some(("chardev", id)) => chardev = Some(id.to_owned()),
            Some(("mode", "control")) => {}
            Some(("mode", mode)) => {
                return Err(unsupported(
                    option,
                    value,
                    if mode == "readline" { "only QMP (mode=control)" } else { "unknown mode" },
                ))
            }
            Some(("pretty", _)) => {}
            _ => return Err(bad(option, format!("{value}: unknown property {item}"))),
        }
    }
    chardev.ok_or_else(|| bad(option, format!("{value}: no chardev")))
}

fn bad(option: &str, why: String) -> ArgsError {
    ArgsError::Bad { option: option.to_owned(), why }
}

fn unsupported(option: &str, value: &str, why: &'static str) -> ArgsError {
    let what = if value.is_empty() { option.to_owned() } else { format!("{option} {value}") };
    ArgsError::Unsupported { what, why }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    const LIBXL_PV: &str = "-xen-domid 5 -no-shutdown \
        -chardev socket,id=libxl-cmd,path=/var/run/xen/qmp-libxl-5,server=on,wait=off \
        -mon chardev=libxl-cmd,mode=control \
        -chardev socket,id=libxenstat-cmd,path=/var/run/xen/qmp-libxenstat-5,server=on,wait=off \
        -mon chardev=libxenstat-cmd,mode=control \
        -nodefaults -no-user-config -xen-attach -name guest -vnc none -display none -nographic \
        -machine xenpv -m 512";

    #[test]
    fn libxl_417s_pv_device_model_line_is_served() {
        let parsed = parse(&args(LIBXL_PV)).unwrap();
        let expected = DmArgs {
            domid: 5,
            name: Some("guest".into()),
            monitors: vec!["/var/run/xen/qmp-libxl-5".into(), "/var/run/xen/qmp-libxenstat-5".into()],
            start_paused: false,
        };
        assert_eq!(parsed, Parsed::Serve(expected));
    }

    #[test]
    fn xl_devds_qdisk_backend_line_is_served_without_monitors() {
        let line = "-xen-domid 7 -xen-attach -name domain-7 -nographic -M xenpv -monitor /dev/null \
                    -serial /dev/null -parallel /dev/null";
        let expected = DmArgs { domid: 7, name: Some("domain-7".into()), monitors: vec![], start_paused: false };
        assert_eq!(parse(&args(line)).unwrap(), Parsed::Serve(expected));
    }

    #[test]
    fn double_dashes_older_socket_syntax_and_minus_s_are_accepted() {
        let line = "--xen-domid 3 --xen-attach -S -machine type=xenpv,accel=xen \
                    -chardev socket,id=q,path=/tmp/q,server,nowait -mon chardev=q,mode=control";
        let Parsed::Serve(dm) = parse(&args(line)).unwrap() else { panic!("served") };
        assert_eq!((dm.domid, dm.start_paused, dm.monitors), (3, true, vec![PathBuf::from("/tmp/q")]));
    }

    #[test]
    fn xen_420s_probe_is_recognised() {
        let line = "-S -no-user-config -nodefaults -nographic -machine none,accel=xen \
                    -chardev socket,id=libxl-cmd,fd=12,server=on,wait=off -mon chardev=libxl-cmd,mode=control";
        assert_eq!(parse(&args(line)).unwrap(), Parsed::Probe);
    }

    #[test]
    fn what_only_qemu_does_is_refused_naming_the_option() {
        let rows: &[(&str, &str)] = &[
            ("-vnc 127.0.0.1:0,to=99", "-vnc"),
            ("-display sdl", "-display"),
            ("-machine xenfv", "HVM"),
            ("-xen-domid-restrict", "dm_restrict"),
            ("-chroot /var/run/xen/qemu-root-5", "dm_restrict"),
            ("-incoming fd:12", "restor"),
            ("-chardev pty,id=libxl-channel0", "channels"),
            ("-chardev socket,id=libxl-channel0,path=/tmp/c,server=on,wait=off", "no QMP monitor"),
            ("-device xen-pvdevice", "unknown option -device"),
            ("-serial pty", "-serial"),
            ("-mon chardev=libxl-cmd,mode=readline", "mode=control"),
        ];
        for (extra, expected) in rows {
            let line = format!("{LIBXL_PV} {extra}");
            let err = parse(&args(&line)).expect_err(extra).to_string();
            assert!(err.contains(expected), "{extra}: {err}");
        }
    }

    #[test]
    fn a_missing_domain_or_attach_or_value_is_an_error() {
        assert!(parse(&args("-xen-attach -machine xenpv")).unwrap_err().to_string().contains("-xen-domid"));
        assert!(parse(&args("-xen-domid 1 -machine xenpv")).unwrap_err().to_string().contains("-xen-attach"));
        assert!(parse(&args("-xen-domid 1 -xen-attach")).unwrap_err().to_string().contains("-machine"));
        assert_eq!(parse(&args("-xen-domid")), Err(ArgsError::MissingValue("-xen-domid".into())));
        assert!(parse(&args("-xen-domid 70000 -xen-attach -M xenpv")).is_err());
        assert!(parse(&args("-xen-domid 1 -xen-attach -M xenpv -mon chardev=nowhere,mode=control"))
            .unwrap_err()
            .to_string()
            .contains("not defined"));
        assert!(parse(&args("stray")).is_err());
    }
}
