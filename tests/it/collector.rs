//! The collector scrapes into its WAL-backed store: the same series as a real
//! Prometheus scraping the same targets, and nothing acknowledged is lost to kill -9.

use crate::harness::{get_text, ours, prometheus_with_config, spawn, wait_until, OURS};
use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

/// Series (label sets as text) and sample counts from `debug head-dump`.
fn dump(data: &std::path::Path) -> (Vec<(String, usize)>, String) {
    let out = Command::new(OURS)
        .args(["debug", "head-dump"])
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
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
    let mut cmd = Command::new(OURS);
    cmd.arg("collector")
        .arg("--config")
        .arg(&cfg_path)
        .arg("--data")
        .arg(&data)
        .arg("--storage.flush-interval=2s");
    let mut collector = spawn("collector", tempfile::tempdir().unwrap(), 0, cmd);

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
    let mut cmd = Command::new(OURS);
    cmd.arg("collector")
        .arg("--config")
        .arg(&cfg)
        .arg("--data")
        .arg(&data);
    let collector = spawn("collector", tempfile::tempdir().unwrap(), 0, cmd);
    let log = || std::fs::read_to_string(collector.path("collector.log")).unwrap_or_default();

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
    let ours = Command::new(OURS)
        .args(["import", "openmetrics"])
        .arg(&file)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        ours.status.success(),
        "{}",
        String::from_utf8_lossy(&ours.stderr)
    );
    let out = String::from_utf8_lossy(&ours.stdout);
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
