//! Prometheus remote write into `run`: a real Prometheus (Debian
//! `prometheus`) scrapes our process exporter and sends what it scrapes to
//! `/api/v1/write` with basic auth; over the same past window both query
//! APIs return the same series and the same values.

use crate::harness::{free_port, ours, prometheus_with_config, wait_until, Service};
use crate::promql_compat::percent_encode;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

const PASSWORD: &str = "remote-write-password";

/// query_range results as (series labels → values), from either server.
fn range(get: &dyn Fn(&str) -> Value, q: &str, start: u64, end: u64) -> BTreeMap<String, Value> {
    let v = get(&format!(
        "/api/v1/query_range?query={}&start={start}&end={end}&step=1",
        percent_encode(q)
    ));
    assert_eq!(v["status"], "success", "{q}: {v}");
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
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
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
