//! Binary operators: arithmetic, comparison (with and without `bool`) and
//! set operators, with `on`/`ignoring` and `group_left`/`group_right`
//! vector matching (Prometheus's `VectorBinop`, `VectorAnd/Or/Unless`).

use super::eval::{ptr, Evaluator, PtrMap};
use super::value::{Sample, Value};
use super::QueryError;
use carbonio_collector::relabel::Labels;
use promql_parser::parser::token::TokenType;
use promql_parser::parser::token::*;
use promql_parser::parser::{BinModifier, BinaryExpr, LabelModifier, VectorMatchCardinality};
use std::collections::HashSet;

pub fn eval(ev: &mut Evaluator, b: &BinaryExpr, ts: i64) -> Result<Value, QueryError> {
    let op = b.op.id();
    let lhs = ev.eval(&b.lhs, ts)?;
    let rhs = ev.eval(&b.rhs, ts)?;
    let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
    match (lhs, rhs) {
        (Value::Scalar(l), Value::Scalar(r)) => {
            let (v, keep) = apply(op, l, r)?;
            Ok(Value::Scalar(if is_comparison(op) {
                f64::from(u8::from(keep))
            } else {
                v
            }))
        }
        (Value::Vector(l), Value::Scalar(r)) => vector_scalar(ev, op, l, r, false, return_bool, ts),
        (Value::Scalar(l), Value::Vector(r)) => vector_scalar(ev, op, r, l, true, return_bool, ts),
        (Value::Vector(l), Value::Vector(r)) => {
            let modifier = b.modifier.clone().unwrap_or_default();
            match op {
                T_LAND | T_LOR | T_LUNLESS => Ok(Value::Vector(set_op(op, l, r, &modifier))),
                _ => {
                    let node = b as *const BinaryExpr as usize;
                    vector_vector(ev, node, op, l, r, &modifier, return_bool, ts)
                }
            }
        }
        (l, r) => Err(QueryError::BadData(format!(
            "binary expression must contain only scalar and instant vector types, got {} and {}",
            l.type_name(),
            r.type_name()
        ))),
    }
}

fn is_comparison(op: u16) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_LTE | T_LSS | T_GTE | T_GTR)
}

/// Arithmetic drops the metric name; comparisons keep it (unless `bool`).
fn drops_name(op: u16) -> bool {
    matches!(op, T_ADD | T_SUB | T_MUL | T_DIV | T_MOD | T_POW | T_ATAN2)
}

/// (result, keep): comparisons return the left value and whether it holds.
fn apply(op: u16, l: f64, r: f64) -> Result<(f64, bool), QueryError> {
    Ok(match op {
        T_ADD => (l + r, true),
        T_SUB => (l - r, true),
        T_MUL => (l * r, true),
        T_DIV => (l / r, true),
        T_POW => (l.powf(r), true),
        T_MOD => (l % r, true),
        T_ATAN2 => (l.atan2(r), true),
        T_EQLC => (l, l == r),
        T_NEQ => (l, l != r),
        T_GTR => (l, l > r),
        T_LSS => (l, l < r),
        T_GTE => (l, l >= r),
        T_LTE => (l, l <= r),
        _ => {
            return Err(QueryError::BadData(format!(
                "operator {} not allowed here",
                TokenType::new(op)
            )))
        }
    })
}

fn vector_scalar(
    ev: &mut Evaluator,
    op: u16,
    vector: Vec<Sample>,
    scalar: f64,
    scalar_on_left: bool,
    return_bool: bool,
    ts: i64,
) -> Result<Value, QueryError> {
    let mut out = Vec::with_capacity(vector.len());
    for s in vector {
        let (l, r) = if scalar_on_left {
            (scalar, s.v)
        } else {
            (s.v, scalar)
        };
        let (mut v, mut keep) = apply(op, l, r)?;
        // A comparison keeps the vector's value even with the scalar on the left.
        if is_comparison(op) && scalar_on_left {
            v = r;
        }
        if return_bool {
            v = f64::from(u8::from(keep));
            keep = true;
        }
        if keep {
            let labels = if drops_name(op) || return_bool {
                ev.labels.drop_name(&s.labels)
            } else {
                s.labels
            };
            out.push(Sample { labels, t: ts, v });
        }
    }
    ev.labels.check_unique(out)
}

/// The labels two elements are matched on.
fn signature(labels: &Labels, matching: &Option<LabelModifier>) -> Vec<(String, String)> {
    match matching {
        Some(LabelModifier::Include(on)) => on
            .labels
            .iter()
            .filter_map(|n| labels.get(n).map(|v| (n.clone(), v.clone())))
            .collect(),
        Some(LabelModifier::Exclude(ignoring)) => labels
            .iter()
            .filter(|(n, _)| n.as_str() != "__name__" && !ignoring.labels.contains(n))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect(),
        None => labels
            .iter()
            .filter(|(n, _)| n.as_str() != "__name__")
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect(),
    }
}

/// `signature` as a label set, to be interned.
fn signature_labels(labels: &Labels, matching: &Option<LabelModifier>) -> Labels {
    signature(labels, matching).into_iter().collect()
}

fn set_op(op: u16, lhs: Vec<Sample>, rhs: Vec<Sample>, m: &BinModifier) -> Vec<Sample> {
    let right: HashSet<_> = rhs
        .iter()
        .map(|s| signature(&s.labels, &m.matching))
        .collect();
    match op {
        T_LAND => lhs
            .into_iter()
            .filter(|s| right.contains(&signature(&s.labels, &m.matching)))
            .collect(),
        T_LUNLESS => lhs
            .into_iter()
            .filter(|s| !right.contains(&signature(&s.labels, &m.matching)))
            .collect(),
        _ => {
            let left: HashSet<_> = lhs
                .iter()
                .map(|s| signature(&s.labels, &m.matching))
                .collect();
            let mut out = lhs;
            out.extend(
                rhs.into_iter()
                    .filter(|s| !left.contains(&signature(&s.labels, &m.matching))),
            );
            out
        }
    }
}

/// Matching by signature. Signatures and (for one-to-one matching) result
/// labels are interned and derived once per input label set for the
/// whole query (`node` tells this expression's derivations apart), so
/// each step compares addresses.
#[allow(clippy::too_many_arguments)]
fn vector_vector(
    ev: &mut Evaluator,
    node: usize,
    op: u16,
    lhs: Vec<Sample>,
    rhs: Vec<Sample>,
    m: &BinModifier,
    return_bool: bool,
    ts: i64,
) -> Result<Value, QueryError> {
    let (sig_kind, result_kind) = (node + 1, node + 2);
    let one_to_many = matches!(m.card, VectorMatchCardinality::OneToMany(_));
    // `many` is iterated, `one` is looked up by signature.
    let (many, one) = if one_to_many { (rhs, lhs) } else { (lhs, rhs) };
    let mut one_by_sig: PtrMap<usize, Sample> = PtrMap::default();
    for s in one {
        let sig = ev
            .labels
            .derive(sig_kind, &s.labels, |l| signature_labels(l, &m.matching));
        if let Some(prev) = one_by_sig.get(&ptr(&sig)) {
            let side = if one_to_many { "left" } else { "right" };
            return Err(QueryError::Execution(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                format_sig(&signature(&s.labels, &m.matching)),
                format_labels(&prev.labels),
                format_labels(&s.labels)
            )));
        }
        one_by_sig.insert(ptr(&sig), s);
    }
    let include: &[String] = match &m.card {
        VectorMatchCardinality::ManyToOne(l) | VectorMatchCardinality::OneToMany(l) => &l.labels,
        _ => &[],
    };
    let mut matched: PtrMap<usize, HashSet<usize>> = PtrMap::default();
    let mut out = Vec::new();
    for s in many {
        let sig = ev
            .labels
            .derive(sig_kind, &s.labels, |l| signature_labels(l, &m.matching));
        let Some(o) = one_by_sig.get(&ptr(&sig)) else {
            continue;
        };
        let (l, r) = if one_to_many { (o.v, s.v) } else { (s.v, o.v) };
        let (mut v, keep) = apply(op, l, r)?;
        if return_bool {
            v = f64::from(u8::from(keep));
        } else if !keep {
            continue;
        }
        // Without group_x labels the result depends on the many side only.
        let mut labels = if include.is_empty() {
            ev.labels.derive(result_kind, &s.labels, |l| {
                result_labels(l, &o.labels, op, m, include)
            })
        } else {
            ev.labels
                .intern(result_labels(&s.labels, &o.labels, op, m, include))
        };
        if return_bool {
            labels = ev.labels.drop_name(&labels);
        }
        let seen = matched.entry(ptr(&sig)).or_default();
        if matches!(m.card, VectorMatchCardinality::OneToOne) {
            if !seen.is_empty() {
                return Err(QueryError::Execution(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
                ));
            }
            seen.insert(ptr(&labels));
        } else if !seen.insert(ptr(&labels)) {
            return Err(QueryError::Execution(
                "multiple matches for labels: grouping labels must ensure unique matches".into(),
            ));
        }
        out.push(Sample { labels, t: ts, v });
    }
    ev.labels.check_unique(out)
}

/// Prometheus's `resultMetric`: the many side's labels, reduced to the
/// matching labels for one-to-one `on`, plus `group_x` labels from the one side.
fn result_labels(
    many: &Labels,
    one: &Labels,
    op: u16,
    m: &BinModifier,
    include: &[String],
) -> Labels {
    let mut l = many.clone();
    if drops_name(op) {
        l.remove("__name__");
    }
    if matches!(m.card, VectorMatchCardinality::OneToOne) {
        match &m.matching {
            Some(LabelModifier::Include(on)) => l.retain(|k, _| on.labels.contains(k)),
            Some(LabelModifier::Exclude(ignoring)) => l.retain(|k, _| !ignoring.labels.contains(k)),
            None => {}
        }
    }
    for name in include {
        match one.get(name).filter(|v| !v.is_empty()) {
            Some(v) => {
                l.insert(name.clone(), v.clone());
            }
            None => {
                l.remove(name);
            }
        }
    }
    l
}

fn format_sig(sig: &[(String, String)]) -> String {
    let parts: Vec<String> = sig.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{{{}}}", parts.join(", "))
}

pub fn format_labels(l: &Labels) -> String {
    let parts: Vec<String> = l.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{{{}}}", parts.join(", "))
}
