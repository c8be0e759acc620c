//! Median and spread of a few runs, and per-run ratios against a peer.

use serde::Serialize;

/// What several runs of one figure gave.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// How many runs gave a value.
    pub runs: usize,
}

/// Median (mean of the middle two for an even count), min and max; `None` without values.
/// Values that are not finite (a zero denominator upstream) are left out.
pub fn spread(values: &[f64]) -> Option<Spread> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    let median = if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    };
    Some(Spread {
        median,
        min: v[0],
        max: v[v.len() - 1],
        runs: v.len(),
    })
}

/// `ours[i] / peer[i]` for each run where both were measured: the ratio is taken within a run
/// (the two sides ran back to back), never between medians of different runs.
pub fn ratios(ours: &[Option<f64>], peer: &[Option<f64>]) -> Vec<f64> {
    ours.iter()
        .zip(peer)
        .filter_map(|pair| match pair {
            (Some(a), Some(b)) if *b != 0.0 => Some(a / b),
            _ => None,
        })
        .collect()
}

/// The values that were measured.
pub fn present(values: &[Option<f64>]) -> Vec<f64> {
    values.iter().flatten().copied().collect()
}

/// MB/s (10^6 bytes per second) from bytes and centiseconds; `None` for a zero time (too fast
/// for the guest's clock to see).
pub fn mb_per_s(bytes: u64, centiseconds: u64) -> Option<f64> {
    (centiseconds > 0).then(|| bytes as f64 / 1e6 / (centiseconds as f64 / 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let s = spread(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.runs), (2.0, 1.0, 3.0, 3));
        let s = spread(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert_eq!(spread(&[]), None);
        assert_eq!(spread(&[f64::INFINITY]), None);
        assert_eq!(spread(&[5.0]).unwrap().median, 5.0);
    }

    #[test]
    fn ratios_pair_runs_and_skip_gaps() {
        let ours = [Some(4.0), None, Some(9.0), Some(1.0)];
        let peer = [Some(2.0), Some(1.0), Some(3.0), Some(0.0)];
        assert_eq!(ratios(&ours, &peer), vec![2.0, 3.0]);
        assert_eq!(present(&ours), vec![4.0, 9.0, 1.0]);
    }

    #[test]
    fn throughput_from_centiseconds() {
        assert_eq!(mb_per_s(10_000_000, 100), Some(10.0));
        assert_eq!(mb_per_s(1, 0), None);
    }
}
