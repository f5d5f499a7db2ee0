//! PromQL values as the evaluator passes them between nodes.

use carbonio_collector::relabel::Labels;
use std::sync::Arc;

/// One element of an instant vector. `t` is the sample's own timestamp for
/// a plain selector (what `timestamp()` reports) and the evaluation time
/// for everything computed.
#[derive(Debug, Clone)]
pub struct Sample {
    pub labels: Arc<Labels>,
    pub t: i64,
    pub v: f64,
}

/// One series of a range vector: points oldest first.
#[derive(Debug, Clone)]
pub struct Series {
    pub labels: Arc<Labels>,
    pub points: Vec<(i64, f64)>,
}

#[derive(Debug, Clone)]
pub enum Value {
    Scalar(f64),
    String(String),
    Vector(Vec<Sample>),
    Matrix(Vec<Series>),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "scalar",
            Value::String(_) => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// Labels without `__name__`, as arithmetic and most functions return them.
pub fn drop_name(labels: &Arc<Labels>) -> Arc<Labels> {
    if !labels.contains_key("__name__") {
        return labels.clone();
    }
    let mut l = Labels::clone(labels);
    l.remove("__name__");
    Arc::new(l)
}

/// Prometheus's float text: shortest round-trip digits, never an exponent
/// (Go's `strconv.FormatFloat(v, 'f', -1, 64)`), with `+Inf`/`-Inf`/`NaN`.
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// True when two elements of `samples` have the same label set.
pub fn has_duplicate_labels(samples: &[Sample]) -> bool {
    let mut seen = std::collections::HashSet::with_capacity(samples.len());
    samples.iter().any(|s| !seen.insert(s.labels.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_as_prometheus_writes_them() {
        assert_eq!(format_float(1.0), "1");
        assert_eq!(format_float(0.1), "0.1");
        assert_eq!(format_float(1e21), "1000000000000000000000");
        assert_eq!(format_float(-2.5e-7), "-0.00000025");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(f64::NAN), "NaN");
    }
}
