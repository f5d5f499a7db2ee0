//! Syslog into the log store with real senders: Debian's rsyslog forwarding
//! over TCP (octet-counted RFC 5424 and newline-framed RFC 3164) and UDP,
//! and util-linux `logger`. Counts stored == counts sent; kill -9 loses
//! nothing that was read.

use crate::collector::start_collector;
use crate::harness::{debug_output, free_port, require, self_metric, spawn, wait_until, Service};
use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command;
use std::time::Duration;

/// A collector with a UDP and a TCP syslog listener; returns it with (udp, tcp) ports.
fn collector_with_syslog(dir: &std::path::Path, max: usize) -> (Service, u16, u16) {
    let (udp, tcp) = (free_port(), free_port());
    let cfg = dir.join("carbonio-monitor.yml");
    std::fs::write(
        &cfg,
        format!(
            "syslog:\n  timezone: Europe/Rome\n  max_message_size: {max}\n  listeners:\n    - protocol: udp\n      address: 127.0.0.1:{udp}\n    - protocol: tcp\n      address: 127.0.0.1:{tcp}\n"
        ),
    )
    .unwrap();
    let svc = start_collector(&cfg, &dir.join("data"), &[]);
    (svc, udp, tcp)
}

/// Every stored line, from `debug logs-dump`.
fn stored(data: &std::path::Path) -> Vec<serde_json::Value> {
    debug_output("logs-dump", data)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Debian's rsyslogd in a temp dir: an imtcp input on a free port, extra
/// `global()` parameters, and `actions`; returns once it listens, with the
/// input's port.
fn rsyslog_relay(global: &str, actions: &str) -> (Service, u16) {
    let rsyslogd = require("rsyslogd", "rsyslog");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = dir.path().join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            "global(workDirectory=\"{}\" {global})\nmodule(load=\"imtcp\")\ninput(type=\"imtcp\" port=\"{port}\" address=\"127.0.0.1\")\n{actions}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(&rsyslogd);
    cmd.arg("-n")
        .arg("-f")
        .arg(&conf)
        .arg("-i")
        .arg(dir.path().join("rsyslogd.pid"));
    let svc = spawn("rsyslogd", dir, port, cmd);
    wait_until("rsyslog to listen", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (svc, port)
}

/// Sends messages over one TCP connection with RFC 6587 octet counting.
fn send_octet_counted(port: u16, messages: impl Iterator<Item = String>) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    for msg in messages {
        write!(s, "{} {msg}", msg.len()).unwrap();
    }
    s.flush().unwrap();
}

/// rsyslog (imtcp in, three omfwd actions out) relays N messages: each must
/// arrive three times — octet-counted RFC 5424 over TCP with its structured
/// data, newline-framed RFC 3164 over TCP, and RFC 3164 over UDP.
#[test]
fn rsyslog_forwarding_over_tcp_and_udp_is_stored_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (collector, udp, tcp) = collector_with_syslog(dir.path(), 8192);
    let data = dir.path().join("data");
    let (_rsyslog, inport) = rsyslog_relay(
        r#"maxMessageSize="64k""#,
        &format!(
            r#"action(type="omfwd" target="127.0.0.1" port="{tcp}" protocol="tcp" TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format"
       queue.type="LinkedList" action.resumeRetryCount="-1")
action(type="omfwd" target="127.0.0.1" port="{tcp}" protocol="tcp" template="RSYSLOG_TraditionalForwardFormat"
       queue.type="LinkedList" action.resumeRetryCount="-1")
action(type="omfwd" target="127.0.0.1" port="{udp}" protocol="udp" template="RSYSLOG_TraditionalForwardFormat")"#
        ),
    );

    // Octet-counted RFC 5424 into rsyslog: unicode, escapes in SD, empty fields.
    let n = 300;
    send_octet_counted(
        inport,
        (0..n).map(|i| {
            format!(
                r#"<134>1 2026-11-23T10:00:00.{i:06}+01:00 mbox{m}.example.com carbonio {pid} AUDIT [audit@32473 user="u{i}@example.com" note="quote \" and \] here"] id={i} login ok — ünïcode ✓"#,
                m = i % 3,
                pid = 1000 + i
            )
        }),
    );
    let count = |v: &[serde_json::Value], scheme: &str| {
        v.iter()
            .filter(|l| l["source"].as_str().unwrap().starts_with(scheme))
            .count()
    };
    wait_until("3 copies of every message", Duration::from_secs(60), || {
        let v = stored(&data);
        count(&v, "tcp://") >= 2 * n && count(&v, "udp://") >= n
    });
    std::thread::sleep(Duration::from_millis(500));
    let v = stored(&data);
    assert_eq!((count(&v, "tcp://"), count(&v, "udp://")), (2 * n, n));
    let mut copies: BTreeMap<String, Vec<&serde_json::Value>> = BTreeMap::new();
    for l in &v {
        let m = l["message"].as_str().unwrap();
        let id = m
            .split_whitespace()
            .find(|w| w.starts_with("id="))
            .unwrap()
            .to_string();
        copies.entry(id).or_default().push(l);
    }
    assert_eq!(copies.len(), n);
    for (id, c) in &copies {
        assert_eq!(c.len(), 3, "{id}");
        for l in c {
            assert!(
                l["message"]
                    .as_str()
                    .unwrap()
                    .ends_with("login ok — ünïcode ✓"),
                "{l}"
            );
            assert_eq!(l["app"], "carbonio", "{l}");
            assert_eq!(
                (l["facility"].as_u64(), l["severity"].as_u64()),
                (Some(16), Some(6))
            );
            assert!(l["host"].as_str().unwrap().starts_with("mbox"), "{l}");
        }
        let with_sd: Vec<_> = c.iter().filter(|l| l["structured_data"] != "").collect();
        assert_eq!(with_sd.len(), 1, "{id}: {c:?}");
        let sd: serde_json::Value =
            serde_json::from_str(with_sd[0]["structured_data"].as_str().unwrap()).unwrap();
        assert_eq!(sd["audit@32473"]["note"], "quote \" and ] here");
        assert_eq!(with_sd[0]["msgid"], "AUDIT");
    }
    assert_eq!(
        self_metric(&collector, "carbonio_collector_syslog_messages_total"),
        (3 * n) as f64
    );
    assert_eq!(
        self_metric(
            &collector,
            "carbonio_collector_syslog_parse_fallbacks_total"
        ),
        0.0
    );
}

/// `logger` over TCP (octet-counted, with an embedded newline) and UDP;
/// an oversize message is truncated and counted; a header-less line is kept raw.
#[test]
fn logger_messages_edge_cases_and_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let (mut collector, udp, tcp) = collector_with_syslog(dir.path(), 1024);
    let data = dir.path().join("data");
    let logger = |args: &[&str], msg: &str| {
        let st = Command::new("logger").args(args).arg(msg).status().unwrap();
        assert!(st.success());
    };
    let (udp, tcp) = (udp.to_string(), tcp.to_string());
    logger(
        &[
            "-n",
            "127.0.0.1",
            "-P",
            &tcp,
            "-T",
            "--octet-count",
            "--rfc5424",
            "-t",
            "zmmailboxd",
            "--msgid",
            "LOGIN",
            "--sd-id",
            "meta@1",
            "--sd-param",
            "ip=\"10.0.0.9\"",
            "-p",
            "local0.err",
        ],
        "first line\nsecond line",
    );
    logger(
        &[
            "-n",
            "127.0.0.1",
            "-P",
            &udp,
            "-d",
            "--rfc3164",
            "-t",
            "postfix/smtpd",
            "-p",
            "mail.info",
        ],
        "connect from unknown[10.0.0.1]",
    );
    let big = "x".repeat(3000);
    logger(
        &[
            "-n",
            "127.0.0.1",
            "-P",
            &tcp,
            "-T",
            "--octet-count",
            "--rfc5424",
            "-S",
            "8192",
            "-t",
            "big",
        ],
        &big,
    );
    {
        let mut s =
            std::net::TcpStream::connect(("127.0.0.1", tcp.parse::<u16>().unwrap())).unwrap();
        s.write_all(b"no header at all, just text\n").unwrap();
    }
    wait_until("four lines stored", Duration::from_secs(20), || {
        stored(&data).len() >= 4
    });
    let v = stored(&data);
    let by_app = |app: &str| {
        v.iter()
            .find(|l| l["app"] == app)
            .unwrap_or_else(|| panic!("no {app}: {v:?}"))
    };
    let m = by_app("zmmailboxd");
    assert_eq!(m["message"], "first line\nsecond line");
    assert_eq!(
        (m["facility"].as_u64(), m["severity"].as_u64()),
        (Some(16), Some(3))
    );
    assert_eq!(m["msgid"], "LOGIN");
    assert!(m["structured_data"].as_str().unwrap().contains("10.0.0.9"));
    let p = by_app("postfix/smtpd");
    assert_eq!(p["message"], "connect from unknown[10.0.0.1]");
    assert!(p["source"]
        .as_str()
        .unwrap()
        .starts_with("udp://127.0.0.1:"));
    let b = by_app("big");
    assert!(b["message"].as_str().unwrap().len() < 1024);
    let raw = v
        .iter()
        .find(|l| l["message"] == "no header at all, just text")
        .unwrap();
    assert_eq!(raw["host"], "127.0.0.1");
    assert_eq!(
        self_metric(&collector, "carbonio_collector_syslog_truncated_total"),
        1.0
    );
    assert_eq!(
        self_metric(
            &collector,
            "carbonio_collector_syslog_parse_fallbacks_total"
        ),
        1.0
    );

    // Sustained TCP ingest, then kill -9: every line the collector read is stored once.
    let tcp_port: u16 = tcp.parse().unwrap();
    let sender = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", tcp_port)).unwrap();
        let mut sent = 0u64;
        for i in 0..2_000_000u64 {
            let msg = format!("<13>1 2026-11-23T10:00:00Z h app - - - seq={i}");
            if write!(s, "{} {msg}", msg.len()).is_err() {
                break;
            }
            sent = i + 1;
        }
        sent
    });
    std::thread::sleep(Duration::from_millis(1500));
    collector.kill_9();
    let sent = sender.join().unwrap();
    let v = stored(&data);
    let mut seqs: Vec<u64> = v
        .iter()
        .filter_map(|l| l["message"].as_str()?.strip_prefix("seq=")?.parse().ok())
        .collect();
    let total = seqs.len();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), total, "duplicates after kill -9");
    assert!(total > 1000, "only {total} lines stored");
    // What was stored is a prefix of what was sent: nothing read was skipped.
    assert_eq!(seqs.last().copied(), Some(total as u64 - 1));
    assert!(total as u64 <= sent);
    // Restarted on the same data, the lines are still there once.
    let collector = start_collector(&dir.path().join("carbonio-monitor.yml"), &data, &[]);
    let again = stored(&data).len();
    assert_eq!(again, v.len());
    drop(collector);
}

/// RFC 5425: rsyslog forwards over TLS (its OpenSSL driver) with a client
/// certificate to a listener that requires one; every message arrives. A
/// client without a certificate is refused and stores nothing.
#[test]
fn rsyslog_over_tls_with_client_certificates() {
    assert!(
        std::path::Path::new("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_ossl.so").exists(),
        "rsyslog's TLS driver is missing: apt install rsyslog-openssl"
    );
    let pki = tempfile::tempdir().unwrap();
    let (ca, cert, key) = crate::harness::test_pki(pki.path());
    let (client_cert, client_key) =
        crate::harness::test_client_cert(pki.path(), "/CN=rsyslog-client");

    let dir = tempfile::tempdir().unwrap();
    let tls = free_port();
    let cfg = dir.path().join("carbonio-monitor.yml");
    std::fs::write(
        &cfg,
        format!(
            "syslog:\n  listeners:\n    - protocol: tls\n      address: 127.0.0.1:{tls}\n      tls: {{cert_file: '{}', key_file: '{}', client_ca_file: '{}'}}\n",
            cert.display(),
            key.display(),
            ca.display()
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let collector = start_collector(&cfg, &data, &[]);

    // Without a client certificate: refused.
    let mut s_client = Command::new(require("openssl", "openssl"))
        .args(["s_client", "-quiet", "-connect"])
        .arg(format!("127.0.0.1:{tls}"))
        .arg("-CAfile")
        .arg(&ca)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _ = s_client
        .stdin
        .take()
        .unwrap()
        .write_all(b"<13>Nov 23 10:00:00 host anonymous: must not be stored\n");
    let _ = s_client.wait();

    let (_rsyslog, inport) = rsyslog_relay(
        &format!(
            r#"DefaultNetstreamDriverCAFile="{}" DefaultNetstreamDriverCertFile="{}" DefaultNetstreamDriverKeyFile="{}""#,
            ca.display(),
            client_cert.display(),
            client_key.display()
        ),
        &format!(
            r#"action(type="omfwd" target="127.0.0.1" port="{tls}" protocol="tcp" StreamDriver="ossl" StreamDriverMode="1"
       StreamDriverAuthMode="x509/name" StreamDriverPermittedPeers="127.0.0.1"
       TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format"
       queue.type="LinkedList" action.resumeRetryCount="-1")"#
        ),
    );
    let n = 200;
    send_octet_counted(
        inport,
        (0..n).map(|i| {
            format!(
                "<86>1 2026-11-23T10:00:00.{i:03}Z mta1.example.com sshd {pid} - - tls message {i} ✓",
                pid = 2000 + i
            )
        }),
    );
    wait_until("every message over TLS", Duration::from_secs(60), || {
        stored(&data).len() >= n
    });
    std::thread::sleep(Duration::from_millis(500));
    let v = stored(&data);
    assert_eq!(v.len(), n, "{v:#?}");
    assert!(v.iter().all(|l| l["source"]
        .as_str()
        .unwrap()
        .starts_with("tls://127.0.0.1:")));
    assert!(v.iter().all(|l| l["app"] == "sshd" && l["severity"] == 6));
    let ids: std::collections::BTreeSet<&str> =
        v.iter().map(|l| l["message"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), n);
    assert!(self_metric(&collector, "carbonio_collector_syslog_messages_total") >= n as f64);
}
