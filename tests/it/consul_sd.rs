//! `consul_sd_configs` against a server answering Consul's catalog and
//! health APIs as HashiCorp documents them, from a catalog the test changes:
//! tagged services are scraped, untagged ones not, instances appear and
//! disappear with the catalog, and the shipped relabeling example
//! (`deploy/examples/consul-sd.yml`) turns Carbonio's node names into host
//! names. (Debian's Prometheus is built without Consul discovery, so it
//! cannot be the reference here.)

use crate::harness::{free_port, get_text, wait_until};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TOKEN: &str = "sd-test-token";

/// (service name, node name, port, tags) per registered instance.
type Catalog = Arc<Mutex<Vec<(String, String, u16, Vec<String>)>>>;

/// A one-request-per-connection HTTP server: `answer(request target,
/// X-Consul-Token)` gives the status line and the body.
fn serve(answer: impl Fn(&str, Option<&str>) -> (&'static str, String) + Send + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut token = None;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some(v) = h.strip_prefix("X-Consul-Token:") {
                    token = Some(v.trim().to_string());
                }
            }
            let (status, body) = answer(&target, token.as_deref());
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// Answers `/v1/catalog/services` and `/v1/health/service/<name>` from the
/// catalog; 403 without the token. Records the request targets.
fn consul(catalog: Catalog, requests: Arc<Mutex<Vec<String>>>) -> u16 {
    serve(move |target, token| {
        requests.lock().unwrap().push(target.to_string());
        let path = target.split('?').next().unwrap_or("");
        let entries = catalog.lock().unwrap().clone();
        if token != Some(TOKEN) {
            ("403 Forbidden", "ACL not found".to_string())
        } else if path == "/v1/catalog/services" {
            let mut services = serde_json::Map::new();
            for (name, _, _, tags) in &entries {
                services.insert(name.clone(), json!(tags));
            }
            ("200 OK", Value::Object(services).to_string())
        } else if let Some(name) = path.strip_prefix("/v1/health/service/") {
            let list: Vec<Value> = entries
                .iter()
                .filter(|(n, ..)| n == name)
                .map(|(n, node, port, tags)| {
                    json!({
                        "Node": {"ID": "", "Node": node, "Address": "127.0.0.1", "Datacenter": "dc1",
                                 "TaggedAddresses": {"lan": "127.0.0.1"}, "Meta": {"consul-network-segment": ""}},
                        "Service": {"ID": format!("{n}-{port}"), "Service": n, "Tags": tags, "Address": "",
                                    "Port": port, "Meta": {"role": "mailstore"}},
                        "Checks": [{"CheckID": "serfHealth", "Status": "passing"}]
                    })
                })
                .collect();
            ("200 OK", Value::Array(list).to_string())
        } else {
            ("404 Not Found", String::new())
        }
    })
}

/// A scrape target answering one gauge.
fn exporter() -> u16 {
    serve(|_, _| ("200 OK", "sd_test_up 1\n".to_string()))
}

/// (instance, service label, health) of the active targets.
fn active(collector: &crate::harness::Service) -> Vec<(String, String, String)> {
    let v: Value = serde_json::from_str(&get_text(&collector.url("/api/v1/targets"))).unwrap();
    let mut out: Vec<(String, String, String)> = v["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["labels"]["instance"].as_str().unwrap_or("").to_string(),
                t["labels"]["service"].as_str().unwrap_or("").to_string(),
                t["health"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn consul_catalog_targets_follow_the_catalog() {
    let (a, b) = (exporter(), exporter());
    let catalog: Catalog = Arc::new(Mutex::new(vec![
        (
            "carbonio-node-exporter".into(),
            "server-mbox1-example-com".into(),
            a,
            vec!["prometheus-exporter".into(), "node".into()],
        ),
        (
            "carbonio-files".into(),
            "server-mbox1-example-com".into(),
            free_port(),
            vec!["files".into()],
        ),
    ]));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let port = consul(catalog.clone(), requests.clone());

    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples/consul-sd.yml"),
    )
    .unwrap();
    let config = example
        .replace("127.0.0.1:8500", &format!("127.0.0.1:{port}"))
        .replace(
            "/etc/carbonio-monitor/consul-token",
            &token_file.display().to_string(),
        )
        .replace(
            "        tags: [prometheus-exporter]\n",
            "        tags: [prometheus-exporter]\n        refresh_interval: 1s\n",
        );
    let config = format!("global:\n  scrape_interval: 1s\n{config}");
    let cfg = dir.path().join("config.yml");
    std::fs::write(&cfg, config).unwrap();
    let collector = crate::collector::start_collector(&cfg, &dir.path().join("data"), &[]);

    let up = |instance: String| {
        (
            instance,
            "carbonio-node-exporter".to_string(),
            "up".to_string(),
        )
    };
    wait_until(
        "the tagged service scraped",
        Duration::from_secs(20),
        || active(&collector) == [up(format!("mbox1.example.com:{a}"))],
    );

    // A second instance registers; the first goes away.
    catalog.lock().unwrap().push((
        "carbonio-node-exporter".into(),
        "agent-mta1-mail-example-com".into(),
        b,
        vec!["prometheus-exporter".into()],
    ));
    wait_until("the new instance scraped", Duration::from_secs(20), || {
        active(&collector)
            == [
                up(format!("mbox1.example.com:{a}")),
                up(format!("mta1.mail.example.com:{b}")),
            ]
    });
    catalog
        .lock()
        .unwrap()
        .retain(|(_, node, ..)| !node.starts_with("server-"));
    wait_until("the removed instance gone", Duration::from_secs(20), || {
        active(&collector) == [up(format!("mta1.mail.example.com:{b}"))]
    });

    // Asked as Prometheus asks: stale reads, the tag filter, never the
    // untagged service's instances.
    let requests = requests.lock().unwrap().clone();
    assert!(requests.iter().any(
        |r| r.starts_with("/v1/health/service/carbonio-node-exporter?")
            && r.contains("stale")
            && r.contains("tag=prometheus-exporter")
    ));
    assert!(!requests.iter().any(|r| r.contains("carbonio-files")));
}
