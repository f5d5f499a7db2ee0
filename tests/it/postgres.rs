//! Our PostgreSQL exporter against Debian's postgres_exporter on a real server.

use crate::expo::{self, value, Family};
use crate::harness::{self, get_text, ours, pg_run, wait_until};
use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::time::{Duration, Instant};

type Families = BTreeMap<String, Family>;

fn dsn(pg: &harness::Service, extra: &str) -> String {
    format!(
        "postgresql://postgres@127.0.0.1:{}/postgres?sslmode=disable{extra}",
        pg.port
    )
}

fn series(f: &Families, name: &str) -> BTreeSet<Vec<(String, String)>> {
    f.get(name)
        .map(|f| f.samples.keys().map(|(_, l)| l.clone()).collect())
        .unwrap_or_default()
}

#[test]
fn families_labels_and_stable_values_match_postgres_exporter() {
    let pg = harness::postgres();
    pg_run(&pg, "psql", &["-c", "CREATE DATABASE carbonio"]);
    let upstream = harness::upstream_postgres_exporter(&dsn(&pg, ""));
    let ours = ours(
        "postgres",
        &[&format!("--data-source-name={}", dsn(&pg, ""))],
    );
    let up = expo::parse(&get_text(&upstream.url("/metrics")));
    let our = expo::parse(&get_text(&ours.url("/metrics")));

    let mut problems = Vec::new();
    for (name, f) in &up {
        if name.starts_with("go_") || name.starts_with("promhttp_") || name.starts_with("process_")
        {
            continue;
        }
        let Some(o) = our.get(name) else {
            problems.push(format!("missing family {name}"));
            continue;
        };
        if o.kind != f.kind || o.label_names != f.label_names {
            problems.push(format!(
                "{name}: upstream {} {:?}, ours {} {:?}",
                f.kind, f.label_names, o.kind, o.label_names
            ));
        }
        // Settings, version and the per-database/per-mode series are stable: equal.
        let stable = name.starts_with("pg_settings_") || name == "pg_static";
        if stable && f.samples != o.samples {
            problems.push(format!(
                "{name}: upstream {:?}, ours {:?}",
                f.samples, o.samples
            ));
        }
    }
    for name in [
        "pg_locks_count",
        "pg_stat_activity_count",
        "pg_database_size_bytes",
        "pg_stat_database_xact_commit",
    ] {
        if series(&up, name) != series(&our, name) {
            problems.push(format!(
                "{name}: series differ:\n{:?}\n{:?}",
                series(&up, name),
                series(&our, name)
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert_eq!(value(&our, "pg_up", &[]), Some(1.0));
    assert!(
        value(
            &our,
            "pg_settings_max_connections",
            &[("server", &format!("127.0.0.1:{}", pg.port))]
        )
        .unwrap()
            > 0.0
    );
}

#[test]
fn pgbench_moves_counters_by_exactly_its_inserts() {
    let pg = harness::postgres();
    pg_run(&pg, "psql", &["-c", "CREATE DATABASE carbonio"]);
    pg_run(&pg, "pgbench", &["-i", "-q", "carbonio"]);
    let ours = ours(
        "postgres",
        &[
            &format!("--data-source-name={}", dsn(&pg, "")),
            "--collector.stat_user_tables.databases=carbonio",
        ],
    );
    let server = format!("127.0.0.1:{}", pg.port);
    let inserted = |f: &Families| {
        let datid = f["pg_stat_database_tup_inserted"]
            .samples
            .keys()
            .find(|(_, l)| l.iter().any(|(k, v)| k == "datname" && v == "carbonio"))
            .map(|(_, l)| l.clone())
            .expect("carbonio row");
        f["pg_stat_database_tup_inserted"].samples
            [&("pg_stat_database_tup_inserted".to_string(), datid)]
    };
    let history = |f: &Families| {
        value(
            f,
            "pg_stat_user_tables_n_tup_ins",
            &[
                ("datname", "carbonio"),
                ("relname", "pgbench_history"),
                ("schemaname", "public"),
                ("server", &server),
            ],
        )
    };
    // Statistics reach the shared view up to a second after the writes: wait until they settle.
    let settled = |f: &dyn Fn() -> Families| {
        let mut last = f();
        wait_until("pg statistics to settle", Duration::from_secs(15), || {
            std::thread::sleep(Duration::from_millis(1200));
            let now = f();
            let same = inserted(&now) == inserted(&last);
            last = now;
            same
        });
        last
    };
    let scrape = || expo::parse(&get_text(&ours.url("/metrics")));
    let before = settled(&scrape);
    assert_eq!(history(&before), Some(0.0));
    pg_run(&pg, "pgbench", &["-n", "-c", "1", "-t", "50", "carbonio"]);
    let after = settled(&scrape);
    // Each TPC-B-like transaction inserts one pgbench_history row, nothing else inserts.
    assert_eq!(inserted(&after) - inserted(&before), 50.0);
    assert_eq!(history(&after), Some(50.0));
    assert!(
        value(
            &after,
            "pg_stat_user_tables_table_size_bytes",
            &[
                ("datname", "carbonio"),
                ("relname", "pgbench_accounts"),
                ("schemaname", "public"),
                ("server", &server)
            ]
        )
        .unwrap()
            > 0.0
    );
}

#[test]
fn tls_required_server_and_failures() {
    let pg = harness::postgres_with(true);
    let tls = ours(
        "postgres",
        &[&format!(
            "--data-source-name=postgresql://postgres@127.0.0.1:{}/postgres?sslmode=require",
            pg.port
        )],
    );
    assert_eq!(
        value(&expo::parse(&get_text(&tls.url("/metrics"))), "pg_up", &[]),
        Some(1.0)
    );
    let ssl = pg_run(
        &pg,
        "psql",
        &["-tAc", "SELECT count(*) FROM pg_stat_ssl WHERE ssl"],
    );
    assert!(
        ssl.trim().parse::<u32>().unwrap() >= 1,
        "the exporter's connection should use TLS"
    );

    // Requiring TLS from a server without it is a clear failure.
    let plain = harness::postgres();
    let mismatch = ours(
        "postgres",
        &[&format!(
            "--data-source-name=postgresql://postgres@127.0.0.1:{}/postgres?sslmode=require",
            plain.port
        )],
    );
    assert_eq!(
        value(
            &expo::parse(&get_text(&mismatch.url("/metrics"))),
            "pg_up",
            &[]
        ),
        Some(0.0)
    );

    let missing_db = ours(
        "postgres",
        &[&format!(
            "--data-source-name=postgresql://postgres@127.0.0.1:{}/nosuchdb?sslmode=disable",
            plain.port
        )],
    );
    assert_eq!(
        value(
            &expo::parse(&get_text(&missing_db.url("/metrics"))),
            "pg_up",
            &[]
        ),
        Some(0.0)
    );
    let log = std::fs::read_to_string(missing_db.path("carbonio-monitor exporter postgres.log"))
        .unwrap_or_default();
    assert!(log.contains("nosuchdb"), "the log should say why: {log}");

    let closed = harness::free_port();
    let down = ours(
        "postgres",
        &[&format!(
            "--data-source-name=postgresql://postgres:s3cret@127.0.0.1:{closed}/postgres"
        )],
    );
    assert_eq!(
        value(&expo::parse(&get_text(&down.url("/metrics"))), "pg_up", &[]),
        Some(0.0)
    );
    let log = std::fs::read_to_string(down.path("carbonio-monitor exporter postgres.log"))
        .unwrap_or_default();
    assert!(!log.contains("s3cret"), "password logged: {log}");

    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let slow = ours(
        "postgres",
        &[
            &format!(
                "--data-source-name=postgresql://postgres@{}/postgres?sslmode=disable",
                silent.local_addr().unwrap()
            ),
            "--postgres.timeout=300ms",
        ],
    );
    let t = Instant::now();
    assert_eq!(
        value(&expo::parse(&get_text(&slow.url("/metrics"))), "pg_up", &[]),
        Some(0.0)
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "scrape took {:?}",
        t.elapsed()
    );
}

#[test]
fn several_servers_in_one_exporter() {
    let a = harness::postgres();
    let b = harness::postgres();
    let ours = ours(
        "postgres",
        &[&format!(
            "--data-source-name={},{}",
            dsn(&a, ""),
            dsn(&b, "")
        )],
    );
    let fams = expo::parse(&get_text(&ours.url("/metrics")));
    assert_eq!(value(&fams, "pg_up", &[]), Some(1.0));
    let servers: BTreeSet<String> = fams["pg_static"]
        .samples
        .keys()
        .flat_map(|(_, l)| {
            l.iter()
                .filter(|(k, _)| k == "server")
                .map(|(_, v)| v.clone())
        })
        .collect();
    let expected: BTreeSet<String> = [a.port, b.port]
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    assert_eq!(servers, expected);

    // One server down: pg_up 0, the other still reported.
    drop(b);
    let fams = expo::parse(&get_text(&ours.url("/metrics")));
    assert_eq!(value(&fams, "pg_up", &[]), Some(0.0));
    assert_eq!(fams["pg_static"].samples.len(), 1);
}

#[test]
fn wrong_password_is_a_clear_failure() {
    let pg = harness::postgres();
    pg_run(
        &pg,
        "psql",
        &[
            "-c",
            "CREATE ROLE carbonio_monitor LOGIN PASSWORD 'right-pass' IN ROLE pg_monitor",
        ],
    );
    // Password authentication for this role over TCP, ahead of the trust rules.
    let hba = pg.path("data/pg_hba.conf");
    let rest = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(
        &hba,
        format!("host all carbonio_monitor 127.0.0.1/32 scram-sha-256\n{rest}"),
    )
    .unwrap();
    pg_run(&pg, "psql", &["-c", "SELECT pg_reload_conf()"]);
    let with = |pw: &str| {
        format!("--data-source-name=postgresql://carbonio_monitor:{pw}@127.0.0.1:{}/postgres?sslmode=disable", pg.port)
    };

    let wrong = ours("postgres", &[&with("wrong-pass")]);
    assert_eq!(
        value(
            &expo::parse(&get_text(&wrong.url("/metrics"))),
            "pg_up",
            &[]
        ),
        Some(0.0)
    );
    let log = std::fs::read_to_string(wrong.path("carbonio-monitor exporter postgres.log"))
        .unwrap_or_default();
    assert!(
        log.contains("password authentication failed"),
        "the log should say why: {log}"
    );
    assert!(!log.contains("wrong-pass"), "password logged: {log}");

    let right = ours("postgres", &[&with("right-pass")]);
    assert_eq!(
        value(
            &expo::parse(&get_text(&right.url("/metrics"))),
            "pg_up",
            &[]
        ),
        Some(1.0)
    );
}
