//! Aggregation operators with `by`/`without` (Prometheus 2.42's
//! `aggregation`: incremental mean for avg, Welford for stddev/stdvar,
//! Go's container/heap for topk/bottomk so ties resolve the same way).

use super::eval::{ptr, Evaluator, PtrMap};
use super::functions::histogram::quantile;
use super::value::{format_float, Sample, Value};
use super::QueryError;
use carbonio_collector::relabel::Labels;
use promql_parser::parser::token::TokenType;
use promql_parser::parser::token::*;
use promql_parser::parser::{AggregateExpr, LabelModifier};
use std::sync::Arc;

struct Group {
    labels: Arc<Labels>,
    value: f64,
    mean: f64,
    count: usize,
    values: Vec<f64>,
    heap: Vec<Sample>,
}

pub fn eval(ev: &mut Evaluator, a: &AggregateExpr, ts: i64) -> Result<Value, QueryError> {
    let op = a.op.id();
    let param = match &a.param {
        Some(p) => Some(ev.eval(p, ts)?),
        None => None,
    };
    let input = ev.vector(&a.expr, ts)?;
    let mut k = 0usize;
    let mut q = 0.0;
    let mut value_label = String::new();
    match (op, &param) {
        (T_TOPK | T_BOTTOMK, Some(Value::Scalar(p))) => {
            // Go's int64(float) conversion; k < 1 selects nothing.
            let kk = if p.is_nan() { 0 } else { *p as i64 };
            if kk < 1 {
                return Ok(Value::Vector(Vec::new()));
            }
            k = (kk as usize).min(input.len());
        }
        (T_QUANTILE, Some(Value::Scalar(p))) => q = *p,
        (T_COUNT_VALUES, Some(Value::String(s))) => {
            if !valid_label_name(s) {
                return Err(QueryError::Execution(format!("invalid label name {s:?}")));
            }
            value_label = s.clone();
        }
        (T_TOPK | T_BOTTOMK | T_QUANTILE | T_COUNT_VALUES, _) => {
            return Err(QueryError::BadData(format!(
                "wrong parameter for {}",
                TokenType::new(op)
            )))
        }
        (T_SUM | T_AVG | T_COUNT | T_MIN | T_MAX | T_GROUP | T_STDDEV | T_STDVAR, _) => {}
        _ => {
            return Err(QueryError::BadData(format!(
                "aggregation {} is not supported",
                TokenType::new(op)
            )))
        }
    }
    let mut order: Vec<Group> = Vec::new();
    // Group keys are interned (and computed once per input label set for
    // the whole query), so groups are found by identity.
    let mut index: PtrMap<usize, usize> = PtrMap::default();
    let node = a as *const AggregateExpr as usize;
    for s in input {
        let key = if op == T_COUNT_VALUES {
            let mut key = group_labels(&s.labels, &a.modifier);
            key.insert(value_label.clone(), format_float(s.v));
            ev.labels.intern(key)
        } else {
            ev.labels
                .derive(node, &s.labels, |l| group_labels(l, &a.modifier))
        };
        let gi = match index.get(&ptr(&key)) {
            Some(i) => *i,
            None => {
                index.insert(ptr(&key), order.len());
                order.push(Group {
                    labels: key,
                    value: s.v,
                    mean: s.v,
                    count: 1,
                    values: if op == T_QUANTILE {
                        vec![s.v]
                    } else {
                        Vec::new()
                    },
                    heap: Vec::new(),
                });
                let g = order.len() - 1;
                let group = &mut order[g];
                match op {
                    T_STDDEV | T_STDVAR => group.value = 0.0,
                    T_TOPK | T_BOTTOMK => heap_push(&mut group.heap, s, op == T_BOTTOMK),
                    _ => {}
                }
                continue;
            }
        };
        let g = &mut order[gi];
        g.count += 1;
        match op {
            T_SUM => g.value += s.v,
            T_AVG => {
                if g.mean.is_infinite() {
                    if s.v.is_infinite() && (g.mean > 0.0) == (s.v > 0.0) {
                        continue;
                    }
                    if !s.v.is_infinite() && !s.v.is_nan() {
                        continue;
                    }
                }
                let n = g.count as f64;
                g.mean += s.v / n - g.mean / n;
            }
            T_MAX if g.value < s.v || g.value.is_nan() => g.value = s.v,
            T_MIN if g.value > s.v || g.value.is_nan() => g.value = s.v,
            T_STDDEV | T_STDVAR => {
                let delta = s.v - g.mean;
                g.mean += delta / g.count as f64;
                g.value += delta * (s.v - g.mean);
            }
            T_QUANTILE => g.values.push(s.v),
            T_TOPK | T_BOTTOMK => {
                let reverse = op == T_BOTTOMK;
                if g.heap.len() < k {
                    heap_push(&mut g.heap, s, reverse);
                } else if let Some(top) = g.heap.first() {
                    let better = if reverse {
                        top.v > s.v || (top.v.is_nan() && !s.v.is_nan())
                    } else {
                        top.v < s.v || (top.v.is_nan() && !s.v.is_nan())
                    };
                    if better {
                        g.heap[0] = s;
                        heap_down(&mut g.heap, 0, reverse);
                    }
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::with_capacity(order.len());
    for mut g in order {
        let v = match op {
            T_SUM | T_MIN | T_MAX => g.value,
            T_AVG => g.mean,
            T_COUNT | T_COUNT_VALUES => g.count as f64,
            T_GROUP => 1.0,
            T_STDVAR => g.value / g.count as f64,
            T_STDDEV => (g.value / g.count as f64).sqrt(),
            T_QUANTILE => quantile(q, &mut g.values),
            _ => {
                // topk/bottomk return the chosen elements with their own labels.
                let reverse = op == T_BOTTOMK;
                g.heap.sort_by(|a, b| {
                    let (x, y) = if reverse { (a.v, b.v) } else { (b.v, a.v) };
                    x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal)
                });
                out.extend(g.heap.into_iter().map(|s| Sample { t: ts, ..s }));
                continue;
            }
        };
        out.push(Sample {
            labels: g.labels,
            t: ts,
            v,
        });
    }
    Ok(Value::Vector(out))
}

/// The group an element belongs to: `by` keeps the listed labels, `without`
/// drops them and the metric name; no clause puts everything in one group.
fn group_labels(labels: &Labels, modifier: &Option<LabelModifier>) -> Labels {
    match modifier {
        Some(LabelModifier::Include(by)) => labels
            .iter()
            .filter(|(k, _)| by.labels.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        Some(LabelModifier::Exclude(without)) => labels
            .iter()
            .filter(|(k, _)| k.as_str() != "__name__" && !without.labels.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        None => Labels::new(),
    }
}

pub fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Go's heap `Less` for topk (min-heap, NaN lowest) and bottomk (max-heap,
/// NaN lowest as well).
fn less(a: f64, b: f64, reverse: bool) -> bool {
    if a.is_nan() {
        return true;
    }
    if reverse {
        a > b
    } else {
        a < b
    }
}

fn heap_push(h: &mut Vec<Sample>, s: Sample, reverse: bool) {
    h.push(s);
    let mut j = h.len() - 1;
    while j > 0 {
        let i = (j - 1) / 2;
        if i == j || !less(h[j].v, h[i].v, reverse) {
            break;
        }
        h.swap(i, j);
        j = i;
    }
}

fn heap_down(h: &mut [Sample], mut i: usize, reverse: bool) {
    let n = h.len();
    loop {
        let j1 = 2 * i + 1;
        if j1 >= n {
            break;
        }
        let mut j = j1;
        let j2 = j1 + 1;
        if j2 < n && less(h[j2].v, h[j1].v, reverse) {
            j = j2;
        }
        if !less(h[j].v, h[i].v, reverse) {
            break;
        }
        h.swap(i, j);
        i = j;
    }
}
