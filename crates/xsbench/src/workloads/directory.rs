//! Listing a node with 10,000 children, the way libxenstore does: one
//! DIRECTORY, and when the list does not fit a message (E2BIG, as in every
//! daemon here) DIRECTORY_PART chunks until the empty name that ends it.

use std::time::Instant;

use anyhow::{bail, ensure, Result};
use xenstore_wire::Op;

use super::{on_cpu, Config, Target};
use crate::conn::{drain, z, Conn};
use crate::results::Results;
use crate::stats::{median, micros};

/// The group the figures go in.
pub const GROUP: &str = "Subtrees";

/// Times complete listings of `/bench/dir` with 10,000 children.
pub fn run(t: Target<'_>, cfg: Config, res: &mut Results) -> Result<()> {
    on_cpu(0, || measure(t, cfg, res))
}

fn measure(t: Target<'_>, cfg: Config, res: &mut Results) -> Result<()> {
    let children = cfg.n(10_000, 1_000);
    let mut c = Conn::connect(t.socket)?;
    let mut pending = 0;
    for i in 0..children {
        c.send(Op::Write, 0, &[format!("/bench/dir/c{i}\0").as_bytes(), b""]);
        pending += 1;
        if pending == 128 {
            drain(&mut c, pending)?;
            pending = 0;
        }
    }
    drain(&mut c, pending)?;
    let mut times = Vec::new();
    for _ in 0..cfg.n(30, 3) {
        let began = Instant::now();
        let (names, whole) = list(&mut c, "/bench/dir")?;
        if let Some(len) = whole.filter(|len| *len > xenstore_wire::PAYLOAD_MAX) {
            res.observe(format!(
                "{}: DIRECTORY of {children} children answered with one {len}-byte reply, over the protocol's {} bytes \
                 (libxenstore refuses such a reply)",
                t.name,
                xenstore_wire::PAYLOAD_MAX
            ));
        }
        times.push(micros(began.elapsed()));
        ensure!(names == children, "listed {names} children of {children}");
    }
    c.call_ok(Op::Rm, 0, &[b"/bench/dir\0"])?;
    res.add(GROUP, &format!("list {children} children p50"), "µs", false, t.name, median(&mut times));
    Ok(())
}

/// Lists `path` completely; returns how many children it has, and the
/// size of the reply if one DIRECTORY reply held them all.
pub fn list(c: &mut Conn, path: &str) -> Result<(usize, Option<usize>)> {
    let zpath = z(path);
    let whole = c.call(Op::Directory, 0, &[&zpath])?;
    match whole.error() {
        None => return Ok((whole.payload.iter().filter(|b| **b == 0).count(), Some(whole.payload.len()))),
        Some("E2BIG") => {}
        Some(e) => bail!("DIRECTORY {path}: {e}"),
    }
    'restart: loop {
        let mut offset = 0usize;
        let mut count = 0usize;
        let mut generation: Option<Vec<u8>> = None;
        loop {
            let off = z(&offset.to_string());
            let part = c.call(Op::DirectoryPart, 0, &[&zpath, &off])?;
            if let Some(e) = part.error() {
                bail!("DIRECTORY_PART {path} {offset}: {e}");
            }
            let p = &part.payload;
            let Some(gen_end) = p.iter().position(|b| *b == 0) else {
                bail!("DIRECTORY_PART reply without generation")
            };
            let gen = p[..gen_end].to_vec();
            if generation.as_ref().is_some_and(|g| *g != gen) {
                continue 'restart;
            }
            generation = Some(gen);
            let names = &p[gen_end + 1..];
            // The list ends with an empty name: the chunk ends in two nuls
            // (or is a single nul when nothing is left).
            let last = names.is_empty() || names == b"\0" || names.ends_with(b"\0\0");
            let body = if last { names.strip_suffix(b"\0").unwrap_or(names) } else { names };
            count += body.iter().filter(|b| **b == 0).count();
            offset += body.len();
            if last {
                return Ok((count, None));
            }
        }
    }
}
