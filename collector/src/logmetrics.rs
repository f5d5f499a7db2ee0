//! Counters made from log lines (`log_metrics:`): stock Carbonio has no
//! metric for mail flow or login failures, only log lines. Every stored
//! line (syslog or tailed) is matched as it is acknowledged; the counts are
//! written to the metric store as ordinary series every interval, so
//! PromQL, dashboards and rules use them like scraped counters.
//!
//! Counters start at zero when the collector starts (lines replayed from
//! the WAL are not counted again); `rate()` and `increase()` handle that
//! reset as they do an exporter's restart.

use crate::config::LogMetric;
use crate::logs::LineRef;
use crate::relabel::Labels;
use std::collections::BTreeMap;
use std::sync::{Mutex, RwLock};

/// Series one definition may create; lines that would make more are not
/// counted (label values come from what senders write).
pub const MAX_SERIES_PER_METRIC: usize = 10_000;

#[derive(Default)]
pub struct LogMetrics {
    rules: RwLock<Vec<LogMetric>>,
    state: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    values: BTreeMap<Labels, f64>,
    /// Series created since the last `samples`: they get a 0 just before
    /// their first value, so `increase()` sees their first lines.
    new: Vec<Labels>,
    /// Series of dropped definitions, to end with a staleness marker.
    gone: Vec<Labels>,
    series_per_metric: BTreeMap<String, usize>,
    last_ts: Option<i64>,
}

impl LogMetrics {
    pub fn new(rules: Vec<LogMetric>) -> LogMetrics {
        LogMetrics {
            rules: RwLock::new(rules),
            state: Mutex::default(),
        }
    }

    /// New definitions (a reload): series of definitions that did not
    /// change go on; the others end (staleness markers at the next write).
    pub fn set_rules(&self, rules: Vec<LogMetric>) {
        let mut current = self.rules.write().unwrap_or_else(|p| p.into_inner());
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let kept: Vec<String> = rules
            .iter()
            .filter(|r| current.iter().any(|c| c == *r))
            .map(|r| r.name.clone())
            .collect();
        let is_kept = |l: &Labels| l.get("__name__").is_some_and(|n| kept.contains(n));
        let (keep, drop): (BTreeMap<Labels, f64>, BTreeMap<Labels, f64>) =
            std::mem::take(&mut state.values)
                .into_iter()
                .partition(|(l, _)| is_kept(l));
        state.values = keep;
        state.gone.extend(drop.into_keys());
        state.new.retain(is_kept);
        state.series_per_metric.retain(|n, _| kept.contains(n));
        *current = rules;
    }

    /// The label sets of the lines' matches (found before the lines are
    /// stored, outside the store's locks).
    pub fn matches<'a>(&self, lines: impl IntoIterator<Item = LineRef<'a>>) -> Vec<Labels> {
        let rules = self.rules.read().unwrap_or_else(|p| p.into_inner());
        let mut hits = Vec::new();
        if rules.is_empty() {
            return hits;
        }
        for r in lines {
            for m in rules.iter() {
                if let Some(labels) = matched(m, &r) {
                    hits.push(labels);
                }
            }
        }
        hits
    }

    /// Counts the matches of lines that are now stored.
    pub fn count(&self, hits: Vec<Labels>) {
        if hits.is_empty() {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Counts {
            values,
            new,
            series_per_metric,
            ..
        } = &mut *state;
        for labels in hits {
            if let Some(v) = values.get_mut(&labels) {
                *v += 1.0;
                continue;
            }
            let name = labels.get("__name__").cloned().unwrap_or_default();
            let n = series_per_metric.entry(name.clone()).or_default();
            if *n >= MAX_SERIES_PER_METRIC {
                if *n == MAX_SERIES_PER_METRIC {
                    tracing::warn!(metric = %name, limit = MAX_SERIES_PER_METRIC, "log metric has too many series; new label sets are not counted");
                    *n += 1;
                }
                continue;
            }
            *n += 1;
            new.push(labels.clone());
            values.insert(labels, 1.0);
        }
    }

    /// What to write at `ts_ms`: every counter's value, a 0 just before
    /// each new series' first value, a staleness marker for each ended one.
    pub fn samples(&self, ts_ms: i64) -> Vec<(Labels, i64, f64)> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let before = state.last_ts.unwrap_or(ts_ms - 1).min(ts_ms - 1);
        state.last_ts = Some(ts_ms);
        let mut out: Vec<(Labels, i64, f64)> = std::mem::take(&mut state.new)
            .into_iter()
            .map(|l| (l, before, 0.0))
            .collect();
        let stale = f64::from_bits(crate::scrape::target::STALE_NAN_BITS);
        out.extend(
            std::mem::take(&mut state.gone)
                .into_iter()
                .map(|l| (l, ts_ms, stale)),
        );
        out.extend(state.values.iter().map(|(l, v)| (l.clone(), ts_ms, *v)));
        out
    }
}

/// The series labels of `r` under `m`, if it matches.
fn matched(m: &LogMetric, r: &LineRef) -> Option<Labels> {
    if m.app.as_ref().is_some_and(|g| !g.0.is_match(r.app)) {
        return None;
    }
    let caps = m
        .regex
        .0
        .captures(r.message)
        .or_else(|| m.regex.0.captures(r.structured_data))?;
    let mut labels = m.labels.clone();
    labels.insert("__name__".into(), m.name.clone());
    for f in &m.by {
        let v = match f.as_str() {
            "host" => r.host,
            "app" => r.app,
            "procid" => r.procid,
            "msgid" => r.msgid,
            _ => continue,
        };
        if !v.is_empty() {
            labels.insert(f.clone(), v.to_string());
        }
    }
    for name in m.regex.0.capture_names().flatten() {
        if let Some(v) = caps.name(name).filter(|v| !v.as_str().is_empty()) {
            labels.insert(name.to_string(), v.as_str().to_string());
        }
    }
    Some(labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::LogRecord;

    fn metric(yaml: &str) -> LogMetric {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn line(app: &str, message: &str) -> LogRecord {
        LogRecord {
            timestamp_ns: 0,
            received_ns: 0,
            host: "mta1".into(),
            app: app.into(),
            procid: String::new(),
            msgid: String::new(),
            facility: None,
            severity: None,
            message: message.into(),
            structured_data: String::new(),
            source: String::new(),
        }
    }

    #[test]
    fn counts_by_captures_fields_and_app_glob() {
        let m = LogMetrics::new(vec![metric(
            "name: mail_total\napp: 'postfix/*'\nregex: 'status=(?P<status>[a-z]+)'\nby: [host]\nlabels: {role: mta}\n",
        )]);
        let lines = [
            line("postfix/smtp", "to=<a@b>, status=sent (ok)"),
            line("postfix/lmtp", "to=<c@d>, status=sent (ok)"),
            line("postfix/smtp", "to=<e@f>, status=bounced (550)"),
            line("amavis", "status=sent but not postfix"),
            line("postfix/smtpd", "connect from x"),
        ];
        m.count(m.matches(lines.iter().map(LogRecord::as_line)));
        // The first write: a 0 just before each new series' first value.
        let first = m.samples(5);
        assert_eq!(
            first
                .iter()
                .filter(|(_, t, v)| *t == 4 && *v == 0.0)
                .count(),
            2
        );
        let got: BTreeMap<String, f64> = m
            .samples(6)
            .into_iter()
            .map(|(l, t, v)| {
                assert_eq!(t, 6);
                assert_eq!(l["host"], "mta1");
                assert_eq!(l["role"], "mta");
                assert_eq!(l["__name__"], "mail_total");
                (l["status"].clone(), v)
            })
            .collect();
        assert_eq!(
            got,
            BTreeMap::from([("bounced".into(), 1.0), ("sent".into(), 2.0)])
        );

        // A reload keeps the counts of definitions that did not change; a
        // changed one's series end with staleness markers.
        let same = metric(
            "name: mail_total\napp: 'postfix/*'\nregex: 'status=(?P<status>[a-z]+)'\nby: [host]\nlabels: {role: mta}\n",
        );
        m.set_rules(vec![same]);
        assert_eq!(m.samples(7).len(), 2);
        m.set_rules(vec![metric(
            "name: mail_total\nregex: 'status=(?P<status>[a-z]+)'\n",
        )]);
        let ended = m.samples(8);
        assert_eq!(ended.len(), 2);
        assert!(ended.iter().all(|(_, _, v)| v.is_nan()));
        assert!(m.samples(9).is_empty());
    }
}
