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
use crate::logs::LogRecord;
use crate::relabel::Labels;
use std::collections::BTreeMap;
use std::sync::{Mutex, RwLock};

#[derive(Default)]
pub struct LogMetrics {
    rules: RwLock<Vec<LogMetric>>,
    counts: Mutex<BTreeMap<Labels, f64>>,
}

impl LogMetrics {
    pub fn new(rules: Vec<LogMetric>) -> LogMetrics {
        LogMetrics {
            rules: RwLock::new(rules),
            counts: Mutex::new(BTreeMap::new()),
        }
    }

    /// New definitions (a reload); counts of series that still exist go on.
    pub fn set_rules(&self, rules: Vec<LogMetric>) {
        let names: Vec<String> = rules.iter().map(|r| r.name.clone()).collect();
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|l, _| l.get("__name__").is_some_and(|n| names.contains(n)));
        *self.rules.write().unwrap_or_else(|p| p.into_inner()) = rules;
    }

    /// Counts the lines each definition matches.
    pub fn observe(&self, records: &[LogRecord]) {
        let rules = self.rules.read().unwrap_or_else(|p| p.into_inner());
        if rules.is_empty() {
            return;
        }
        let mut hits: Vec<Labels> = Vec::new();
        for r in records {
            for m in rules.iter() {
                if let Some(labels) = matched(m, r) {
                    hits.push(labels);
                }
            }
        }
        if hits.is_empty() {
            return;
        }
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        for labels in hits {
            *counts.entry(labels).or_default() += 1.0;
        }
    }

    /// Every counter's current value, stamped `ts_ms`.
    pub fn samples(&self, ts_ms: i64) -> Vec<(Labels, i64, f64)> {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(l, v)| (l.clone(), ts_ms, *v))
            .collect()
    }
}

/// The series labels of `r` under `m`, if it matches.
fn matched(m: &LogMetric, r: &LogRecord) -> Option<Labels> {
    if m.app.as_ref().is_some_and(|g| !g.0.is_match(&r.app)) {
        return None;
    }
    let caps = m
        .regex
        .0
        .captures(&r.message)
        .or_else(|| m.regex.0.captures(&r.structured_data))?;
    let mut labels = m.labels.clone();
    labels.insert("__name__".into(), m.name.clone());
    for f in &m.by {
        let v = match f.as_str() {
            "host" => &r.host,
            "app" => &r.app,
            "procid" => &r.procid,
            "msgid" => &r.msgid,
            _ => continue,
        };
        labels.insert(f.clone(), v.clone());
    }
    for name in m.regex.0.capture_names().flatten() {
        if let Some(v) = caps.name(name) {
            labels.insert(name.to_string(), v.as_str().to_string());
        }
    }
    Some(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        m.observe(&[
            line("postfix/smtp", "to=<a@b>, status=sent (ok)"),
            line("postfix/lmtp", "to=<c@d>, status=sent (ok)"),
            line("postfix/smtp", "to=<e@f>, status=bounced (550)"),
            line("amavis", "status=sent but not postfix"),
            line("postfix/smtpd", "connect from x"),
        ]);
        let got: BTreeMap<String, f64> = m
            .samples(5)
            .into_iter()
            .map(|(l, t, v)| {
                assert_eq!(t, 5);
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

        // A reload keeps the counts of definitions that stay.
        m.set_rules(vec![metric(
            "name: mail_total\nregex: 'status=(?P<status>[a-z]+)'\n",
        )]);
        assert_eq!(m.samples(6).len(), 2);
        m.set_rules(vec![metric("name: other_total\nregex: x\n")]);
        assert!(m.samples(7).is_empty());
    }
}
