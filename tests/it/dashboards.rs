//! The Carbonio dashboards in `dashboards/`: `dashboards export` writes
//! them as embedded; each is Grafana dashboard JSON with the fields
//! Grafana's import needs; promtool parses every panel query; and every
//! panel returns data from `run` scraping our six exporters, which watch a
//! real PostgreSQL, a replicating slapd pair, nginx, a Consul API replay,
//! this machine and a process named like mailboxd.

use crate::harness::{
    free_port, ldap_add, nginx, ours, postgres, require, slapd_with, LdapRole, Service, OURS,
};
use crate::promql_compat::percent_encode;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const PASSWORD: &str = "dashboards-test-password";

fn shipped() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let json = serde_json::from_str(&std::fs::read_to_string(&p).unwrap())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, json)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Every PromQL query of every panel: (dashboard, panel title, expr, instant).
fn queries(dashboards: &[(String, Value)]) -> Vec<(String, String, String, bool)> {
    targets(dashboards, false)
}

/// The log searches of logs panels: (dashboard, panel title, search).
fn log_queries(dashboards: &[(String, Value)]) -> Vec<(String, String, String)> {
    targets(dashboards, true)
        .into_iter()
        .map(|(d, title, search, _)| (d, title, search))
        .collect()
}

/// The targets of logs panels, or of the others.
fn targets(dashboards: &[(String, Value)], logs: bool) -> Vec<(String, String, String, bool)> {
    let mut out = Vec::new();
    for (name, d) in dashboards {
        for p in d["panels"].as_array().unwrap() {
            if (p["type"] == "logs") != logs {
                continue;
            }
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push((
                    name.clone(),
                    p["title"].as_str().unwrap().to_string(),
                    t["expr"].as_str().unwrap().to_string(),
                    t["instant"] == true,
                ));
            }
        }
    }
    out
}

/// Variables as Grafana expands them with "All" selected (`.*`), and its
/// built-in `$__rate_interval` (four scrape intervals at least; 1s here).
fn expand(expr: &str) -> String {
    let mut e = expr.replace("$__rate_interval", "1m");
    for var in ["$instance", "$groupname"] {
        e = e.replace(var, ".*");
    }
    assert!(!e.contains('$'), "unexpanded variable in {expr}");
    e
}

#[test]
fn dashboards_are_grafana_json_and_export_as_embedded() {
    let dashboards = shipped();
    assert!(dashboards.len() >= 10, "{} dashboards", dashboards.len());
    let mut uids = BTreeSet::new();
    for (name, d) in &dashboards {
        for key in [
            "uid",
            "title",
            "schemaVersion",
            "panels",
            "templating",
            "time",
        ] {
            assert!(!d[key].is_null(), "{name}: no {key}");
        }
        assert!(
            uids.insert(d["uid"].as_str().unwrap()),
            "{name}: uid reused"
        );
        assert_eq!(format!("{}.json", d["uid"].as_str().unwrap()), *name);
        let mut ids = BTreeSet::new();
        for p in d["panels"].as_array().unwrap() {
            let title = p["title"].as_str().unwrap_or("?");
            assert!(
                ids.insert(p["id"].as_u64().unwrap()),
                "{name}: panel id reused"
            );
            let g = &p["gridPos"];
            for k in ["h", "w", "x", "y"] {
                assert!(g[k].is_u64(), "{name}/{title}: gridPos.{k}");
            }
            assert!(
                g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24,
                "{name}/{title}: wider than the grid"
            );
            let kind = p["type"].as_str().unwrap();
            assert!(
                [
                    "row",
                    "timeseries",
                    "stat",
                    "gauge",
                    "bargauge",
                    "table",
                    "logs"
                ]
                .contains(&kind),
                "{name}/{title}: panel type {kind}"
            );
            if kind != "row" {
                let targets = p["targets"].as_array().unwrap();
                assert!(!targets.is_empty(), "{name}/{title}: no targets");
                for t in targets {
                    assert!(
                        t["refId"].is_string() && t["expr"].is_string(),
                        "{name}/{title}: target {t}"
                    );
                }
                assert!(
                    p["fieldConfig"]["defaults"].is_object(),
                    "{name}/{title}: fieldConfig"
                );
            }
        }
        for v in d["templating"]["list"].as_array().unwrap() {
            assert!(
                v["name"].is_string() && v["type"].is_string(),
                "{name}: variable {v}"
            );
        }
    }

    let out = tempfile::tempdir().unwrap();
    let status = Command::new(OURS)
        .args(["dashboards", "export"])
        .arg(out.path())
        .status()
        .unwrap();
    assert!(status.success());
    for (name, d) in &dashboards {
        let written: Value =
            serde_json::from_str(&std::fs::read_to_string(out.path().join(name)).unwrap()).unwrap();
        assert_eq!(
            &written, d,
            "{name} exported differs from dashboards/{name}"
        );
    }
    assert_eq!(
        std::fs::read_dir(out.path()).unwrap().count(),
        dashboards.len()
    );

    // promtool parses every panel query (as a recording rule each).
    let promtool = require("promtool", "prometheus");
    let mut rules = String::from("groups:\n  - name: panels\n    rules:\n");
    for (_, _, expr, _) in queries(&dashboards) {
        rules.push_str(&format!(
            "      - record: panel:query\n        expr: {}\n",
            serde_json::to_string(&expand(&expr)).unwrap()
        ));
    }
    let file = out.path().join("panels.rules.yml");
    std::fs::write(&file, rules).unwrap();
    let check = Command::new(promtool)
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
}

/// A process the built-in `mailboxd` group matches: comm `java`, a
/// command line naming mailboxd.
struct FakeMailboxd {
    child: Child,
    _dir: tempfile::TempDir,
}

impl FakeMailboxd {
    fn start() -> FakeMailboxd {
        let dir = tempfile::tempdir().unwrap();
        let java = dir.path().join("java");
        // Copied by cp: a file this process has open for writing can leak
        // into a child another test thread forks, and exec then fails.
        assert!(Command::new("cp")
            .arg("/bin/sh")
            .arg(&java)
            .status()
            .unwrap()
            .success());
        // `read` is a builtin: no child outlives the kill (one holding the
        // test's stdout would keep the test run's pipe open).
        let child = Command::new(&java)
            .args(["-c", "read line", "mailboxd"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        FakeMailboxd { child, _dir: dir }
    }
}

impl Drop for FakeMailboxd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn textfile_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // What Carbonio's stat-mtaqueue writes to postfix.prom.
    std::fs::write(
        dir.path().join("postfix.prom"),
        format!(
            "postfix_last_extraction_timestamp {now}\npostfix_queue_stat_size 24\npostfix_queue_stat_requests 6\n\
             postfix_queue_stat{{queue=\"corrupt\"}} 0\npostfix_queue_stat{{queue=\"incoming\"}} 1\n\
             postfix_queue_stat{{queue=\"deferred\"}} 4\npostfix_queue_stat{{queue=\"active\"}} 1\npostfix_queue_stat{{queue=\"hold\"}} 0\n"
        ),
    )
    .unwrap();
    dir
}

fn query_data(svc: &Service, expr: &str, instant: bool) -> Result<usize, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let path = if instant {
        format!("/api/v1/query?query={}", percent_encode(expr))
    } else {
        format!(
            "/api/v1/query_range?query={}&start={}&end={now}&step=2",
            percent_encode(expr),
            now - 60
        )
    };
    let (status, body) = crate::query_api::get(svc, &path, PASSWORD);
    if status != 200 {
        return Err(format!("HTTP {status}: {body}"));
    }
    Ok(body["data"]["result"].as_array().map_or(0, Vec::len))
}

#[test]
fn every_panel_shows_data_from_the_real_exporters() {
    let dashboards = shipped();
    let _mailboxd = FakeMailboxd::start();
    let textfiles = textfile_dir();
    let node = ours(
        "node",
        &[&format!(
            "--collector.textfile.directory={}",
            textfiles.path().display()
        )],
    );
    let process = ours("process", &[]);
    let pg = postgres();
    let pg_exporter = ours(
        "postgres",
        &[&format!(
            "--data-source-name=postgresql://postgres@127.0.0.1:{}/postgres?sslmode=disable",
            pg.port
        )],
    );
    let provider = slapd_with(LdapRole::Provider);
    ldap_add(&provider, "dn: dc=carbonio,dc=test\nobjectClass: dcObject\nobjectClass: organization\ndc: carbonio\no: Carbonio\n");
    let consumer = slapd_with(LdapRole::ConsumerOf(provider.port));
    let ldap = crate::ldap::replication_exporter(&provider, &consumer);
    let web = nginx();
    let nginx_exporter = ours(
        "nginx",
        &[
            &format!("--nginx.scrape-uri={}", web.url("/stub_status")),
            &format!("--nginx.access-log={}", web.path("access.log").display()),
        ],
    );
    let consul = crate::mesh::replay(crate::mesh::Mode::Normal);
    let mesh = ours(
        "mesh",
        &[
            &format!("--consul.server=127.0.0.1:{}", consul.port),
            &format!("--consul.token={}", crate::mesh::TOKEN),
        ],
    );

    let dir = tempfile::tempdir().unwrap();
    let syslog = free_port();
    let tailed = dir.path().join("app.log");
    std::fs::write(&tailed, "first line\n").unwrap();
    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n  - name: always\n    rules:\n      - alert: Watchdog\n        expr: vector(1)\n",
    )
    .unwrap();
    let web_port = free_port();
    let mut config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files: [rules.yml]\n\
         syslog:\n  listeners:\n    - address: 127.0.0.1:{syslog}\n      protocol: udp\n\
         tail:\n  poll_interval: 200ms\n  files:\n    - paths: ['{}']\n\
         {}\
         scrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: ['127.0.0.1:{web_port}']\n    basic_auth:\n      username: admin\n      password: {PASSWORD}\n",
        tailed.display(),
        include_str!("../../deploy/examples/log-metrics.yml")
    );
    for (job, svc) in [
        ("node", &node),
        ("process", &process),
        ("postgres", &pg_exporter),
        ("ldap", &ldap),
        ("nginx", &nginx_exporter),
        ("mesh", &mesh),
    ] {
        config.push_str(&format!(
            "  - job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            svc.port
        ));
    }
    let cfg: PathBuf = dir.path().join("config.yml");
    std::fs::write(&cfg, config).unwrap();
    let svc = crate::query_api::start_run(
        &dir.path().join("data"),
        web_port,
        Some(PASSWORD),
        Some(&cfg),
        &[],
    );

    // Traffic for the rate panels: proxy requests, syslog and tailed lines.
    let logger = require("logger", "bsdutils");
    let traffic = || {
        for _ in 0..5 {
            let _ = crate::harness::http_get(&web.url("/stub_status"), &[]);
            let _ = crate::harness::http_get(&web.url("/missing"), &[]);
        }
        for (app, line) in [
            ("app", "a syslog line"),
            ("postfix/smtp", "4F2A1: to=<u@example.com>, relay=mx[192.0.2.1]:25, status=sent (250 ok)"),
            ("postfix/smtpd", "NOQUEUE: reject: RCPT from unknown[192.0.2.7]: 554 5.7.1 Relay access denied"),
            ("postfix/smtpd", "warning: unknown[192.0.2.7]: SASL LOGIN authentication failed: UGFzc3dvcmQ6"),
            ("mailboxd", "cmd=Auth; account=a@example.com; protocol=imap; error=authentication failed for [a], invalid password;"),
        ] {
            let _ = Command::new(&logger)
                .args(["-n", "127.0.0.1", "-P", &syslog.to_string(), "-d", "-t", app, line])
                .status();
        }
        let _ = Command::new(&logger)
            .args([
                "-n",
                "127.0.0.1",
                "-P",
                &syslog.to_string(),
                "-d",
                "-p",
                "user.warning",
            ])
            .args(["-t", "app", "a warning line"])
            .status();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&tailed)
            .unwrap();
        std::io::Write::write_all(&mut f, b"another line\n").unwrap();
    };
    let queries = queries(&dashboards);
    // Rates need two scrapes; the replicas and the first flushes take a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let empty = loop {
        traffic();
        let empty: Vec<String> = queries
            .iter()
            .filter_map(|(d, title, expr, instant)| {
                match query_data(&svc, &expand(expr), *instant) {
                    Ok(n) if n > 0 => None,
                    Ok(_) => Some(format!("{d} / {title}: no data for {expr}")),
                    Err(e) => Some(format!("{d} / {title}: {e} for {expr}")),
                }
            })
            .collect();
        let empty: Vec<String> = empty
            .into_iter()
            .chain(
                log_queries(&dashboards)
                    .iter()
                    .filter_map(|(d, title, search)| {
                        let (status, body) = crate::query_api::get(
                            &svc,
                            &format!(
                                "/api/v1/logs/query?query={}&limit=1",
                                percent_encode(search)
                            ),
                            PASSWORD,
                        );
                        let lines = body["data"]["lines"].as_array().map_or(0, Vec::len);
                        (status != 200 || lines == 0)
                            .then(|| format!("{d} / {title}: no log line for {search}: {body}"))
                    }),
            )
            .collect();
        if empty.is_empty() || std::time::Instant::now() > deadline {
            break empty;
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    assert!(empty.is_empty(), "{}", empty.join("\n"));
}
