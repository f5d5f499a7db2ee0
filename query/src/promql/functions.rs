//! The PromQL function library as pure functions, ported from Prometheus
//! 2.42 (`promql/functions.go`, `promql/quantile.go`) so results match it
//! bit for bit where the algorithms allow.

mod gomath;
pub mod histogram;
pub mod math;
pub mod range;

/// Errors Prometheus raises from inside a function call (it panics with
/// these and the engine turns them into a query error).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FunctionError {
    #[error("invalid smoothing factor. Expected: 0 < sf < 1, got: {}", go_f(*.0))]
    InvalidSmoothingFactor(f64),
    #[error("invalid trend factor. Expected: 0 < tf < 1, got: {}", go_f(*.0))]
    InvalidTrendFactor(f64),
}

/// Go's `%f` rendering, so error texts read as Prometheus's do.
fn go_f(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        format!("{v:.6}")
    }
}

/// Neumaier-compensated summation step, as Prometheus's `kahanSumInc`.
pub fn kahan_sum_inc(inc: f64, sum: f64, mut c: f64) -> (f64, f64) {
    let t = sum + inc;
    // Swap if the next term is larger than the sum (Neumaier's improvement).
    if sum.abs() >= inc.abs() {
        c += (sum - t) + inc;
    } else {
        c += (inc - t) + sum;
    }
    (t, c)
}
