//! Configuration and relabeling checked against the real Prometheus and promtool.

use crate::harness::{free_port, require, spawn, wait_until, OURS};
use carbonio_collector::config::Config;
use carbonio_collector::discovery;
use carbonio_collector::relabel::{self, Labels};
use std::process::Command;
use std::time::Duration;

const RELABEL_CONFIG: &str = r#"
global:
  scrape_interval: 1h
  scrape_timeout: 10s
scrape_configs:
  - job_name: relabel
    params:
      module: [carbonio]
    file_sd_configs:
      - files: ['SD_DIR/*.json', 'SD_DIR/extra.yml']
    static_configs:
      - targets: ['mta1.example.com:9100', 'db1.example.com:9100', 'MBOX1.Example.com:9100', 'proxy-2.example.com:9113']
        labels:
          __tmp_role: mail
          env: prod
          team: carbonio
    relabel_configs:
      - source_labels: [__address__]
        regex: 'db.*'
        action: drop
      - source_labels: [__address__]
        regex: '([^.]+)\..*'
        target_label: host
      - source_labels: [__address__]
        modulus: 8
        target_label: shard
        action: hashmod
      - regex: '__tmp_(.+)'
        action: labelmap
      - source_labels: [host]
        target_label: host_lower
        action: lowercase
      - regex: team
        action: labeldrop
      - source_labels: [__address__, env]
        separator: '@'
        regex: '(.+):(\d+)@(.+)'
        target_label: '${3}_port'
        replacement: '$2'
      - source_labels: [__address__]
        regex: '(.+):9100'
        target_label: instance
        replacement: '${1}'
"#;

/// Prometheus's steps after relabeling: default `instance`, drop `__` labels.
fn finish(mut l: Labels) -> Labels {
    if !l.contains_key("instance") {
        if let Some(a) = l.get("__address__").cloned() {
            l.insert("instance".into(), a);
        }
    }
    l.retain(|k, _| !k.starts_with("__"));
    l
}

fn to_labels(v: &serde_json::Value) -> Labels {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn relabeling_and_discovery_match_prometheus() {
    let bin = require("prometheus", "prometheus");
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("prometheus.yml");
    let sd = dir.path().join("sd");
    std::fs::create_dir(&sd).unwrap();
    std::fs::write(
        sd.join("ldap.json"),
        r#"[{"targets": ["ldap1.example.com:9330"], "labels": {"role": "directory", "__tmp_role": "ldap"}}]"#,
    )
    .unwrap();
    std::fs::write(sd.join("extra.yml"), "- targets: ['db2.example.com:9187', 'pg1.example.com:9187']\n  labels:\n    role: database\n").unwrap();
    let config_text = RELABEL_CONFIG.replace("SD_DIR", &sd.display().to_string());
    std::fs::write(&cfg_path, &config_text).unwrap();
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--config.file={}", cfg_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"));
    let prom = spawn("prometheus", tempfile::tempdir().unwrap(), port, cmd);
    let mut targets = serde_json::Value::Null;
    wait_until(
        "Prometheus to discover the targets",
        Duration::from_secs(60),
        || {
            let Ok((200, _, body)) = crate::harness::http_get(&prom.url("/api/v1/targets"), &[])
            else {
                return false;
            };
            targets = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            let count = |k: &str| targets["data"][k].as_array().map_or(0, Vec::len);
            count("activeTargets") == 5 && count("droppedTargets") == 2
        },
    );

    let (_, jobs) = Config::parse(&cfg_path, &config_text).expect("our parser accepts the config");
    let rules = &jobs[0].relabel;
    // Relabeling alone, on the labels Prometheus discovered.
    for t in targets["data"]["activeTargets"].as_array().unwrap() {
        let mut ours = to_labels(&t["discoveredLabels"]);
        assert!(relabel::apply(rules, &mut ours), "we dropped {ours:?}");
        assert_eq!(
            finish(ours),
            to_labels(&t["labels"]),
            "target {}",
            t["scrapeUrl"]
        );
    }
    for t in targets["data"]["droppedTargets"].as_array().unwrap() {
        let mut ours = to_labels(&t["discoveredLabels"]);
        assert!(!relabel::apply(rules, &mut ours), "we kept {ours:?}");
    }
    // Discovery end to end: static + file_sd targets, discovered and final labels.
    let (ours, errors) = discovery::targets(&jobs[0]);
    assert!(errors.is_empty(), "{errors:?}");
    type Pair = (Labels, Option<Labels>);
    let mut theirs: Vec<Pair> = targets["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                to_labels(&t["discoveredLabels"]),
                Some(to_labels(&t["labels"])),
            )
        })
        .chain(
            targets["data"]["droppedTargets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| (to_labels(&t["discoveredLabels"]), None)),
        )
        .collect();
    let mut mine: Vec<Pair> = ours
        .into_iter()
        .map(|t| {
            (
                t.discovered,
                t.labels.map(|l| {
                    l.into_iter()
                        .filter(|(k, _)| !k.starts_with("__"))
                        .collect()
                }),
            )
        })
        .collect();
    theirs.sort_by(|a, b| a.0.cmp(&b.0));
    mine.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(mine, theirs);
    drop(prom);
}

/// Our check-config and promtool agree on what is valid.
#[test]
fn check_config_agrees_with_promtool() {
    let promtool = require("promtool", "prometheus");
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &str, bool); 8] = [
        ("relabel.yml", &RELABEL_CONFIG.replace("SD_DIR", "/nonexistent"), true),
        ("unknown_key.yml", "scrape_configs:\n  - job_name: a\n    scrape_intervall: 5s\n", false),
        ("duplicate_job.yml", "scrape_configs:\n  - job_name: a\n  - job_name: a\n", false),
        ("timeout.yml", "scrape_configs:\n  - job_name: a\n    scrape_interval: 5s\n    scrape_timeout: 10s\n", false),
        ("hashmod.yml", "scrape_configs:\n  - job_name: a\n    relabel_configs:\n      - action: hashmod\n        source_labels: [x]\n        target_label: y\n", false),
        ("regex.yml", "scrape_configs:\n  - job_name: a\n    relabel_configs:\n      - regex: '('\n        target_label: y\n", false),
        ("duration.yml", "global:\n  scrape_interval: 5 minutes\n", false),
        ("labeldrop.yml", "scrape_configs:\n  - job_name: a\n    relabel_configs:\n      - action: labeldrop\n        regex: x\n        target_label: y\n", false),
    ];
    for (name, text, valid) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let theirs = Command::new(&promtool)
            .args(["check", "config", "--syntax-only"])
            .arg(&path)
            .output()
            .unwrap();
        let ours = Command::new(OURS)
            .arg("check-config")
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(
            theirs.status.success(),
            valid,
            "promtool on {name}: {}",
            String::from_utf8_lossy(&theirs.stderr)
        );
        assert_eq!(
            ours.status.success(),
            valid,
            "ours on {name}: {}",
            String::from_utf8_lossy(&ours.stderr)
        );
        if !valid {
            let err = String::from_utf8_lossy(&ours.stderr);
            assert!(
                err.contains(name) && err.contains("line"),
                "ours on {name} should name file and line: {err}"
            );
        }
    }
}

fn check_config(path: &std::path::Path) -> std::process::Output {
    Command::new(OURS)
        .arg("check-config")
        .arg(path)
        .output()
        .unwrap()
}

/// The shipped Consul examples pass our check. (Debian's Prometheus is
/// built without Consul discovery: its promtool refuses
/// `consul_sd_configs`, so it cannot be the judge here.)
#[test]
fn shipped_consul_examples_are_valid() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "consul-sd.yml",
        "carbonio-native.yml",
        "fleet-collector.yml",
    ] {
        let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/examples")
            .join(name);
        let ours = check_config(&example);
        assert!(
            ours.status.success(),
            "ours on {name}: {}",
            String::from_utf8_lossy(&ours.stderr)
        );
        // A broken copy is refused, naming the line.
        let text = std::fs::read_to_string(&example).unwrap();
        let broken = dir.path().join(name);
        std::fs::write(&broken, text.replacen("regex:", "regexp:", 1)).unwrap();
        let out = check_config(&broken);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("regexp"), "{err}");
    }
}

/// The query node's scale-out example passes our check; without its
/// bucket it is refused.
#[test]
fn shipped_fleet_query_example_is_valid() {
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples/fleet-query.yml");
    let ours = check_config(&example);
    assert!(
        ours.status.success(),
        "{}",
        String::from_utf8_lossy(&ours.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&example).unwrap();
    let broken = dir.path().join("fleet-query.yml");
    let start = text.find("storage:").unwrap();
    let end = text.find("fleet:").unwrap();
    std::fs::write(&broken, format!("{}{}", &text[..start], &text[end..])).unwrap();
    let out = check_config(&broken);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("storage.object_store"),
        "{err}"
    );
}

/// The role examples: the Monitoring node's configuration passes our
/// check, the rsyslog forwarding snippet passes rsyslog's own validation
/// (and a typo in it does not).
#[test]
fn role_examples_are_valid() {
    let rsyslogd = require("rsyslogd", "rsyslog");
    let roles = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/roles");
    let ours = Command::new(OURS)
        .arg("check-config")
        .arg(roles.join("monitoring.yml"))
        .output()
        .unwrap();
    assert!(
        ours.status.success(),
        "{}",
        String::from_utf8_lossy(&ours.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(roles.join("rsyslog-forward.conf")).unwrap();
    for (name, conf, valid) in [
        ("forward.conf", text.clone(), true),
        (
            "typo.conf",
            text.replace("TCP_Framing", "TCP_Framin"),
            false,
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, conf).unwrap();
        let out = Command::new(&rsyslogd)
            .args(["-N1", "-f"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(
            out.status.success(),
            valid,
            "rsyslogd -N1 on {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// One scrape by our scraper and by Prometheus of the same exporter: the same
/// series (synthetic ones included), negotiated as OpenMetrics by both.
#[test]
fn scrape_gives_the_series_prometheus_stores() {
    use carbonio_collector::scrape::target::{Scraper, TargetState};
    let consul = crate::mesh::replay(crate::mesh::Mode::Normal);
    let mesh = crate::harness::ours(
        "mesh",
        &[
            &format!("--consul.server=127.0.0.1:{}", consul.port),
            &format!("--consul.token={}", crate::mesh::TOKEN),
        ],
    );
    let config_text = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: mesh\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n        labels:\n          role: mesh\n",
        mesh.port
    );
    let prom = crate::harness::prometheus_with_config(&config_text);
    let url = prom.url("/api/v1/series?match[]=%7Bjob%3D%22mesh%22%7D");
    let mut theirs: Vec<Labels> = Vec::new();
    wait_until(
        "Prometheus to store the mesh series",
        Duration::from_secs(60),
        || {
            let v: serde_json::Value =
                serde_json::from_str(&crate::harness::get_text(&url)).unwrap_or_default();
            theirs = v["data"]
                .as_array()
                .map(|a| a.iter().map(to_labels).collect())
                .unwrap_or_default();
            theirs
                .iter()
                .any(|l| l.get("__name__").is_some_and(|n| n == "consul_up"))
        },
    );

    let (_, jobs) = Config::parse(std::path::Path::new("mesh.yml"), &config_text).unwrap();
    let (targets, _) = discovery::targets(&jobs[0]);
    let target = targets[0].labels.clone().unwrap();
    let mut state = TargetState::default();
    let result = Scraper::for_job(&jobs[0]).scrape(&jobs[0], &target, &mut state, 0);
    assert_eq!(result.error, None);
    let mut ours: Vec<Labels> = result.samples.iter().map(|s| (*s.labels).clone()).collect();
    ours.sort();
    theirs.sort();
    // Process and scrape-duration values differ between the two scrapes; the series do not.
    assert_eq!(ours, theirs);
    let up = result
        .samples
        .iter()
        .find(|s| s.labels["__name__"] == "up")
        .unwrap();
    assert_eq!((up.value, up.labels["role"].as_str()), (1.0, "mesh"));

    // The target goes away: up 0 and a staleness marker for every series it had.
    let had = result.samples.len() - 5;
    drop(mesh);
    let gone = Scraper::for_job(&jobs[0]).scrape(&jobs[0], &target, &mut state, 1000);
    assert!(gone.error.is_some());
    assert_eq!(
        gone.samples.iter().filter(|s| s.is_stale_marker()).count(),
        had
    );
    let up = gone
        .samples
        .iter()
        .find(|s| s.labels["__name__"] == "up")
        .unwrap();
    assert_eq!(up.value, 0.0);
}
