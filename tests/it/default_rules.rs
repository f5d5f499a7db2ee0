//! The rules shipped in `deploy/rules/`: promtool accepts them and passes
//! their unit tests (`carbonio.rules.test.yml`, so Prometheus's engine
//! fires every alert there); our evaluator, fed the same input series,
//! fires exactly the same alerts with the same labels and annotations at
//! every tested time; and every log rule fires from real log lines sent
//! through syslog and a tailed audit.log.

use crate::harness::{free_port, require, wait_until, Service, OURS};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const PASSWORD: &str = "default-rules-password";

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/rules")
}

fn yaml(path: &Path) -> serde_yaml_ng::Value {
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn minutes(d: &str) -> i64 {
    let (n, unit) = d.split_at(d.len() - 1);
    let n: i64 = n.parse().unwrap();
    match unit {
        "m" => n,
        "h" => n * 60,
        _ => panic!("unsupported duration {d} in the test file"),
    }
}

/// promtool's expanding notation: `a`, `a+bxN`, `a-bxN`, `axN`, `_`, `_xN`.
fn expand(values: &str) -> Vec<Option<f64>> {
    let mut out = Vec::new();
    for item in values.split_whitespace() {
        let (start, rest) = match item.find(['+', '-', 'x']).filter(|&i| i > 0) {
            Some(i) => item.split_at(i),
            None => (item, ""),
        };
        let start = (start != "_").then(|| start.parse::<f64>().unwrap());
        if rest.is_empty() {
            out.push(start);
            continue;
        }
        let (delta, times) = match rest.strip_prefix('x') {
            Some(n) => (0.0, n),
            None => {
                let (d, n) = rest[1..].split_once('x').unwrap();
                let d: f64 = d.parse().unwrap();
                (if rest.starts_with('-') { -d } else { d }, n)
            }
        };
        let times: usize = times.parse().unwrap();
        for i in 0..=times {
            out.push(start.map(|s| s + delta * i as f64));
        }
    }
    out
}

#[test]
fn expanding_notation() {
    assert_eq!(
        expand("1 _ 0+2x2 5-1x1 _x1 3x1"),
        [1., f64::NAN, 0., 2., 4., 5., 4., f64::NAN, f64::NAN, 3., 3.]
            .map(|v| (!v.is_nan()).then_some(v))
    );
}

#[test]
fn shipped_rules_pass_promtool() {
    let promtool = require("promtool", "prometheus");
    let dir = rules_dir();
    let out = Command::new(&promtool)
        .args(["check", "rules", "carbonio.rules.yml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = Command::new(&promtool)
        .args(["test", "rules", "carbonio.rules.test.yml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool test rules:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for file in ["carbonio.rules.yml", "carbonio-logs.rules.yml"] {
        let out = Command::new(OURS)
            .arg("check-rules")
            .arg(dir.join(file))
            .output()
            .unwrap();
        assert!(out.status.success(), "check-rules {file}: {out:?}");
    }
}

/// Alerts of one name, as (labels without alertname, annotations).
type Alerts = BTreeSet<(BTreeMap<String, String>, BTreeMap<String, String>)>;

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect()
}

#[test]
fn shipped_rules_fire_in_our_evaluator_as_in_promtool() {
    let dir = rules_dir();
    let test = yaml(&dir.join("carbonio.rules.test.yml"));
    let test: Value = serde_json::to_value(&test).unwrap();
    let group = &test["tests"][0];
    assert_eq!(group["interval"], "1m");

    // The input series into our store, one sample a minute.
    let tmp = tempfile::tempdir().unwrap();
    let mut om = String::new();
    let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in group["input_series"].as_array().unwrap() {
        let series = s["series"].as_str().unwrap();
        let name = series.split('{').next().unwrap().to_string();
        for (i, v) in expand(s["values"].as_str().unwrap()).iter().enumerate() {
            if let Some(v) = v {
                by_name
                    .entry(name.clone())
                    .or_default()
                    .push(format!("{series} {v} {}", i * 60));
            }
        }
    }
    for (name, lines) in by_name {
        om.push_str(&format!("# TYPE {name} gauge\n"));
        for l in lines {
            om.push_str(&l);
            om.push('\n');
        }
    }
    om.push_str("# EOF\n");

    let checks = group["alert_rule_test"].as_array().unwrap();
    let last = checks
        .iter()
        .map(|c| minutes(c["eval_time"].as_str().unwrap()))
        .max()
        .unwrap();
    let steps = crate::rules_compat::import_and_eval(
        tmp.path(),
        &om,
        &dir.join("carbonio.rules.yml"),
        last * 60,
    );
    let mut firing: BTreeMap<(i64, String), Alerts> = BTreeMap::new();
    for step in steps {
        let t = step["t"].as_i64().unwrap() / 60;
        for a in step["alerts"].as_array().unwrap() {
            if a["state"] != "firing" {
                continue;
            }
            let mut labels = string_map(&a["labels"]);
            let name = labels.remove("alertname").unwrap();
            firing
                .entry((t, name))
                .or_default()
                .insert((labels, string_map(&a["annotations"])));
        }
    }

    let mut fired = BTreeSet::new();
    let mut failures = Vec::new();
    for c in checks {
        let t = minutes(c["eval_time"].as_str().unwrap());
        let name = c["alertname"].as_str().unwrap().to_string();
        let expected: Alerts = c["exp_alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    string_map(&a["exp_labels"]),
                    string_map(&a["exp_annotations"]),
                )
            })
            .collect();
        if !expected.is_empty() {
            fired.insert(name.clone());
        }
        let got = firing.get(&(t, name.clone())).cloned().unwrap_or_default();
        if got != expected {
            failures.push(format!(
                "{name} at {t}m:\n  expected {}\n  got      {}",
                json!(expected),
                json!(got)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Every shipped alerting rule is triggered by the test file.
    let rules = yaml(&dir.join("carbonio.rules.yml"));
    let rules: Value = serde_json::to_value(&rules).unwrap();
    let shipped: BTreeSet<String> = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter_map(|r| r["alert"].as_str().map(str::to_string))
        .collect();
    let untested: Vec<_> = shipped.difference(&fired).collect();
    assert!(untested.is_empty(), "never triggered: {untested:?}");
}

fn alerts(svc: &Service) -> Vec<Value> {
    crate::query_api::get(svc, "/api/v1/alerts", PASSWORD).1["data"]["alerts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn firing(svc: &Service, name: &str) -> Vec<Value> {
    alerts(svc)
        .into_iter()
        .filter(|a| a["labels"]["alertname"] == name && a["state"] == "firing")
        .collect()
}

#[test]
fn shipped_log_rules_fire_from_real_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    std::fs::write(&audit, "").unwrap();
    let syslog = free_port();
    let rules = rules_dir().join("carbonio-logs.rules.yml");
    let config = format!(
        "global:\n  evaluation_interval: 1s\n\
         rule_files: ['{}']\n\
         syslog:\n  listeners:\n    - address: 127.0.0.1:{syslog}\n      protocol: tcp\n\
         tail:\n  poll_interval: 200ms\n  files:\n    - paths: ['{}']\n      parser: mailbox\n      host: mbox1\n",
        rules.display(),
        audit.display()
    );
    let cfg = dir.path().join("config.yml");
    std::fs::write(&cfg, config).unwrap();
    let svc = crate::query_api::start_run(
        &dir.path().join("data"),
        free_port(),
        Some(PASSWORD),
        Some(&cfg),
        &[],
    );

    // audit.log: 21 failures from one address (16 of them for one
    // account), 3 from another address, and successful logins.
    let now = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S,%3f");
    let mut lines = String::new();
    for i in 0..24 {
        let (ip, account) = match i {
            0..=15 => ("203.0.113.9", "admin@example.com".to_string()),
            16..=20 => ("203.0.113.9", format!("user{i}@example.com")),
            _ => ("198.51.100.7", "admin@example.com".to_string()),
        };
        lines.push_str(&format!(
            "{now} WARN  [qtp1-{i}:https://127.0.0.1:443/service/soap/AuthRequest] [oip={ip};ua=curl/8;] security - cmd=Auth; account={account}; protocol=soap; error=authentication failed for [{account}], invalid password;\n"
        ));
        lines.push_str(&format!(
            "{now} INFO  [qtp1-{i}:https://127.0.0.1:443/service/soap/AuthRequest] [oip=192.0.2.1;] security - cmd=Auth; account=ok{i}@example.com; protocol=soap;\n"
        ));
    }
    // A distributed run: 980 more failures, each from its own address
    // and for its own account, so only the total is over a threshold.
    for i in 0..980 {
        lines.push_str(&format!(
            "{now} WARN  [qtp2-{i}:https://127.0.0.1:443/service/home/] [oip=10.{}.{}.{};] security - cmd=Auth; account=spray{i}@example.com; protocol=imap; error=authentication failed for [spray{i}@example.com], invalid password;\n",
            i / 65536, (i / 256) % 256, i % 256
        ));
    }
    std::fs::write(&audit, lines).unwrap();

    // Postfix through syslog: 21 SASL failures from one address, 51
    // bounces, 101 deferrals.
    let send = |tag: &str, message: &str| {
        crate::harness::send_syslog_tcp(syslog, "user.notice", tag, message)
    };
    for _ in 0..21 {
        send(
            "postfix/smtpd",
            "warning: unknown[192.0.2.66]: SASL LOGIN authentication failed: UGFzc3dvcmQ6",
        );
    }
    for i in 0..51 {
        send(
            "postfix/smtp",
            &format!("4F{i:04X}: to=<u{i}@remote.example>, relay=mx.remote.example[198.51.100.25]:25, delay=1, dsn=5.1.1, status=bounced (host said: 550 5.1.1 no such user)"),
        );
    }

    for i in 0..101 {
        send(
            "postfix/smtp",
            &format!("5E{i:04X}: to=<d{i}@slow.example>, relay=none, delay=30, dsn=4.4.1, status=deferred (connect to mx.slow.example[198.51.100.26]:25: Connection timed out)"),
        );
    }

    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    let expected = [
        (
            "LoginFailuresFromAddress",
            json!({"ip": "203.0.113.9", "host": "mbox1"}),
            "21 failed logins from 203.0.113.9 on mbox1 in 10 minutes",
        ),
        (
            "LoginFailuresFromAddressForAccount",
            json!({"ip": "203.0.113.9", "account": "admin@example.com"}),
            "16 failed logins for admin@example.com from 203.0.113.9 in 10 minutes",
        ),
        (
            "LoginFailuresForAccount",
            json!({"account": "admin@example.com"}),
            "19 failed logins for admin@example.com in 10 minutes",
        ),
        (
            "SmtpAuthFailuresFromAddress",
            json!({"ip": "192.0.2.66", "host": hostname.clone()}),
            "21 failed SMTP logins from 192.0.2.66 on {host} in 10 minutes",
        ),
        (
            "MailBounceSpike",
            json!({"host": hostname.clone()}),
            "51 messages bounced on {host} in 15 minutes",
        ),
        (
            "MailDeferralSpike",
            json!({"host": hostname.clone()}),
            "101 deliveries deferred on {host} in 15 minutes",
        ),
        (
            "LoginFailuresTotal",
            json!({}),
            "1004 failed logins in 10 minutes across all accounts",
        ),
    ];
    for (name, labels, summary) in expected {
        // An alert may fire while its lines are still arriving (the count
        // crosses the threshold first): wait for the count of all of them.
        let summary = summary.replace("{host}", &hostname);
        wait_until(
            &format!("{name} firing with all lines"),
            Duration::from_secs(30),
            || {
                firing(&svc, name)
                    .iter()
                    .any(|a| a["annotations"]["summary"] == summary.as_str())
            },
        );
        let got = firing(&svc, name);
        assert_eq!(
            got.len(),
            1,
            "{name}: one group over the threshold: {got:?}"
        );
        for (k, v) in labels.as_object().unwrap() {
            assert_eq!(&got[0]["labels"][k], v, "{name} label {k}: {got:?}");
        }
        let severity = if name == "LoginFailuresTotal" {
            "critical"
        } else {
            "warning"
        };
        assert_eq!(got[0]["labels"]["severity"], severity);
        assert_eq!(got[0]["annotations"]["summary"], summary.as_str(), "{name}");
        assert!(got[0]["annotations"]["runbook"]
            .as_str()
            .is_some_and(|r| !r.is_empty()));
    }
    drop(svc);
}
