//! The OpenLDAP exporter against a real slapd whose cn=Monitor needs a bind.

use crate::expo::{self, value};
use crate::harness::{
    self, get_text, ours, require, wait_until, LdapRole, LDAP_ADMIN_DN, LDAP_ADMIN_PW,
};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

fn scrape(svc: &harness::Service) -> std::collections::BTreeMap<String, expo::Family> {
    expo::parse(&get_text(&svc.url("/metrics")))
}

fn op(fams: &std::collections::BTreeMap<String, expo::Family>, name: &str) -> f64 {
    value(
        fams,
        "openldap_monitor_operation",
        &[("dn", &format!("cn={name},cn=Operations,cn=Monitor"))],
    )
    .unwrap_or_else(|| panic!("no {name} operation"))
}

#[test]
fn cn_monitor_families_and_exact_counts() {
    let slapd = harness::slapd();
    let addr = format!("--ldap.addr=127.0.0.1:{}", slapd.port);
    let user = format!("--ldap.user={LDAP_ADMIN_DN}");
    let pw_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(pw_file.path(), format!("{LDAP_ADMIN_PW}\n")).unwrap();
    let pw = format!("--ldap.password-file={}", pw_file.path().display());
    let ours = ours("ldap", &[&addr, &user, &pw]);

    let before = scrape(&ours);
    assert_eq!(value(&before, "openldap_up", &[]), Some(1.0));
    // tomcz/openldap_exporter's families and labels.
    for (family, labels) in [
        ("openldap_monitored_object", vec!["dn"]),
        ("openldap_monitor_counter_object", vec!["dn"]),
        ("openldap_monitor_operation", vec!["dn"]),
        ("openldap_dial", vec!["result"]),
        ("openldap_bind", vec!["result"]),
        ("openldap_scrape", vec!["result"]),
    ] {
        let f = before
            .get(family)
            .unwrap_or_else(|| panic!("missing {family}"));
        let names: Vec<&str> = f.label_names.iter().map(String::as_str).collect();
        assert_eq!(names, labels, "{family}");
    }
    assert!(value(
        &before,
        "openldap_monitored_object",
        &[("dn", "cn=Max,cn=Threads,cn=Monitor")]
    )
    .is_some());
    assert!(value(
        &before,
        "openldap_monitor_counter_object",
        &[("dn", "cn=Current,cn=Connections,cn=Monitor")]
    )
    .is_some());
    assert!(value(&before, "openldap_threads", &[("state", "max")]).unwrap() > 0.0);

    const N: usize = 7;
    let ldapsearch = require("ldapsearch", "ldap-utils");
    for _ in 0..N {
        let out = Command::new(&ldapsearch)
            .args([
                "-x",
                "-H",
                &format!("ldap://127.0.0.1:{}/", slapd.port),
                "-D",
                LDAP_ADMIN_DN,
                "-w",
                LDAP_ADMIN_PW,
            ])
            .args(["-b", "cn=Monitor", "-s", "base", "1.1"])
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let after = scrape(&ours);
    // Each ldapsearch binds and searches once; the first scrape's own search
    // completed after it was read, the second scrape's bind before.
    assert_eq!(op(&after, "Search") - op(&before, "Search"), (N + 1) as f64);
    assert_eq!(op(&after, "Bind") - op(&before, "Bind"), (N + 1) as f64);
    let total = |f| value(f, "openldap_connections_total", &[]).unwrap();
    assert_eq!(total(&after) - total(&before), (N + 1) as f64);
    let completed = |f| {
        value(
            f,
            "openldap_operations_completed_total",
            &[("operation", "search")],
        )
        .unwrap()
    };
    assert_eq!(completed(&after), op(&after, "Search"));
    assert_eq!(
        value(&after, "openldap_scrape", &[("result", "ok")]),
        Some(2.0)
    );
    assert_eq!(
        value(&after, "openldap_bind", &[("result", "ok")]),
        Some(2.0)
    );
    let log = std::fs::read_to_string(ours.path("carbonio-monitor exporter ldap.log"))
        .unwrap_or_default();
    assert!(!log.contains(LDAP_ADMIN_PW), "password logged");
}

#[test]
fn wrong_password_anonymous_down_and_slow_give_up_0() {
    let slapd = harness::slapd();
    let addr = format!("--ldap.addr=ldap://127.0.0.1:{}", slapd.port);
    let wrong = ours(
        "ldap",
        &[
            &addr,
            &format!("--ldap.user={LDAP_ADMIN_DN}"),
            "--ldap.password=not-the-password",
        ],
    );
    let fams = scrape(&wrong);
    assert_eq!(value(&fams, "openldap_up", &[]), Some(0.0));
    assert_eq!(
        value(&fams, "openldap_bind", &[("result", "fail")]),
        Some(1.0)
    );
    let log = std::fs::read_to_string(wrong.path("carbonio-monitor exporter ldap.log"))
        .unwrap_or_default();
    assert!(
        log.contains("invalidCredentials") || log.contains("rc=49"),
        "log should say why: {log}"
    );
    assert!(!log.contains("not-the-password"));

    // The access rule hides cn=Monitor from anonymous users.
    let anonymous = ours("ldap", &[&addr]);
    assert_eq!(value(&scrape(&anonymous), "openldap_up", &[]), Some(0.0));

    let closed = harness::free_port();
    let down = ours("ldap", &[&format!("--ldap.addr=127.0.0.1:{closed}")]);
    assert_eq!(value(&scrape(&down), "openldap_up", &[]), Some(0.0));

    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let slow = ours(
        "ldap",
        &[
            &format!("--ldap.addr={}", silent.local_addr().unwrap()),
            "--ldap.timeout=300ms",
        ],
    );
    let t = Instant::now();
    assert_eq!(value(&scrape(&slow), "openldap_up", &[]), Some(0.0));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "scrape took {:?}",
        t.elapsed()
    );
}

#[test]
fn replication_csn_and_consumer_lag() {
    let provider = harness::slapd_with(LdapRole::Provider);
    harness::ldap_add(&provider, "dn: dc=carbonio,dc=test\nobjectClass: dcObject\nobjectClass: organization\ndc: carbonio\no: Carbonio\n");
    let consumer = harness::slapd_with(LdapRole::ConsumerOf(provider.port));
    let ldapsearch = require("ldapsearch", "ldap-utils");
    wait_until(
        "consumer to replicate the suffix",
        Duration::from_secs(30),
        || {
            Command::new(&ldapsearch)
                .args([
                    "-x",
                    "-LLL",
                    "-H",
                    &format!("ldap://127.0.0.1:{}/", consumer.port),
                    "-D",
                    LDAP_ADMIN_DN,
                    "-w",
                    LDAP_ADMIN_PW,
                ])
                .args(["-b", "dc=carbonio,dc=test", "-s", "base", "contextCSN"])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("contextCSN:"))
        },
    );
    let ours = replication_exporter(&provider, &consumer);
    let fams = scrape(&ours);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let gt = value(
        &fams,
        "openldap_monitor_replication",
        &[("id", "000"), ("type", "gt")],
    )
    .expect("contextCSN time");
    assert!((now - gt).abs() < 600.0, "CSN time {gt} vs now {now}");
    assert!(value(
        &fams,
        "openldap_monitor_replication",
        &[("id", "000"), ("type", "count")]
    )
    .is_some());
    let consumer_label = format!("ldap://127.0.0.1:{}", consumer.port);
    assert_eq!(
        value(
            &fams,
            "openldap_replication_consumer_up",
            &[("consumer", &consumer_label)]
        ),
        Some(1.0)
    );
    let lag = value(
        &fams,
        "openldap_replication_lag_seconds",
        &[
            ("base", "dc=carbonio,dc=test"),
            ("consumer", &consumer_label),
            ("sid", "000"),
        ],
    );
    assert_eq!(lag, Some(0.0), "in-sync consumer: {fams:?}");

    drop(consumer);
    let fams = scrape(&ours);
    assert_eq!(
        value(
            &fams,
            "openldap_replication_consumer_up",
            &[("consumer", &consumer_label)]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(&fams, "openldap_up", &[]),
        Some(1.0),
        "the provider is still read"
    );
}

#[test]
fn starttls_and_ldaps_with_a_ca_file() {
    let (slapd, ldaps_port, ca) = harness::slapd_tls();
    let auth = [
        format!("--ldap.user={LDAP_ADMIN_DN}"),
        format!("--ldap.password={LDAP_ADMIN_PW}"),
    ];
    let ca_flag = format!("--ldap.ca-file={}", ca.display());
    let up = |extra: &[&str]| {
        let mut args: Vec<&str> = auth.iter().map(String::as_str).collect();
        args.extend_from_slice(extra);
        let svc = ours("ldap", &args);
        value(&scrape(&svc), "openldap_up", &[])
    };
    let plain = format!("--ldap.addr=ldap://127.0.0.1:{}", slapd.port);
    let ldaps = format!("--ldap.addr=ldaps://127.0.0.1:{ldaps_port}");
    assert_eq!(
        up(&[&plain, "--ldap.starttls", &ca_flag]),
        Some(1.0),
        "StartTLS"
    );
    assert_eq!(up(&[&ldaps, &ca_flag]), Some(1.0), "ldaps");
    // The server's certificate is not trusted without the CA file: a clear failure.
    assert_eq!(up(&[&ldaps]), Some(0.0), "untrusted certificate");
}

/// Our LDAP exporter on `provider`, comparing `consumer`'s contextCSN for
/// the test suffix.
pub fn replication_exporter(
    provider: &harness::Service,
    consumer: &harness::Service,
) -> harness::Service {
    ours(
        "ldap",
        &[
            &format!("--ldap.addr=127.0.0.1:{}", provider.port),
            &format!("--ldap.consumer=127.0.0.1:{}", consumer.port),
            "--ldap.replication-object=dc=carbonio,dc=test",
            &format!("--ldap.user={LDAP_ADMIN_DN}"),
            &format!("--ldap.password={LDAP_ADMIN_PW}"),
        ],
    )
}
