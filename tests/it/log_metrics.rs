//! Log-derived metrics, with the shipped Carbonio set
//! (`deploy/examples/log-metrics.yml`, also in `run`'s default config):
//! Postfix lines sent with `logger` over syslog and audit.log lines tailed
//! from a file become counters queryable with PromQL, equal to the counts
//! computed here from the same lines; a reload adds a definition and the
//! existing counters go on.

use crate::harness::{free_port, require, wait_until, Service};
use crate::promql_compat::percent_encode;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

const PASSWORD: &str = "log-metrics-password";

/// The shipped definitions, without the section's key.
fn shipped() -> String {
    let file =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples/log-metrics.yml");
    let text = std::fs::read_to_string(file).unwrap();
    let (_, list) = text.split_once("log_metrics:\n").unwrap();
    list.to_string()
}

const CONNECTS: &str =
    "  - name: test_connects_total\n    app: 'postfix/smtpd'\n    regex: 'connect from'\n";

fn config(syslog: u16, audit: &std::path::Path, metrics: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n\
         syslog:\n  listeners:\n    - address: 127.0.0.1:{syslog}\n      protocol: tcp\n\
         tail:\n  poll_interval: 200ms\n  files:\n    - paths: ['{}']\n      parser: mailbox\n\
         log_metrics:\n{metrics}",
        audit.display()
    )
}

/// Values of `metric` by the given label, from an instant query.
fn values(svc: &Service, metric: &str, label: &str) -> BTreeMap<String, f64> {
    let (_, body) = crate::query_api::get(
        svc,
        &format!("/api/v1/query?query={}", percent_encode(metric)),
        PASSWORD,
    );
    body["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["metric"][label].as_str().unwrap_or("").to_string(),
                r["value"][1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn log_lines_become_counters() {
    let logger = require("logger", "bsdutils");
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    std::fs::write(&audit, "").unwrap();
    let syslog = free_port();
    let cfg = dir.path().join("config.yml");
    std::fs::write(&cfg, config(syslog, &audit, &shipped())).unwrap();
    let svc = crate::query_api::start_run(
        &dir.path().join("data"),
        free_port(),
        Some(PASSWORD),
        Some(&cfg),
        &[],
    );

    // A mail log: deliveries in a fixed pseudo-random order, and lines
    // that must not count (other apps, other statuses).
    let statuses = ["sent", "deferred", "sent", "bounced", "sent", "expired"];
    let mut lines: Vec<(&str, String)> = Vec::new();
    for i in 0..60usize {
        let status = statuses[(i * 7 + i / 5) % statuses.len()];
        let app = if i % 4 == 0 {
            "postfix/lmtp"
        } else {
            "postfix/smtp"
        };
        lines.push((
            app,
            format!("{i:05X}: to=<u{i}@example.com>, relay=mx[192.0.2.1]:25, delay=0.1, status={status} (250 ok)"),
        ));
    }
    lines.push((
        "amavis",
        "(1234-01) Passed CLEAN, status=sent-like text".into(),
    ));
    lines.push(("postfix/smtpd", "connect from unknown[192.0.2.9]".into()));
    for i in 0..3 {
        lines.push((
            "postfix/qmgr",
            format!("{i:05X}: from=<s{i}@example.com>, size=1234, nrcpt=1 (queue active)"),
        ));
    }
    lines.push(("postfix/qmgr", "00009: removed".into()));
    lines.push((
        "postfix/smtpd",
        "warning: unknown[192.0.2.9]: SASL LOGIN authentication failed: UGFzc3dvcmQ6".into(),
    ));
    lines.push((
        "amavis",
        "(1234-02) Blocked SPAM {DiscardedInbound}, [192.0.2.9] <a@b> -> <c@d>".into(),
    ));
    let mut expected: BTreeMap<String, f64> = BTreeMap::new();
    for (app, text) in &lines {
        if !app.starts_with("postfix/") {
            continue;
        }
        for s in ["sent", "deferred", "bounced", "expired"] {
            if text.contains(&format!("status={s} ")) {
                *expected.entry(s.to_string()).or_default() += 1.0;
            }
        }
    }
    for (app, text) in &lines {
        crate::harness::send_syslog_tcp(syslog, "user.notice", app, text);
    }
    // audit.log: failures by protocol, and a success.
    let now = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S,%3f");
    let mut audit_text = String::new();
    for (i, proto) in ["imap", "soap", "imap", "pop3", "imap"].iter().enumerate() {
        audit_text.push_str(&format!("{now} WARN  [t{i}] [oip=203.0.113.{i};] security - cmd=Auth; account=a{i}@example.com; protocol={proto}; error=authentication failed for [a{i}@example.com], invalid password;\n"));
    }
    audit_text.push_str(&format!(
        "{now} INFO  [t9] [oip=192.0.2.1;] security - cmd=Auth; account=ok@example.com; protocol=imap;\n"
    ));
    std::fs::write(&audit, audit_text).unwrap();

    wait_until("delivery counters", Duration::from_secs(30), || {
        values(&svc, "carbonio_mail_deliveries_total", "status") == expected
    });
    let host = crate::query_api::get(
        &svc,
        &format!(
            "/api/v1/query?query={}",
            percent_encode("carbonio_mail_deliveries_total")
        ),
        PASSWORD,
    )
    .1["data"]["result"][0]["metric"]["host"]
        .clone();
    assert!(host.as_str().is_some_and(|h| !h.is_empty()), "{host}");
    let auth = BTreeMap::from([
        ("imap".to_string(), 3.0),
        ("pop3".to_string(), 1.0),
        ("soap".to_string(), 1.0),
    ]);
    wait_until("auth failure counters", Duration::from_secs(30), || {
        values(&svc, "carbonio_login_failures_total", "protocol") == auth
    });
    wait_until(
        "SMTP AUTH failures and content verdicts",
        Duration::from_secs(30),
        || {
            values(&svc, "carbonio_smtp_auth_failures_total", "").get("") == Some(&1.0)
                && values(&svc, "carbonio_mail_received_total", "").get("") == Some(&3.0)
                && values(&svc, "carbonio_mail_content_verdicts_total", "verdict")
                    .get("Blocked SPAM")
                    == Some(&1.0)
        },
    );
    // rate() works on them like on any counter.
    wait_until("a rate over the counter", Duration::from_secs(10), || {
        !values(&svc, "rate(carbonio_mail_deliveries_total[1m])", "status").is_empty()
    });

    // A reload adds a definition; the existing counters go on.
    std::fs::write(
        &cfg,
        config(syslog, &audit, &format!("{}{CONNECTS}", shipped())),
    )
    .unwrap();
    crate::harness::sighup(&svc);
    std::thread::sleep(Duration::from_secs(2));
    for text in [
        "NOQUEUE: reject: RCPT from unknown[198.51.100.4]: 554 5.7.1 Relay access denied",
        "connect from unknown[198.51.100.4]",
        "AB12C: to=<x@example.com>, relay=mx[192.0.2.1]:25, status=sent (250 ok)",
    ] {
        let app = if text.starts_with("AB12C") {
            "postfix/smtp"
        } else {
            "postfix/smtpd"
        };
        assert!(Command::new(&logger)
            .args(["-n", "127.0.0.1", "-P", &syslog.to_string(), "-T"])
            .args(["--octet-count", "--rfc5424", "-t", app])
            .arg(text)
            .status()
            .unwrap()
            .success());
    }
    *expected.get_mut("sent").unwrap() += 1.0;
    wait_until(
        "the new counter and the old one going on",
        Duration::from_secs(30),
        || {
            values(&svc, "test_connects_total", "").get("") == Some(&1.0)
                && values(&svc, "carbonio_mail_rejects_total", "").get("") == Some(&1.0)
                && values(&svc, "carbonio_mail_deliveries_total", "status") == expected
        },
    );
}

#[test]
fn bad_definitions_are_rejected_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    for (metrics, wanted) in [
        (
            "  - name: 'bad name'\n    regex: x\n",
            "not a valid metric name",
        ),
        (
            "  - name: ok_total\n    regex: '(unclosed'\n",
            "bad regular expression",
        ),
        (
            "  - name: ok_total\n    regex: x\n    by: [message]\n",
            "one of host, app",
        ),
        (
            "  - name: ok_total\n    regex: '(?P<host>x)'\n    by: [host]\n",
            "also a capture name",
        ),
    ] {
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, config(free_port(), &audit, metrics)).unwrap();
        let out = Command::new(crate::harness::OURS)
            .arg("check-config")
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{metrics}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(wanted), "{metrics}: {err}");
    }
}
