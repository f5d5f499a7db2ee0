//! `carbonio-monitor run` on the embedded default: the first start creates
//! `admin` with a printed password, every API route but health needs it,
//! the self-scrape is queryable through the Prometheus API, and limits stop
//! a runaway query without stopping the server.

use crate::harness::{free_port, http_get, spawn, wait_until, Service, OURS};
use crate::promql_compat::{base64, percent_encode};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

/// `carbonio-monitor query` over a data directory, `admin` with `password`.
pub fn start_query(data: &std::path::Path, password: &str) -> Service {
    let port = free_port();
    let mut cmd = Command::new(OURS);
    cmd.arg("query")
        .arg("--data")
        .arg(data)
        .arg("--web.listen-address")
        .arg(format!("127.0.0.1:{port}"))
        .env("CARBONIO_MONITOR_ADMIN_PASSWORD", password);
    let svc = spawn(
        "carbonio-monitor query",
        tempfile::tempdir().expect("tempdir"),
        port,
        cmd,
    );
    let url = svc.url("/-/ready");
    wait_until("query service ready", Duration::from_secs(60), || {
        matches!(http_get(&url, &[]), Ok((200, _, _)))
    });
    svc
}

/// `run` on `data` with `extra` arguments; with no `config`, the embedded
/// default (whose syslog listener on 127.0.0.1:1514 only one test may use
/// at a time).
pub fn start_run(
    data: &std::path::Path,
    port: u16,
    admin_password: Option<&str>,
    config: Option<&std::path::Path>,
    extra: &[&str],
) -> Service {
    let mut cmd = Command::new(OURS);
    cmd.arg("run");
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    cmd.arg("--data")
        .arg(data)
        .arg("--web.listen-address")
        .arg(format!("127.0.0.1:{port}"))
        .args(extra)
        .env_remove("CARBONIO_MONITOR_ADMIN_PASSWORD");
    if let Some(p) = admin_password {
        cmd.env("CARBONIO_MONITOR_ADMIN_PASSWORD", p);
    }
    let svc = spawn(
        "carbonio-monitor run",
        tempfile::tempdir().unwrap(),
        port,
        cmd,
    );
    wait_until("run is ready", Duration::from_secs(30), || {
        http_get(&svc.url("/-/ready"), &[]).is_ok_and(|r| r.0 == 200)
    });
    svc
}

fn printed_password(svc: &Service) -> Option<String> {
    let log = std::fs::read_to_string(svc.path("carbonio-monitor run.log")).ok()?;
    log.lines()
        .find_map(|l| l.strip_prefix("Created user \"admin\" with password: "))
        .map(str::to_string)
}

pub fn get(svc: &Service, path: &str, password: &str) -> (u16, Value) {
    let auth = format!("Basic {}", base64(format!("admin:{password}").as_bytes()));
    let (status, _, body) = http_get(&svc.url(path), &[("Authorization", &auth)])
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, json)
}

fn query(svc: &Service, q: &str, extra: &str, password: &str) -> (u16, Value) {
    get(
        svc,
        &format!("/api/v1/query?query={}{extra}", percent_encode(q)),
        password,
    )
}

#[test]
fn run_serves_the_prometheus_api_behind_a_login() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let svc = start_run(&data, free_port(), None, None, &[]);
    let password = printed_password(&svc).expect("first start prints the admin password");
    let users = std::fs::read_to_string(data.join("users.json")).unwrap();
    assert!(
        !users.contains(&password),
        "password stored in clear: {users}"
    );
    assert!(data.join("config.yml").exists(), "default config written");

    // Health is public; the API is not.
    let (status, _, _) = http_get(&svc.url("/api/v1/query?query=up"), &[]).unwrap();
    assert_eq!(status, 401);
    assert_eq!(query(&svc, "up", "", "wrong").0, 401);

    // The embedded default scrapes itself.
    wait_until("self-scrape is stored", Duration::from_secs(45), || {
        let (_, v) = query(&svc, "up{job=\"carbonio-monitor\"}", "", &password);
        v["data"]["result"][0]["value"][1] == "1"
    });
    let (status, v) = get(&svc, "/api/v1/series?match[]=up", &password);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"][0]["job"], "carbonio-monitor", "{v}");
    let (_, v) = get(&svc, "/api/v1/label/job/values", &password);
    assert!(
        v["data"]
            .as_array()
            .unwrap()
            .contains(&"carbonio-monitor".into()),
        "{v}"
    );
    let (_, v) = get(&svc, "/api/v1/labels", &password);
    assert!(
        v["data"].as_array().unwrap().contains(&"instance".into()),
        "{v}"
    );
    let (_, v) = get(&svc, "/api/v1/targets", &password);
    assert_eq!(v["data"]["activeTargets"][0]["health"], "up", "{v}");
    let (_, v) = get(&svc, "/api/v1/format_query?query=sum(up)by(job)", &password);
    assert_eq!(v["data"], "sum by (job) (up)", "{v}");
    let (_, v) = get(&svc, "/api/v1/status/buildinfo", &password);
    assert_eq!(v["status"], "success", "{v}");
    let (status, v) = query(&svc, "sum(rate(", "", &password);
    assert_eq!(
        (status, v["errorType"].as_str()),
        (400, Some("bad_data")),
        "{v}"
    );
    let (_, v) = query(&svc, "up", "&stats=all", &password);
    assert!(
        v["data"]["stats"]["samples"]["totalQueryableSamples"].as_u64() > Some(0),
        "{v}"
    );
    let auth = format!("Basic {}", base64(format!("admin:{password}").as_bytes()));
    let (_, _, body) = http_get(
        &svc.url("/federate?match[]=up"),
        &[("Authorization", &auth)],
    )
    .unwrap();
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("# TYPE up untyped") && text.contains("job=\"carbonio-monitor\"} 1 "),
        "{text}"
    );

    // A runaway query is stopped by its time limit; the server keeps answering.
    let (status, v) = query(
        &svc,
        "count_over_time(up[1d:1ms])",
        "&timeout=300ms",
        &password,
    );
    assert!(status == 503 || status == 422, "{status} {v}");
    assert!(
        matches!(v["errorType"].as_str(), Some("timeout" | "execution")),
        "{v}"
    );
    assert_eq!(
        query(&svc, "1+1", "", &password).1["data"]["result"][1],
        "2"
    );
}

#[test]
fn a_restart_keeps_the_admin_password_and_an_env_password_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let config = dir.path().join("config.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1m\n").unwrap();
    let config = Some(config.as_path());
    let svc = start_run(&data, port, None, config, &[]);
    let password = printed_password(&svc).expect("password printed");
    drop(svc);
    let svc = start_run(&data, port, None, config, &[]);
    assert_eq!(
        printed_password(&svc),
        None,
        "second start prints no password"
    );
    assert_eq!(query(&svc, "1", "", &password).0, 200);
    drop(svc);
    let svc = start_run(&data, port, Some("chosen-by-script"), config, &[]);
    assert_eq!(printed_password(&svc), None);
    assert_eq!(query(&svc, "1", "", "chosen-by-script").0, 200);
    assert_eq!(query(&svc, "1", "", &password).0, 401);
}
