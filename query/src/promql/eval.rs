//! The evaluator: an expression is evaluated at one timestamp at a time
//! (a range query steps through its range), over selector data loaded once
//! per query for the widest window any step needs.

use super::value::{has_duplicate_labels, Sample, Series, Value};
use super::{aggregate, binary, call, EngineOptions, QueryError};
use carbonio_collector::relabel::Labels;
use carbonio_collector::scrape::target::STALE_NAN_BITS;
use carbonio_collector::store::head::Matcher;
use carbonio_collector::store::MetricRead;
use promql_parser::label::MatchOp;
use promql_parser::parser::{AtModifier, Expr, Offset, SubqueryExpr, VectorSelector};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

mod memo;
pub use memo::{ptr, LabelMemo, PtrMap, DERIVE_HISTOGRAM};

/// One selected series: labels (interned) and every sample in the loaded
/// window; `stale` when some are staleness markers. `cursor` is where the
/// last step's window began and ended: steps mostly move forward, so the
/// next window is found near it instead of by a binary search over the
/// whole series (which misses the cache on every probe).
struct Loaded {
    labels: Arc<Labels>,
    points: Vec<(i64, f64)>,
    stale: bool,
    cursor: std::cell::Cell<(usize, usize)>,
}

/// `points.partition_point(|p| before(p.0))`, searched from `hint`:
/// galloping forward when the answer is after it, else a binary search
/// below it.
fn seek(points: &[(i64, f64)], hint: usize, before: impl Fn(i64) -> bool) -> usize {
    let n = points.len();
    let h = hint.min(n);
    if h == n || !before(points[h].0) {
        if h == 0 || before(points[h - 1].0) {
            return h;
        }
        return points[..h].partition_point(|p| before(p.0));
    }
    // Everything below `lo` is before the answer.
    let mut lo = h + 1;
    let mut step = 1;
    loop {
        let probe = lo + step - 1;
        if probe >= n || !before(points[probe].0) {
            let hi = probe.min(n);
            return lo + points[lo..hi].partition_point(|p| before(p.0));
        }
        lo = probe + 1;
        step *= 2;
    }
}

pub struct Evaluator<'a> {
    store: &'a (dyn MetricRead + Sync),
    pub(super) opts: &'a EngineOptions,
    query_start: i64,
    query_end: i64,
    deadline: Instant,
    /// Selector data keyed by the selector node's address (the tree
    /// outlives the evaluator).
    data: HashMap<usize, std::rc::Rc<Vec<Loaded>>>,
    /// Selectors whose series stay distinct without their metric name
    /// (so functions over them cannot produce duplicate label sets).
    distinct_without_name: HashSet<usize>,
    samples_loaded: usize,
    /// Subquery inner results by (node, step time): steps are aligned to
    /// absolute multiples of the step, so outer steps share them.
    memo: HashMap<(usize, i64), Value>,
    pub(super) labels: LabelMemo,
    /// Point buffers of range windows already used, to fill again: a
    /// window per series and step would otherwise be an allocation each.
    spare: Vec<Vec<(i64, f64)>>,
    started: Instant,
}

/// What the path from the root to a selector adds to its time window.
#[derive(Clone, Default)]
struct PathWindow {
    back_ms: i64,
    forward_ms: i64,
    at: Vec<i64>,
}

impl<'a> Evaluator<'a> {
    pub fn new(
        store: &'a (dyn MetricRead + Sync),
        opts: &'a EngineOptions,
        query_start: i64,
        query_end: i64,
        deadline: Instant,
    ) -> Self {
        Evaluator {
            store,
            opts,
            query_start,
            query_end,
            deadline,
            data: HashMap::new(),
            distinct_without_name: HashSet::new(),
            samples_loaded: 0,
            memo: HashMap::new(),
            labels: LabelMemo::default(),
            spare: Vec::new(),
            started: Instant::now(),
        }
    }

    /// Loads every selector's data for the whole query before evaluating.
    pub fn preload(&mut self, expr: &Expr) -> Result<(), QueryError> {
        self.walk(expr, &PathWindow::default())
    }

    fn walk(&mut self, expr: &Expr, path: &PathWindow) -> Result<(), QueryError> {
        match expr {
            Expr::VectorSelector(vs) => self.load(vs, path, self.opts.lookback_delta_ms),
            Expr::MatrixSelector(ms) => self.load(&ms.vs, path, ms.range.as_millis() as i64),
            Expr::Subquery(sq) => {
                let mut inner = path.clone();
                inner.back_ms += sq.range.as_millis() as i64 + self.step_of(sq);
                self.shift(&mut inner, &sq.offset, &sq.at);
                self.walk(&sq.expr, &inner)
            }
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    self.walk(p, path)?;
                }
                self.walk(&a.expr, path)
            }
            Expr::Unary(u) => self.walk(&u.expr, path),
            Expr::Paren(p) => self.walk(&p.expr, path),
            Expr::Binary(b) => {
                self.walk(&b.lhs, path)?;
                self.walk(&b.rhs, path)
            }
            Expr::Call(c) => c.args.args.iter().try_for_each(|a| self.walk(a, path)),
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => Ok(()),
        }
    }

    fn shift(&self, path: &mut PathWindow, offset: &Option<Offset>, at: &Option<AtModifier>) {
        match offset {
            Some(Offset::Pos(d)) => path.back_ms += d.as_millis() as i64,
            Some(Offset::Neg(d)) => path.forward_ms += d.as_millis() as i64,
            None => {}
        }
        if let Some(at) = at {
            path.at.push(self.at_ms(at));
        }
    }

    fn load(
        &mut self,
        vs: &VectorSelector,
        path: &PathWindow,
        window_ms: i64,
    ) -> Result<(), QueryError> {
        let mut path = path.clone();
        self.shift(&mut path, &vs.offset, &vs.at);
        let lo = path.at.iter().copied().fold(self.query_start, i64::min);
        let hi = path.at.iter().copied().fold(self.query_end, i64::max);
        let start = lo.saturating_sub(window_ms + path.back_ms);
        let end = hi.saturating_add(path.forward_ms);
        let key = vs as *const VectorSelector as usize;
        let selected = self
            .store
            .select(&matchers_of(vs)?, start, end)
            .map_err(|e| QueryError::Execution(format!("reading the store: {e}")))?;
        self.samples_loaded += selected.iter().map(|(_, s)| s.len()).sum::<usize>();
        if self.samples_loaded > self.opts.max_samples {
            return Err(too_many_samples());
        }
        let loaded: Vec<Loaded> = selected
            .into_iter()
            .map(|(l, points)| Loaded {
                labels: self.labels.intern(l),
                stale: points.iter().any(|p| p.1.to_bits() == STALE_NAN_BITS),
                points,
                cursor: std::cell::Cell::new((0, 0)),
            })
            .collect();
        let mut without_name = HashSet::with_capacity(loaded.len());
        if loaded
            .iter()
            .all(|s| without_name.insert(ptr(&self.labels.drop_name(&s.labels))))
        {
            self.distinct_without_name.insert(key);
        }
        self.data.insert(key, std::rc::Rc::new(loaded));
        Ok(())
    }

    /// Whether `arg` is a range selector whose series stay distinct
    /// without their metric name: per-series functions over it then need
    /// no duplicate check.
    pub fn distinct_without_name(&self, arg: &Expr) -> bool {
        match arg {
            Expr::Paren(p) => self.distinct_without_name(&p.expr),
            Expr::MatrixSelector(ms) => self
                .distinct_without_name
                .contains(&(&ms.vs as *const VectorSelector as usize)),
            _ => false,
        }
    }

    fn data_of(&self, vs: &VectorSelector) -> Result<std::rc::Rc<Vec<Loaded>>, QueryError> {
        self.data
            .get(&(vs as *const VectorSelector as usize))
            .cloned()
            .ok_or_else(|| QueryError::Execution("selector evaluated before it was loaded".into()))
    }

    pub fn stats(&self) -> super::QueryStats {
        super::QueryStats {
            samples_loaded: self.samples_loaded,
            eval_seconds: self.started.elapsed().as_secs_f64(),
        }
    }

    pub fn check_deadline(&self) -> Result<(), QueryError> {
        if Instant::now() > self.deadline {
            return Err(QueryError::Timeout("expression evaluation"));
        }
        Ok(())
    }

    fn at_ms(&self, at: &AtModifier) -> i64 {
        match at {
            AtModifier::Start => self.query_start,
            AtModifier::End => self.query_end,
            AtModifier::At(t) => system_time_ms(*t),
        }
    }

    /// The time a selector or subquery reads at when evaluated at `ts`.
    fn ref_time(&self, ts: i64, offset: &Option<Offset>, at: &Option<AtModifier>) -> i64 {
        let base = at.as_ref().map(|a| self.at_ms(a)).unwrap_or(ts);
        match offset {
            Some(Offset::Pos(d)) => base - d.as_millis() as i64,
            Some(Offset::Neg(d)) => base + d.as_millis() as i64,
            None => base,
        }
    }

    fn step_of(&self, sq: &SubqueryExpr) -> i64 {
        sq.step
            .map(|s| s.as_millis() as i64)
            .filter(|s| *s > 0)
            .unwrap_or(self.opts.default_step_ms)
    }

    /// An instant query's result.
    pub fn instant(&mut self, expr: &Expr, ts: i64) -> Result<Value, QueryError> {
        self.eval(expr, ts)
    }

    /// A range query's result: one series per label set, a point per step.
    pub fn range(
        &mut self,
        expr: &Expr,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<Vec<Series>, QueryError> {
        if step <= 0 {
            return Err(QueryError::BadData(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        let mut out = SeriesBuilder::default();
        let mut ts = start;
        while ts <= end {
            let samples = match self.eval(expr, ts)? {
                Value::Scalar(v) => vec![Sample {
                    labels: Arc::new(Labels::new()),
                    t: ts,
                    v,
                }],
                Value::Vector(v) => v,
                other => {
                    return Err(QueryError::Execution(format!(
                        "unexpected {} in a range query",
                        other.type_name()
                    )))
                }
            };
            out.push_step(ts, samples, &mut self.labels);
            ts += step;
        }
        let mut out = out.series;
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }

    pub fn eval(&mut self, expr: &Expr, ts: i64) -> Result<Value, QueryError> {
        self.check_deadline()?;
        match expr {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, ts),
            Expr::Unary(u) => match self.eval(&u.expr, ts)? {
                Value::Scalar(v) => Ok(Value::Scalar(-v)),
                Value::Vector(v) => {
                    let out: Vec<Sample> = v
                        .into_iter()
                        .map(|s| Sample {
                            labels: self.labels.drop_name(&s.labels),
                            t: ts,
                            v: -s.v,
                        })
                        .collect();
                    self.labels.check_unique(out)
                }
                other => Err(QueryError::BadData(format!(
                    "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                    other.type_name()
                ))),
            },
            Expr::VectorSelector(vs) => Ok(Value::Vector(self.select_instant(vs, ts)?)),
            Expr::MatrixSelector(ms) => {
                let rt = self.ref_time(ts, &ms.vs.offset, &ms.vs.at);
                Ok(Value::Matrix(self.select_range(
                    &ms.vs,
                    rt,
                    ms.range.as_millis() as i64,
                )?))
            }
            Expr::Subquery(sq) => Ok(Value::Matrix(self.subquery(sq, ts)?)),
            Expr::Binary(b) => binary::eval(self, b, ts),
            Expr::Aggregate(a) => aggregate::eval(self, a, ts),
            Expr::Call(c) => call::eval(self, c, ts),
            Expr::Extension(_) => Err(QueryError::BadData("unsupported expression".into())),
        }
    }

    /// The newest sample at or before the reference time, within the
    /// lookback delta, unless it is a staleness marker.
    pub fn select_instant(
        &mut self,
        vs: &VectorSelector,
        ts: i64,
    ) -> Result<Vec<Sample>, QueryError> {
        let rt = self.ref_time(ts, &vs.offset, &vs.at);
        let data = self.data_of(vs)?;
        let oldest = rt - self.opts.lookback_delta_ms;
        Ok(data
            .iter()
            .filter_map(|s| {
                let (a, b) = s.cursor.get();
                let i = seek(&s.points, b, |t| t <= rt);
                s.cursor.set((a, i));
                let &(t, v) = s.points.get(i.checked_sub(1)?)?;
                (t >= oldest && v.to_bits() != STALE_NAN_BITS).then(|| Sample {
                    labels: s.labels.clone(),
                    t,
                    v,
                })
            })
            .collect())
    }

    /// Samples in [rt - range, rt] (Prometheus 2.x closes both ends),
    /// staleness markers left out; series without samples are omitted.
    pub fn select_range(
        &mut self,
        vs: &VectorSelector,
        rt: i64,
        range: i64,
    ) -> Result<Vec<Series>, QueryError> {
        let data = self.data_of(vs)?;
        let mut out = Vec::with_capacity(data.len());
        for s in data.iter() {
            let (a, b) = s.cursor.get();
            let a = seek(&s.points, a, |t| t < rt - range);
            let b = seek(&s.points, b.max(a), |t| t <= rt);
            s.cursor.set((a, b));
            let window = &s.points[a..b];
            let mut pts = self.spare.pop().unwrap_or_default();
            pts.clear();
            if s.stale {
                pts.extend(window.iter().filter(|(_, v)| v.to_bits() != STALE_NAN_BITS));
            } else {
                pts.extend_from_slice(window);
            }
            if pts.is_empty() {
                self.spare.push(pts);
                continue;
            }
            out.push(Series {
                labels: s.labels.clone(),
                points: pts,
            });
        }
        Ok(out)
    }

    /// Takes back the point buffers of windows no longer needed.
    pub fn recycle(&mut self, series: impl IntoIterator<Item = Vec<(i64, f64)>>) {
        self.spare.extend(series);
    }

    /// The inner expression at every step multiple in [rt - range, rt].
    pub fn subquery(&mut self, sq: &SubqueryExpr, ts: i64) -> Result<Vec<Series>, QueryError> {
        let rt = self.ref_time(ts, &sq.offset, &sq.at);
        let step = self.step_of(sq);
        let lo = rt - sq.range.as_millis() as i64;
        let mut t = step * (lo / step);
        if t < lo {
            t += step;
        }
        let mut out = SeriesBuilder::default();
        let key = &*sq.expr as *const Expr as usize;
        while t <= rt {
            let value = match self.memo.get(&(key, t)) {
                Some(v) => v.clone(),
                None => {
                    let v = self.eval(&sq.expr, t)?;
                    self.memo.insert((key, t), v.clone());
                    v
                }
            };
            let samples = match value {
                Value::Scalar(v) => vec![Sample {
                    labels: Arc::new(Labels::new()),
                    t,
                    v,
                }],
                Value::Vector(v) => v,
                other => {
                    return Err(QueryError::BadData(format!(
                        "subquery is only allowed on instant vector, got {}",
                        other.type_name()
                    )))
                }
            };
            // Subquery points count against the sample limit like loaded ones.
            self.samples_loaded += samples.len();
            if self.samples_loaded > self.opts.max_samples {
                return Err(too_many_samples());
            }
            out.push_step(t, samples, &mut self.labels);
            t += step;
        }
        Ok(out.series)
    }

    /// The window a range function sees for its matrix argument at `ts`:
    /// the series and the window's [start, end].
    pub fn range_arg(
        &mut self,
        arg: &Expr,
        ts: i64,
    ) -> Result<(Vec<Series>, i64, i64), QueryError> {
        match arg {
            Expr::Paren(p) => self.range_arg(&p.expr, ts),
            Expr::MatrixSelector(ms) => {
                let rt = self.ref_time(ts, &ms.vs.offset, &ms.vs.at);
                let range = ms.range.as_millis() as i64;
                Ok((self.select_range(&ms.vs, rt, range)?, rt - range, rt))
            }
            Expr::Subquery(sq) => {
                let rt = self.ref_time(ts, &sq.offset, &sq.at);
                let range = sq.range.as_millis() as i64;
                Ok((self.subquery(sq, ts)?, rt - range, rt))
            }
            _ => Err(QueryError::BadData(
                "expected a range vector selector or subquery".into(),
            )),
        }
    }

    pub fn scalar(&mut self, expr: &Expr, ts: i64) -> Result<f64, QueryError> {
        match self.eval(expr, ts)? {
            Value::Scalar(v) => Ok(v),
            other => Err(QueryError::BadData(format!(
                "expected scalar, got {}",
                other.type_name()
            ))),
        }
    }

    pub fn vector(&mut self, expr: &Expr, ts: i64) -> Result<Vec<Sample>, QueryError> {
        match self.eval(expr, ts)? {
            Value::Vector(v) => Ok(v),
            other => Err(QueryError::BadData(format!(
                "expected instant vector, got {}",
                other.type_name()
            ))),
        }
    }
}

/// Collects per-step vectors into series, one per (interned) label set.
#[derive(Default)]
struct SeriesBuilder {
    series: Vec<Series>,
    index: PtrMap<usize, usize>,
}

impl SeriesBuilder {
    fn push_step(&mut self, t: i64, samples: Vec<Sample>, memo: &mut LabelMemo) {
        for s in samples {
            let labels = memo.intern_arc(s.labels);
            let i = *self.index.entry(ptr(&labels)).or_insert_with(|| {
                self.series.push(Series {
                    labels,
                    points: Vec::new(),
                });
                self.series.len() - 1
            });
            self.series[i].points.push((t, s.v));
        }
    }
}

/// Fails as Prometheus does when an operation produced two elements with
/// the same labels (usually after dropping `__name__`).
pub fn check_unique(samples: Vec<Sample>) -> Result<Value, QueryError> {
    if has_duplicate_labels(&samples) {
        return Err(duplicate_labelset());
    }
    Ok(Value::Vector(samples))
}

pub(super) fn duplicate_labelset() -> QueryError {
    QueryError::Execution("vector cannot contain metrics with the same labelset".into())
}

fn too_many_samples() -> QueryError {
    QueryError::Execution(
        "query processing would load too many samples into memory in query execution".into(),
    )
}

fn system_time_ms(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// The store's matchers for a selector (its metric name is one more).
fn matchers_of(vs: &VectorSelector) -> Result<Vec<Matcher>, QueryError> {
    if !vs.matchers.or_matchers.is_empty() {
        return Err(QueryError::BadData(
            "'or' between label matchers is not supported".into(),
        ));
    }
    let mut out: Vec<Matcher> = vs
        .name
        .iter()
        .map(|n| Matcher::Equal("__name__".into(), n.clone()))
        .collect();
    for m in &vs.matchers.matchers {
        out.push(match &m.op {
            MatchOp::Equal => Matcher::Equal(m.name.clone(), m.value.clone()),
            MatchOp::NotEqual => Matcher::NotEqual(m.name.clone(), m.value.clone()),
            MatchOp::Re(re) => Matcher::Re(m.name.clone(), re.clone()),
            MatchOp::NotRe(re) => Matcher::NotRe(m.name.clone(), re.clone()),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod seek_tests {
    use super::seek;

    #[test]
    fn seek_agrees_with_partition_point_from_any_hint() {
        let points: Vec<(i64, f64)> = (0..50).map(|i| (i * 10 - (i % 3), 0.0)).collect();
        for target in -20..520 {
            let want = points.partition_point(|p| p.0 < target);
            for hint in 0..=points.len() + 2 {
                assert_eq!(seek(&points, hint, |t| t < target), want, "{target} {hint}");
            }
        }
        assert_eq!(seek(&[], 3, |_| true), 0);
    }
}
