//! Range-vector functions, ported from Prometheus 2.42 `promql/functions.go`.
//!
//! The caller selects one series' samples for the window: in 2.42 that is
//! every non-stale sample with `range_start_ms <= t <= range_end_ms` (both
//! ends inclusive; 3.x made the start exclusive), oldest first. Prometheus
//! never calls these with an empty window; here that yields `None`.

use super::histogram::quantile;
use super::{kahan_sum_inc, FunctionError};

/// One sample: (timestamp in ms, value).
pub type Sample = (i64, f64);

const RANGE_FUNCTIONS: &[&str] = &[
    "avg_over_time",
    "changes",
    "count_over_time",
    "delta",
    "deriv",
    "holt_winters",
    "idelta",
    "increase",
    "irate",
    "last_over_time",
    "max_over_time",
    "min_over_time",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rate",
    "resets",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
];

/// Whether `eval_range` implements `name` (`absent_over_time` is the
/// caller's: it depends on whether any series matched at all).
pub fn is_range_function(name: &str) -> bool {
    RANGE_FUNCTIONS.contains(&name)
}

/// Argument checks Prometheus makes inside the function (it panics, which
/// fails the whole query). Only `holt_winters` has any; as in Go they run
/// only when the function is called, i.e. for a series with samples in the
/// window. NaN factors pass, as they do in Go.
pub fn check_range_args(name: &str, args: &[f64]) -> Result<(), FunctionError> {
    if name == "holt_winters" {
        if let (Some(&sf), Some(&tf)) = (args.first(), args.get(1)) {
            if sf <= 0.0 || sf >= 1.0 {
                return Err(FunctionError::InvalidSmoothingFactor(sf));
            }
            if tf <= 0.0 || tf >= 1.0 {
                return Err(FunctionError::InvalidTrendFactor(tf));
            }
        }
    }
    Ok(())
}

/// Evaluates range function `name` over one series' window. `args` are the
/// scalar arguments in call order without the range vector. `None` means
/// Prometheus emits no sample (too few samples, unknown name, missing or
/// invalid arguments: check `check_range_args` first to report the error).
pub fn eval_range(
    name: &str,
    samples: &[Sample],
    range_start_ms: i64,
    range_end_ms: i64,
    args: &[f64],
) -> Option<f64> {
    eval_range_at(
        name,
        samples,
        range_start_ms,
        range_end_ms,
        range_end_ms,
        args,
    )
}

/// `eval_range` with the step's evaluation time given separately; they
/// differ under `offset` (`range_end_ms = eval_ms - offset`). Only
/// `predict_linear` uses it: 2.42 anchors its intercept at `enh.Ts`.
pub fn eval_range_at(
    name: &str,
    samples: &[Sample],
    range_start_ms: i64,
    range_end_ms: i64,
    eval_ms: i64,
    args: &[f64],
) -> Option<f64> {
    let &(first_t, first) = samples.first()?;
    let &(_, last) = samples.last()?;
    let values = || samples.iter().map(|s| s.1);
    let pairs = || samples.windows(2).map(|w| (w[0].1, w[1].1));
    let v = match name {
        "rate" => return extrapolated_rate(samples, range_start_ms, range_end_ms, true, true),
        "increase" => return extrapolated_rate(samples, range_start_ms, range_end_ms, true, false),
        "delta" => return extrapolated_rate(samples, range_start_ms, range_end_ms, false, false),
        "irate" => return instant_value(samples, true),
        "idelta" => return instant_value(samples, false),
        "deriv" if samples.len() >= 2 => {
            // funcDeriv: intercept at the first sample, for precision.
            linear_regression(samples, first_t).0
        }
        "predict_linear" if samples.len() >= 2 => {
            let duration = *args.first()?;
            let (slope, intercept) = linear_regression(samples, eval_ms);
            slope * duration + intercept
        }
        "resets" => pairs().filter(|&(p, c)| c < p).count() as f64,
        "changes" => pairs()
            .filter(|&(p, c)| c != p && !(c.is_nan() && p.is_nan()))
            .count() as f64,
        "avg_over_time" => avg_over_time(values()),
        "min_over_time" => values().fold(first, |m, v| if v < m || m.is_nan() { v } else { m }),
        "max_over_time" => values().fold(first, |m, v| if v > m || m.is_nan() { v } else { m }),
        "sum_over_time" => sum_over_time(values()),
        "count_over_time" => samples.len() as f64,
        "quantile_over_time" => quantile(*args.first()?, &mut values().collect::<Vec<_>>()),
        "stddev_over_time" => variance(values()).sqrt(),
        "stdvar_over_time" => variance(values()),
        "last_over_time" => last,
        "present_over_time" => 1.0,
        "holt_winters" => return holt_winters(samples, args),
        _ => return None,
    };
    Some(v)
}

/// Port of `extrapolatedRate` (rate, increase, delta) for float samples.
fn extrapolated_rate(
    samples: &[Sample],
    range_start: i64,
    range_end: i64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    let [(first_t, first_v), .., (last_t, last_v)] = *samples else {
        return None; // fewer than two samples
    };
    let mut result = last_v - first_v;
    if is_counter {
        // A drop is a counter reset: add back the value before it.
        for w in samples.windows(2) {
            if w[1].1 < w[0].1 {
                result += w[0].1;
            }
        }
    }

    let mut duration_to_start = first_t.wrapping_sub(range_start) as f64 / 1000.0;
    let duration_to_end = range_end.wrapping_sub(last_t) as f64 / 1000.0;
    let sampled_interval = last_t.wrapping_sub(first_t) as f64 / 1000.0;
    let average_duration_between_samples = sampled_interval / (samples.len() - 1) as f64;

    if is_counter && result > 0.0 && first_v >= 0.0 {
        // Counters cannot go below zero: don't extrapolate past the point
        // where the line through the samples would reach zero.
        let duration_to_zero = sampled_interval * (first_v / result);
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }

    // Extrapolate to a boundary only if it is within 110% of the average
    // sample spacing; otherwise assume the series starts/ends half a
    // spacing beyond its first/last sample.
    let extrapolation_threshold = average_duration_between_samples * 1.1;
    let mut extrapolate_to_interval = sampled_interval;
    if duration_to_start < extrapolation_threshold {
        extrapolate_to_interval += duration_to_start;
    } else {
        extrapolate_to_interval += average_duration_between_samples / 2.0;
    }
    if duration_to_end < extrapolation_threshold {
        extrapolate_to_interval += duration_to_end;
    } else {
        extrapolate_to_interval += average_duration_between_samples / 2.0;
    }
    let mut factor = extrapolate_to_interval / sampled_interval;
    if is_rate {
        factor /= duration_seconds(range_end.wrapping_sub(range_start));
    }
    Some(result * factor)
}

/// Go's `time.Duration.Seconds()` for a whole number of milliseconds
/// (whole seconds and the fraction are converted separately).
fn duration_seconds(ms: i64) -> f64 {
    (ms / 1000) as f64 + ((ms % 1000) * 1_000_000) as f64 / 1e9
}

/// Port of `instantValue` (irate, idelta): the last two samples only.
fn instant_value(samples: &[Sample], is_rate: bool) -> Option<f64> {
    let [.., (prev_t, prev_v), (last_t, last_v)] = *samples else {
        return None;
    };
    let mut result = if is_rate && last_v < prev_v {
        last_v // counter reset
    } else {
        last_v - prev_v
    };
    let sampled_interval = last_t.wrapping_sub(prev_t);
    if sampled_interval == 0 {
        return None;
    }
    if is_rate {
        result /= sampled_interval as f64 / 1000.0;
    }
    Some(result)
}

/// Port of `linearRegression`: least squares with Kahan-compensated sums,
/// x in seconds relative to `intercept_time`. Returns (slope, intercept).
fn linear_regression(samples: &[Sample], intercept_time: i64) -> (f64, f64) {
    let init_y = samples.first().map_or(f64::NAN, |s| s.1);
    let mut const_y = true;
    let (mut n, mut sum_x, mut c_x, mut sum_y, mut c_y) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut sum_xy, mut c_xy, mut sum_x2, mut c_x2) = (0.0, 0.0, 0.0, 0.0);
    for (i, &(t, y)) in samples.iter().enumerate() {
        if const_y && i > 0 && y != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = t.wrapping_sub(intercept_time) as f64 / 1e3;
        (sum_x, c_x) = kahan_sum_inc(x, sum_x, c_x);
        (sum_y, c_y) = kahan_sum_inc(y, sum_y, c_y);
        (sum_xy, c_xy) = kahan_sum_inc(x * y, sum_xy, c_xy);
        (sum_x2, c_x2) = kahan_sum_inc(x * x, sum_x2, c_x2);
    }
    if const_y {
        // Exact answer for a flat series, free of rounding noise.
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    sum_x += c_x;
    sum_y += c_y;
    sum_xy += c_xy;
    sum_x2 += c_x2;

    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

/// Port of `funcAvgOverTime`: incremental mean with Kahan compensation,
/// special-casing infinities so Inf - Inf does not turn the mean into NaN.
fn avg_over_time(values: impl Iterator<Item = f64>) -> f64 {
    let (mut mean, mut count, mut c) = (0.0_f64, 0.0, 0.0);
    for v in values {
        count += 1.0;
        if mean.is_infinite() {
            if v.is_infinite() && (mean > 0.0) == (v > 0.0) {
                continue; // same-signed infinity: mean is already right
            }
            if !v.is_infinite() && !v.is_nan() {
                continue; // finite values cannot move an infinite mean
            }
        }
        (mean, c) = kahan_sum_inc(v / count - mean / count, mean, c);
    }
    if mean.is_infinite() {
        return mean;
    }
    mean + c
}

/// Port of `funcSumOverTime` (Kahan summation).
fn sum_over_time(values: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut c) = (0.0_f64, 0.0);
    for v in values {
        (sum, c) = kahan_sum_inc(v, sum, c);
    }
    if sum.is_infinite() {
        return sum;
    }
    sum + c
}

/// Population variance as `funcStdvarOverTime` computes it (Welford with
/// Kahan-compensated mean and sum of squares).
fn variance(values: impl Iterator<Item = f64>) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for v in values {
        count += 1.0;
        let delta = v - (mean + c_mean);
        (mean, c_mean) = kahan_sum_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_sum_inc(delta * (v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

/// Port of `funcHoltWinters` (double exponential smoothing).
fn holt_winters(samples: &[Sample], args: &[f64]) -> Option<f64> {
    let (&sf, &tf) = (args.first()?, args.get(1)?);
    if check_range_args("holt_winters", args).is_err() || samples.len() < 2 {
        return None;
    }
    let (mut s0, mut s1) = (0.0, samples[0].1);
    let mut b = samples[1].1 - samples[0].1;
    for (i, &(_, v)) in samples.iter().enumerate().skip(1) {
        let x = sf * v;
        // calcTrendValue(i-1, ...): the first step keeps the initial trend.
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        (s0, s1) = (s1, x + y);
    }
    Some(s1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(name: &str, s: &[Sample], args: &[f64]) -> Option<f64> {
        eval_range(name, s, 0, 60_000, args)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    const RESET: &[Sample] = &[
        (10_000, 5.0),
        (20_000, 10.0),
        (30_000, 2.0),
        (40_000, 6.0),
        (50_000, 8.0),
    ];

    #[test]
    fn rate_with_counter_reset() {
        // 8 - 5 + 10 (reset) = 13 over 40s, extrapolated 10s each side
        // (10 < 1.1 * 10): 13 * 60/40 = 19.5, / 60s = 0.325.
        assert_eq!(eval("increase", RESET, &[]), Some(19.5));
        assert!(close(eval("rate", RESET, &[]).unwrap(), 0.325));
        assert_eq!(eval("resets", RESET, &[]), Some(1.0));
        // delta ignores the reset: (8 - 5) * 1.5
        assert_eq!(eval("delta", RESET, &[]), Some(4.5));
    }

    #[test]
    fn rate_extrapolation_edges() {
        // Zero point 1s before the first sample caps the start extrapolation:
        // 20 * (20 + 1 + 10) / 20 = 31.
        let s = [(30_000, 1.0), (40_000, 11.0), (50_000, 21.0)];
        assert_eq!(eval("increase", &s, &[]), Some(31.0));
        // First sample 30s in (>= 11s threshold): only half a spacing (5s).
        let s = [(30_000, 100.0), (40_000, 110.0), (50_000, 120.0)];
        assert_eq!(eval("increase", &s, &[]), Some(35.0));
        assert_eq!(eval("delta", &s, &[]), Some(35.0));
        assert!(close(eval("rate", &s, &[]).unwrap(), 35.0 / 60.0));
        // Non-whole-second range: Duration.Seconds() = 1.5.
        let s = [(0, 0.0), (1_500, 3.0)];
        assert_eq!(eval_range("rate", &s, 0, 1_500, &[]), Some(2.0));
    }

    #[test]
    fn too_few_samples() {
        let one = [(1_000, 1.0)];
        for f in [
            "rate",
            "increase",
            "delta",
            "irate",
            "idelta",
            "deriv",
            "holt_winters",
        ] {
            assert_eq!(eval(f, &one, &[0.5, 0.5]), None, "{f}");
        }
        assert_eq!(eval("predict_linear", &one, &[1.0]), None);
        for f in RANGE_FUNCTIONS {
            assert_eq!(eval(f, &[], &[0.5, 0.5]), None, "{f}");
        }
        assert_eq!(eval("resets", &one, &[]), Some(0.0));
        assert_eq!(eval("no_such_function", &one, &[]), None);
        assert_eq!(eval("quantile_over_time", &one, &[]), None);
    }

    #[test]
    fn irate_idelta() {
        let s = [(30_000, 2.0), (40_000, 6.0), (50_000, 3.0)];
        assert_eq!(eval("irate", &s, &[]), Some(0.3)); // reset: 3 / 10s
        assert_eq!(eval("idelta", &s, &[]), Some(-3.0));
        assert_eq!(eval("irate", &[(0, 1.0), (0, 2.0)], &[]), None);
    }

    #[test]
    fn deriv_and_predict_linear() {
        let s = [(0, 1.0), (10_000, 3.0), (20_000, 5.0)];
        assert!(close(eval("deriv", &s, &[]).unwrap(), 0.2));
        // Intercept at the evaluation time (20s): 5 + 0.2 * 10.
        let p = eval_range("predict_linear", &s, -40_000, 20_000, &[10.0]).unwrap();
        assert!(close(p, 7.0));
        // With offset 10s, the intercept is still taken at eval time 30s.
        let p = eval_range_at("predict_linear", &s, -50_000, 20_000, 30_000, &[10.0]).unwrap();
        assert!(close(p, 9.0));
        // Flat series: exact 0 slope; flat infinite series: NaN.
        assert_eq!(eval("deriv", &[(0, 2.0), (7, 2.0)], &[]), Some(0.0));
        assert!(
            eval("deriv", &[(0, f64::INFINITY), (7, f64::INFINITY)], &[])
                .unwrap()
                .is_nan()
        );
    }

    #[test]
    fn holt_winters_smoothing() {
        // s1=1, b=1; i=1: 0.5*2 + 0.5*(1+1) = 2; i=2: b = 0.5*1 + 0.5*1 = 1,
        // 0.5*4 + 0.5*(2+1) = 3.5.
        let s = [(0, 1.0), (1_000, 2.0), (2_000, 4.0)];
        assert_eq!(eval("holt_winters", &s, &[0.5, 0.5]), Some(3.5));
        assert_eq!(eval("holt_winters", &s, &[1.0, 0.5]), None);
        assert_eq!(
            check_range_args("holt_winters", &[0.0, 0.5]).map_err(|e| e.to_string()),
            Err("invalid smoothing factor. Expected: 0 < sf < 1, got: 0.000000".into())
        );
        assert_eq!(
            check_range_args("holt_winters", &[0.5, f64::INFINITY]).map_err(|e| e.to_string()),
            Err("invalid trend factor. Expected: 0 < tf < 1, got: +Inf".into())
        );
        assert!(check_range_args("holt_winters", &[f64::NAN, 0.5]).is_ok());
        assert!(check_range_args("rate", &[]).is_ok());
    }

    #[test]
    fn changes_and_resets() {
        let s: Vec<Sample> = [1.0, 1.0, f64::NAN, f64::NAN, 2.0]
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as i64, v))
            .collect();
        assert_eq!(eval("changes", &s, &[]), Some(2.0));
        let s: Vec<Sample> = [5.0, 3.0, 3.0, 1.0, 4.0]
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as i64, v))
            .collect();
        assert_eq!(eval("resets", &s, &[]), Some(2.0));
    }

    fn series(vals: &[f64]) -> Vec<Sample> {
        vals.iter()
            .enumerate()
            .map(|(i, &v)| (i as i64 * 1000, v))
            .collect()
    }

    #[test]
    fn over_time_aggregations() {
        let s = series(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(eval("avg_over_time", &s, &[]), Some(2.5));
        assert_eq!(eval("sum_over_time", &s, &[]), Some(10.0));
        assert_eq!(eval("count_over_time", &s, &[]), Some(4.0));
        assert_eq!(eval("stdvar_over_time", &s, &[]), Some(1.25));
        assert_eq!(eval("stddev_over_time", &s, &[]), Some(1.25_f64.sqrt()));
        assert_eq!(eval("last_over_time", &s, &[]), Some(4.0));
        assert_eq!(eval("present_over_time", &s, &[]), Some(1.0));
        assert_eq!(eval("quantile_over_time", &s, &[0.5]), Some(2.5));
        assert_eq!(eval("quantile_over_time", &s, &[1.5]), Some(f64::INFINITY));
        // Kahan: naive summation would lose the 1.
        let s = series(&[1e100, 1.0, -1e100]);
        assert_eq!(eval("sum_over_time", &s, &[]), Some(1.0));
    }

    #[test]
    fn no_panics_on_extreme_inputs() {
        let (nan, inf) = (f64::NAN, f64::INFINITY);
        let windows: [&[Sample]; 4] = [
            &[(i64::MIN, nan), (i64::MAX, inf)],
            &[(i64::MAX, -inf), (i64::MAX, nan), (i64::MIN, 1e308)],
            &[(0, -0.0), (0, 0.0)],
            &[(5, 1.0)],
        ];
        for s in windows {
            for f in RANGE_FUNCTIONS {
                for args in [&[][..], &[nan, nan], &[inf, -inf], &[0.5, 0.5]] {
                    let _ = eval_range_at(f, s, i64::MIN, i64::MAX, i64::MIN, args);
                    let _ = eval_range_at(f, s, i64::MAX, i64::MIN, 0, args);
                }
            }
        }
    }

    #[test]
    fn over_time_nan_and_inf() {
        let nan = f64::NAN;
        let inf = f64::INFINITY;
        assert_eq!(
            eval("min_over_time", &series(&[nan, 3.0, 1.0]), &[]),
            Some(1.0)
        );
        assert_eq!(eval("max_over_time", &series(&[1.0, nan]), &[]), Some(1.0));
        assert!(eval("max_over_time", &series(&[nan]), &[])
            .unwrap()
            .is_nan());
        assert_eq!(
            eval("avg_over_time", &series(&[1.0, inf, 2.0]), &[]),
            Some(inf)
        );
        assert_eq!(eval("avg_over_time", &series(&[inf, inf]), &[]), Some(inf));
        assert!(eval("avg_over_time", &series(&[inf, -inf]), &[])
            .unwrap()
            .is_nan());
        assert_eq!(
            eval("sum_over_time", &series(&[1.0, -inf]), &[]),
            Some(-inf)
        );
        assert!(eval("stddev_over_time", &series(&[1.0, inf]), &[])
            .unwrap()
            .is_nan());
    }
}
