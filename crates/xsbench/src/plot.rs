//! PNG plots of a run: latency and memory against store size, throughput
//! against clients, one line per daemon.

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

/// One series: a daemon's medians at each x.
type Series = (String, Vec<(f64, f64)>);

/// Collects, for each daemon, the median of figure `name(x)` at each x.
fn series(r: &Results, group: &str, xs: &[(f64, String)]) -> Vec<Series> {
    let mut out: Vec<Series> = Vec::new();
    for daemon in [crate::results::OURS, "c", "ocaml"] {
        let points: Vec<(f64, f64)> =
            xs.iter().filter_map(|(x, name)| Some((*x, r.figure(group, name)?.median(daemon)?))).collect();
        if !points.is_empty() {
            out.push((daemon.to_owned(), points));
        }
    }
    out
}

/// An axis label: `1k`, `100k`, `1M`, `64`.
fn label(x: f64) -> String {
    // Axis positions are small positive numbers.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    crate::workloads::store_size::human(x.round().max(0.0) as usize)
}

/// Draws a line chart, x on a log scale.
fn chart(path: &Path, title: &str, x_label: &str, y_label: &str, data: &[Series]) -> Result<()> {
    if data.is_empty() {
        bail!("nothing to plot for {title}");
    }
    let xs = data.iter().flat_map(|(_, p)| p.iter().map(|(x, _)| *x));
    let ys = data.iter().flat_map(|(_, p)| p.iter().map(|(_, y)| *y));
    let (x_lo, x_hi) = xs.fold((f64::INFINITY, 0.0f64), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let y_hi = ys.fold(0.0f64, f64::max);
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(&root);
    builder.caption(title, ("sans-serif", 24)).margin(18).x_label_area_size(48).y_label_area_size(80);
    let x_range = (x_lo / 1.5..x_hi * 1.5).log_scale();
    let mut c = builder.build_cartesian_2d(x_range, 0.0..y_hi * 1.15)?;
    {
        c.configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .x_label_formatter(&|x: &f64| label(*x))
            .label_style(("sans-serif", 16))
            .draw()?;
        for (daemon, points) in data {
            let col = colour(daemon);
            c.draw_series(LineSeries::new(points.iter().copied(), col.stroke_width(3)))?
                .label(daemon.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], col.stroke_width(3)));
            c.draw_series(points.iter().map(|p| Circle::new(*p, 5, col.filled())))?;
        }
        c.configure_series_labels()
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .label_font(("sans-serif", 18))
            .draw()?;
    }
    root.present()?;
    Ok(())
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
    let plots: [(&str, &str, &str, &str, Vec<Series>); 4] = [
        (
            "read-latency-vs-store-size.png",
            "READ round trip (p50) against store size",
            "nodes in the store",
            "µs",
            series(r, "Store size", &at("READ p50")),
        ),
        (
            "write-latency-vs-store-size.png",
            "WRITE round trip (p50) against store size",
            "nodes in the store",
            "µs",
            series(r, "Store size", &at("WRITE p50")),
        ),
        (
            "memory-per-node-vs-store-size.png",
            "Daemon memory (RSS growth) per node",
            "nodes in the store",
            "bytes per node",
            series(r, "Store size", &at("memory per node")),
        ),
        (
            "throughput-vs-clients.png",
            "READ throughput against clients",
            "clients",
            "requests per second",
            series(
                r,
                "READ throughput",
                &crate::workloads::throughput::CLIENTS.map(|n| (n as f64, format!("{n} clients"))),
            ),
        ),
    ];
    for (file, title, x, y, data) in plots {
        if data.is_empty() {
            continue;
        }
        chart(&dir.join(file), title, x, y, &data)?;
        made.push((file.to_owned(), title.to_owned()));
    }
    Ok(made)
}
