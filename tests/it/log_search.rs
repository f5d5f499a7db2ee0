//! Log search and SQL through `run`: a generated mail-system corpus sent
//! over TCP syslog, part of it flushed to Parquet and part still in the
//! head; every search feature checked against counts computed from the
//! corpus itself, paging while ingest continues, live tail, export, and
//! read-only SQL with its limits.

use crate::harness::{free_port, http_get, wait_until, Service};
use crate::promql_compat::{base64, percent_encode};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const PASSWORD: &str = "log-search-s3cret";

struct Line {
    ts: i64,
    host: String,
    app: &'static str,
    pid: u32,
    msgid: &'static str,
    severity: u8,
    facility: u8,
    message: String,
}

/// A deterministic mail-system corpus over the two hours before `now`.
fn corpus(n: usize, now: i64, seed: u64) -> Vec<Line> {
    let apps = [
        "postfix/smtpd",
        "postfix/smtp",
        "postfix/qmgr",
        "amavis",
        "slapd",
        "sshd",
        "CRON",
    ];
    let mut x = seed;
    (0..n)
        .map(|i| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let r = (x >> 33) as usize;
            let app = apps[r % apps.len()];
            let message = match (app, r % 5) {
                ("postfix/smtp", 0) => {
                    format!("to=<u{i}@example.com>, status=bounced (host said: 550 No such user)")
                }
                ("postfix/smtp", _) => {
                    format!("to=<u{i}@example.com>, relay=mx.example.com, status=sent")
                }
                ("postfix/smtpd", 0) => "connect from unknown: Connection refused".to_string(),
                ("postfix/smtpd", 1) => format!("disconnect from client{i} ehlo=1 quit=1"),
                ("postfix/smtpd", _) => {
                    format!("NOQUEUE: reject: RCPT from client{i}: 554 Relay access denied")
                }
                ("sshd", 0) => format!("Failed password for root from 10.0.0.{} port 22", r % 250),
                ("sshd", _) => "ERROR: connection refused by peer".to_string(),
                ("slapd", _) => format!("conn={i} op=1 SRCH base=\"dc=example,dc=com\""),
                _ => format!("message {i} for {app}"),
            };
            Line {
                ts: now - 7_200_000 + (i as i64 * 7_000_000 / n as i64),
                host: format!("mail-{}", r % 3),
                app,
                pid: (r % 9000) as u32 + 100,
                msgid: if app == "amavis" { "AV" } else { "-" },
                severity: match app {
                    "sshd" => 3,
                    "postfix/smtp" if message.contains("bounced") => 4,
                    _ => 6,
                },
                facility: if app.starts_with("postfix") {
                    2
                } else if app == "sshd" {
                    4
                } else {
                    3
                },
                message,
            }
        })
        .collect()
}

fn rfc5424(l: &Line) -> String {
    let ts = chrono::DateTime::from_timestamp_millis(l.ts)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default();
    let pri = u32::from(l.facility) * 8 + u32::from(l.severity);
    format!(
        "<{pri}>1 {ts} {} {} {} {} - {}\n",
        l.host, l.app, l.pid, l.msgid, l.message
    )
}

fn send(port: u16, lines: &[Line]) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let text: String = lines.iter().map(rfc5424).collect();
    s.write_all(text.as_bytes()).unwrap();
}

struct Api<'a>(&'a Service);

impl Api<'_> {
    fn get(&self, path: &str) -> (u16, Value) {
        let auth = format!("Basic {}", base64(format!("admin:{PASSWORD}").as_bytes()));
        let (status, _, body) = http_get(&self.0.url(path), &[("Authorization", &auth)]).unwrap();
        (
            status,
            serde_json::from_slice(&body)
                .unwrap_or(Value::String(String::from_utf8_lossy(&body).into())),
        )
    }

    fn raw(&self, path: &str) -> String {
        let auth = format!("Basic {}", base64(format!("admin:{PASSWORD}").as_bytes()));
        let (_, _, body) = http_get(&self.0.url(path), &[("Authorization", &auth)]).unwrap();
        String::from_utf8_lossy(&body).into()
    }

    /// All matches of `q` in [start, end] (ms), following cursors.
    fn search_all(&self, q: &str, start: i64, end: i64, limit: usize) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!(
                "/api/v1/logs/query?query={}&start={}&end={}&limit={limit}",
                percent_encode(q),
                start as f64 / 1000.0,
                end as f64 / 1000.0
            );
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={}", percent_encode(c)));
            }
            let (status, v) = self.get(&path);
            assert_eq!(status, 200, "{q}: {v}");
            out.extend(v["data"]["lines"].as_array().cloned().unwrap_or_default());
            match v["data"]["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return out,
            }
        }
    }

    fn count(&self, q: &str, start: i64, end: i64) -> usize {
        self.search_all(q, start, end, 5000).len()
    }
}

fn start_run(dir: &tempfile::TempDir, syslog_port: u16, port: u16) -> Service {
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n\
             syslog:\n  listeners:\n    - protocol: tcp\n      address: 127.0.0.1:{syslog_port}\n\
             query:\n  timeout: 3s\n  max_memory_bytes: 67108864\n"
        ),
    )
    .unwrap();
    crate::query_api::start_run(
        &dir.path().join("data"),
        port,
        Some(PASSWORD),
        Some(&config),
        &["--storage.logs.flush-interval", "1s"],
    )
}

#[test]
fn log_search_finds_what_the_corpus_holds() {
    let dir = tempfile::tempdir().unwrap();
    let (syslog_port, port) = (free_port(), free_port());
    let svc = start_run(&dir, syslog_port, port);
    let api = Api(&svc);
    let now = chrono::Utc::now().timestamp_millis();
    let (start, end) = (now - 7_300_000, now + 60_000);
    let first = corpus(3000, now, 1);
    send(syslog_port, &first);
    // Flushed to Parquet (flush interval 1s), then more lines that stay in the head.
    wait_until("first batch searchable", Duration::from_secs(30), || {
        api.count("", start, end) == first.len()
    });
    wait_until("first batch flushed", Duration::from_secs(30), || {
        walk(&dir.path().join("data/logs"))
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "parquet"))
    });
    let second = corpus(1000, now, 2);
    send(syslog_port, &second);
    let all: Vec<&Line> = first.iter().chain(second.iter()).collect();
    wait_until("second batch searchable", Duration::from_secs(30), || {
        api.count("", start, end) == all.len()
    });

    let expect = |f: &dyn Fn(&Line) -> bool| all.iter().filter(|l| f(l)).count();
    let lower = |l: &Line| l.message.to_lowercase();
    // Words and phrases match whole words (the regex crate's \b agrees on
    // this ASCII corpus).
    let words = |re: &str| {
        let re = regex::Regex::new(re).unwrap();
        expect(&|l| re.is_match(&l.message))
    };
    assert!(words(r"\bdisconnect from") > 0 && words(r"(?i)\bconnect from") > 0);
    let cases: Vec<(&str, usize)> = vec![
        ("\"connect from\"", words(r"(?i)\bconnect from\b")),
        ("connect", words(r"(?i)\bconnect\b")),
        ("*connect*", expect(&|l| lower(l).contains("connect"))),
        ("client1", words(r"\bclient1\b")),
        (
            "status=bounced",
            expect(&|l| l.message.contains("status=bounced")),
        ),
        (
            "\"connection refused\"",
            expect(&|l| lower(l).contains("connection refused")),
        ),
        (
            "\"Connection refused\"",
            expect(&|l| l.message.contains("Connection refused")),
        ),
        ("ERROR", expect(&|l| l.message.contains("ERROR"))),
        (
            "relay -bounced",
            expect(&|l| lower(l).contains("relay") && !lower(l).contains("bounced")),
        ),
        (
            "bounced OR \"relay access\"",
            expect(&|l| lower(l).contains("bounced") || lower(l).contains("relay access")),
        ),
        ("app:postfix/*", expect(&|l| l.app.starts_with("postfix/"))),
        (
            "app:sshd host:mail-1",
            expect(&|l| l.app == "sshd" && l.host == "mail-1"),
        ),
        ("severity:<=warning", expect(&|l| l.severity <= 4)),
        ("severity:err", expect(&|l| l.severity == 3)),
        ("level:>=6", expect(&|l| l.severity >= 6)),
        ("facility:mail", expect(&|l| l.facility == 2)),
        ("msgid:AV", expect(&|l| l.msgid == "AV")),
        ("procid:4242", expect(&|l| l.pid == 4242)),
        (
            "/10\\.0\\.0\\.1[0-9]\\b/",
            expect(&|l| {
                regex::Regex::new(r"10\.0\.0\.1[0-9]\b")
                    .unwrap()
                    .is_match(&l.message)
            }),
        ),
        (
            "NOT app:slapd (refused OR password)",
            expect(&|l| {
                l.app != "slapd" && (lower(l).contains("refused") || lower(l).contains("password"))
            }),
        ),
        ("host:mail-?", all.len()),
    ];
    for (q, want) in &cases {
        assert_eq!(api.count(q, start, end), *want, "query {q:?}");
    }
    // A window: the last half hour only (head and maybe the newest file).
    let half = expect(&|l| l.ts >= now - 1_800_000 && l.app == "amavis");
    assert_eq!(api.count("app:amavis", now - 1_800_000, end), half);

    // Newest first, and pages stay stable while newer lines arrive.
    let third = corpus(200, now + 30_000, 3);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = format!(
            "/api/v1/logs/query?query=app:postfix/*&start={}&end={}&limit=300",
            start / 1000,
            end / 1000
        );
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", percent_encode(c)));
        }
        let (_, v) = api.get(&path);
        seen.extend(v["data"]["lines"].as_array().cloned().unwrap_or_default());
        pages += 1;
        if pages == 2 {
            send(syslog_port, &third);
        }
        match v["data"]["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let want = expect(&|l| l.app.starts_with("postfix/"));
    assert!(seen.len() >= want, "{} < {want}", seen.len());
    let times: Vec<&str> = seen
        .iter()
        .map(|l| l["timestamp"].as_str().unwrap_or(""))
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "not newest first");
    let keys: std::collections::HashSet<String> = seen
        .iter()
        .map(|l| {
            format!(
                "{}{}{}{}",
                l["timestamp"], l["received"], l["host"], l["message"]
            )
        })
        .collect();
    assert_eq!(keys.len(), seen.len(), "a line appeared on two pages");

    // Histogram and facets agree with the counts (the third batch included).
    let all: Vec<&Line> = all.into_iter().chain(third.iter()).collect();
    wait_until("third batch searchable", Duration::from_secs(30), || {
        api.count("", start, end) == all.len()
    });
    let expect = |f: &dyn Fn(&Line) -> bool| all.iter().filter(|l| f(l)).count();
    let (status, v) = api.get(&format!(
        "/api/v1/logs/histogram?query=app:sshd&start={}&end={}&step=10m",
        start / 1000,
        end / 1000
    ));
    assert_eq!(status, 200, "{v}");
    let total: u64 = v["data"]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b[1].as_u64().unwrap())
        .sum();
    assert_eq!(total as usize, expect(&|l| l.app == "sshd"));
    let (_, v) = api.get(&format!(
        "/api/v1/logs/fields?query=&field=host&start={}&end={}",
        start / 1000,
        end / 1000
    ));
    let hosts = v["data"]["values"].as_array().unwrap();
    assert_eq!(hosts.len(), 3, "{v}");

    // Exports.
    let ndjson = api.raw(&format!(
        "/api/v1/logs/query?query=app:slapd&format=ndjson&start={}&end={}",
        start / 1000,
        end / 1000
    ));
    assert_eq!(
        (ndjson.lines().count(), api.count("app:slapd", start, end)),
        (expect(&|l| l.app == "slapd"), expect(&|l| l.app == "slapd")),
        "export, search"
    );
    assert!(ndjson
        .lines()
        .all(|l| serde_json::from_str::<Value>(l).is_ok()));
    let csv = api.raw(&format!(
        "/api/v1/logs/query?query=msgid:AV&format=csv&start={}&end={}",
        start / 1000,
        end / 1000
    ));
    assert!(csv.starts_with("timestamp,received,host,app"), "{csv}");
    assert_eq!(csv.lines().count(), 1 + expect(&|l| l.msgid == "AV"));

    // Malformed searches: 400 with a position.
    for bad in ["(unclosed", "nosuchfield:x", "severity:<=bogus", "/[/"] {
        let (status, v) = api.get(&format!("/api/v1/logs/query?query={}", percent_encode(bad)));
        assert_eq!(status, 400, "{bad}: {v}");
        assert!(
            v["error"].as_str().unwrap_or("").contains("position"),
            "{bad}: {v}"
        );
    }
}

#[test]
fn live_tail_and_read_only_sql() {
    let dir = tempfile::tempdir().unwrap();
    let (syslog_port, port) = (free_port(), free_port());
    let svc = start_run(&dir, syslog_port, port);
    let api = Api(&svc);

    // Live tail: a line sent after the stream opened arrives within a second.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let auth = format!("Basic {}", base64(format!("admin:{PASSWORD}").as_bytes()));
    write!(stream, "GET /api/v1/logs/tail?query=app:tailtest HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n").unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains("200"), "{line}");
    std::thread::sleep(Duration::from_millis(600));
    let now = chrono::Utc::now().timestamp_millis();
    let sent = Instant::now();
    let mut lines = corpus(1, now, 9);
    lines[0].app = "tailtest";
    lines[0].message = "tail me please".into();
    lines[0].ts = now;
    send(syslog_port, &lines);
    let mut got = String::new();
    while !got.contains("tail me please") {
        assert!(
            sent.elapsed() < Duration::from_secs(10),
            "tail never delivered: {got}"
        );
        let mut buf = [0u8; 4096];
        let n = reader.read(&mut buf).unwrap_or(0);
        assert!(n > 0, "tail stream ended: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(
        sent.elapsed() < Duration::from_millis(1500),
        "tail took {:?}",
        sent.elapsed()
    );

    // SQL over logs and samples.
    send(syslog_port, &corpus(500, now, 4));
    wait_until("lines stored", Duration::from_secs(20), || {
        let (_, v) = api.get(&format!(
            "/api/v1/sql?query={}",
            percent_encode("SELECT count(*) AS n FROM logs")
        ));
        v["data"]["rows"][0]["n"].as_u64() == Some(501)
    });
    let q = "SELECT app, count(*) AS n FROM logs GROUP BY app ORDER BY n DESC, app";
    let (status, v) = api.get(&format!("/api/v1/sql?query={}", percent_encode(q)));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["columns"], serde_json::json!(["app", "n"]));
    wait_until("self-scrape stored", Duration::from_secs(20), || {
        let (_, v) = api.get(&format!(
            "/api/v1/sql?query={}",
            percent_encode("SELECT count(*) AS n FROM samples WHERE metric = 'up'")
        ));
        v["data"]["rows"][0]["n"].as_u64() > Some(0)
    });
    for refused in [
        "CREATE TABLE t AS SELECT 1",
        "INSERT INTO logs SELECT * FROM logs",
        "COPY (SELECT 1) TO '/tmp/carbonio-sql-copy.csv'",
        "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
        "DROP TABLE logs",
        "SET datafusion.execution.batch_size = 1",
    ] {
        let (status, v) = api.get(&format!("/api/v1/sql?query={}", percent_encode(refused)));
        assert_eq!(status, 400, "{refused}: {v}");
    }
    assert!(!std::path::Path::new("/tmp/carbonio-sql-copy.csv").exists());
    // A runaway query is stopped (3 s limit) and the server stays responsive.
    let runaway =
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r";
    let t = Instant::now();
    let (status, v) = api.get(&format!("/api/v1/sql?query={}", percent_encode(runaway)));
    assert!(matches!(status, 503 | 422), "{status}: {v}");
    assert!(t.elapsed() < Duration::from_secs(30));
    let (status, _) = api.get(&format!("/api/v1/sql?query={}", percent_encode("SELECT 1")));
    assert_eq!(status, 200);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
