//! Rule evaluation agrees with Prometheus: the same series go into our
//! store (`import openmetrics`) and into a `promtool test rules` file; we
//! evaluate the rules at every step (`debug eval-rules`) and write what we
//! found firing as the test's expected alerts at every evaluation time.
//! promtool, evaluating the same rules with Prometheus's own engine, then
//! passes only if it finds exactly the same alerts, labels and
//! annotations at every step (so the same transition times).

use crate::harness::{require, OURS};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

const STEPS: usize = 60;

const RULES: &str = r#"
groups:
  - name: compat
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
      - alert: InstanceDown
        expr: up == 0
        for: 5m
        labels:
          severity: "{{ if eq $labels.instance \"i1\" }}critical{{ else }}warning{{ end }}"
        annotations:
          summary: "{{ $labels.instance }} of {{ $labels.job }} down (value {{ $value }})"
      - alert: JobDegraded
        expr: job:up:sum < 2
        for: 3m
      - alert: ErrorRate
        expr: rate(http_errors_total[5m]) > 0.05
        for: 2m
        keep_firing_for: 3m
        annotations:
          rate: "{{ $value | humanize }}/s ({{ printf \"%.3f\" $value }})"
      - alert: HotRoom
        expr: temp > 25
        annotations:
          summary: "{{ $labels.room }} at {{ $value }} degrees, {{ humanizePercentage 0.256 }}"
"#;

/// Values per step (None: no sample) for each series.
fn series() -> Vec<(&'static str, Vec<Option<f64>>)> {
    let up = |down: &dyn Fn(usize) -> bool| {
        (0..STEPS)
            .map(|i| Some(if down(i) { 0.0 } else { 1.0 }))
            .collect::<Vec<_>>()
    };
    let mut errors = Vec::new();
    let mut total = 0.0;
    for i in 0..STEPS {
        total += match i {
            10..=20 => 9.0,
            35..=38 => 30.0,
            _ => 1.0,
        };
        errors.push(Some(total));
    }
    let temp: Vec<Option<f64>> = (0..STEPS)
        .map(|i| match i {
            12..=14 => None,
            _ => Some(20.0 + ((i * 7) % 11) as f64),
        })
        .collect();
    vec![
        (
            r#"up{job="mail",instance="i1"}"#,
            up(&|i| (10..30).contains(&i) || i >= 50),
        ),
        (
            r#"up{job="mail",instance="i2"}"#,
            up(&|i| (20..24).contains(&i)),
        ),
        (r#"http_errors_total{job="mail",code="500"}"#, errors),
        (r#"temp{room="rack1"}"#, temp),
    ]
}

/// Imports an OpenMetrics text into a store under `dir` and evaluates
/// `rules` over it every minute from 0 to `end` seconds with `debug
/// eval-rules`: one JSON object per step (`t` in seconds, `alerts`).
pub fn import_and_eval(dir: &Path, openmetrics: &str, rules: &Path, end: i64) -> Vec<Value> {
    let om_file = dir.join("series.om");
    std::fs::write(&om_file, openmetrics).unwrap();
    let data = dir.join("data");
    let out = Command::new(OURS)
        .args(["import", "openmetrics"])
        .arg(&om_file)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = Command::new(OURS)
        .args(["debug", "eval-rules"])
        .arg(&data)
        .arg(rules)
        .args(["--end", &end.to_string(), "--interval", "1m"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn rule_evaluation_agrees_with_promtool_at_every_step() {
    let promtool = require("promtool", "prometheus");
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();

    // Our store: the series as an OpenMetrics backfill, one sample a minute.
    let mut om = String::new();
    for name in ["up", "http_errors_total", "temp"] {
        om.push_str(&format!("# TYPE {name} gauge\n"));
        for (s, values) in series() {
            if !s.starts_with(&format!("{name}{{")) {
                continue;
            }
            for (i, v) in values.iter().enumerate() {
                if let Some(v) = v {
                    om.push_str(&format!("{s} {v} {}\n", i * 60));
                }
            }
        }
    }
    om.push_str("# EOF\n");
    let steps = import_and_eval(dir.path(), &om, &rules, ((STEPS - 1) * 60) as i64);

    // What we found firing, per evaluation time and alert name.
    let names = ["InstanceDown", "JobDegraded", "ErrorRate", "HotRoom"];
    let mut tests = Vec::new();
    let mut firing_steps: BTreeMap<&str, usize> = BTreeMap::new();
    for step in steps {
        let t = step["t"].as_i64().unwrap();
        for name in names {
            let exp: Vec<Value> = step["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["state"] == "firing" && a["labels"]["alertname"] == name)
                .map(|a| {
                    let mut labels = a["labels"].clone();
                    labels.as_object_mut().unwrap().remove("alertname");
                    json!({"exp_labels": labels, "exp_annotations": a["annotations"]})
                })
                .collect();
            if !exp.is_empty() {
                *firing_steps.entry(name).or_default() += 1;
            }
            tests.push(
                json!({"eval_time": format!("{}m", t / 60), "alertname": name, "exp_alerts": exp}),
            );
        }
    }
    assert_eq!(tests.len(), STEPS * names.len());
    for name in names {
        let n = firing_steps.get(name).copied().unwrap_or(0);
        assert!(
            n > 0 && n < STEPS,
            "{name} fires at {n} of {STEPS} steps: the data should make it change"
        );
    }
    let input: Vec<Value> = series()
        .into_iter()
        .map(|(s, values)| {
            let v: Vec<String> = values
                .iter()
                .map(|v| v.map_or("_".to_string(), |v| v.to_string()))
                .collect();
            json!({"series": s, "values": v.join(" ")})
        })
        .collect();
    let test_file = dir.path().join("rules_test.yml");
    std::fs::write(
        &test_file,
        serde_json::to_string_pretty(&json!({
            "rule_files": [rules.display().to_string()],
            "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": input, "alert_rule_test": tests}],
        }))
        .unwrap(),
    )
    .unwrap();
    let out = Command::new(&promtool)
        .args(["test", "rules"])
        .arg(&test_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool disagrees with our evaluation:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
