//! One alerting rule's state, with Prometheus 2.42's semantics
//! (rules/alerting.go): pending → firing after `for`, `keep_firing_for`,
//! resolved alerts kept 15 minutes so receivers learn of the resolution,
//! `ALERTS`/`ALERTS_FOR_STATE` samples, and `for` restored after a restart.

use super::file::AlertSpec;
use super::template::{expand, Data};
use carbonio_collector::relabel::Labels;
use carbonio_collector::scrape::target::STALE_NAN_BITS;
use serde::Serialize;
use std::collections::HashMap;

/// How long a resolved alert is still sent (as resolved).
const RESOLVED_RETENTION_MS: i64 = 15 * 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Inactive,
    Pending,
    Firing,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Alert {
    pub labels: Labels,
    pub annotations: Labels,
    pub state: AlertState,
    pub value: f64,
    /// Milliseconds since the epoch.
    pub active_at: i64,
    pub fired_at: Option<i64>,
    pub resolved_at: Option<i64>,
    pub last_sent_at: Option<i64>,
    pub valid_until: i64,
    keep_firing_since: Option<i64>,
    /// Link to the rule's expression, set when the alert is sent.
    pub generator_url: String,
}

impl Alert {
    /// Pending alerts are never sent; resolved ones once more; firing ones
    /// every `resend_delay`.
    fn needs_sending(&self, ts: i64, resend_delay_ms: i64) -> bool {
        if self.state == AlertState::Pending {
            return false;
        }
        let last = self.last_sent_at.unwrap_or(i64::MIN);
        if self.resolved_at.is_some_and(|r| r > last) {
            return true;
        }
        last.saturating_add(resend_delay_ms) < ts
    }
}

/// What templates need besides the alert's own labels and value.
pub struct Context<'a> {
    pub external_labels: &'a Labels,
    pub external_url: &'a str,
}

pub struct AlertingRule {
    pub spec: AlertSpec,
    pub active: HashMap<Labels, Alert>,
    /// `ALERTS_FOR_STATE` restoration done (or not needed): until then no
    /// `ALERTS` samples are written, as in Prometheus.
    pub restored: bool,
}

impl AlertingRule {
    pub fn new(spec: AlertSpec) -> Self {
        AlertingRule {
            spec,
            active: HashMap::new(),
            restored: false,
        }
    }

    /// Takes the expression's result at `ts` (ms) and returns the
    /// `ALERTS` and `ALERTS_FOR_STATE` samples to write.
    pub fn eval(
        &mut self,
        ts: i64,
        result: Vec<(Labels, f64)>,
        limit: usize,
        ctx: &Context,
    ) -> Result<Vec<(Labels, f64)>, String> {
        let mut fresh: HashMap<Labels, Alert> = HashMap::with_capacity(result.len());
        for (mut metric, value) in result {
            metric.remove("__name__");
            let data = Data {
                labels: &metric,
                external_labels: ctx.external_labels,
                external_url: ctx.external_url,
                value,
            };
            let render = |text: &str| {
                expand(text, &data).unwrap_or_else(|e| {
                    tracing::warn!(rule = %self.spec.name, error = %e, "expanding an alert template failed");
                    format!("<error expanding template: {e}>")
                })
            };
            let mut labels = metric.clone();
            for (k, v) in &self.spec.labels {
                labels.insert(k.clone(), render(v));
            }
            labels.insert("alertname".into(), self.spec.name.clone());
            let annotations: Labels = self
                .spec
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), render(v)))
                .collect();
            if fresh.contains_key(&labels) {
                return Err(
                    "vector contains metrics with the same labelset after applying alert labels"
                        .into(),
                );
            }
            fresh.insert(
                labels.clone(),
                Alert {
                    labels,
                    annotations,
                    state: AlertState::Pending,
                    value,
                    active_at: ts,
                    fired_at: None,
                    resolved_at: None,
                    last_sent_at: None,
                    valid_until: 0,
                    keep_firing_since: None,
                    generator_url: String::new(),
                },
            );
        }
        let hold = self.spec.hold.as_millis() as i64;
        let keep_for = self.spec.keep_firing_for.as_millis() as i64;
        let now_active: std::collections::HashSet<Labels> = fresh.keys().cloned().collect();
        for (key, alert) in fresh {
            match self.active.get_mut(&key) {
                Some(a) if a.state != AlertState::Inactive => {
                    a.value = alert.value;
                    a.annotations = alert.annotations;
                }
                _ => {
                    self.active.insert(key, alert);
                }
            }
        }
        let mut out = Vec::new();
        let mut active_pending = 0;
        let mut gone = Vec::new();
        for (key, a) in self.active.iter_mut() {
            if !now_active.contains(key) {
                let mut keep_firing = false;
                if a.state == AlertState::Firing && keep_for > 0 {
                    let since = *a.keep_firing_since.get_or_insert(ts);
                    keep_firing = ts - since < keep_for;
                }
                if a.state == AlertState::Pending
                    || a.resolved_at
                        .is_some_and(|r| ts - r > RESOLVED_RETENTION_MS)
                {
                    gone.push(key.clone());
                }
                if a.state != AlertState::Inactive && !keep_firing {
                    a.state = AlertState::Inactive;
                    a.resolved_at = Some(ts);
                }
                if !keep_firing {
                    continue;
                }
            } else {
                a.keep_firing_since = None;
            }
            active_pending += 1;
            if a.state == AlertState::Pending && ts - a.active_at >= hold {
                a.state = AlertState::Firing;
                a.fired_at = Some(ts);
            }
            if self.restored {
                let mut l = a.labels.clone();
                l.insert("__name__".into(), "ALERTS".into());
                l.insert("alertstate".into(), a.state.as_str().into());
                out.push((l, 1.0));
                let mut l = a.labels.clone();
                l.insert("__name__".into(), "ALERTS_FOR_STATE".into());
                out.push((l, (a.active_at.div_euclid(1000)) as f64));
            }
        }
        for key in gone {
            self.active.remove(&key);
        }
        if limit > 0 && active_pending > limit {
            self.active.clear();
            return Err(format!(
                "exceeded limit of {limit} with {active_pending} alerts"
            ));
        }
        Ok(out)
    }

    /// The alerts to send now (marked sent), as Prometheus's sendAlerts.
    pub fn to_send(&mut self, ts: i64, resend_delay_ms: i64, interval_ms: i64) -> Vec<Alert> {
        let delta = resend_delay_ms.max(interval_ms);
        let mut out = Vec::new();
        for a in self.active.values_mut() {
            if a.needs_sending(ts, resend_delay_ms) {
                a.last_sent_at = Some(ts);
                a.valid_until = ts + 4 * delta;
                out.push(a.clone());
            }
        }
        out
    }

    /// Continues `for` timers from the last `ALERTS_FOR_STATE` sample of
    /// each active alert: `series` holds (labels without `__name__`, last
    /// sample time ms, value = active since, seconds).
    pub fn restore(&mut self, now: i64, series: &HashMap<Labels, (i64, f64)>, grace_ms: i64) {
        let hold = self.spec.hold.as_millis() as i64;
        if hold >= grace_ms {
            for a in self.active.values_mut() {
                let Some((down_at, v)) = series.get(&a.labels) else {
                    continue;
                };
                if v.to_bits() == STALE_NAN_BITS || v.is_nan() {
                    continue;
                }
                let down_at = down_at.div_euclid(1000) * 1000;
                let restored = (*v as i64) * 1000;
                let spent = down_at - restored;
                let remaining = hold - spent;
                a.active_at = if remaining <= 0 {
                    restored
                } else if remaining < grace_ms {
                    now + grace_ms - hold
                } else {
                    restored + (now - down_at)
                };
            }
        }
        self.restored = true;
    }

    /// Alerts that are pending or firing (not the resolved ones kept to be sent).
    pub fn pending_or_firing(&self) -> impl Iterator<Item = &Alert> {
        self.active
            .values()
            .filter(|a| a.state != AlertState::Inactive)
    }

    /// The expression as the API and links show it.
    pub fn spec_query(&self) -> String {
        super::file::Rule::Alerting(self.spec.clone()).query()
    }

    pub fn state(&self) -> AlertState {
        self.active
            .values()
            .map(|a| a.state)
            .max_by_key(|s| match s {
                AlertState::Inactive => 0,
                AlertState::Pending => 1,
                AlertState::Firing => 2,
            })
            .unwrap_or(AlertState::Inactive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::file::Condition;
    use std::time::Duration;

    fn rule(hold_s: u64, keep_s: u64) -> AlertingRule {
        let mut r = AlertingRule::new(AlertSpec {
            name: "Down".into(),
            condition: Condition::Promql("up == 0".into()),
            hold: Duration::from_secs(hold_s),
            keep_firing_for: Duration::from_secs(keep_s),
            labels: [("severity".to_string(), "page".to_string())].into(),
            annotations: [(
                "summary".to_string(),
                "{{ $labels.instance }} is {{ $value }}".to_string(),
            )]
            .into(),
        });
        r.restored = true;
        r
    }

    fn down(instance: &str) -> Vec<(Labels, f64)> {
        vec![(
            [
                ("__name__".to_string(), "up".to_string()),
                ("instance".into(), instance.into()),
            ]
            .into(),
            0.0,
        )]
    }

    fn ctx() -> (Labels, String) {
        (Labels::new(), String::new())
    }

    #[test]
    fn pending_then_firing_then_resolved() {
        let (el, url) = ctx();
        let c = Context {
            external_labels: &el,
            external_url: &url,
        };
        let mut r = rule(120, 0);
        let out = r.eval(0, down("a"), 0, &c).unwrap();
        assert_eq!(r.state(), AlertState::Pending);
        assert!(out.iter().any(|(l, _)| l["alertstate"] == "pending"));
        assert!(
            r.to_send(0, 60_000, 60_000).is_empty(),
            "pending alerts are not sent"
        );
        r.eval(60_000, down("a"), 0, &c).unwrap();
        assert_eq!(r.state(), AlertState::Pending);
        r.eval(120_000, down("a"), 0, &c).unwrap();
        assert_eq!(r.state(), AlertState::Firing);
        let sent = r.to_send(120_000, 60_000, 60_000);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].annotations["summary"], "a is 0");
        assert_eq!(sent[0].labels["severity"], "page");
        assert!(
            r.to_send(150_000, 60_000, 60_000).is_empty(),
            "resend waits"
        );
        r.eval(180_000, vec![], 0, &c).unwrap();
        assert_eq!(r.state(), AlertState::Inactive);
        let sent = r.to_send(180_000, 60_000, 60_000);
        assert_eq!(sent[0].resolved_at, Some(180_000));
        // Kept 15 minutes as resolved, then dropped.
        r.eval(180_000 + 16 * 60_000, vec![], 0, &c).unwrap();
        assert!(r.active.is_empty());
    }

    #[test]
    fn keep_firing_for_and_limit() {
        let (el, url) = ctx();
        let c = Context {
            external_labels: &el,
            external_url: &url,
        };
        let mut r = rule(0, 120);
        r.eval(0, down("a"), 0, &c).unwrap();
        assert_eq!(r.state(), AlertState::Firing);
        r.eval(60_000, vec![], 0, &c).unwrap();
        assert_eq!(r.state(), AlertState::Firing, "kept firing");
        r.eval(180_000, vec![], 0, &c).unwrap();
        assert_eq!(r.state(), AlertState::Inactive);
        let mut two = down("a");
        two.extend(down("b"));
        assert!(r
            .eval(240_000, two, 1, &c)
            .unwrap_err()
            .contains("exceeded limit of 1"));
    }

    #[test]
    fn restore_continues_the_for_timer() {
        let (el, url) = ctx();
        let c = Context {
            external_labels: &el,
            external_url: &url,
        };
        let mut r = rule(3600, 0);
        r.restored = false;
        r.eval(10_000_000, down("a"), 0, &c).unwrap();
        let labels = r.active.keys().next().unwrap().clone();
        // Pending since 9,000 s, down at 9,600 s (10 minutes spent), back at 10,000 s.
        let series = HashMap::from([(labels.clone(), (9_600_000, 9_000.0))]);
        r.restore(10_000_000, &series, 600_000);
        assert_eq!(r.active[&labels].active_at, 9_000_000 + 400_000);
    }
}
