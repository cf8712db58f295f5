//! The published table: every figure with its median and spread per
//! daemon and our ratio to the best reference, then the goals
//! checked against the figures.

use std::fmt::Write as _;

use crate::daemons::Kind;
use crate::results::{Figure, Results, OURS};
use crate::workloads::latency::MACHINE;

/// The table's columns: the known daemons that have figures, in their
/// order ([`Kind::ALL`], then `machine`, which holds the floors), then any
/// other daemon measured (`xs-bench run --name NAME`), titled by its name.
fn columns(r: &Results) -> Vec<(String, String)> {
    let measured = |d: &str| r.figures.iter().any(|f| f.values.contains_key(d));
    let known = Kind::ALL.iter().map(|k| (k.name(), k.title())).chain([(MACHINE, "machine floor")]);
    let mut shown: Vec<(String, String)> =
        known.filter(|(d, _)| measured(d)).map(|(d, t)| (d.to_owned(), t.to_owned())).collect();
    for f in &r.figures {
        for d in f.values.keys() {
            if !shown.iter().any(|(s, _)| s == d) {
                shown.push((d.clone(), d.clone()));
            }
        }
    }
    shown
}

/// Formats a value with sensible precision.
fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 100_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn cell(f: &Figure, daemon: &str) -> String {
    match (f.median(daemon), f.spread(daemon)) {
        (Some(m), Some((lo, hi))) if f.values[daemon].len() > 1 => format!("{} ({}–{})", num(m), num(lo), num(hi)),
        (Some(m), _) => num(m),
        _ => "–".to_owned(),
    }
}

/// The markdown table of all figures, grouped.
pub fn table(r: &Results) -> String {
    let mut out = String::new();
    let shown = columns(r);
    let mut group = "";
    for f in &r.figures {
        if f.group != group {
            group = &f.group;
            let _ = writeln!(out, "\n### {group}\n");
            let _ = write!(out, "| figure | unit |");
            for (_, title) in &shown {
                let _ = write!(out, " {title} |");
            }
            let _ = writeln!(out, " ours / best reference |");
            let _ = writeln!(out, "|---|---|{}---|", "---:|".repeat(shown.len()));
        }
        let better = if f.higher_is_better { "higher is better" } else { "lower is better" };
        let _ = write!(out, "| {} | {} ({better}) |", f.name, f.unit);
        for (d, _) in &shown {
            let _ = write!(out, " {} |", cell(f, d.as_str()));
        }
        let ratio = match (f.ratio(), f.best_reference()) {
            (Some(x), Some((best, _))) => format!("**{x:.2}×** (vs {best})"),
            _ => "–".to_owned(),
        };
        let _ = writeln!(out, " {ratio} |");
    }
    out
}

/// One goal of the issue, as checked against the figures.
#[derive(Debug, Clone)]
pub struct Goal {
    /// What is asked.
    pub goal: String,
    /// What was measured, as a sentence.
    pub measured: String,
    /// Met, missed, or not measured (`None`).
    pub met: Option<bool>,
}

fn find<'a>(r: &'a Results, group: &str, contains: &str) -> Option<&'a Figure> {
    r.figures.iter().rfind(|f| f.group == group && f.name.contains(contains))
}

/// How a many-domains step's per-domain cost (`"{step}, N domains: per
/// domain"`) grows over the widest range of N measured: the range as the
/// goal names it, and the largest N's cost over the smallest's.
fn flat_over_domains(r: &Results, step: &str) -> (String, Option<(f64, String)>) {
    let prefix = format!("{step}, ");
    let mut counts: Vec<(usize, f64)> = r
        .figures
        .iter()
        .filter(|f| f.group == "Hosted domains")
        .filter_map(|f| {
            let n = f.name.strip_prefix(&prefix)?.strip_suffix(" domains: per domain")?.parse().ok()?;
            Some((n, f.median(OURS)?))
        })
        .collect();
    counts.sort_by_key(|&(n, _)| n);
    match (counts.first(), counts.last()) {
        (Some(&(small_n, small)), Some(&(big_n, big))) if big_n > small_n => (
            format!("from N={small_n} to N={big_n}"),
            Some((
                big / small,
                format!("{:.2}× ({} µs per domain at {big_n}, {} µs at {small_n})", big / small, num(big), num(small)),
            )),
        ),
        _ => ("over N".to_owned(), None),
    }
}

/// Checks the goals against the figures.
pub fn goals(r: &Results) -> Vec<Goal> {
    let mut goals = Vec::new();
    let mut push = |goal: &str, measured: Option<(f64, String)>, ok: &dyn Fn(f64) -> bool| {
        goals.push(match measured {
            Some((x, text)) => Goal { goal: goal.to_owned(), measured: text, met: Some(ok(x)) },
            None => Goal { goal: goal.to_owned(), measured: "not measured in this run".to_owned(), met: None },
        });
    };
    let ratio_of = |f: Option<&Figure>| {
        let f = f?;
        let (best, _) = f.best_reference()?;
        Some((f.ratio()?, format!("{:.2}× {best} ({})", f.ratio()?, f.name)))
    };
    let read = find(r, "Single client round trip", "READ p50");
    push("single-client READ round trip ≤ 0.6× the best reference", ratio_of(read), &|x| x <= 0.6);
    let floor = find(r, "Single client round trip", "floor: AF_UNIX request/reply p50").and_then(|f| f.median(MACHINE));
    let vs_floor = read
        .and_then(|f| f.median(OURS))
        .zip(floor)
        .map(|(ours, fl)| (ours / fl, format!("{:.2}× ({} µs vs {} µs)", ours / fl, num(ours), num(fl))));
    push("single-client READ within 1.3× of a bare AF_UNIX request/reply", vs_floor, &|x| x <= 1.3);
    push("64-client throughput ≥ 2× the best reference", ratio_of(find(r, "READ throughput", "64 clients")), &|x| {
        x >= 2.0
    });
    push(
        "memory per node at 1M nodes ≤ 0.5× the best reference",
        ratio_of(find(r, "Store size", "memory per node at 1M")),
        &|x| x <= 0.5,
    );
    let tx = |label: &str| find(r, "Store size", &format!("commit p50 at {label}")).and_then(|f| f.median(OURS));
    let tx_growth = tx("1M").zip(tx("1k")).map(|(big, small)| {
        (big / small, format!("{:.2}× ({} µs at 1M, {} µs at 1k)", big / small, num(big), num(small)))
    });
    push("transaction start + 3-node commit at 1M nodes within 2× of the same at 1k", tx_growth, &|x| x <= 2.0);
    let fan = find(r, "Watch fan-out", "1000 watchers").and_then(|f| {
        let (best, b) = f.best_reference()?;
        let ours = f.median(OURS)?;
        Some((b / ours, format!("{:.2}× faster than {best} ({} µs vs {} µs)", b / ours, num(ours), num(b))))
    });
    push("watch fan-out to 1000 watchers ≥ 3× faster", fan, &|x| x >= 3.0);
    let vs_all = |f: Option<&Figure>| {
        let f = f?;
        let ours = f.median(OURS)?;
        let refs: Vec<(String, f64)> =
            f.values.keys().filter(|d| *d != OURS).filter_map(|d| Some((d.clone(), f.median(d)?))).collect();
        if refs.is_empty() {
            return None;
        }
        let beats = refs.iter().all(|(_, v)| if f.higher_is_better { ours > *v } else { ours < *v });
        let text = refs.iter().map(|(d, v)| format!("{d} {}", num(*v))).collect::<Vec<_>>().join(", ");
        Some((if beats { 1.0 } else { 0.0 }, format!("ours {} vs {text} ({})", num(ours), f.name)))
    };
    push(
        "contended counter: more commits per second than every reference",
        vs_all(find(r, "Transactions", "commits/s")),
        &|x| x > 0.5,
    );
    push(
        "contended counter: fewer EAGAIN retries than every reference",
        vs_all(find(r, "Transactions", "EAGAIN")),
        &|x| x > 0.5,
    );
    let ring = find(r, "Hosted domains", "ring p50").and_then(|f| f.median(OURS));
    let evt = find(r, "Hosted domains", "floor: eventfd").and_then(|f| f.median(MACHINE));
    let ring_floor = ring
        .zip(evt)
        .map(|(ring, evt)| (ring / evt, format!("{:.2}× ({} µs vs {} µs)", ring / evt, num(ring), num(evt))));
    push("hosted: READ over a ring, against the eventfd + shared-memory floor (reported)", ring_floor, &|_| true);
    for step in ["create + introduce", "device handshake", "destroy + release"] {
        let (range, flat) = flat_over_domains(r, step);
        push(&format!("hosted: {step} cost per domain flat {range} (≤ 1.2×)"), flat, &|x| x <= 1.2);
    }
    let dev_ring =
        find(r, crate::hosted_devices::RING_GROUP, "FrontRing/BackRing request + response, eventfd wake-ups p50")
            .and_then(|f| f.median(OURS));
    let dev_floor = find(r, crate::hosted_devices::RING_GROUP, "floor: eventfd + shared memory ping-pong p50")
        .and_then(|f| f.median(MACHINE));
    let dev_vs_floor = dev_ring
        .zip(dev_floor)
        .map(|(ring, evt)| (ring / evt, format!("{:.2}× ({} µs vs {} µs)", ring / evt, num(ring), num(evt))));
    push(
        "devices: a device ring round trip, against the eventfd + shared-memory floor (reported)",
        dev_vs_floor,
        &|_| true,
    );
    let per_device = |n: &str| {
        find(r, crate::hosted_devices::ATTACH_GROUP, &format!("attach {n} in a row")).and_then(|f| f.median(OURS))
    };
    let attach_flat = per_device("1000").zip(per_device("100")).map(|(big, small)| {
        (big / small, format!("{:.2}× ({} µs per device at 1000, {} µs at 100)", big / small, num(big), num(small)))
    });
    push("devices: attach cost per device flat from N=100 to N=1000 (≤ 1.5×)", attach_flat, &|x| x <= 1.5);
    goals
}

/// The goals as a markdown table.
pub fn goals_table(r: &Results) -> String {
    let mut out = String::from("| goal | measured | |\n|---|---|---|\n");
    for g in goals(r) {
        let verdict = match g.met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "–",
        };
        let _ = writeln!(out, "| {} | {} | {verdict} |", g.goal, g.measured);
    }
    out
}

/// The generated part of `docs/benchmarks.md`.
pub fn generated(r: &Results, plots: &[(&str, &str)]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Machine: {}  ", r.machine);
    let _ = writeln!(out, "Date: {}  ", r.date);
    let _ = writeln!(out, "Command: `{}`\n", r.command);
    let _ = writeln!(out, "Daemons:\n");
    for d in &r.daemons {
        let _ = writeln!(out, "- **{}**: {}", d.name, d.description);
    }
    if !r.notes.is_empty() {
        let _ = writeln!(out, "\nNotes from the run:\n");
        for n in &r.notes {
            let _ = writeln!(out, "- {n}");
        }
    }
    if !r.limits.is_empty() {
        let _ = writeln!(out, "\nWhat limits the number of hosted domains here:\n");
        for n in &r.limits {
            let _ = writeln!(out, "- {n}");
        }
    }
    if !r.observations.is_empty() {
        let _ = writeln!(out, "\nSeen during the run:\n");
        for n in &r.observations {
            let _ = writeln!(out, "- {n}");
        }
    }
    let _ = writeln!(out, "\n## Goals\n\n{}", goals_table(r));
    let _ = writeln!(
        out,
        "## Figures\n\nEach cell is the median over repetitions, with the smallest and largest in brackets.\n{}",
        table(r)
    );
    if !plots.is_empty() {
        let _ = writeln!(out, "\n## Plots\n");
        for (file, title) in plots {
            let _ = writeln!(out, "![{title}]({file})\n");
        }
    }
    out
}

/// Marks the generated part of `docs/benchmarks.md`.
pub const BEGIN: &str = "<!-- BEGIN GENERATED by `xs-bench report`: do not edit by hand -->";
/// Ends the generated part.
pub const END: &str = "<!-- END GENERATED -->";

/// Replaces the generated part of `doc` (or appends it).
pub fn splice(doc: &str, generated: &str) -> String {
    match (doc.find(BEGIN), doc.find(END)) {
        (Some(b), Some(e)) if b < e => format!("{}{BEGIN}\n{generated}{}", &doc[..b], &doc[e..]),
        _ => format!("{doc}\n{BEGIN}\n{generated}{END}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Results {
        let mut r = Results::default();
        for (d, v) in [("rust", 10.0), ("c", 20.0), ("ocaml", 30.0)] {
            r.add("Single client round trip", "READ p50", "µs", false, d, v);
            r.add("READ throughput", "64 clients", "req/s", true, d, 1000.0 / v);
            r.add("Watch fan-out", "20 writes to 1000 watchers", "µs", false, d, v);
        }
        r.add("Single client round trip", "floor: AF_UNIX request/reply p50", "µs", false, MACHINE, 8.0);
        r
    }

    #[test]
    fn goals_are_judged_from_the_figures() {
        let g = goals(&sample());
        let get = |prefix: &str| g.iter().find(|g| g.goal.starts_with(prefix)).unwrap().clone();
        assert_eq!(get("single-client READ round trip").met, Some(true)); // 0.5×
        assert_eq!(get("single-client READ within").met, Some(true)); // 1.25×
        assert_eq!(get("64-client").met, Some(true)); // 2×
        assert_eq!(get("watch fan-out").met, Some(false)); // only 2× faster
        assert_eq!(get("memory per node").met, None);
    }

    #[test]
    fn the_table_shows_medians_spreads_and_ratios() {
        let mut r = sample();
        r.add("Single client round trip", "READ p50", "µs", false, "rust", 12.0);
        r.add("Single client round trip", "READ p50", "µs", false, "rust", 11.0);
        let t = table(&r);
        assert!(
            t.contains("| READ p50 | µs (lower is better) | 11.0 (10.0–12.0) | 20.0 | 30.0 | – | **0.55×** (vs c) |"),
            "{t}"
        );
    }

    #[test]
    fn every_reference_has_a_column_and_the_ratio_is_against_the_best_of_them() {
        let mut r = Results::default();
        for (d, v) in [("rust", 10.0), ("c", 20.0), ("c-4.20", 16.0), ("ocaml", 30.0), ("ocaml-4.20", 25.0)] {
            r.add("Single client round trip", "READ p50", "µs", false, d, v);
            r.add("READ throughput", "64 clients", "req/s", true, d, 1000.0 / v);
        }
        let t = table(&r);
        assert!(
            t.contains(
                "| figure | unit | rust (ours) | C 4.17 | C 4.20 | OCaml 4.17 | OCaml 4.20 | ours / best reference |"
            ),
            "{t}"
        );
        assert!(
            t.contains(
                "| READ p50 | µs (lower is better) | 10.0 | 20.0 | 16.0 | 30.0 | 25.0 | **0.62×** (vs c-4.20) |"
            ),
            "{t}"
        );
        assert!(
            t.contains(
                "| 64 clients | req/s (higher is better) | 100 | 50.0 | 62.5 | 33.3 | 40.0 | **1.60×** (vs c-4.20) |"
            ),
            "{t}"
        );
        let g = goals(&r);
        let read = g.iter().find(|g| g.goal.starts_with("single-client READ round trip")).unwrap();
        assert_eq!(read.measured, "0.62× c-4.20 (READ p50)");
    }

    #[test]
    fn a_daemon_measured_by_name_gets_its_own_column() {
        let mut r = Results::default();
        r.add("Single client round trip", "READ p50", "µs", false, "my-daemon", 7.0);
        r.add("Single client round trip", "floor: AF_UNIX request/reply p50", "µs", false, MACHINE, 3.0);
        let t = table(&r);
        assert!(t.contains("| figure | unit | machine floor | my-daemon |"), "{t}");
        assert!(t.contains("| READ p50 | µs (lower is better) | – | 7.00 |"), "{t}");
    }

    #[test]
    fn splicing_replaces_only_the_generated_part() {
        let doc = format!("intro\n{BEGIN}\nold\n{END}\noutro\n");
        assert_eq!(splice(&doc, "new\n"), format!("intro\n{BEGIN}\nnew\n{END}\noutro\n"));
        assert_eq!(splice("intro\n", "new\n"), format!("intro\n\n{BEGIN}\nnew\n{END}\n"));
    }
}
