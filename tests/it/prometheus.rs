//! Compatibility checked by the real Prometheus tools.

use crate::harness::{
    get_text, ours, prometheus, require, run_with_stdin, upstream_node_exporter,
    upstream_process_exporter, wait_until,
};
use std::collections::BTreeSet;
use std::time::Duration;

/// promtool's lint findings, or a panic if it could not parse the input.
fn promtool_findings(text: &str) -> BTreeSet<String> {
    let promtool = require("promtool", "prometheus");
    let (code, stdout, stderr) = run_with_stdin(&promtool, &["check", "metrics"], text.as_bytes());
    let all = format!("{stdout}{stderr}");
    assert!(code == 0 || code == 3, "promtool failed ({code}): {all}");
    assert!(
        !all.contains("error while linting"),
        "promtool could not parse: {all}"
    );
    all.lines()
        .map(str::to_string)
        .filter(|l| !l.trim().is_empty())
        .collect()
}

/// promtool accepts our output; every naming warning it gives us, it also
/// gives the upstream exporter (we keep those names for compatibility).
#[test]
fn promtool_accepts_our_exporters() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("process.yml");
    std::fs::write(
        &config,
        "process_names:\n  - name: \"{{.Comm}}\"\n    cmdline: ['.+']\n",
    )
    .unwrap();
    let cfg_flag = format!("--config.path={}", config.display());
    let pg = crate::harness::postgres();
    let dsn = format!(
        "postgresql://postgres@127.0.0.1:{}/postgres?sslmode=disable",
        pg.port
    );
    let nginx = crate::harness::nginx();
    let stub = nginx.url("/stub_status");
    let pairs = [
        (
            ours("postgres", &[&format!("--data-source-name={dsn}")]),
            crate::harness::upstream_postgres_exporter(&dsn),
        ),
        (ours("node", &[]), upstream_node_exporter(&[])),
        (
            ours("process", &[&cfg_flag]),
            upstream_process_exporter(&config),
        ),
        (
            ours(
                "nginx",
                &[
                    &format!("--nginx.scrape-uri={stub}"),
                    &format!("--nginx.access-log={}", nginx.path("access.log").display()),
                ],
            ),
            crate::harness::upstream_nginx_exporter(&stub),
        ),
    ];
    // No upstream consul_exporter here: its output must lint clean on its own.
    let consul = crate::mesh::replay(crate::mesh::Mode::Normal);
    let mesh = ours(
        "mesh",
        &[
            &format!("--consul.server=127.0.0.1:{}", consul.port),
            &format!("--consul.token={}", crate::mesh::TOKEN),
        ],
    );
    let found = promtool_findings(&get_text(&mesh.url("/metrics")));
    assert!(found.is_empty(), "mesh: {found:#?}");

    // No upstream openldap_exporter here either: only the names it uses may warn.
    let slapd = crate::harness::slapd();
    let ldap = ours(
        "ldap",
        &[
            &format!("--ldap.addr=127.0.0.1:{}", slapd.port),
            &format!("--ldap.user={}", crate::harness::LDAP_ADMIN_DN),
            &format!("--ldap.password={}", crate::harness::LDAP_ADMIN_PW),
        ],
    );
    let found = promtool_findings(&get_text(&ldap.url("/metrics")));
    let mut upstream_names: BTreeSet<String> =
        ["openldap_bind", "openldap_dial", "openldap_scrape"]
            .iter()
            .map(|n| format!("{n} counter metrics should have \"_total\" suffix"))
            .collect();
    upstream_names.insert(
        "openldap_monitor_counter_object metric name should not include type 'counter'".into(),
    );
    let extra: Vec<_> = found.difference(&upstream_names).collect();
    assert!(extra.is_empty(), "ldap: {extra:#?}");

    for (our, up) in &pairs {
        let ours_found = promtool_findings(&get_text(&our.url("/metrics")));
        let up_found = promtool_findings(&get_text(&up.url("/metrics")));
        let extra: Vec<_> = ours_found.difference(&up_found).collect();
        assert!(
            extra.is_empty(),
            "{}: warnings upstream does not have: {extra:#?}",
            our.name
        );
    }
}

#[test]
fn real_prometheus_scrapes_our_exporters() {
    let node = ours("node", &[]);
    let process = ours("process", &[]);
    let nginx_server = crate::harness::nginx();
    let nginx = ours(
        "nginx",
        &[&format!(
            "--nginx.scrape-uri={}",
            nginx_server.url("/stub_status")
        )],
    );
    let consul = crate::mesh::replay(crate::mesh::Mode::Normal);
    let mesh = ours(
        "mesh",
        &[
            &format!("--consul.server=127.0.0.1:{}", consul.port),
            &format!("--consul.token={}", crate::mesh::TOKEN),
        ],
    );
    let slapd = crate::harness::slapd();
    let ldap = ours(
        "ldap",
        &[
            &format!("--ldap.addr=127.0.0.1:{}", slapd.port),
            &format!("--ldap.user={}", crate::harness::LDAP_ADMIN_DN),
            &format!("--ldap.password={}", crate::harness::LDAP_ADMIN_PW),
        ],
    );
    let pg = crate::harness::postgres();
    let postgres = ours(
        "postgres",
        &[&format!(
            "--data-source-name=postgresql://postgres@127.0.0.1:{}/postgres?sslmode=disable",
            pg.port
        )],
    );
    let prom = prometheus(&[
        ("postgres", format!("127.0.0.1:{}", postgres.port)),
        ("ldap", format!("127.0.0.1:{}", ldap.port)),
        ("node", format!("127.0.0.1:{}", node.port)),
        ("process", format!("127.0.0.1:{}", process.port)),
        ("nginx", format!("127.0.0.1:{}", nginx.port)),
        ("mesh", format!("127.0.0.1:{}", mesh.port)),
    ]);
    let url = prom.url("/api/v1/query?query=up");
    let mut last = String::new();
    wait_until(
        "Prometheus to scrape both exporters with up == 1",
        Duration::from_secs(60),
        || {
            last = get_text(&url);
            let v: serde_json::Value = serde_json::from_str(&last).unwrap();
            let results = v["data"]["result"].as_array().cloned().unwrap_or_default();
            results.len() == 6 && results.iter().all(|r| r["value"][1] == "1")
        },
    );
    // And it stored real series from both, e.g. memory and a process group.
    let q = get_text(&prom.url("/api/v1/query?query=node_memory_MemTotal_bytes"));
    assert!(q.contains("\"job\":\"node\""), "{q}");
    let q = get_text(&prom.url("/api/v1/query?query=namedprocess_namegroup_num_procs"));
    assert!(q.contains("\"job\":\"process\""), "{q}");
    let q = get_text(&prom.url("/api/v1/query?query=consul_raft_peers"));
    assert!(q.contains("\"job\":\"mesh\""), "{q}");
    let q = get_text(&prom.url("/api/v1/query?query=pg_up"));
    assert!(
        q.contains("\"job\":\"postgres\"") && q.contains("\"1\""),
        "{q}"
    );
    let q = get_text(&prom.url("/api/v1/query?query=openldap_up"));
    assert!(q.contains("\"job\":\"ldap\"") && q.contains("\"1\""), "{q}");
    let q = get_text(&prom.url("/api/v1/query?query=nginx_up"));
    assert!(q.contains("\"job\":\"nginx\""), "{q}");
    // Check the targets page reports no scrape errors.
    let targets = get_text(&prom.url("/api/v1/targets"));
    assert!(!targets.contains("\"health\":\"down\""), "{targets}");
    drop(last);
}
