//! Merging the same series from several replicas, as Thanos's querier
//! does: follow one replica, and switch to another only across a gap, so
//! two scrapers' interleaved samples do not double the sample rate.

/// Before a replica's sample interval is known, a switch needs this gap (ms).
const INITIAL_PENALTY: i64 = 5000;

/// One series from the samples of each replica (each sorted by time);
/// on equal timestamps the earlier replica wins, as in Thanos.
pub fn merge_replicas(replicas: Vec<Vec<(i64, f64)>>) -> Vec<(i64, f64)> {
    let mut replicas = replicas.into_iter();
    let Some(mut merged) = replicas.next() else {
        return Vec::new();
    };
    for next in replicas {
        merged = merge_two(&merged, &next);
    }
    merged
}

/// Thanos's `dedupSeriesIterator`: take the earlier sample of the two;
/// the other replica must then advance past a penalty of twice the last
/// step before it can be chosen.
fn merge_two(a: &[(i64, f64)], b: &[(i64, f64)]) -> Vec<(i64, f64)> {
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let (mut ia, mut ib) = (0usize, 0usize);
    let (mut pen_a, mut pen_b) = (0i64, 0i64);
    let mut last: Option<i64> = None;
    loop {
        let floor = |pen: i64| last.map_or(i64::MIN, |t| t.saturating_add(1).saturating_add(pen));
        let fa = floor(pen_a);
        while ia < a.len() && a[ia].0 < fa {
            ia += 1;
        }
        let fb = floor(pen_b);
        while ib < b.len() && b[ib].0 < fb {
            ib += 1;
        }
        let (a_ok, b_ok) = (ia < a.len(), ib < b.len());
        let take_a = match (a_ok, b_ok) {
            (false, false) => return out,
            (true, false) => true,
            (false, true) => false,
            (true, true) => a[ia].0 <= b[ib].0,
        };
        let (t, v) = if take_a { a[ia] } else { b[ib] };
        let penalty = last.map_or(INITIAL_PENALTY, |l| 2 * (t - l));
        if take_a {
            pen_b = if b_ok && a_ok { penalty } else { 0 };
            pen_a = 0;
        } else {
            pen_a = if a_ok && b_ok { penalty } else { 0 };
            pen_b = 0;
        }
        last = Some(t);
        out.push((t, v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every(start: i64, step: i64, n: usize, v: f64) -> Vec<(i64, f64)> {
        (0..n as i64).map(|i| (start + i * step, v)).collect()
    }

    #[test]
    fn identical_replicas_give_one_copy() {
        let a = every(0, 15_000, 10, 1.0);
        assert_eq!(merge_replicas(vec![a.clone(), a.clone()]), a);
        assert_eq!(merge_replicas(vec![a.clone()]), a);
        assert!(merge_replicas(vec![]).is_empty());
    }

    #[test]
    fn offset_replicas_keep_the_scrape_rate() {
        // Two scrapers 15 s apart in cadence, 5 s apart in phase.
        let a = every(0, 15_000, 20, 1.0);
        let b = every(5_000, 15_000, 20, 2.0);
        let merged = merge_replicas(vec![a.clone(), b]);
        assert_eq!(merged, a, "one replica followed throughout");
    }

    #[test]
    fn a_gap_in_one_replica_is_filled_from_the_other() {
        let mut a = every(0, 15_000, 10, 1.0);
        a.extend(every(300_000, 15_000, 10, 1.0));
        let b = every(5_000, 15_000, 30, 2.0);
        let merged = merge_replicas(vec![a, b]);
        // The gap is covered by the other replica: the switch costs at most
        // the penalty (twice the last step) plus a step, and after it the
        // samples keep the scrape interval.
        let steps: Vec<i64> = merged.windows(2).map(|w| w[1].0 - w[0].0).collect();
        assert!(steps.iter().all(|s| *s <= 45_000), "{steps:?}");
        assert_eq!(
            steps.iter().filter(|s| **s != 15_000).count(),
            1,
            "{steps:?}"
        );
        assert!(merged.iter().any(|(_, v)| *v == 2.0));
        assert!(merged.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
