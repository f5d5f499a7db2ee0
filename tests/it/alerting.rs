//! Alerting end to end: `run` evaluates rule files, a target going down
//! becomes a pending then firing alert that reaches a real Alertmanager
//! (Debian `prometheus-alertmanager`, checked with `amtool`) and a webhook
//! receiver, and resolves when the target comes back; the webhook outbox
//! retries through the receiver's outage and delivers once across a
//! restart; a log rule fires from `logger` lines; `check-rules` names
//! the line of a bad rule.

use crate::harness::{free_port, http_get, require, spawn, wait_until, Service, OURS};
use crate::promql_compat::percent_encode;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PASSWORD: &str = "alerting-test-password";

/// A scrape target that answers 503 while `down` is set.
struct Target {
    port: u16,
    down: Arc<AtomicBool>,
}

/// A webhook receiver that records bodies and answers 500 while `failing`.
struct Receiver {
    port: u16,
    failing: Arc<AtomicBool>,
    bodies: Arc<Mutex<Vec<Value>>>,
}

/// Serves HTTP/1.1 requests one per connection; `answer` gets the body.
fn serve(listener: TcpListener, answer: impl Fn(&[u8]) -> (u16, String) + Send + 'static) {
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let (status, text) = answer(&body);
            let mut stream = reader.into_inner();
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
}

impl Target {
    fn start() -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(AtomicBool::new(false));
        let d = down.clone();
        serve(listener, move |_| {
            if d.load(Ordering::Relaxed) {
                (503, "down".into())
            } else {
                (200, "# TYPE app_ready gauge\napp_ready 1\n".into())
            }
        });
        Target { port, down }
    }
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let failing = Arc::new(AtomicBool::new(false));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let (f, b) = (failing.clone(), bodies.clone());
        serve(listener, move |body| {
            if f.load(Ordering::Relaxed) {
                return (500, "failing".into());
            }
            if let Ok(v) = serde_json::from_slice(body) {
                b.lock().unwrap().push(v);
            }
            (200, "ok".into())
        });
        Receiver {
            port,
            failing,
            bodies,
        }
    }

    /// Notifications for `alertname` with `status`.
    fn count(&self, alertname: &str, status: &str) -> usize {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .filter(|b| b["status"] == status && b["groupLabels"]["alertname"] == alertname)
            .count()
    }
}

fn alertmanager() -> Service {
    let svc = alertmanager_with(None);
    wait_until("Alertmanager ready", Duration::from_secs(30), || {
        http_get(&svc.url("/-/ready"), &[]).is_ok_and(|r| r.0 == 200)
    });
    svc
}

/// Alertmanager, with an exporter-toolkit web config (TLS) when given.
fn alertmanager_with(web_config: Option<&std::path::Path>) -> Service {
    let bin = require("prometheus-alertmanager", "prometheus-alertmanager");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(
        dir.path().join("am.yml"),
        "route:\n  receiver: none\n  group_wait: 1s\n  group_interval: 1s\nreceivers:\n  - name: none\n",
    )
    .unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg(format!(
        "--config.file={}",
        dir.path().join("am.yml").display()
    ))
    .arg(format!(
        "--storage.path={}",
        dir.path().join("data").display()
    ))
    .arg(format!("--web.listen-address=127.0.0.1:{port}"))
    .arg("--cluster.listen-address=");
    if let Some(w) = web_config {
        cmd.arg(format!("--web.config.file={}", w.display()));
    }
    spawn("alertmanager", dir, port, cmd)
}

fn start_run(dir: &std::path::Path, config: &str, port: u16) -> Service {
    let cfg = dir.join("config.yml");
    std::fs::write(&cfg, config).unwrap();
    crate::query_api::start_run(&dir.join("data"), port, Some(PASSWORD), Some(&cfg), &[])
}

fn api(svc: &Service, path: &str) -> Value {
    crate::query_api::get(svc, path, PASSWORD).1
}

/// State of `alertname` in /api/v1/alerts ("" when absent).
fn alert_state(svc: &Service, alertname: &str) -> String {
    api(svc, "/api/v1/alerts")["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["labels"]["alertname"] == alertname)
        .and_then(|a| a["state"].as_str())
        .unwrap_or("")
        .to_string()
}

fn amtool_alerts(am: &Service) -> String {
    let bin = require("amtool", "prometheus-alertmanager");
    let out = Command::new(bin)
        .args(["alert", "query", "--output=simple"])
        .arg(format!("--alertmanager.url=http://127.0.0.1:{}", am.port))
        .output()
        .expect("amtool runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const RULES: &str = r#"
groups:
  - name: targets
    interval: 1s
    rules:
      - alert: TargetDown
        expr: up{job="app"} == 0
        for: 3s
        labels:
          severity: critical
        annotations:
          summary: "{{ $labels.instance }} of job {{ $labels.job }} is down"
      - record: broken
        expr: label_replace(vector(1), "a", "1", "", "") or label_replace(vector(2), "a", "2", "", "")
        labels:
          a: same
      - record: job:up:sum
        expr: sum by (job) (up)
  - name: logs
    interval: 1s
    rules:
      - log_alert: LoginFailures
        search: 'app:carbonio-audit "authentication failed"'
        window: 1m
        threshold: 5
        group_by: [host]
        extract: 'oip=(?P<ip>[0-9.]+)'
        annotations:
          summary: "{{ $value }} failed logins from {{ $labels.ip }}"
"#;

fn config(target: &Target, am: &Service, receiver: &Receiver, syslog: u16) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n\
         rule_files: [rules.yml]\n\
         alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{}']\n\
         \x20 webhooks:\n    - name: oncall\n      url: http://127.0.0.1:{}/hook\n      group_wait: 1s\n\
         syslog:\n  listeners:\n    - address: 127.0.0.1:{syslog}\n      protocol: tcp\n",
        target.port, am.port, receiver.port
    )
}

#[test]
fn alerts_reach_alertmanager_and_webhooks_and_survive_a_restart() {
    let am = alertmanager();
    let target = Target::start();
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yml"), RULES).unwrap();
    let syslog = free_port();
    let cfg = config(&target, &am, &receiver, syslog);
    let port = free_port();
    let mut svc = start_run(dir.path(), &cfg, port);

    // Healthy: the recording rule writes, the broken rule reports its error
    // without stopping its group.
    wait_until("job:up:sum recorded", Duration::from_secs(20), || {
        api(&svc, "/api/v1/query?query=job:up:sum")["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    });
    let rules = api(&svc, "/api/v1/rules");
    let broken = rules["data"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "broken")
        .cloned()
        .unwrap();
    assert_eq!(broken["health"], "err", "{broken}");
    assert!(
        broken["lastError"]
            .as_str()
            .unwrap()
            .contains("same labelset"),
        "{broken}"
    );
    assert_eq!(alert_state(&svc, "TargetDown"), "");

    // Down: pending, then firing after `for`, then in Alertmanager and at
    // the webhook (which fails at first: the outbox retries).
    receiver.failing.store(true, Ordering::Relaxed);
    target.down.store(true, Ordering::Relaxed);
    wait_until("TargetDown pending", Duration::from_secs(15), || {
        alert_state(&svc, "TargetDown") == "pending"
    });
    wait_until("TargetDown firing", Duration::from_secs(15), || {
        alert_state(&svc, "TargetDown") == "firing"
    });
    wait_until(
        "TargetDown in Alertmanager",
        Duration::from_secs(20),
        || amtool_alerts(&am).contains("TargetDown"),
    );
    let in_am = api(&am, "/api/v2/alerts");
    let a = in_am
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["alertname"] == "TargetDown")
        .cloned()
        .unwrap();
    assert_eq!(a["labels"]["severity"], "critical");
    assert_eq!(
        a["annotations"]["summary"],
        format!("127.0.0.1:{} of job app is down", target.port)
    );
    let firing = percent_encode(r#"ALERTS{alertname="TargetDown",alertstate="firing"}"#);
    let stored = api(&svc, &format!("/api/v1/query?query={firing}"));
    assert_eq!(
        stored["data"]["result"].as_array().map(Vec::len),
        Some(1),
        "{stored}"
    );

    // Restart while the webhook still fails: the notification waits in the
    // outbox; the restored alert does not make a second one.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(receiver.count("TargetDown", "firing"), 0);
    drop(svc);
    svc = start_run(dir.path(), &cfg, port);
    receiver.failing.store(false, Ordering::Relaxed);
    wait_until("the webhook delivery", Duration::from_secs(30), || {
        receiver.count("TargetDown", "firing") >= 1
    });
    wait_until(
        "TargetDown firing again after the restart",
        Duration::from_secs(20),
        || alert_state(&svc, "TargetDown") == "firing",
    );
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        receiver.count("TargetDown", "firing"),
        1,
        "delivered exactly once"
    );

    // Back up: resolved everywhere.
    target.down.store(false, Ordering::Relaxed);
    wait_until("TargetDown resolved", Duration::from_secs(20), || {
        alert_state(&svc, "TargetDown").is_empty()
    });
    wait_until("the resolved webhook", Duration::from_secs(30), || {
        receiver.count("TargetDown", "resolved") == 1
    });
    wait_until("resolved in Alertmanager", Duration::from_secs(30), || {
        !amtool_alerts(&am).contains("TargetDown")
    });

    // A log rule: more than 5 failed logins from one address in a minute.
    let logger = require("logger", "bsdutils");
    for i in 0..8 {
        let ip = if i < 7 { "10.9.8.7" } else { "10.1.1.1" };
        let status = Command::new(&logger)
            .args([
                "-n",
                "127.0.0.1",
                "-P",
                &syslog.to_string(),
                "-T",
                "--octet-count",
                "--rfc5424",
            ])
            .args(["-t", "carbonio-audit"])
            .arg(format!(
                "authentication failed for [user{i}@example.com]; oip={ip};"
            ))
            .status()
            .unwrap();
        assert!(status.success());
    }
    // It may fire before the last lines arrive: wait for the count of all.
    wait_until("LoginFailures firing", Duration::from_secs(30), || {
        alert_state(&svc, "LoginFailures") == "firing"
            && api(&svc, "/api/v1/alerts")
                .to_string()
                .contains("7 failed logins")
    });
    let alerts = api(&svc, "/api/v1/alerts");
    let login: Vec<&Value> = alerts["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["labels"]["alertname"] == "LoginFailures")
        .collect();
    assert_eq!(
        login.len(),
        1,
        "only the address over the threshold: {alerts}"
    );
    assert_eq!(login[0]["labels"]["ip"], "10.9.8.7");
    assert_eq!(
        login[0]["annotations"]["summary"],
        "7 failed logins from 10.9.8.7"
    );
    drop(svc);
}

#[test]
fn check_rules_names_the_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yml");
    std::fs::write(&good, RULES).unwrap();
    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "groups:\n  - name: g\n    rules:\n      - alert: Fine\n        expr: up == 0\n      - alert: Broken\n        expr: sum(up\n",
    )
    .unwrap();
    let out = Command::new(OURS)
        .arg("check-rules")
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("SUCCESS: 4 rules found"));
    let out = Command::new(OURS)
        .arg("check-rules")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:6:", bad.display())), "{err}");
    assert!(err.contains("could not parse expression"), "{err}");
    // promtool agrees with both verdicts.
    let promtool = require("promtool", "prometheus");
    let ok = |f: &std::path::Path| {
        Command::new(&promtool)
            .args(["check", "rules"])
            .arg(f)
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(!ok(&bad));
    let plain = dir.path().join("plain.yml");
    std::fs::write(&plain, RULES.split("  - name: logs").next().unwrap()).unwrap();
    assert!(ok(&plain));
}

#[test]
fn rules_reload_on_sighup_and_keep_their_state() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    let before = "groups:\n  - name: g\n    rules:\n      - record: job:one\n        expr: vector(1)\n      - alert: Slow\n        expr: vector(1)\n        for: 1h\n";
    std::fs::write(&rules, before).unwrap();
    let svc = start_run(
        dir.path(),
        "global:\n  evaluation_interval: 1s\nrule_files: [rules.yml]\n",
        free_port(),
    );
    wait_until("Slow pending", Duration::from_secs(20), || {
        alert_state(&svc, "Slow") == "pending"
    });
    let active_at = |svc: &Service| {
        api(svc, "/api/v1/alerts")["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["labels"]["alertname"] == "Slow")
            .map(|a| a["activeAt"].clone())
            .unwrap_or(Value::Null)
    };
    let since = active_at(&svc);
    assert!(since.is_string(), "{since}");
    let recorded = |svc: &Service| {
        api(
            svc,
            &format!("/api/v1/query?query={}", percent_encode("job:one")),
        )["data"]["result"]
            .as_array()
            .map_or(0, Vec::len)
    };
    wait_until("job:one recorded", Duration::from_secs(10), || {
        recorded(&svc) == 1
    });

    // A new alert, the recording rule gone, the pending alert kept.
    std::fs::write(
        &rules,
        "groups:\n  - name: g\n    rules:\n      - alert: Slow\n        expr: vector(1)\n        for: 1h\n      - alert: Now\n        expr: vector(1)\n",
    )
    .unwrap();
    crate::harness::sighup(&svc);
    wait_until(
        "Now firing after the reload",
        Duration::from_secs(20),
        || alert_state(&svc, "Now") == "firing",
    );
    assert_eq!(alert_state(&svc, "Slow"), "pending");
    assert_eq!(active_at(&svc), since, "the for timer continues");
    let names: Vec<Value> = api(&svc, "/api/v1/rules")["data"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].clone())
        .collect();
    assert_eq!(names, ["Slow", "Now"]);
    // The removed rule's series ended with a staleness marker.
    assert_eq!(
        recorded(&svc),
        0,
        "job:one still returned after its rule went"
    );

    // A broken file is refused and the running rules stay.
    std::fs::write(
        &rules,
        "groups:\n  - name: g\n    rules:\n      - alert: Broken\n        expr: sum(\n",
    )
    .unwrap();
    crate::harness::sighup(&svc);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(alert_state(&svc, "Now"), "firing");
    assert_eq!(alert_state(&svc, "Slow"), "pending");
    let log = std::fs::read_to_string(svc.path("carbonio-monitor run.log")).unwrap();
    assert!(log.contains("rules not reloaded"), "{log}");
}

#[test]
fn alerts_reach_an_alertmanager_over_tls_with_client_certificates() {
    let curl = require("curl", "curl");
    let dir = tempfile::tempdir().unwrap();
    let tls = crate::harness::mutual_tls(dir.path());
    let (ca, client_cert, client_key) = (&tls.ca, &tls.client_cert, &tls.client_key);
    let am = alertmanager_with(Some(&tls.web_config));
    let alerts_in_am = || {
        let out = Command::new(&curl)
            .args(["-sS", "--fail", "--cacert"])
            .arg(ca)
            .arg("--cert")
            .arg(client_cert)
            .arg("--key")
            .arg(client_key)
            .arg(format!("https://127.0.0.1:{}/api/v2/alerts", am.port))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    wait_until(
        "Alertmanager ready over TLS",
        Duration::from_secs(30),
        || alerts_in_am().starts_with('['),
    );
    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n  - name: g\n    rules:\n      - alert: AlwaysOverTls\n        expr: vector(1)\n",
    )
    .unwrap();
    let svc = start_run(
        dir.path(),
        &format!(
            "global:\n  evaluation_interval: 1s\nrule_files: [rules.yml]\n\
             alerting:\n  alertmanagers:\n    - scheme: https\n      tls_config:\n        ca_file: {}\n        cert_file: {}\n        key_file: {}\n      static_configs:\n        - targets: ['127.0.0.1:{}']\n",
            ca.display(),
            client_cert.display(),
            client_key.display(),
            am.port
        ),
        free_port(),
    );
    wait_until("the alert in Alertmanager", Duration::from_secs(30), || {
        alerts_in_am().contains("AlwaysOverTls")
    });
    drop(svc);
}
