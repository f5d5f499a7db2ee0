//! Quantiles, ported from Prometheus 2.42 `promql/quantile.go`
//! (`bucketQuantile`, `coalesceBuckets`, `ensureMonotonic`, `quantile`).

use std::cmp::Ordering;

/// `histogram_quantile` over classic buckets `(le upper bound, cumulative
/// count)` of one series group, in any order (they are sorted here).
///
/// Port of `bucketQuantile`: NaN q gives NaN, q < 0 gives -Inf, q > 1
/// gives +Inf; the highest bucket must be +Inf, else NaN; duplicate `le`
/// values are merged by adding their counts; counts are forced monotonic;
/// fewer than 2 buckets or 0 observations give NaN. Interpolation is linear
/// within a bucket, from 0 for the first bucket if its bound is positive;
/// a quantile in the +Inf bucket returns the second-highest bound.
pub fn histogram_quantile(q: f64, buckets: &mut Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    // Go sorts with `<` only; this keeps the same order for all non-NaN
    // bounds (-0 == +0) and, being total, puts NaN bounds last.
    buckets.sort_by(|a, b| {
        a.0.partial_cmp(&b.0)
            .unwrap_or_else(|| a.0.is_nan().cmp(&b.0.is_nan()))
    });
    match buckets.last() {
        Some(&(le, _)) if le == f64::INFINITY => {}
        _ => return f64::NAN,
    }
    coalesce_buckets(buckets);
    ensure_monotonic(buckets);

    let n = buckets.len();
    if n < 2 {
        return f64::NAN;
    }
    let observations = buckets[n - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let b = go_search(n - 1, |i| buckets[i].1 >= rank);

    if b == n - 1 {
        return buckets[n - 2].0;
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return buckets[0].0;
    }
    let bucket_end = buckets[b].0;
    let mut count = buckets[b].1;
    let mut bucket_start = 0.0;
    if b > 0 {
        bucket_start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    bucket_start + (bucket_end - bucket_start) * (rank / count)
}

/// Port of `coalesceBuckets`: merges adjacent (sorted) equal bounds.
fn coalesce_buckets(buckets: &mut Vec<(f64, f64)>) {
    let Some(&first) = buckets.first() else {
        return;
    };
    let mut last = first;
    let mut i = 0;
    for j in 1..buckets.len() {
        let b = buckets[j];
        if b.0 == last.0 {
            last.1 += b.1;
        } else {
            buckets[i] = last;
            last = b;
            i += 1;
        }
    }
    buckets[i] = last;
    buckets.truncate(i + 1);
}

/// Port of `ensureMonotonic`: raises any count below an earlier one (which
/// happens with scrapes that are not atomic, or after `rate` jitter).
fn ensure_monotonic(buckets: &mut [(f64, f64)]) {
    let mut max = f64::NEG_INFINITY;
    for b in buckets {
        if b.1 > max {
            max = b.1;
        } else if b.1 < max {
            b.1 = max;
        }
    }
}

/// Go's `sort.Search`: smallest i in [0, n) with f(i) true, else n
/// (a binary search, so non-monotonic f, e.g. NaN counts, behaves as Go's).
fn go_search(n: usize, f: impl Fn(usize) -> bool) -> usize {
    let (mut i, mut j) = (0, n);
    while i < j {
        let h = i + (j - i) / 2;
        if !f(h) {
            i = h + 1;
        } else {
            j = h;
        }
    }
    i
}

/// The φ-quantile of `values` (sorted in place), as the `quantile`
/// aggregation and `quantile_over_time` compute it: empty or NaN q gives
/// NaN, q < 0 gives -Inf, q > 1 gives +Inf, otherwise linear interpolation
/// between the closest ranks at `q * (n - 1)`. NaN values sort first.
pub fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    // vectorByValueHeap.Less: NaN is less than everything.
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.partial_cmp(b).unwrap_or(Ordering::Equal),
    });

    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower_index = rank.floor().max(0.0);
    let upper_index = (n - 1.0).min(lower_index + 1.0);
    let weight = rank - rank.floor();
    values[lower_index as usize] * (1.0 - weight) + values[upper_index as usize] * weight
}

#[cfg(test)]
mod tests {
    use super::*;

    fn textbook() -> Vec<(f64, f64)> {
        // 100 observations: 10 <= 0.1, 40 <= 0.25, 70 <= 0.5, 90 <= 1.
        vec![
            (f64::INFINITY, 100.0),
            (0.5, 70.0),
            (0.1, 10.0),
            (1.0, 90.0),
            (0.25, 40.0),
        ]
    }

    #[test]
    fn histogram_quantile_textbook() {
        // rank 50: bucket (0.25, 0.5], 10 of its 30 -> 0.25 + 0.25/3.
        let r = histogram_quantile(0.5, &mut textbook());
        assert!((r - (0.25 + 0.25 / 3.0)).abs() < 1e-15);
        // rank 5 in the first bucket, interpolated from 0.
        assert!((histogram_quantile(0.05, &mut textbook()) - 0.05).abs() < 1e-15);
        // rank 95 falls in +Inf: the second-highest bound.
        assert_eq!(histogram_quantile(0.95, &mut textbook()), 1.0);
        assert_eq!(histogram_quantile(0.9, &mut textbook()), 1.0);
        assert_eq!(histogram_quantile(0.0, &mut textbook()), 0.0);
    }

    #[test]
    fn histogram_quantile_special_cases() {
        assert!(histogram_quantile(f64::NAN, &mut textbook()).is_nan());
        assert_eq!(histogram_quantile(-0.1, &mut textbook()), f64::NEG_INFINITY);
        assert_eq!(histogram_quantile(1.1, &mut textbook()), f64::INFINITY);
        assert!(histogram_quantile(0.5, &mut vec![]).is_nan());
        assert!(histogram_quantile(0.5, &mut vec![(1.0, 3.0), (2.0, 5.0)]).is_nan()); // no +Inf
        assert!(histogram_quantile(0.5, &mut vec![(f64::INFINITY, 10.0)]).is_nan());
        assert!(histogram_quantile(0.5, &mut vec![(1.0, 0.0), (f64::INFINITY, 0.0)]).is_nan());
        // Negative lowest bound: returned as is.
        assert_eq!(
            histogram_quantile(0.1, &mut vec![(-1.0, 5.0), (f64::INFINITY, 10.0)]),
            -1.0
        );
        // NaN bounds and counts must not panic.
        let mut b = vec![(f64::NAN, 1.0), (1.0, f64::NAN), (f64::INFINITY, 4.0)];
        let _ = histogram_quantile(0.5, &mut b);
    }

    #[test]
    fn histogram_quantile_coalesce_and_monotonic() {
        // Same bounds as Prometheus's le="1" and le="1.0": counts added,
        // so (1, 6), (+Inf, 10); rank 5 -> 5/6 (checked against 2.42).
        let mut b = vec![(f64::INFINITY, 10.0), (1.0, 4.0), (1.0, 2.0)];
        assert_eq!(histogram_quantile(0.5, &mut b), 0.8333333333333334);
        // Non-monotonic counts: (2, 3) is raised to 8 -> rank 5 in (0, 1].
        let mut b = vec![(1.0, 8.0), (2.0, 3.0), (f64::INFINITY, 10.0)];
        assert_eq!(histogram_quantile(0.5, &mut b), 0.625);
        // Checked against 2.42: buckets 1:4, 2:8, +Inf:10.
        let mut b = vec![(f64::INFINITY, 10.0), (1.0, 4.0), (2.0, 8.0)];
        assert_eq!(histogram_quantile(0.5, &mut b), 1.25);
        assert_eq!(histogram_quantile(1.0, &mut b), 2.0);
    }

    #[test]
    fn quantile_interpolation() {
        assert_eq!(quantile(0.5, &mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(quantile(0.25, &mut [4.0, 1.0, 3.0, 2.0]), 1.75);
        assert_eq!(quantile(0.0, &mut [4.0, 1.0, 3.0]), 1.0);
        assert_eq!(quantile(1.0, &mut [4.0, 1.0, 3.0]), 4.0);
        assert_eq!(quantile(0.9, &mut [7.0]), 7.0);
        assert!(quantile(0.5, &mut []).is_nan());
        assert!(quantile(f64::NAN, &mut [1.0]).is_nan());
        assert_eq!(quantile(-1.0, &mut [1.0]), f64::NEG_INFINITY);
        assert_eq!(quantile(2.0, &mut [1.0]), f64::INFINITY);
        // NaN sorts first: [NaN, 1, 2] -> median 1.
        assert_eq!(quantile(0.5, &mut [2.0, f64::NAN, 1.0]), 1.0);
    }
}
