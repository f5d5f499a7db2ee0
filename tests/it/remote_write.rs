//! Prometheus remote write, both ways. Into `run`: a real Prometheus
//! (Debian `prometheus`) scrapes our process exporter and sends what it
//! scrapes to `/api/v1/write` with basic auth; over the same past window
//! both query APIs return the same series and the same values. Out of
//! `run`: our WAL-backed sender to a real Prometheus receiver loses nothing
//! while the receiver is down and our own process is killed meanwhile.

use crate::harness::{
    free_port, get_text, ours, prometheus_at, prometheus_with_config, self_metric, unix_now,
    wait_until, Service,
};
use crate::promql_compat::percent_encode;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

const PASSWORD: &str = "remote-write-password";

/// query_range results as (series labels → values), from either server.
fn range(get: &dyn Fn(&str) -> Value, q: &str, start: u64, end: u64) -> BTreeMap<String, Value> {
    by_series(get(&format!(
        "/api/v1/query_range?query={}&start={start}&end={end}&step=1",
        percent_encode(q)
    )))
}

/// A matrix answer as (series labels → values).
fn by_series(v: Value) -> BTreeMap<String, Value> {
    assert_eq!(v["status"], "success", "{v}");
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["metric"].to_string(), s["values"].clone()))
        .collect()
}

#[test]
fn prometheus_remote_writes_what_it_stores() {
    let exporter = ours("process", &[]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yml");
    std::fs::write(&cfg, "global:\n  scrape_interval: 15s\n").unwrap();
    let port = free_port();
    let svc: Service = crate::query_api::start_run(
        &dir.path().join("data"),
        port,
        Some(PASSWORD),
        Some(&cfg),
        &[],
    );
    let prom = prometheus_with_config(&format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n  - job_name: proc\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n\
         remote_write:\n  - url: http://127.0.0.1:{port}/api/v1/write\n    basic_auth:\n      username: admin\n      password: {PASSWORD}\n    queue_config:\n      batch_send_deadline: 1s\n",
        exporter.port
    ));
    let ours_get = |path: &str| crate::query_api::get(&svc, path, PASSWORD).1;
    let prom_get = |path: &str| -> Value {
        serde_json::from_str(&crate::harness::get_text(&prom.url(path))).unwrap()
    };
    wait_until(
        "remote-written samples arrive",
        Duration::from_secs(60),
        || {
            ours_get(&format!(
                "/api/v1/query?query={}",
                percent_encode("up{job=\"proc\"}")
            ))["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
        },
    );
    std::thread::sleep(Duration::from_secs(12));
    let now = unix_now() as u64;
    // A window well behind what is still in Prometheus's send queue.
    let (start, end) = (now - 10, now - 4);
    for q in [
        "up",
        "scrape_samples_scraped",
        "namedprocess_namegroup_num_procs",
        "rate(namedprocess_namegroup_cpu_seconds_total[5s])",
    ] {
        let theirs = range(&prom_get, q, start, end);
        let ours = range(&ours_get, q, start, end);
        assert!(!theirs.is_empty(), "{q}: Prometheus has no data");
        assert_eq!(
            ours.keys().collect::<Vec<_>>(),
            theirs.keys().collect::<Vec<_>>(),
            "{q}: series differ"
        );
        assert_eq!(ours, theirs, "{q}: values differ");
    }

    // A body that is not snappy protobuf is refused with 400.
    let auth = format!(
        "Basic {}",
        crate::promql_compat::base64(format!("admin:{PASSWORD}").as_bytes())
    );
    let body = b"not a write request";
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "POST /api/v1/write HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status: u16 = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert_eq!(status, 400);
}

/// Raw samples of `{job="proc"}` in the `secs` before `at`, per series.
fn raw_window(get: &dyn Fn(&str) -> Value, secs: u64, at: u64) -> BTreeMap<String, Value> {
    let q = format!("{{job=\"proc\"}}[{secs}s]");
    by_series(get(&format!(
        "/api/v1/query?query={}&time={at}",
        percent_encode(&q)
    )))
}

#[test]
fn our_remote_write_survives_receiver_restart_and_our_crash() {
    let exporter = ours("process", &[]);
    let receiver_port = free_port();
    let receiver_flags = ["--web.enable-remote-write-receiver"];
    let receiver = prometheus_at(
        "global: {}\n",
        tempfile::tempdir().unwrap(),
        receiver_port,
        &receiver_flags,
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: proc\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n\
             remote_write:\n  - url: http://127.0.0.1:{receiver_port}/api/v1/write\n    name: prom\n\
             \x20   write_relabel_configs:\n      - source_labels: [job]\n        regex: proc\n        action: keep\n\
             \x20   queue_config:\n      batch_send_deadline: 1s\n      min_backoff: 100ms\n      max_backoff: 1s\n",
            exporter.port
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let start = || crate::query_api::start_run(&data, port, Some(PASSWORD), Some(&cfg), &[]);
    let mut sender = start();
    let theirs = |path: &str| -> Value {
        serde_json::from_str(&get_text(&format!(
            "http://127.0.0.1:{receiver_port}{path}"
        )))
        .unwrap()
    };
    let up_query = format!("/api/v1/query?query={}", percent_encode("up{job=\"proc\"}"));
    wait_until(
        "the receiver has our samples",
        Duration::from_secs(60),
        || {
            theirs(&up_query)["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
        },
    );
    let first = unix_now() as u64;

    // The receiver goes away; we keep scraping and retrying.
    let receiver_dir = receiver.stop_keeping_dir();
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        self_metric(
            &sender,
            "carbonio_collector_remote_write_samples_retried_total"
        ) > 0.0,
        "failed sends are retried"
    );
    // We crash with unsent samples in the WAL, and come back.
    sender.kill_9();
    let down_from = unix_now() as u64;
    std::thread::sleep(Duration::from_secs(2));
    let sender = start();
    std::thread::sleep(Duration::from_secs(3));
    let receiver = prometheus_at("global: {}\n", receiver_dir, receiver_port, &receiver_flags);

    // Everything we stored in the window arrives, once.
    std::thread::sleep(Duration::from_secs(3));
    let end = unix_now() as u64 - 1;
    let secs = end - first + 2;
    let ours_get = |path: &str| crate::query_api::get(&sender, path, PASSWORD).1;
    let mut last = (BTreeMap::new(), BTreeMap::new());
    let same = (0..30).any(|_| {
        last = (
            raw_window(&ours_get, secs, end),
            raw_window(&theirs, secs, end),
        );
        if last.0 == last.1 {
            return true;
        }
        std::thread::sleep(Duration::from_secs(1));
        false
    });
    let (ours_raw, theirs_raw) = last;
    assert!(
        ours_raw.len() > 10,
        "ours has the job's series: {}",
        ours_raw.len()
    );
    let up = ours_raw
        .iter()
        .find(|(k, _)| k.contains("\"__name__\":\"up\""))
        .map(|(_, v)| v.as_array().unwrap().clone())
        .unwrap();
    let before_crash = up
        .iter()
        .filter(|s| {
            let t = s[0].as_f64().unwrap() as u64;
            t >= first && t < down_from
        })
        .count();
    assert!(
        before_crash >= 3,
        "scrapes made while the receiver was down: {up:?}"
    );
    if !same {
        let differ: Vec<&String> = ours_raw
            .keys()
            .filter(|k| ours_raw.get(*k) != theirs_raw.get(*k))
            .take(3)
            .collect();
        panic!(
            "the receiver's samples differ from ours for {} of {} series, e.g. {differ:?}: ours {:?} theirs {:?}",
            ours_raw.keys().filter(|k| ours_raw.get(*k) != theirs_raw.get(*k)).count(),
            ours_raw.len(),
            differ.first().and_then(|k| ours_raw.get(*k)),
            differ.first().and_then(|k| theirs_raw.get(*k)),
        );
    }
    assert!(
        self_metric(
            &sender,
            "carbonio_collector_remote_write_samples_sent_total"
        ) > 0.0
    );
    drop(receiver);
}
