//! Element-wise math and date functions, ported from Prometheus 2.42
//! `promql/functions.go`, with Go 1.19's `math` (see `gomath`) and `time`
//! semantics where they differ from Rust's. sin, cos, tan, atan and tanh
//! use std: Go's pure-Go versions differ from them by at most an ulp.

use super::gomath;

const MATH_FUNCTIONS: &[&str] = &[
    "abs",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "ceil",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "deg",
    "exp",
    "floor",
    "ln",
    "log10",
    "log2",
    "rad",
    "round",
    "sgn",
    "sin",
    "sinh",
    "sqrt",
    "tan",
    "tanh",
];

const DATE_FUNCTIONS: &[&str] = &[
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "hour",
    "minute",
    "month",
    "year",
];

/// Whether `eval_math` implements `name`.
pub fn is_math_function(name: &str) -> bool {
    MATH_FUNCTIONS.contains(&name)
}

/// Whether `eval_date` implements `name`.
pub fn is_date_function(name: &str) -> bool {
    DATE_FUNCTIONS.contains(&name)
}

/// `clamp(v, min, max)` with `max < min` returns no series at all in 2.42
/// (`funcClamp` returns an empty vector); NaN bounds do not trigger this.
pub fn clamp_output_empty(min: f64, max: f64) -> bool {
    max < min
}

/// Applies math function `name` to sample value `v`; `args` are the scalar
/// arguments after the vector (round: [to_nearest] or []; clamp: [min, max];
/// clamp_min: [min]; clamp_max: [max]). `None` means no output sample: an
/// unknown name (see `is_math_function`), a missing argument, or `clamp`
/// with `max < min`.
pub fn eval_math(name: &str, v: f64, args: &[f64]) -> Option<f64> {
    let r = match name {
        "abs" => v.abs(),
        "ceil" => v.ceil(),
        "floor" => v.floor(),
        "exp" => gomath::exp(v),
        "sqrt" => v.sqrt(),
        "ln" => gomath::log(v),
        "log2" => gomath::log2(v),
        "log10" => gomath::log10(v),
        "sin" => v.sin(),
        "cos" => v.cos(),
        "tan" => v.tan(),
        "asin" => gomath::asin(v),
        "acos" => gomath::acos(v),
        "atan" => v.atan(),
        "sinh" => gomath::sinh(v),
        "cosh" => gomath::cosh(v),
        "tanh" => v.tanh(),
        "asinh" => gomath::asinh(v),
        "acosh" => gomath::acosh(v),
        "atanh" => gomath::atanh(v),
        "deg" => v * 180.0 / std::f64::consts::PI,
        "rad" => v * std::f64::consts::PI / 180.0,
        "sgn" => {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v // keeps NaN and the sign of zero
            }
        }
        "round" => {
            // funcRound: ties round up; the inverse is used as it "seems to
            // cause fewer floating point accuracy issues".
            let to_nearest_inverse = 1.0 / args.first().copied().unwrap_or(1.0);
            (v * to_nearest_inverse + 0.5).floor() / to_nearest_inverse
        }
        "clamp" => {
            let (&min, &max) = (args.first()?, args.get(1)?);
            if clamp_output_empty(min, max) {
                return None;
            }
            gomath::max(min, gomath::min(max, v))
        }
        "clamp_min" => gomath::max(*args.first()?, v),
        "clamp_max" => gomath::min(*args.first()?, v),
        _ => return None,
    };
    Some(r)
}

/// Applies date function `name` to a Unix time in seconds: the sample
/// value, or for the no-argument form `eval_ms as f64 / 1000.0` (2.42 uses
/// `enh.Ts / 1000`; the truncation below makes them agree).
/// 2.42's `dateWrapper` does `time.Unix(int64(v), 0).UTC()`; Go truncates
/// toward zero and on amd64 turns NaN, ±Inf and out-of-range values into
/// i64::MIN (year 292277026596), which is reproduced here, as is Go's
/// calendar for years far outside chrono's range. `None` for unknown names.
pub fn eval_date(name: &str, t_seconds: f64) -> Option<f64> {
    let abs = go_abs_time(go_f64_to_i64(t_seconds));
    let r = match name {
        "year" => abs_date(abs).0 as f64,
        "month" => abs_date(abs).1 as f64,
        "day_of_month" => abs_date(abs).2 as f64,
        "day_of_year" => (abs_date(abs).3 + 1) as f64,
        "day_of_week" => {
            // January 1 of the absolute year was a Monday (weekday 1).
            (abs.wrapping_add(SECONDS_PER_DAY) % (7 * SECONDS_PER_DAY) / SECONDS_PER_DAY) as f64
        }
        "hour" => (abs % SECONDS_PER_DAY / 3600) as f64,
        "minute" => (abs % 3600 / 60) as f64,
        "days_in_month" => {
            // 32 - time.Date(year, month, 32, ...).Day()
            let (year, month, _, _) = abs_date(abs);
            (32 - abs_date(go_date_abs(year, month, 32)).2) as f64
        }
        _ => return None,
    };
    Some(r)
}

// Go 1.19 `time` internals (time.go), all in wrapping integer arithmetic.
const SECONDS_PER_DAY: u64 = 86_400;
const DAYS_PER_400_YEARS: u64 = 365 * 400 + 97;
const DAYS_PER_100_YEARS: u64 = 365 * 100 + 24;
const DAYS_PER_4_YEARS: u64 = 365 * 4 + 1;
const ABSOLUTE_ZERO_YEAR: i64 = -292_277_022_399;
/// (absoluteZeroYear - 1) * 365.2425 * secondsPerDay
const ABSOLUTE_TO_INTERNAL: i64 = -9_223_371_966_579_724_800;
const UNIX_TO_INTERNAL: i64 = (1969 * 365 + 1969 / 4 - 1969 / 100 + 1969 / 400) * 86_400;
const DAYS_BEFORE: [u64; 13] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365];

/// `int64(f)` as Go compiles it on amd64 (CVTTSD2SQ): truncation, with the
/// "integer indefinite" i64::MIN for NaN and anything out of range.
fn go_f64_to_i64(v: f64) -> i64 {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0; // 2^63
    if v.is_nan() || !(-LIMIT..LIMIT).contains(&v) {
        return i64::MIN;
    }
    v as i64
}

/// `Time.abs()` for a UTC time: seconds since the absolute zero year.
fn go_abs_time(unix_sec: i64) -> u64 {
    unix_sec.wrapping_add(UNIX_TO_INTERNAL.wrapping_sub(ABSOLUTE_TO_INTERNAL)) as u64
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// Go's `absDate`: (year, month 1-12, day of month, zero-based day of year).
fn abs_date(abs: u64) -> (i64, u64, u64, u64) {
    let mut d = abs / SECONDS_PER_DAY;
    let mut n = d / DAYS_PER_400_YEARS;
    let mut y = 400 * n;
    d -= DAYS_PER_400_YEARS * n;

    // The last 100-year (and 1-year) cycle has one extra leap day, so the
    // quotient can be 4 instead of 3 on its last day: cut it back.
    n = d / DAYS_PER_100_YEARS;
    n -= n >> 2;
    y += 100 * n;
    d -= DAYS_PER_100_YEARS * n;

    n = d / DAYS_PER_4_YEARS;
    y += 4 * n;
    d -= DAYS_PER_4_YEARS * n;

    n = d / 365;
    n -= n >> 2;
    y += n;
    d -= 365 * n;

    let year = (y as i64).wrapping_add(ABSOLUTE_ZERO_YEAR);
    let yday = d;
    let mut day = yday;
    if is_leap(year) {
        if day > 31 + 29 - 1 {
            day -= 1; // after the leap day: pretend it wasn't there
        } else if day == 31 + 29 - 1 {
            return (year, 2, 29, yday);
        }
    }
    // Estimate assuming 31-day months; it is at most one month low.
    let mut month = day / 31;
    let end = DAYS_BEFORE[month as usize + 1];
    let begin = if day >= end {
        month += 1;
        end
    } else {
        DAYS_BEFORE[month as usize]
    };
    (year, month + 1, day - begin + 1, yday)
}

/// `time.Date(year, month, day, 0, 0, 0, 0, UTC).abs()` for month 1-12.
fn go_date_abs(year: i64, month: u64, day: u64) -> u64 {
    // daysSinceEpoch(year)
    let mut y = year.wrapping_sub(ABSOLUTE_ZERO_YEAR) as u64;
    let mut n = y / 400;
    y -= 400 * n;
    let mut d = DAYS_PER_400_YEARS.wrapping_mul(n);
    n = y / 100;
    y -= 100 * n;
    d = d.wrapping_add(DAYS_PER_100_YEARS * n);
    n = y / 4;
    y -= 4 * n;
    d = d.wrapping_add(DAYS_PER_4_YEARS * n);
    d = d.wrapping_add(365 * y);

    d = d.wrapping_add(DAYS_BEFORE[(month as usize).saturating_sub(1).min(12)]);
    if is_leap(year) && month >= 3 {
        d = d.wrapping_add(1); // February 29
    }
    d = d.wrapping_add(day - 1);
    d.wrapping_mul(SECONDS_PER_DAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, v: f64, args: &[f64]) -> f64 {
        eval_math(name, v, args).unwrap()
    }

    #[test]
    fn round_to_nearest() {
        assert_eq!(m("round", 2.5, &[]), 3.0);
        assert_eq!(m("round", -2.5, &[]), -2.0); // ties round up
        assert_eq!(m("round", 1.234567, &[0.01]), 1.23);
        assert_eq!(m("round", 5.0, &[-2.0]), 4.0); // floor(-2.5+0.5) / -0.5
        assert!(m("round", 5.0, &[0.0]).is_nan()); // Inf / Inf
        assert_eq!(m("round", 17.0, &[5.0]), 15.0);
    }

    #[test]
    fn clamp_go_semantics() {
        assert_eq!(eval_math("clamp", 5.0, &[3.0, 1.0]), None);
        assert!(clamp_output_empty(3.0, 1.0));
        assert!(!clamp_output_empty(f64::NAN, 1.0));
        assert_eq!(m("clamp", 5.0, &[1.0, 3.0]), 3.0);
        assert_eq!(m("clamp", -5.0, &[1.0, 3.0]), 1.0);
        // Go's Max/Min propagate NaN (Rust's f64::max would drop it) ...
        assert!(m("clamp_min", f64::NAN, &[1.0]).is_nan());
        assert!(m("clamp", f64::NAN, &[1.0, 3.0]).is_nan());
        // ... except that an infinity of the right sign wins.
        assert_eq!(
            m("clamp_max", f64::NAN, &[f64::NEG_INFINITY]),
            f64::NEG_INFINITY
        );
        assert_eq!(m("clamp_min", f64::NAN, &[f64::INFINITY]), f64::INFINITY);
        assert!(m("clamp_min", 0.0, &[-0.0]).is_sign_positive());
        assert!(m("clamp_max", 0.0, &[-0.0]).is_sign_negative());
        assert_eq!(eval_math("clamp_min", 1.0, &[]), None);
    }

    #[test]
    fn logs_like_go() {
        assert_eq!(m("log10", 1000.0, &[]), 3.0);
        assert_eq!(m("log10", 100.0, &[]), 2.0);
        assert_eq!(m("log2", 8.0, &[]), 3.0);
        assert_eq!(m("log2", 5e-324, &[]), -1074.0); // subnormal
        assert_eq!(m("log2", 0.0, &[]), f64::NEG_INFINITY);
        assert!(m("log2", -1.0, &[]).is_nan());
        assert_eq!(m("log10", f64::INFINITY, &[]), f64::INFINITY);
        assert!(m("log10", f64::NAN, &[]).is_nan());
        assert_eq!(m("ln", 1.0, &[]), 0.0);
    }

    #[test]
    fn misc_math() {
        assert_eq!(m("sgn", -3.0, &[]), -1.0);
        assert!(m("sgn", -0.0, &[]).is_sign_negative());
        assert!(m("sgn", f64::NAN, &[]).is_nan());
        assert_eq!(m("deg", std::f64::consts::PI, &[]), 180.0);
        assert_eq!(m("rad", 180.0, &[]), std::f64::consts::PI);
        assert_eq!(m("sinh", 710.0, &[]), f64::INFINITY); // Go overflows here
        assert_eq!(m("cosh", -710.0, &[]), f64::INFINITY);
        assert!(m("acosh", 0.5, &[]).is_nan());
        assert_eq!(m("atanh", 1.0, &[]), f64::INFINITY);
        assert_eq!(eval_math("nope", 1.0, &[]), None);
        for f in MATH_FUNCTIONS {
            assert!(is_math_function(f));
            for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 1e308] {
                let _ = eval_math(f, v, &[v, v]);
            }
        }
    }

    fn d(name: &str, t: f64) -> f64 {
        eval_date(name, t).unwrap()
    }

    #[test]
    fn dates_at_known_times() {
        // 2024-02-29T23:59:59Z, a Thursday in a leap year.
        let t = 1_709_251_199.0;
        assert_eq!(d("year", t), 2024.0);
        assert_eq!(d("month", t), 2.0);
        assert_eq!(d("day_of_month", t), 29.0);
        assert_eq!(d("day_of_week", t), 4.0);
        assert_eq!(d("day_of_year", t), 60.0);
        assert_eq!(d("days_in_month", t), 29.0);
        assert_eq!(d("hour", t), 23.0);
        assert_eq!(d("minute", t), 59.0);
        // 2100 is not a leap year; 2000 is.
        assert_eq!(d("days_in_month", 4_107_542_400.0 - 86_400.0), 28.0); // 2100-02-28
        assert_eq!(d("days_in_month", 951_782_400.0), 29.0); // 2000-02-29
        assert_eq!(d("days_in_month", 0.0), 31.0);
        assert_eq!(d("day_of_week", 0.0), 4.0); // 1970-01-01 was a Thursday
                                                // Truncation toward zero: -0.5 is 1970, -1.5 is 1969-12-31T23:59:59.
        assert_eq!(d("year", -0.5), 1970.0);
        assert_eq!(d("year", -1.5), 1969.0);
        assert_eq!(d("day_of_year", -1.5), 365.0);
        assert_eq!(eval_date("week", 0.0), None);
    }

    #[test]
    fn dates_of_nan_inf_and_huge_values_match_go() {
        // Observed from Prometheus 2.42.0 (Go 1.19, amd64).
        for v in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e300,
            -1e300,
            9.3e18,
        ] {
            assert_eq!(d("year", v), 292_277_026_596.0);
            assert_eq!(d("month", v), 12.0);
            assert_eq!(d("day_of_month", v), 4.0);
        }
        assert_eq!(d("year", -9.2e18), -291_536_392_293.0);
        assert_eq!(d("month", -9.2e18), 5.0);
        assert_eq!(d("year", 1e17), 3_168_875_820.0);
        assert_eq!(d("month", 1e17), 9.0);
        assert_eq!(d("year", -1e17), -3_168_871_881.0);
        assert_eq!(d("month", -1e17), 4.0);
    }
}
