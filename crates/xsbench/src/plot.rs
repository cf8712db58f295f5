//! PNG plots of a run: latency and memory against store size, throughput
//! against clients, one line per daemon (and our per-domain cost of each
//! step against the number of hosted domains, one line per step) through its medians, a bar from
//! the smallest to the largest repetition, a logarithmic y axis when one
//! outlier would squash the rest, readable ticks (`350k`), and the legend
//! beside the plot.

use std::path::Path;

use anyhow::{bail, Context, Result};
use plotters::prelude::*;

use crate::results::Results;

/// The font the labels are drawn with (`fonts-dejavu-core`).
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Line colour of each daemon.
fn colour(daemon: &str) -> RGBColor {
    match daemon {
        crate::results::OURS => RGBColor(200, 60, 20),
        "c" => RGBColor(30, 90, 200),
        "c-4.20" => RGBColor(120, 60, 190),
        "ocaml-4.20" => RGBColor(160, 130, 20),
        // The many-domains plot's lines are steps, not daemons.
        "create + introduce" => RGBColor(200, 60, 20),
        "device handshake" => RGBColor(30, 90, 200),
        "destroy + release" => RGBColor(120, 60, 190),
        _ => RGBColor(40, 150, 60),
    }
}

fn register_font() -> Result<()> {
    let bytes = std::fs::read(FONT).with_context(|| format!("{FONT} (apt-get install fonts-dejavu-core)"))?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow::anyhow!("{FONT} is not a usable font"))?;
    Ok(())
}

/// One point: x, and the daemon's median, smallest and largest value
/// over the repetitions there.
type Point = (f64, f64, f64, f64);

/// One series: a daemon's points.
type Series = (String, Vec<Point>);

/// Collects, for each daemon, the median and spread of figure `name(x)`
/// at each x.
fn series(r: &Results, group: &str, xs: &[(f64, String)]) -> Vec<Series> {
    let mut out: Vec<Series> = Vec::new();
    for daemon in crate::daemons::Kind::ALL.map(crate::daemons::Kind::name) {
        let points: Vec<Point> = xs
            .iter()
            .filter_map(|(x, name)| {
                let figure = r.figure(group, name)?;
                let median = figure.median(daemon)?;
                let (lo, hi) = figure.spread(daemon).unwrap_or((median, median));
                Some((*x, median, lo, hi))
            })
            .collect();
        if !points.is_empty() {
            out.push((daemon.to_owned(), points));
        }
    }
    out
}

/// The steps of the many-domains workload (`hosted.rs`), one line each.
const DOMAIN_STEPS: [&str; 3] = ["create + introduce", "device handshake", "destroy + release"];

/// Our per-domain cost of each step against the number of domains: the
/// counts are the run's own (the largest depends on the machine's
/// descriptor limit), read back from the figures' names
/// (`create + introduce, 1000 domains: per domain`).
fn domain_steps(r: &Results) -> Vec<Series> {
    let mut out: Vec<Series> = Vec::new();
    for step in DOMAIN_STEPS {
        let prefix = format!("{step}, ");
        let mut points: Vec<Point> = r
            .figures
            .iter()
            .filter(|f| f.group == crate::hosted::GROUP)
            .filter_map(|f| {
                let n: usize = f.name.strip_prefix(&prefix)?.strip_suffix(" domains: per domain")?.parse().ok()?;
                let median = f.median(crate::results::OURS)?;
                let (lo, hi) = f.spread(crate::results::OURS).unwrap_or((median, median));
                Some((n as f64, median, lo, hi))
            })
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        if !points.is_empty() {
            out.push((step.to_owned(), points));
        }
    }
    out
}

/// How a daemon is named in the legend.
fn title(daemon: &str) -> &str {
    match daemon {
        crate::results::OURS => "ours (Rust)",
        // Steps, shortened to fit the legend (the title names them whole).
        "create + introduce" => "create",
        "device handshake" => "handshake",
        "destroy + release" => "destroy",
        other => crate::daemons::Kind::ALL.iter().find(|k| k.name() == other).map_or(other, |k| k.title()),
    }
}

/// An x axis label: `1k`, `100k`, `1M`, `64`.
fn label(x: f64) -> String {
    // Axis positions are small positive numbers.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    crate::workloads::store_size::human(x.round().max(0.0) as usize)
}

/// A y axis label people read: `350k`, `1.5M`, `2000`, `12`, `0.5`.
fn tick(y: f64) -> String {
    let a = y.abs();
    if a >= 1e6 {
        format!("{}M", trim(y / 1e6))
    } else if a >= 1e4 {
        format!("{}k", trim(y / 1e3))
    } else if a >= 10.0 || a == 0.0 {
        format!("{y:.0}")
    } else {
        trim(y)
    }
}

/// One decimal at most, none when it is 0.
fn trim(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map_or(s.clone(), str::to_owned)
}

/// Whether the values span so much that a linear axis would squash all
/// but the largest (one small-store outlier, say): then y is logarithmic.
fn wants_log_y(lo: f64, hi: f64) -> bool {
    lo > 0.0 && hi / lo > 10.0
}

/// Draws the series (lines, points, and a bar from the smallest to the
/// largest value where the repetitions differ) on a chart of either axis
/// kind.
macro_rules! draw_series {
    ($chart:expr, $data:expr) => {
        for (daemon, points) in $data {
            let col = colour(daemon);
            $chart.draw_series(LineSeries::new(points.iter().map(|p| (p.0, p.1)), col.stroke_width(3)))?;
            $chart.draw_series(points.iter().map(|p| Circle::new((p.0, p.1), 5, col.filled())))?;
            $chart.draw_series(
                points
                    .iter()
                    .filter(|p| p.3 > p.2)
                    .map(|p| ErrorBar::new_vertical(p.0, p.2, p.1, p.3, col.stroke_width(2), 12)),
            )?;
        }
    };
}

/// Draws a line chart, x on a log scale, with the legend beside the plot
/// (never over the data). `log_y_allowed`: y may go logarithmic when the
/// values span too much (store-size plots, where small stores are
/// outliers; not throughput, which rises with clients by nature).
fn chart(path: &Path, title_text: &str, axes: (&str, &str), log_y_allowed: bool, data: &[Series]) -> Result<()> {
    let (x_label, y_label) = axes;
    if data.is_empty() {
        bail!("nothing to plot for {title_text}");
    }
    let points = || data.iter().flat_map(|(_, p)| p.iter());
    let (x_lo, x_hi) = points().fold((f64::INFINITY, 0.0f64), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
    let (y_lo, y_hi) = points().fold((f64::INFINITY, 0.0f64), |(lo, hi), p| (lo.min(p.2), hi.max(p.3)));
    let root = BitMapBackend::new(path, (1000, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let (plot, legend) = root.split_horizontally(820);
    let mut builder = ChartBuilder::on(&plot);
    builder.caption(title_text, ("sans-serif", 24)).margin(18).x_label_area_size(48).y_label_area_size(80);
    let x_range = (x_lo / 1.5..x_hi * 1.5).log_scale();
    let log_y = log_y_allowed && wants_log_y(y_lo, y_hi);
    let y_desc = if log_y { format!("{y_label} (log scale)") } else { y_label.to_owned() };
    if log_y {
        let mut c = builder.build_cartesian_2d(x_range, (y_lo / 1.5..y_hi * 1.5).log_scale())?;
        c.configure_mesh()
            .x_desc(x_label)
            .y_desc(y_desc)
            .y_labels(12)
            .x_label_formatter(&|x: &f64| label(*x))
            .y_label_formatter(&|y: &f64| tick(*y))
            .label_style(("sans-serif", 16))
            .draw()?;
        draw_series!(c, data);
    } else {
        let mut c = builder.build_cartesian_2d(x_range, 0.0..y_hi * 1.15)?;
        c.configure_mesh()
            .x_desc(x_label)
            .y_desc(y_desc)
            .x_label_formatter(&|x: &f64| label(*x))
            .y_label_formatter(&|y: &f64| tick(*y))
            .label_style(("sans-serif", 16))
            .draw()?;
        draw_series!(c, data);
    }
    let mut y = 70;
    for (daemon, _) in data {
        let col = colour(daemon);
        legend.draw(&PathElement::new(vec![(8, y), (40, y)], col.stroke_width(3)))?;
        legend.draw(&Circle::new((24, y), 5, col.filled()))?;
        legend.draw(&Text::new(title(daemon).to_owned(), (48, y - 10), ("sans-serif", 18)))?;
        y += 32;
    }
    legend.draw(&Text::new("bars: min–max".to_owned(), (8, y + 4), ("sans-serif", 15)))?;
    legend.draw(&Text::new("of the repetitions".to_owned(), (8, y + 22), ("sans-serif", 15)))?;
    root.present()?;
    Ok(())
}

/// One plot to draw.
struct Plot {
    file: &'static str,
    title: &'static str,
    x: &'static str,
    y: &'static str,
    log_y_allowed: bool,
    data: Vec<Series>,
}

/// Writes the PNGs into `dir`; returns (file name, title) of each.
pub fn all(r: &Results, dir: &Path) -> Result<Vec<(String, String)>> {
    register_font()?;
    std::fs::create_dir_all(dir)?;
    let mut made = Vec::new();
    let sizes: Vec<(f64, String)> = [1_000usize, 10_000, 100_000, 1_000_000]
        .iter()
        .map(|n| (*n as f64, crate::workloads::store_size::human(*n)))
        .collect();
    let at =
        |prefix: &str| -> Vec<(f64, String)> { sizes.iter().map(|(x, l)| (*x, format!("{prefix} at {l}"))).collect() };
    let plots = [
        Plot {
            file: "read-latency-vs-store-size.png",
            title: "READ round trip (p50) against store size",
            x: "nodes in the store",
            y: "µs",
            log_y_allowed: true,
            data: series(r, "Store size", &at("READ p50")),
        },
        Plot {
            file: "write-latency-vs-store-size.png",
            title: "WRITE round trip (p50) against store size",
            x: "nodes in the store",
            y: "µs",
            log_y_allowed: true,
            data: series(r, "Store size", &at("WRITE p50")),
        },
        Plot {
            file: "memory-per-node-vs-store-size.png",
            title: "Daemon memory (RSS growth) per node",
            x: "nodes in the store",
            y: "bytes per node",
            log_y_allowed: true,
            data: series(r, "Store size", &at("memory per node")),
        },
        Plot {
            file: "throughput-vs-clients.png",
            title: "READ throughput against clients",
            x: "clients",
            y: "requests per second",
            log_y_allowed: false,
            data: series(
                r,
                "READ throughput",
                &crate::workloads::throughput::CLIENTS.map(|n| (n as f64, format!("{n} clients"))),
            ),
        },
        Plot {
            file: "per-domain-cost-vs-domains.png",
            title: "Ours, per hosted domain: create + introduce, handshake, destroy",
            x: "domains up at once",
            y: "µs per domain",
            log_y_allowed: false,
            data: domain_steps(r),
        },
    ];
    for p in plots {
        if p.data.is_empty() {
            continue;
        }
        chart(&dir.join(p.file), p.title, (p.x, p.y), p.log_y_allowed, &p.data)?;
        made.push((p.file.to_owned(), p.title.to_owned()));
    }
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_read_like_numbers_people_write() {
        assert_eq!(tick(350_000.0), "350k");
        assert_eq!(tick(1_500_000.0), "1.5M");
        assert_eq!(tick(2000.0), "2000");
        assert_eq!(tick(12.0), "12");
        assert_eq!(tick(0.5), "0.5");
        assert_eq!(tick(0.0), "0");
    }

    #[test]
    fn an_outlier_makes_the_y_axis_logarithmic() {
        assert!(wants_log_y(120.0, 2130.0));
        assert!(!wants_log_y(100.0, 300.0));
        assert!(!wants_log_y(0.0, 300.0));
    }

    #[test]
    fn the_domain_plot_has_a_line_per_step_in_domain_order() {
        let mut r = Results::default();
        for (n, cost) in [(1000, 3.0), (10, 1.0), (3700, 4.0)] {
            r.add(
                crate::hosted::GROUP,
                &format!("destroy + release, {n} domains: per domain"),
                "µs",
                false,
                "rust",
                cost,
            );
        }
        r.add(crate::hosted::GROUP, "create + introduce, 10 domains: per domain", "µs", false, "rust", 7.0);
        r.add(crate::hosted::GROUP, "READ over a guest's ring p50", "µs", false, "rust", 9.0);
        let lines = domain_steps(&r);
        let names: Vec<&str> = lines.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(names, ["create + introduce", "destroy + release"]);
        let xs: Vec<f64> = lines[1].1.iter().map(|p| p.0).collect();
        assert_eq!(xs, [10.0, 1000.0, 3700.0]);
        assert_eq!(lines[1].1[2].1, 4.0);
    }
}
