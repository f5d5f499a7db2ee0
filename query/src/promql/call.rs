//! Function calls: argument evaluation and label handling here, the
//! numeric work in `functions` (one module per family).

use super::aggregate::valid_label_name;
use super::eval::{check_unique, ptr, Evaluator, PtrMap, DERIVE_HISTOGRAM};
use super::functions::{histogram, math, range};
use super::value::{drop_name, Sample, Series, Value};
use super::{QueryError, NOT_IN_2_42};
use carbonio_collector::relabel::Labels;
use promql_parser::label::MatchOp;
use promql_parser::parser::{Call, Expr};
use std::sync::Arc;

pub fn eval(ev: &mut Evaluator, c: &Call, ts: i64) -> Result<Value, QueryError> {
    let name = c.func.name;
    let args: Vec<&Expr> = c.args.args.iter().map(|a| a.as_ref()).collect();
    if NOT_IN_2_42.contains(&name) {
        return Err(QueryError::BadData(format!(
            "parse error: unknown function with name {name:?}"
        )));
    }
    match name {
        "time" => Ok(Value::Scalar(ts as f64 / 1000.0)),
        "vector" => {
            let v = ev.scalar(arg(&args, 0)?, ts)?;
            Ok(Value::Vector(vec![Sample {
                labels: Arc::new(Labels::new()),
                t: ts,
                v,
            }]))
        }
        "scalar" => {
            let v = ev.vector(arg(&args, 0)?, ts)?;
            Ok(Value::Scalar(if v.len() == 1 { v[0].v } else { f64::NAN }))
        }
        "absent" => {
            let v = ev.vector(arg(&args, 0)?, ts)?;
            Ok(absent(v.is_empty(), arg(&args, 0)?, ts))
        }
        "absent_over_time" => {
            let (series, _, _) = ev.range_arg(arg(&args, 0)?, ts)?;
            Ok(absent(series.is_empty(), arg(&args, 0)?, ts))
        }
        "timestamp" => {
            let v = ev.vector(arg(&args, 0)?, ts)?;
            let out = v
                .into_iter()
                .map(|s| Sample {
                    labels: drop_name(&s.labels),
                    t: ts,
                    v: s.t as f64 / 1000.0,
                })
                .collect();
            check_unique(out)
        }
        "sort" | "sort_desc" => {
            let mut v = ev.vector(arg(&args, 0)?, ts)?;
            let desc = name == "sort_desc";
            // NaN last in both directions, as Prometheus 2.42 returns them.
            v.sort_by(|a, b| match (a.v.is_nan(), b.v.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ if desc => b.v.total_cmp(&a.v),
                _ => a.v.total_cmp(&b.v),
            });
            Ok(Value::Vector(
                v.into_iter().map(|s| Sample { t: ts, ..s }).collect(),
            ))
        }
        "label_replace" => label_replace(ev, &args, ts),
        "label_join" => label_join(ev, &args, ts),
        "histogram_quantile" => {
            let q = ev.scalar(arg(&args, 0)?, ts)?;
            let v = ev.vector(arg(&args, 1)?, ts)?;
            Ok(Value::Vector(histogram_quantile(ev, q, v, ts)))
        }
        _ if math::is_date_function(name) => {
            if args.is_empty() {
                let v = math::eval_date(name, ts as f64 / 1000.0).unwrap_or(f64::NAN);
                return Ok(Value::Vector(vec![Sample {
                    labels: Arc::new(Labels::new()),
                    t: ts,
                    v,
                }]));
            }
            let v = ev.vector(arg(&args, 0)?, ts)?;
            let out = v
                .into_iter()
                .map(|s| Sample {
                    labels: drop_name(&s.labels),
                    t: ts,
                    v: math::eval_date(name, s.v).unwrap_or(f64::NAN),
                })
                .collect();
            check_unique(out)
        }
        _ if range::is_range_function(name) => range_function(ev, name, &args, ts),
        _ => elementwise(ev, name, &args, ts),
    }
}

fn arg<'e>(args: &[&'e Expr], i: usize) -> Result<&'e Expr, QueryError> {
    args.get(i)
        .copied()
        .ok_or_else(|| QueryError::BadData(format!("missing argument {}", i + 1)))
}

/// Math functions over each element: the vector first, scalars after.
fn elementwise(
    ev: &mut Evaluator,
    name: &str,
    args: &[&Expr],
    ts: i64,
) -> Result<Value, QueryError> {
    let v = ev.vector(arg(args, 0)?, ts)?;
    let mut params = Vec::with_capacity(args.len().saturating_sub(1));
    for a in &args[1..] {
        params.push(ev.scalar(a, ts)?);
    }
    // clamp with min > max selects nothing (Prometheus 2.42's funcClamp).
    if name == "clamp" && params.len() == 2 && params[1] < params[0] {
        return Ok(Value::Vector(Vec::new()));
    }
    let mut out = Vec::with_capacity(v.len());
    for s in v {
        let Some(value) = math::eval_math(name, s.v, &params) else {
            return Err(QueryError::BadData(format!(
                "parse error: unknown function with name {name:?}"
            )));
        };
        out.push(Sample {
            labels: ev.labels.drop_name(&s.labels),
            t: ts,
            v: value,
        });
    }
    ev.labels.check_unique(out)
}

/// Functions over a range vector: one output element per input series
/// with a result; the metric name is dropped except by last_over_time.
fn range_function(
    ev: &mut Evaluator,
    name: &str,
    args: &[&Expr],
    ts: i64,
) -> Result<Value, QueryError> {
    let matrix_at = if name == "quantile_over_time" { 1 } else { 0 };
    let mut params = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if i != matrix_at {
            params.push(ev.scalar(a, ts)?);
        }
    }
    let (series, start, end) = ev.range_arg(arg(args, matrix_at)?, ts)?;
    if !series.is_empty() {
        range::check_range_args(name, &params).map_err(|e| QueryError::Execution(e.to_string()))?;
    }
    let keep_name = name == "last_over_time";
    // predict_linear anchors its intercept at the step's evaluation time,
    // not at the (offset) window end, as 2.42 does.
    let anchor = ts;
    let mut out = Vec::with_capacity(series.len());
    let mut used = Vec::with_capacity(series.len());
    for Series { labels, points } in series {
        if let Some(v) = range::eval_range_at(name, &points, start, end, anchor, &params) {
            out.push(Sample {
                labels: if keep_name {
                    labels
                } else {
                    ev.labels.drop_name(&labels)
                },
                t: ts,
                v,
            });
        }
        used.push(points);
    }
    ev.recycle(used);
    if ev.distinct_without_name(arg(args, matrix_at)?) {
        return Ok(Value::Vector(out));
    }
    ev.labels.check_unique(out)
}

/// `absent`/`absent_over_time`: 1 with the selector's equality-matched
/// labels when nothing matched (labels matched twice are left out).
fn absent(is_empty: bool, arg: &Expr, ts: i64) -> Value {
    if !is_empty {
        return Value::Vector(Vec::new());
    }
    let vs = match arg {
        Expr::VectorSelector(vs) => Some(vs),
        Expr::MatrixSelector(ms) => Some(&ms.vs),
        _ => None,
    };
    let mut labels = Labels::new();
    let mut ambiguous = Vec::new();
    for m in vs.iter().flat_map(|vs| vs.matchers.matchers.iter()) {
        if m.name == "__name__" {
            continue;
        }
        if matches!(m.op, MatchOp::Equal) && !labels.contains_key(&m.name) {
            labels.insert(m.name.clone(), m.value.clone());
        } else {
            ambiguous.push(m.name.clone());
        }
    }
    for n in ambiguous {
        labels.remove(&n);
    }
    labels.retain(|_, v| !v.is_empty());
    Value::Vector(vec![Sample {
        labels: Arc::new(labels),
        t: ts,
        v: 1.0,
    }])
}

fn string_arg(ev: &mut Evaluator, e: &Expr, ts: i64) -> Result<String, QueryError> {
    match ev.eval(e, ts)? {
        Value::String(s) => Ok(s),
        other => Err(QueryError::BadData(format!(
            "expected string, got {}",
            other.type_name()
        ))),
    }
}

fn label_replace(ev: &mut Evaluator, args: &[&Expr], ts: i64) -> Result<Value, QueryError> {
    let v = ev.vector(arg(args, 0)?, ts)?;
    let dst = string_arg(ev, arg(args, 1)?, ts)?;
    let replacement = string_arg(ev, arg(args, 2)?, ts)?;
    let src = string_arg(ev, arg(args, 3)?, ts)?;
    let pattern = string_arg(ev, arg(args, 4)?, ts)?;
    let re = regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
        QueryError::Execution(format!(
            "invalid regular expression in label_replace(): {pattern}: {e}"
        ))
    })?;
    if !valid_label_name(&dst) {
        return Err(QueryError::Execution(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let mut out = Vec::with_capacity(v.len());
    for s in v {
        let value = s.labels.get(&src).map(String::as_str).unwrap_or("");
        let labels = match re.captures(value) {
            Some(caps) => {
                let mut res = String::new();
                caps.expand(&replacement, &mut res);
                let mut l = Labels::clone(&s.labels);
                if res.is_empty() {
                    l.remove(&dst);
                } else {
                    l.insert(dst.clone(), res);
                }
                Arc::new(l)
            }
            None => s.labels,
        };
        out.push(Sample { labels, t: ts, ..s });
    }
    check_unique(out)
}

fn label_join(ev: &mut Evaluator, args: &[&Expr], ts: i64) -> Result<Value, QueryError> {
    let v = ev.vector(arg(args, 0)?, ts)?;
    let dst = string_arg(ev, arg(args, 1)?, ts)?;
    let sep = string_arg(ev, arg(args, 2)?, ts)?;
    let mut srcs = Vec::new();
    for a in args.iter().skip(3) {
        let s = string_arg(ev, a, ts)?;
        if !valid_label_name(&s) {
            return Err(QueryError::Execution(format!(
                "invalid source label name in label_join(): {s}"
            )));
        }
        srcs.push(s);
    }
    if !valid_label_name(&dst) {
        return Err(QueryError::Execution(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    let mut out = Vec::with_capacity(v.len());
    for s in v {
        let joined: Vec<&str> = srcs
            .iter()
            .map(|n| s.labels.get(n).map(String::as_str).unwrap_or(""))
            .collect();
        let joined = joined.join(&sep);
        let mut l = Labels::clone(&s.labels);
        if joined.is_empty() {
            l.remove(&dst);
        } else {
            l.insert(dst.clone(), joined);
        }
        out.push(Sample {
            labels: Arc::new(l),
            t: ts,
            ..s
        });
    }
    check_unique(out)
}

/// (upper bound, cumulative count) of one histogram.
type Buckets = Vec<(f64, f64)>;

/// Buckets grouped by their labels without `le` and the metric name
/// (interned, so grouped by identity).
fn histogram_quantile(ev: &mut Evaluator, q: f64, v: Vec<Sample>, ts: i64) -> Vec<Sample> {
    let mut order: Vec<(Arc<Labels>, Buckets)> = Vec::new();
    let mut index: PtrMap<usize, usize> = PtrMap::default();
    for s in v {
        let Some(le) = s.labels.get("le").and_then(|le| parse_go_float(le)) else {
            continue;
        };
        let l = ev.labels.derive(DERIVE_HISTOGRAM, &s.labels, |l| {
            let mut l = l.clone();
            l.remove("le");
            l.remove("__name__");
            l
        });
        let i = *index.entry(ptr(&l)).or_insert_with(|| {
            order.push((l, Vec::new()));
            order.len() - 1
        });
        order[i].1.push((le, s.v));
    }
    order
        .into_iter()
        .map(|(labels, mut buckets)| Sample {
            labels,
            t: ts,
            v: histogram::histogram_quantile(q, &mut buckets),
        })
        .collect()
}

/// Go's ParseFloat spellings of bucket bounds (`+Inf`, `Inf`, `1e3`).
fn parse_go_float(s: &str) -> Option<f64> {
    match s.to_ascii_lowercase().as_str() {
        "+inf" | "inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}
