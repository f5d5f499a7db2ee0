//! The harness itself: each real service starts, answers, and stops.

use crate::expo::{self, value};
use crate::harness::{self, get_text, require};
use std::process::Command;

#[test]
fn postgres_starts_and_answers() {
    let pg = harness::postgres();
    let psql = require("psql", "postgresql-client");
    let out = Command::new(psql)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port.to_string(),
            "-U",
            "postgres",
            "-tAc",
            "select 40 + 2",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
}

#[test]
fn slapd_serves_cn_monitor() {
    let ldap = harness::slapd();
    let out = Command::new(require("ldapsearch", "ldap-utils"))
        .args([
            "-x",
            "-LLL",
            "-H",
            &format!("ldap://127.0.0.1:{}/", ldap.port),
            "-D",
            harness::LDAP_ADMIN_DN,
            "-w",
            harness::LDAP_ADMIN_PW,
        ])
        .args([
            "-b",
            "cn=Connections,cn=Monitor",
            "-s",
            "sub",
            "(objectClass=*)",
            "monitorCounter",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("dn: cn=Total,cn=Connections,cn=Monitor"),
        "{text}"
    );
    // Anonymous users see nothing of cn=Monitor.
    let anon = Command::new(require("ldapsearch", "ldap-utils"))
        .args([
            "-x",
            "-LLL",
            "-H",
            &format!("ldap://127.0.0.1:{}/", ldap.port),
            "-b",
            "cn=Monitor",
            "-s",
            "base",
        ])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&anon.stdout).contains("dn: cn=Monitor"));
}

#[test]
fn nginx_serves_stub_status() {
    let nginx = harness::nginx();
    let body = get_text(&nginx.url("/stub_status"));
    assert!(body.starts_with("Active connections:"), "{body}");
}

/// The upstream exporters the service exporters will be compared with run
/// against the harness services and see them up.
#[test]
fn upstream_service_exporters_see_the_services() {
    let pg = harness::postgres();
    let dsn = format!(
        "postgresql://postgres@127.0.0.1:{}/postgres?sslmode=disable",
        pg.port
    );
    let pg_exp = harness::upstream_postgres_exporter(&dsn);
    let fams = expo::parse(&get_text(&pg_exp.url("/metrics")));
    assert_eq!(value(&fams, "pg_up", &[]), Some(1.0));

    let nginx = harness::nginx();
    let nginx_exp = harness::upstream_nginx_exporter(&nginx.url("/stub_status"));
    let fams = expo::parse(&get_text(&nginx_exp.url("/metrics")));
    assert_eq!(value(&fams, "nginx_up", &[]), Some(1.0));
}
