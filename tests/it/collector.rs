//! The collector scrapes into its WAL-backed store: the same series as a real
//! Prometheus scraping the same targets, and nothing acknowledged is lost to kill -9.

use crate::harness::{
    debug_output, free_port, get_text, http_get, http_request, ours, prometheus_with_config, spawn,
    wait_until, OURS,
};
use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

/// Series (label sets as text) and sample counts from `debug head-dump`.
fn dump(data: &std::path::Path) -> (Vec<(String, usize)>, String) {
    let text = debug_output("head-dump", data);
    let series = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            let (labels, rest) = l.split_once("} ").unwrap();
            (
                format!("{labels}}}"),
                rest.split(' ').next().unwrap().parse().unwrap(),
            )
        })
        .collect();
    (series, text)
}

/// Starts `collector` on a free port; returns once it serves `/-/ready`.
pub fn start_collector(
    cfg: &std::path::Path,
    data: &std::path::Path,
    extra: &[&str],
) -> crate::harness::Service {
    let port = free_port();
    let mut cmd = Command::new(OURS);
    cmd.arg("collector")
        .arg("--config")
        .arg(cfg)
        .arg("--data")
        .arg(data)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args(extra);
    let svc = spawn("collector", tempfile::tempdir().unwrap(), port, cmd);
    wait_until("the collector to be ready", Duration::from_secs(30), || {
        http_get(&svc.url("/-/ready"), &[]).is_ok_and(|r| r.0 == 200)
    });
    svc
}

#[test]
fn collector_stores_what_prometheus_stores_and_survives_kill_9() {
    let consul = crate::mesh::replay(crate::mesh::Mode::Normal);
    let mesh = ours(
        "mesh",
        &[
            &format!("--consul.server=127.0.0.1:{}", consul.port),
            &format!("--consul.token={}", crate::mesh::TOKEN),
        ],
    );
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: mesh\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
        mesh.port
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("carbonio-monitor.yml");
    std::fs::write(&cfg_path, &config).unwrap();
    let data = dir.path().join("data");
    let prom = prometheus_with_config(&config);
    let mut collector = start_collector(&cfg_path, &data, &["--storage.flush-interval=2s"]);

    // Let both scrape a few times.
    let up_url = prom.url("/api/v1/query?query=count_over_time(up%7Bjob%3D%22mesh%22%7D%5B1m%5D)");
    wait_until(
        "Prometheus to scrape 3 times",
        Duration::from_secs(60),
        || get_text(&up_url).contains("\"3\"") || get_text(&up_url).contains("\"4\""),
    );
    // Long enough for at least one flush (every 2 s) and more scrapes after it.
    std::thread::sleep(Duration::from_secs(5));
    // kill -9: the store must come back from its WAL alone.
    collector.kill_9();

    let blocks = std::fs::read_dir(data.join("blocks"))
        .map(|rd| rd.count())
        .unwrap_or(0);
    assert!(blocks >= 1, "no block was flushed");
    let (series, text) = dump(&data);
    assert!(
        text.contains("0 damaged segments") || text.contains("1 damaged segments"),
        "{text}"
    );
    let ours: BTreeSet<String> = series.iter().map(|(l, _)| l.clone()).collect();
    let v: serde_json::Value = serde_json::from_str(&get_text(
        &prom.url("/api/v1/series?match[]=%7Bjob%3D%22mesh%22%7D"),
    ))
    .unwrap();
    let theirs: BTreeSet<String> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let m: std::collections::BTreeMap<String, String> =
                serde_json::from_value(o.clone()).unwrap();
            let l: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            format!("{{{}}}", l.join(","))
        })
        .collect();
    assert_eq!(ours, theirs);
    let up = series
        .iter()
        .find(|(l, _)| l.contains("__name__=\"up\""))
        .unwrap();
    assert!(up.1 >= 3, "only {} scrapes stored", up.1);
    // Every series has a sample from every scrape (a scrape is one WAL write:
    // all or nothing), whether it is now in a block or in the replayed WAL.
    assert!(series.iter().all(|(_, n)| *n == up.1), "{text}");
    drop(collector);
}

fn up_count(data: &std::path::Path, job: &str) -> usize {
    let (series, _) = dump(data);
    series
        .iter()
        .find(|(l, _)| l.contains("__name__=\"up\"") && l.contains(&format!("job=\"{job}\"")))
        .map_or(0, |(_, n)| *n)
}

#[test]
fn reload_on_file_change_and_sighup_keeps_a_good_config_running() {
    let node = ours(
        "node",
        &["--collector.disable-defaults", "--collector.loadavg"],
    );
    let job = |name: &str| {
        format!(
            "  - job_name: {name}\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            node.port
        )
    };
    let head = "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n";
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("carbonio-monitor.yml");
    std::fs::write(&cfg, format!("{head}{}", job("first"))).unwrap();
    let data = dir.path().join("data");
    let collector = start_collector(&cfg, &data, &[]);
    let log = || std::fs::read_to_string(collector.path("collector.log")).unwrap_or_default();
    // Without --web.enable-lifecycle, HTTP cannot reload (as in Prometheus).
    let (status, _, _) = http_request("POST", &collector.url("/-/reload"), &[]).unwrap();
    assert_eq!(status, 403);

    // Adding a job to the file starts scraping it.
    std::thread::sleep(Duration::from_millis(1500));
    std::fs::write(&cfg, format!("{head}{}{}", job("first"), job("second"))).unwrap();
    wait_until(
        "the second job to be scraped",
        Duration::from_secs(20),
        || up_count(&data, "second") >= 2,
    );

    // A broken file is rejected and both jobs go on.
    std::fs::write(
        &cfg,
        format!("{head}  - job_name: first\n    scrape_intervall: 5s\n"),
    )
    .unwrap();
    wait_until(
        "the bad config to be rejected",
        Duration::from_secs(20),
        || log().contains("configuration reload rejected"),
    );
    assert!(
        log().contains("scrape_intervall"),
        "the rejection names the key: {}",
        log()
    );
    let before = up_count(&data, "second");
    wait_until("scraping to go on", Duration::from_secs(20), || {
        up_count(&data, "second") > before + 1
    });

    // SIGHUP reloads too.
    std::fs::write(&cfg, format!("{head}{}", job("first"))).unwrap();
    wait_until(
        "the file change to be applied",
        Duration::from_secs(20),
        || log().matches("configuration reloaded").count() >= 2,
    );
    let pid = collector_pid(&collector);
    assert!(Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    wait_until("SIGHUP to reload", Duration::from_secs(20), || {
        log().contains("reason=\"SIGHUP\"") || log().contains("SIGHUP")
    });
}

fn collector_pid(svc: &crate::harness::Service) -> u32 {
    svc.pid().expect("collector is running")
}

/// The same OpenMetrics backfill file is accepted by promtool and by our importer.
#[test]
fn import_openmetrics_like_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backfill.om");
    let mut om = String::from("# HELP mta_queue_messages Messages in the Postfix queue.\n# TYPE mta_queue_messages gauge\n");
    for queue in ["active", "deferred", "hold"] {
        for i in 0..500 {
            om.push_str(&format!(
                "mta_queue_messages{{queue=\"{queue}\",instance=\"mta1\"}} {} {}\n",
                i % 17,
                1_700_000_000 + i * 30
            ));
        }
    }
    om.push_str("# EOF\n");
    std::fs::write(&file, &om).unwrap();

    let promtool = crate::harness::require("promtool", "prometheus");
    let theirs = Command::new(promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&file)
        .arg(dir.path().join("prom"))
        .output()
        .unwrap();
    assert!(
        theirs.status.success(),
        "promtool: {}",
        String::from_utf8_lossy(&theirs.stderr)
    );

    let data = dir.path().join("data");
    let out = crate::harness::run_ok(
        Command::new(OURS)
            .args(["import", "openmetrics"])
            .arg(&file)
            .arg("--data")
            .arg(&data),
    );
    assert!(out.contains("imported 1500 samples of 3 series"), "{out}");
    let (series, _) = dump(&data);
    assert_eq!(series.len(), 3);
    assert!(series.iter().all(|(_, n)| *n == 500));

    // A sample without a timestamp is refused with its line; nothing is written.
    let bad = dir.path().join("bad.om");
    std::fs::write(&bad, "a 1 1700000000\na 2\n# EOF\n").unwrap();
    let data2 = dir.path().join("data2");
    let out = Command::new(OURS)
        .args(["import", "openmetrics"])
        .arg(&bad)
        .arg("--data")
        .arg(&data2)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!data2.join("blocks").exists());
}

/// Active targets of a `/api/v1/targets` answer, keyed by (job, instance).
fn active_targets(body: &str) -> std::collections::BTreeMap<(String, String), serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    v["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let key = (
                t["scrapePool"].as_str().unwrap().to_string(),
                t["labels"]["instance"].as_str().unwrap().to_string(),
            );
            (key, t.clone())
        })
        .collect()
}

/// Writes a file the way SD tools do: a new file renamed over the old one.
fn replace_file(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// `/api/v1/targets` answers as a real Prometheus does for the same
/// configuration; file_sd changes apply without a reload (a vanished target's
/// series are marked stale); `POST /-/reload` rejects a bad file and applies
/// a good one; the self-metrics count all of it.
#[test]
fn targets_api_file_sd_watching_and_lifecycle_reload() {
    let node = ours(
        "node",
        &["--collector.disable-defaults", "--collector.loadavg"],
    );
    let dir = tempfile::tempdir().unwrap();
    let sd_dir = dir.path().join("sd");
    std::fs::create_dir(&sd_dir).unwrap();
    let sd_file = sd_dir.join("targets.json");
    let group = |addr: &str, role: &str| {
        format!(r#"{{"targets": ["{addr}"], "labels": {{"role": "{role}"}}}}"#)
    };
    let node_addr = format!("127.0.0.1:{}", node.port);
    let other_addr = format!("localhost:{}", node.port);
    replace_file(
        &sd_file,
        &format!(
            "[{}, {}]",
            group(&node_addr, "mta"),
            group("127.0.0.1:1", "retired")
        ),
    );
    let head = "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n";
    let sd_job = format!(
        "  - job_name: sd\n    file_sd_configs:\n      - files: ['{}/*.json']\n    relabel_configs:\n      - source_labels: [role]\n        regex: retired\n        action: drop\n",
        sd_dir.display()
    );
    let static_job = format!(
        "  - job_name: node\n    metrics_path: /metrics\n    params:\n      collect[]: [loadavg]\n    static_configs:\n      - targets: ['{node_addr}']\n        labels:\n          role: proxy\n"
    );
    let config = format!("{head}{sd_job}{static_job}");
    let cfg = dir.path().join("carbonio-monitor.yml");
    std::fs::write(&cfg, &config).unwrap();
    let data = dir.path().join("data");
    let prom = prometheus_with_config(&config);
    let collector = start_collector(&cfg, &data, &["--web.enable-lifecycle"]);

    // Same active targets, labels, URLs and health as Prometheus.
    let all_up = |body: &str| {
        let t = active_targets(body);
        t.len() == 2 && t.values().all(|t| t["health"] == "up")
    };
    wait_until(
        "both to scrape every target",
        Duration::from_secs(30),
        || {
            all_up(&get_text(&prom.url("/api/v1/targets")))
                && all_up(&get_text(&collector.url("/api/v1/targets")))
        },
    );
    // Stored data is not served without credentials configured.
    let (status, _, body) =
        crate::harness::http_get(&collector.url("/api/v1/fleet/info"), &[]).unwrap();
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    let theirs_body = get_text(&prom.url("/api/v1/targets"));
    let ours_body = get_text(&collector.url("/api/v1/targets"));
    let (theirs, mine) = (active_targets(&theirs_body), active_targets(&ours_body));
    assert_eq!(
        theirs.keys().collect::<Vec<_>>(),
        mine.keys().collect::<Vec<_>>()
    );
    for (key, t) in &theirs {
        let o = &mine[key];
        let keys = |v: &serde_json::Value| {
            v.as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect::<BTreeSet<_>>()
        };
        assert_eq!(keys(t), keys(o), "{key:?}");
        for field in [
            "discoveredLabels",
            "labels",
            "scrapePool",
            "scrapeUrl",
            "health",
            "scrapeInterval",
            "scrapeTimeout",
            "lastError",
        ] {
            assert_eq!(t[field], o[field], "{key:?} {field}");
        }
    }
    let dropped = |body: &str| {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        // Prometheus 2.42 reports discoveredLabels only; newer ones add scrapePool.
        v["data"]["droppedTargets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["discoveredLabels"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(dropped(&theirs_body), dropped(&ours_body));

    // A new target in the SD file is scraped without a reload...
    replace_file(
        &sd_file,
        &format!(
            "[{}, {}]",
            group(&node_addr, "mta"),
            group(&other_addr, "mta")
        ),
    );
    wait_until(
        "the new SD target to be scraped",
        Duration::from_secs(20),
        || {
            active_targets(&get_text(&collector.url("/api/v1/targets")))
                .get(&("sd".to_string(), other_addr.clone()))
                .is_some_and(|t| t["health"] == "up")
        },
    );
    // ...and one removed from it is stopped, its series marked stale.
    replace_file(&sd_file, &format!("[{}]", group(&node_addr, "mta")));
    wait_until(
        "the removed SD target to stop",
        Duration::from_secs(20),
        || active_targets(&get_text(&collector.url("/api/v1/targets"))).len() == 2,
    );
    // The retiring loop writes its markers once its scrape in flight is done.
    let up_line = || {
        let (_, text) = dump(&data);
        text.lines()
            .find(|l| {
                l.contains("__name__=\"up\"") && l.contains(&format!("instance=\"{other_addr}\""))
            })
            .map(str::to_string)
            .unwrap_or_default()
    };
    wait_until(
        "the removed target's up to be marked stale",
        Duration::from_secs(10),
        || up_line().ends_with(" NaN"),
    );
    let log = std::fs::read_to_string(collector.path("collector.log")).unwrap();
    assert!(!log.contains("configuration reloaded"), "{log}");

    // POST /-/reload: a bad file is refused with the key named, the old config keeps running.
    std::fs::write(
        &cfg,
        format!("{head}  - job_name: x\n    scrape_intervall: 5s\n"),
    )
    .unwrap();
    let (status, _, body) = http_request("POST", &collector.url("/-/reload"), &[]).unwrap();
    let body = String::from_utf8_lossy(&body).to_string();
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("scrape_intervall"), "{body}");
    assert_eq!(
        active_targets(&get_text(&collector.url("/api/v1/targets"))).len(),
        2
    );
    // A good one is applied before the answer.
    std::fs::write(&cfg, format!("{head}{static_job}")).unwrap();
    let (status, _, body) = http_request("POST", &collector.url("/-/reload"), &[]).unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let now = active_targets(&get_text(&collector.url("/api/v1/targets")));
    assert_eq!(
        now.keys().map(|k| k.0.as_str()).collect::<Vec<_>>(),
        ["node"]
    );
    let cfg_json: serde_json::Value =
        serde_json::from_str(&get_text(&collector.url("/api/v1/status/config"))).unwrap();
    // The running configuration, re-serialised (secrets would be hidden).
    let shown: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(cfg_json["data"]["yaml"].as_str().unwrap()).unwrap();
    let loaded: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&format!("{head}{static_job}")).unwrap();
    assert_eq!(shown, loaded);

    // Self-metrics, parsed as OpenMetrics.
    let metrics = get_text(&collector.url("/metrics"));
    let mut values = std::collections::BTreeMap::new();
    for ev in carbonio_collector::scrape::parse::Parser::new(
        &metrics,
        carbonio_collector::scrape::parse::Format::OpenMetrics,
    ) {
        if let carbonio_collector::scrape::parse::Event::Sample(s) = ev.unwrap() {
            let job = s
                .labels
                .iter()
                .find(|(k, _)| *k == "job")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            values.insert((s.name.to_string(), job), s.value);
        }
    }
    let v = |name: &str, job: &str| {
        values
            .get(&(name.to_string(), job.to_string()))
            .copied()
            .unwrap_or(-1.0)
    };
    assert!(
        v("carbonio_collector_scrapes_total", "node") >= 2.0,
        "{metrics}"
    );
    assert!(
        v("carbonio_collector_samples_appended_total", "") > 0.0,
        "{metrics}"
    );
    assert_eq!(
        v("carbonio_collector_config_reload_failures_total", ""),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        v("carbonio_collector_config_last_reload_successful", ""),
        1.0,
        "{metrics}"
    );
    assert_eq!(v("carbonio_collector_targets", "node"), 1.0, "{metrics}");
    assert!(v("process_resident_memory_bytes", "") > 0.0, "{metrics}");
    assert!(v("process_open_fds", "") > 0.0, "{metrics}");
    assert!(v("process_cpu_seconds_total", "") >= 0.0, "{metrics}");
    assert_eq!(v("carbonio_collector_targets", "sd"), 0.0, "{metrics}");
}
