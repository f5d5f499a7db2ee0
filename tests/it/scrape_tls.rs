//! Scraping over TLS with a job's `tls_config`: our node exporter serves
//! only TLS with client certificates required (web config); the collector
//! scrapes it with the private CA and a client certificate, and fails
//! clearly without them.

use crate::harness::{get_text, mutual_tls, ours, wait_until};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

#[test]
fn tls_config_ca_client_certificate_and_skip_verify() {
    let dir = tempfile::tempdir().unwrap();
    let tls = mutual_tls(dir.path());
    let web = &tls.web_config;
    let exporter = ours(
        "node",
        &[
            "--collector.disable-defaults",
            "--collector.uname",
            &format!("--web.config.file={}", web.display()),
        ],
    );
    let target = format!("127.0.0.1:{}", exporter.port);
    let job = |name: &str, tls: &str| {
        format!(
            "  - job_name: {name}\n    scheme: https\n    tls_config:\n{tls}    static_configs:\n      - targets: ['{target}']\n"
        )
    };
    let (ca, cc, ck) = (
        tls.ca.display(),
        tls.client_cert.display(),
        tls.client_key.display(),
    );
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{}{}{}{}",
        job(
            "good",
            &format!("      ca_file: {ca}\n      cert_file: {cc}\n      key_file: {ck}\n")
        ),
        job("no_client_cert", &format!("      ca_file: {ca}\n")),
        job(
            "public_roots",
            &format!("      cert_file: {cc}\n      key_file: {ck}\n")
        ),
        job(
            "skip_verify",
            &format!(
                "      insecure_skip_verify: true\n      cert_file: {cc}\n      key_file: {ck}\n"
            )
        ),
    );
    let cfg = dir.path().join("config.yml");
    std::fs::write(&cfg, config).unwrap();
    let collector = crate::collector::start_collector(&cfg, &dir.path().join("data"), &[]);

    let health = || -> BTreeMap<String, (String, String)> {
        let v: Value = serde_json::from_str(&get_text(&collector.url("/api/v1/targets"))).unwrap();
        v["data"]["activeTargets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["labels"]["job"].as_str().unwrap().to_string(),
                    (
                        t["health"].as_str().unwrap().to_string(),
                        t["lastError"].as_str().unwrap_or("").to_string(),
                    ),
                )
            })
            .collect()
    };
    wait_until("every job scraped once", Duration::from_secs(20), || {
        health().values().all(|(h, _)| h != "unknown") && health().len() == 4
    });
    let h = health();
    assert_eq!(h["good"].0, "up", "{h:?}");
    assert_eq!(h["skip_verify"].0, "up", "{h:?}");
    assert_eq!(h["no_client_cert"].0, "down", "{h:?}");
    assert_eq!(h["public_roots"].0, "down", "{h:?}");
    assert!(!h["public_roots"].1.is_empty(), "{h:?}");
}
