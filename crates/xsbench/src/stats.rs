//! Medians, percentiles and spreads of samples.

use std::time::{Duration, Instant};

/// Percentile `p` (0..=100) of `samples`, which it sorts.
pub fn percentile(samples: &mut [f64], p: f64) -> f64 {
    assert!(!samples.is_empty(), "no samples");
    samples.sort_unstable_by(f64::total_cmp);
    let rank = ((p / 100.0) * (samples.len() - 1) as f64).round();
    // The rank is within 0..len by construction.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    samples[rank as usize]
}

/// The median of `samples`.
pub fn median(samples: &mut [f64]) -> f64 {
    percentile(samples, 50.0)
}

/// Microseconds in a duration, as a float.
pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Times `op` `iters` times after `warmup` untimed calls; returns the
/// median and p99 in microseconds.
pub fn time_each(
    warmup: usize,
    iters: usize,
    mut op: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<(f64, f64)> {
    for _ in 0..warmup {
        op()?;
    }
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        op()?;
        times.push(micros(t.elapsed()));
    }
    Ok((percentile(&mut times, 50.0), percentile(&mut times, 99.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_ranked_sample() {
        let mut s: Vec<f64> = (1..=101).rev().map(f64::from).collect();
        assert_eq!(median(&mut s), 51.0);
        assert_eq!(percentile(&mut s, 99.0), 100.0);
        assert_eq!(percentile(&mut s, 0.0), 1.0);
        assert_eq!(percentile(&mut s, 100.0), 101.0);
        assert_eq!(median(&mut [3.0]), 3.0);
    }
}
