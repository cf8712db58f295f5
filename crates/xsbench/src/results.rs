//! What a benchmark run measured, as saved to and read from JSON.
//!
//! A figure is one quantity (say "READ round trip, p50") measured on every
//! daemon several times: one value per repetition per daemon. Reports take
//! the median over repetitions and show the spread (min to max), and the
//! ratio of our median to the best reference's median.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The daemon that the ratios are about.
pub const OURS: &str = "rust";

/// Every measured figure of one run, and how it was run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Results {
    /// CPU model, cores and memory.
    pub machine: String,
    /// When the run started (UTC, ISO 8601).
    pub date: String,
    /// The command line that produced it.
    pub command: String,
    /// Which daemons took part, and notes (missing peers, quotas raised).
    pub daemons: Vec<DaemonInfo>,
    /// The figures, in the order they were first measured.
    pub figures: Vec<Figure>,
    /// Workloads that failed, and why.
    pub notes: Vec<String>,
    /// What the workloads saw a daemon do that the protocol does not allow
    /// (measured anyway), once each.
    #[serde(default)]
    pub observations: Vec<String>,
    /// What bounds the number of hosted domains on the machine (its
    /// limits, what each domain costs, a count lowered to fit), measured
    /// by the many-domains figures.
    #[serde(default)]
    pub limits: Vec<String>,
}

/// A daemon in the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonInfo {
    /// `rust`, `c`, `c-4.20`, `ocaml` or `ocaml-4.20` (`c` and `ocaml` are
    /// Xen 4.17's).
    pub name: String,
    /// What ran (binary and options), or why it did not.
    pub description: String,
    /// Whether it ran.
    pub present: bool,
}

/// One quantity, on every daemon, over the repetitions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figure {
    /// Workload group (a table section).
    pub group: String,
    /// What is measured.
    pub name: String,
    /// Unit of the values.
    pub unit: String,
    /// Whether a larger value is better (throughput) or worse (latency).
    pub higher_is_better: bool,
    /// Values per daemon, one per repetition.
    pub values: BTreeMap<String, Vec<f64>>,
}

impl Figure {
    /// Median of one daemon's values.
    pub fn median(&self, daemon: &str) -> Option<f64> {
        let mut v = self.values.get(daemon)?.clone();
        (!v.is_empty()).then(|| crate::stats::median(&mut v))
    }

    /// Smallest and largest of one daemon's values.
    pub fn spread(&self, daemon: &str) -> Option<(f64, f64)> {
        let v = self.values.get(daemon)?;
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (!v.is_empty()).then_some((lo, hi))
    }

    /// The best reference (not [`OURS`]) by median, and that median.
    pub fn best_reference(&self) -> Option<(&str, f64)> {
        self.values.keys().filter(|d| *d != OURS).filter_map(|d| Some((d.as_str(), self.median(d)?))).reduce(|a, b| {
            let b_better = if self.higher_is_better { b.1 > a.1 } else { b.1 < a.1 };
            if b_better {
                b
            } else {
                a
            }
        })
    }

    /// Our median divided by the best reference's median.
    pub fn ratio(&self) -> Option<f64> {
        let ours = self.median(OURS)?;
        let (_, best) = self.best_reference()?;
        (best != 0.0).then(|| ours / best)
    }
}

impl Results {
    /// Adds one value of figure `group`/`name` for `daemon`.
    pub fn add(&mut self, group: &str, name: &str, unit: &str, higher_is_better: bool, daemon: &str, value: f64) {
        let index = match self.figures.iter().position(|f| f.group == group && f.name == name) {
            Some(i) => i,
            None => {
                self.figures.push(Figure {
                    group: group.to_owned(),
                    name: name.to_owned(),
                    unit: unit.to_owned(),
                    higher_is_better,
                    values: BTreeMap::new(),
                });
                self.figures.len() - 1
            }
        };
        self.figures[index].values.entry(daemon.to_owned()).or_default().push(value);
    }

    /// Records an observation, once.
    pub fn observe(&mut self, text: String) {
        if !self.observations.contains(&text) {
            self.observations.push(text);
        }
    }

    /// The figure `group`/`name`.
    pub fn figure(&self, group: &str, name: &str) -> Option<&Figure> {
        self.figures.iter().find(|f| f.group == group && f.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_is_against_the_best_reference_in_the_right_direction() {
        let mut r = Results::default();
        for (d, v) in [("rust", 10.0), ("c", 20.0), ("ocaml", 40.0), ("rust", 12.0), ("rust", 11.0)] {
            r.add("g", "latency", "us", false, d, v);
            r.add("g", "throughput", "ops/s", true, d, v);
        }
        let lat = r.figure("g", "latency").unwrap();
        assert_eq!(lat.median("rust"), Some(11.0));
        assert_eq!(lat.spread("rust"), Some((10.0, 12.0)));
        assert_eq!(lat.best_reference(), Some(("c", 20.0)));
        assert_eq!(lat.ratio(), Some(11.0 / 20.0));
        let thr = r.figure("g", "throughput").unwrap();
        assert_eq!(thr.best_reference(), Some(("ocaml", 40.0)));
        assert_eq!(thr.ratio(), Some(11.0 / 40.0));
    }

    #[test]
    fn the_best_reference_is_the_best_of_all_four() {
        let mut r = Results::default();
        for (d, v) in [("rust", 10.0), ("c", 20.0), ("c-4.20", 18.0), ("ocaml", 40.0), ("ocaml-4.20", 45.0)] {
            r.add("g", "latency", "us", false, d, v);
            r.add("g", "throughput", "ops/s", true, d, v);
        }
        assert_eq!(r.figure("g", "latency").unwrap().best_reference(), Some(("c-4.20", 18.0)));
        assert_eq!(r.figure("g", "throughput").unwrap().best_reference(), Some(("ocaml-4.20", 45.0)));
    }

    #[test]
    fn no_reference_means_no_ratio() {
        let mut r = Results::default();
        r.add("g", "x", "us", false, "rust", 1.0);
        assert_eq!(r.figure("g", "x").unwrap().ratio(), None);
    }
}
