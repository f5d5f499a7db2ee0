//! Recording and alerting rules (Prometheus's rule files) and log rules,
//! evaluated per group on Prometheus's schedule; results and `ALERTS`
//! series are written to the store; alerts go to the notifiers.

pub mod alert;
pub mod file;
pub mod notify;
pub mod template;
pub mod webhook;

use crate::promql::{Engine, Value};
use alert::{Alert, AlertingRule, Context};
use carbonio_collector::relabel::Labels;
use carbonio_collector::scrape::target::STALE_NAN_BITS;
use carbonio_collector::store::head::Matcher;
use carbonio_collector::store::MetricRead;
use file::{Condition, LogCondition, Rule, RuleGroup};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Where rule results are written.
pub trait SampleSink: Send + Sync {
    fn append(&self, samples: &[(Labels, i64, f64)]) -> Result<(), String>;
}

impl SampleSink for carbonio_collector::store::Store {
    fn append(&self, samples: &[(Labels, i64, f64)]) -> Result<(), String> {
        carbonio_collector::store::Store::append(self, samples).map_err(|e| e.to_string())
    }
}

/// Counts matching log lines per group for log rules.
pub trait LogCounter: Send + Sync {
    /// (group labels, count) for the lines matching in (end - window, end].
    fn counts(&self, c: &LogCondition, end_ms: i64) -> Result<Vec<(Labels, f64)>, String>;
}

/// Receives the alerts each evaluation wants sent.
pub trait Notify: Send + Sync {
    fn send(&self, alerts: &[Alert]);
}

/// Everything evaluation needs from outside.
pub struct Env {
    pub engine: Engine,
    pub reader: Arc<dyn MetricRead + Send + Sync>,
    pub sink: Arc<dyn SampleSink>,
    pub logs: Option<Arc<dyn LogCounter>>,
    pub notify: Vec<Arc<dyn Notify>>,
    pub external_labels: Labels,
    pub external_url: String,
    pub default_interval: Duration,
    pub resend_delay: Duration,
    pub outage_tolerance: Duration,
    pub grace_period: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Unknown,
    Ok,
    Err,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Ok => "ok",
            Health::Err => "err",
        }
    }
}

pub enum RuleKind {
    Recording {
        name: String,
        expr: String,
        labels: Labels,
    },
    Alerting(AlertingRule),
}

pub struct RuleState {
    pub kind: RuleKind,
    pub health: Health,
    pub last_error: String,
    /// Milliseconds since the epoch; 0 before the first evaluation.
    pub last_evaluation: i64,
    pub evaluation_seconds: f64,
    /// Series written by the last evaluation, to mark stale when they go.
    written: BTreeSet<Labels>,
}

pub struct GroupState {
    pub name: String,
    pub file: String,
    pub interval: Duration,
    pub limit: usize,
    pub rules: Vec<RuleState>,
    pub last_evaluation: i64,
    pub evaluation_seconds: f64,
    should_restore: bool,
}

impl GroupState {
    pub fn new(g: RuleGroup, default_interval: Duration) -> GroupState {
        let rules = g
            .rules
            .into_iter()
            .map(|r| RuleState {
                kind: match r {
                    Rule::Recording { name, expr, labels } => {
                        RuleKind::Recording { name, expr, labels }
                    }
                    Rule::Alerting(spec) => RuleKind::Alerting(AlertingRule::new(spec)),
                },
                health: Health::Unknown,
                last_error: String::new(),
                last_evaluation: 0,
                evaluation_seconds: 0.0,
                written: BTreeSet::new(),
            })
            .collect();
        GroupState {
            name: g.name,
            file: g.file.display().to_string(),
            interval: g.interval.unwrap_or(default_interval),
            limit: g.limit,
            rules,
            last_evaluation: 0,
            evaluation_seconds: 0.0,
            should_restore: true,
        }
    }

    /// Prometheus's group hash: that of the labels {file, name}.
    fn hash(&self) -> u64 {
        labels_hash([("file", self.file.as_str()), ("name", self.name.as_str())])
    }

    /// The evaluation time at or before `now_ns` on this group's grid
    /// (each group offset by its hash, as Prometheus spreads them).
    pub fn eval_timestamp(&self, now_ns: i64) -> i64 {
        let interval = self.interval.as_nanos().max(1) as i64;
        let offset = (self.hash() % interval as u64) as i64;
        let start = now_ns - offset;
        let base = start - start.rem_euclid(interval);
        base + offset
    }

    /// Takes over `old`'s state (the same group before a reload): each rule
    /// gets that of the old rule with the same name, labels and kind,
    /// matched in order among such rules. Returns the old rules left over.
    fn carry_over(&mut self, old: &mut GroupState) -> Vec<RuleState> {
        // As Prometheus's copyState: matched by name and labels (alerts of
        // one name often differ only by their severity label).
        type Key = (String, Labels);
        let key = |k: &RuleKind| -> Key {
            let labels = match k {
                RuleKind::Recording { labels, .. } => labels.clone(),
                RuleKind::Alerting(a) => a.spec.labels.clone(),
            };
            (rule_name(k).to_string(), labels)
        };
        let mut by_name: HashMap<Key, std::collections::VecDeque<RuleState>> = HashMap::new();
        for r in std::mem::take(&mut old.rules) {
            by_name.entry(key(&r.kind)).or_default().push_back(r);
        }
        for rule in &mut self.rules {
            let Some(queue) = by_name.get_mut(&key(&rule.kind)) else {
                continue;
            };
            let same_kind = queue.front().is_some_and(|o| {
                matches!(
                    (&o.kind, &rule.kind),
                    (RuleKind::Alerting(_), RuleKind::Alerting(_))
                        | (RuleKind::Recording { .. }, RuleKind::Recording { .. })
                )
            });
            if !same_kind {
                continue;
            }
            let Some(o) = queue.pop_front() else {
                continue;
            };
            if let (RuleKind::Alerting(new), RuleKind::Alerting(was)) = (&mut rule.kind, o.kind) {
                new.active = was.active;
                new.restored = was.restored;
            }
            rule.health = o.health;
            rule.last_error = o.last_error;
            rule.last_evaluation = o.last_evaluation;
            rule.evaluation_seconds = o.evaluation_seconds;
            rule.written = o.written;
        }
        self.last_evaluation = old.last_evaluation;
        self.evaluation_seconds = old.evaluation_seconds;
        self.should_restore = old.should_restore;
        by_name.into_values().flatten().collect()
    }

    /// Evaluates every rule at `ts` (ms): writes results, returns what to notify.
    pub fn eval(&mut self, ts: i64, env: &Env) -> Vec<Alert> {
        let started = Instant::now();
        let ctx = Context {
            external_labels: &env.external_labels,
            external_url: &env.external_url,
        };
        let interval_ms = self.interval.as_millis() as i64;
        let mut to_send = Vec::new();
        let mut samples: Vec<(Labels, i64, f64)> = Vec::new();
        for rule in &mut self.rules {
            let rule_started = Instant::now();
            let produced = match &mut rule.kind {
                RuleKind::Recording { name, expr, labels } => {
                    query(env, expr, ts).and_then(|v| record(v, name, labels, self.limit))
                }
                RuleKind::Alerting(a) => {
                    let result = match &a.spec.condition {
                        Condition::Promql(expr) => query(env, expr, ts),
                        Condition::Logs(c) => match &env.logs {
                            Some(logs) => logs.counts(c, ts).map(|groups| {
                                groups
                                    .into_iter()
                                    .filter(|(_, n)| *n > c.threshold)
                                    .collect()
                            }),
                            None => Err("log rules need the log store".into()),
                        },
                    };
                    let produced = result.and_then(|r| a.eval(ts, r, self.limit, &ctx));
                    let link = notify::generator_url(&env.external_url, &a.spec_query());
                    to_send.extend(
                        a.to_send(ts, env.resend_delay.as_millis() as i64, interval_ms)
                            .into_iter()
                            .map(|mut alert| {
                                alert.generator_url = link.clone();
                                alert
                            }),
                    );
                    produced
                }
            };
            rule.evaluation_seconds = rule_started.elapsed().as_secs_f64();
            rule.last_evaluation = ts;
            let now_written: BTreeSet<Labels> = match produced {
                Ok(series) => {
                    rule.health = Health::Ok;
                    rule.last_error.clear();
                    let keys = series.iter().map(|(l, _)| l.clone()).collect();
                    samples.extend(series.into_iter().map(|(l, v)| (l, ts, v)));
                    keys
                }
                Err(e) => {
                    tracing::warn!(group = %self.name, rule = %rule_name(&rule.kind), error = %e, "rule evaluation failed");
                    rule.health = Health::Err;
                    rule.last_error = e;
                    BTreeSet::new()
                }
            };
            // Series a rule no longer produces end with a staleness marker.
            for gone in rule.written.difference(&now_written) {
                samples.push((gone.clone(), ts, f64::from_bits(STALE_NAN_BITS)));
            }
            rule.written = now_written;
            // Written before the next rule runs: later rules of the group
            // read this one's results at the same time, as in Prometheus.
            if !samples.is_empty() {
                if let Err(e) = env.sink.append(&samples) {
                    tracing::error!(group = %self.name, error = %e, "writing rule results failed");
                }
                samples.clear();
            }
        }
        if self.should_restore {
            self.restore(env, ts);
            self.should_restore = false;
        }
        self.last_evaluation = ts;
        self.evaluation_seconds = started.elapsed().as_secs_f64();
        to_send
    }

    /// Continues `for` timers from the stored `ALERTS_FOR_STATE` series
    /// (after the first evaluation, as Prometheus does).
    fn restore(&mut self, env: &Env, ts: i64) {
        let tolerance = env.outage_tolerance.as_millis() as i64;
        let grace = env.grace_period.as_millis() as i64;
        for rule in &mut self.rules {
            let RuleKind::Alerting(a) = &mut rule.kind else {
                continue;
            };
            if a.active.is_empty() || a.spec.hold.as_millis() as i64 <= 0 {
                a.restored = true;
                continue;
            }
            let matchers = vec![
                Matcher::Equal("__name__".into(), "ALERTS_FOR_STATE".into()),
                Matcher::Equal("alertname".into(), a.spec.name.clone()),
            ];
            let mut last: HashMap<Labels, (i64, f64)> = HashMap::new();
            match env.reader.select(&matchers, ts - tolerance, ts) {
                Ok(series) => {
                    for (mut labels, points) in series {
                        labels.remove("__name__");
                        if let Some(p) = points.last() {
                            last.insert(labels, *p);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(rule = %a.spec.name, error = %e, "reading ALERTS_FOR_STATE failed")
                }
            }
            a.restore(ts, &last, grace);
        }
    }
}

/// Prometheus's `Labels.Hash`: xxhash64 over name, 0xff, value, 0xff of
/// each label in order.
pub fn labels_hash<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> u64 {
    let mut b = Vec::new();
    for (k, v) in labels {
        b.extend_from_slice(k.as_bytes());
        b.push(0xff);
        b.extend_from_slice(v.as_bytes());
        b.push(0xff);
    }
    twox_hash::XxHash64::oneshot(0, &b)
}

fn rule_name(k: &RuleKind) -> &str {
    match k {
        RuleKind::Recording { name, .. } => name,
        RuleKind::Alerting(a) => &a.spec.name,
    }
}

fn query(env: &Env, expr: &str, ts: i64) -> Result<Vec<(Labels, f64)>, String> {
    let (value, _) = env
        .engine
        .instant(env.reader.as_ref(), expr, ts)
        .map_err(|e| e.to_string())?;
    match value {
        Value::Vector(v) => Ok(v.into_iter().map(|s| ((*s.labels).clone(), s.v)).collect()),
        Value::Scalar(v) => Ok(vec![(Labels::new(), v)]),
        other => Err(format!(
            "rule result is not a vector or scalar: {}",
            other.type_name()
        )),
    }
}

fn record(
    result: Vec<(Labels, f64)>,
    name: &str,
    labels: &Labels,
    limit: usize,
) -> Result<Vec<(Labels, f64)>, String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(result.len());
    for (mut l, v) in result {
        l.insert("__name__".into(), name.to_string());
        for (k, val) in labels {
            if val.is_empty() {
                l.remove(k);
            } else {
                l.insert(k.clone(), val.clone());
            }
        }
        if !seen.insert(l.clone()) {
            return Err(
                "vector contains metrics with the same labelset after applying rule labels".into(),
            );
        }
        out.push((l, v));
    }
    if limit > 0 && out.len() > limit {
        return Err(format!(
            "exceeded limit of {limit} with {} series",
            out.len()
        ));
    }
    Ok(out)
}

/// Runs every group on its own thread until stopped.
pub struct Manager {
    groups: RwLock<Vec<Arc<Mutex<GroupState>>>>,
    env: Arc<Env>,
    stop: Mutex<Arc<AtomicBool>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Manager {
    pub fn start(groups: Vec<RuleGroup>, env: Arc<Env>) -> Manager {
        let m = Manager {
            groups: RwLock::new(Vec::new()),
            env,
            stop: Mutex::new(Arc::new(AtomicBool::new(false))),
            threads: Mutex::new(Vec::new()),
        };
        let states = groups
            .into_iter()
            .map(|g| GroupState::new(g, m.env.default_interval))
            .collect();
        m.spawn(states);
        m
    }

    fn spawn(&self, states: Vec<GroupState>) {
        let stop = Arc::new(AtomicBool::new(false));
        let groups: Vec<Arc<Mutex<GroupState>>> = states
            .into_iter()
            .map(|g| Arc::new(Mutex::new(g)))
            .collect();
        let threads = groups
            .iter()
            .map(|g| {
                let (g, env, stop) = (g.clone(), self.env.clone(), stop.clone());
                std::thread::Builder::new()
                    .name("rules".into())
                    .spawn(move || run_group(&g, &env, &stop))
            })
            .filter_map(|t| {
                t.map_err(|e| tracing::error!(error = %e, "cannot start a rule group thread"))
                    .ok()
            })
            .collect();
        *self.groups.write().unwrap_or_else(|p| p.into_inner()) = groups;
        *locked(&self.stop) = stop;
        *locked(&self.threads) = threads;
    }

    /// The groups being evaluated.
    pub fn groups(&self) -> Vec<Arc<Mutex<GroupState>>> {
        self.groups
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stops the groups after their running evaluation.
    pub fn stop(&self) {
        locked(&self.stop).store(true, Ordering::Relaxed);
        let threads = std::mem::take(&mut *locked(&self.threads));
        for t in threads {
            let _ = t.join();
        }
    }

    /// Replaces the rules (on a configuration reload). As in Prometheus, a
    /// group with the same file and name keeps its rules' state (pending
    /// and firing alerts, health, last results) for the rules of the same
    /// name; the series of rules that are gone get staleness markers.
    pub fn reload(&self, groups: Vec<RuleGroup>) {
        self.stop();
        let mut old: HashMap<(String, String), Arc<Mutex<GroupState>>> = self
            .groups()
            .into_iter()
            .map(|g| {
                let key = {
                    let g = locked(&g);
                    (g.file.clone(), g.name.clone())
                };
                (key, g)
            })
            .collect();
        let mut gone: Vec<RuleState> = Vec::new();
        let states: Vec<GroupState> = groups
            .into_iter()
            .map(|g| {
                let mut state = GroupState::new(g, self.env.default_interval);
                if let Some(previous) = old.remove(&(state.file.clone(), state.name.clone())) {
                    gone.extend(state.carry_over(&mut locked(&previous)));
                }
                state
            })
            .collect();
        for g in old.into_values() {
            gone.append(&mut locked(&g).rules);
        }
        let stale: Vec<(Labels, i64, f64)> = gone
            .iter()
            .flat_map(|r| r.written.iter())
            .map(|l| {
                (
                    l.clone(),
                    now_ns() / 1_000_000,
                    f64::from_bits(STALE_NAN_BITS),
                )
            })
            .collect();
        if !stale.is_empty() {
            if let Err(e) = self.env.sink.append(&stale) {
                tracing::error!(error = %e, "writing staleness markers of removed rules failed");
            }
        }
        let rules: usize = states.iter().map(|g| g.rules.len()).sum();
        tracing::info!(groups = states.len(), rules, "rules reloaded");
        self.spawn(states);
    }

    /// Every alert that is pending or firing.
    pub fn alerts(&self) -> Vec<Alert> {
        let mut out = Vec::new();
        for g in self.groups() {
            let g = locked(&g);
            for r in &g.rules {
                if let RuleKind::Alerting(a) = &r.kind {
                    out.extend(a.pending_or_firing().cloned());
                }
            }
        }
        out
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Prometheus's group loop: first evaluation one interval after the
/// group's slot, then every interval; missed slots are skipped.
fn run_group(group: &Mutex<GroupState>, env: &Env, stop: &AtomicBool) {
    let (interval, mut next) = {
        let g = group.lock().unwrap_or_else(|p| p.into_inner());
        let interval = g.interval.as_nanos() as i64;
        (interval.max(1), g.eval_timestamp(now_ns()) + interval)
    };
    loop {
        while now_ns() < next {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let wait = (next - now_ns()).clamp(0, 100_000_000);
            std::thread::sleep(Duration::from_nanos(wait as u64));
        }
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let alerts = group
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .eval(next.div_euclid(1_000_000), env);
        if !alerts.is_empty() {
            for n in &env.notify {
                n.send(&alerts);
            }
        }
        let missed = (now_ns() - next) / interval;
        if missed > 0 {
            tracing::warn!(missed, "rule group evaluations missed");
        }
        next += (missed.max(0) + 1) * interval;
    }
}

/// Log rules counted by the log search, from rule threads.
#[cfg(feature = "sql")]
pub struct SearchCounter {
    pub search: crate::logs::search::LogSearch,
    pub runtime: tokio::runtime::Handle,
}

#[cfg(feature = "sql")]
impl LogCounter for SearchCounter {
    fn counts(&self, c: &LogCondition, end_ms: i64) -> Result<Vec<(Labels, f64)>, String> {
        let end = end_ms.saturating_mul(1_000_000);
        let start = end.saturating_sub(c.window.as_nanos() as i64) + 1;
        let groups = self
            .runtime
            .block_on(self.search.group_counts(
                &c.search,
                start,
                end,
                &c.group_by,
                c.extract.as_ref(),
            ))
            .map_err(|e| e.to_string())?;
        Ok(groups.into_iter().map(|(l, n)| (l, n as f64)).collect())
    }
}
