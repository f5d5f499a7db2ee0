//! File tailing against Debian's logrotate: rotation by rename (the writer
//! keeps writing to the renamed file for a while, as log4j does until it
//! reopens) and by copytruncate, kill -9 in the middle of a rotation, and a
//! restart: every line written is stored exactly once. Also the mailbox and
//! nginx parsers on real-looking files.

use crate::collector::start_collector;
use crate::harness::{debug_output, require, wait_until};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn stored(data: &Path) -> Vec<serde_json::Value> {
    debug_output("logs-dump", data)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Appends numbered lines to `path` until stopped; `reopen` makes it open
/// the path again (what a daemon does on SIGHUP after a rotation).
struct Writer {
    file: Arc<Mutex<std::fs::File>>,
    written: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    path: PathBuf,
}

impl Writer {
    fn start(path: &Path) -> Writer {
        let open = |p: &Path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .unwrap()
        };
        let file = Arc::new(Mutex::new(open(path)));
        let written = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (file, written, stop) = (file.clone(), written.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    {
                        let mut f = file.lock().unwrap();
                        for _ in 0..20 {
                            let n = written.load(Ordering::Relaxed);
                            writeln!(f, "line {n:08} carbonio mailbox ünïcode payload").unwrap();
                            written.store(n + 1, Ordering::Relaxed);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        Writer {
            file,
            written,
            stop,
            thread: Some(thread),
            path: path.to_path_buf(),
        }
    }

    fn reopen(&self) {
        *self.file.lock().unwrap() = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .unwrap();
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        self.written.load(Ordering::Relaxed)
    }
}

fn logrotate(dir: &Path, log: &Path, mode: &str) {
    let bin = require("logrotate", "logrotate");
    let conf = dir.join(format!("logrotate-{mode}.conf"));
    std::fs::write(
        &conf,
        format!(
            "{} {{\n  rotate 20\n  {mode}\n  nocompress\n  missingok\n}}\n",
            log.display()
        ),
    )
    .unwrap();
    crate::harness::run_ok(
        Command::new(bin)
            .arg("-f")
            .arg("-s")
            .arg(dir.join("logrotate.state"))
            .arg(&conf),
    );
}

#[test]
fn rotation_and_kill_9_lose_and_duplicate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let log = logs.join("app.log");
    let cfg = dir.path().join("carbonio-monitor.yml");
    std::fs::write(
        &cfg,
        format!(
            "tail:\n  poll_interval: 200ms\n  rotate_wait: 1s\n  files:\n    - paths: ['{}']\n      app: app\n",
            log.display()
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let writer = Writer::start(&log);
    let mut collector = start_collector(&cfg, &data, &["--storage.logs.flush-interval=1s"]);
    std::thread::sleep(Duration::from_millis(1500));

    // Rename rotation; the writer keeps writing to the renamed file for a
    // moment before it reopens the path.
    logrotate(dir.path(), &log, "create");
    std::thread::sleep(Duration::from_millis(300));
    writer.reopen();
    let log_says = |svc: &crate::harness::Service, what: &str| {
        std::fs::read_to_string(svc.path("collector.log")).is_ok_and(|t| t.contains(what))
    };
    wait_until(
        "the renamed file to be finished",
        Duration::from_secs(10),
        || log_says(&collector, "finished a rotated file"),
    );

    // kill -9 in the middle of a rotation: renamed, not yet reopened.
    logrotate(dir.path(), &log, "create");
    collector.kill_9();
    std::thread::sleep(Duration::from_millis(300));
    writer.reopen();
    std::thread::sleep(Duration::from_millis(700));
    collector = start_collector(&cfg, &data, &["--storage.logs.flush-interval=1s"]);
    wait_until(
        "the file renamed while down to be resumed",
        Duration::from_secs(10),
        || log_says(&collector, "resuming a file rotated while stopped"),
    );

    // copytruncate; lines written between its copy and its truncate are
    // lost by design, so the writer waits it out.
    {
        let _pause = writer.file.lock().unwrap();
        logrotate(dir.path(), &log, "copytruncate");
    }
    wait_until(
        "the copytruncate to be noticed",
        Duration::from_secs(10),
        || {
            crate::harness::get_text(&collector.url("/metrics"))
                .lines()
                .any(|l| {
                    l.starts_with("carbonio_collector_tail_truncations_total") && l.ends_with(" 1")
                })
        },
    );
    collector.kill_9();
    std::thread::sleep(Duration::from_millis(500));
    collector = start_collector(&cfg, &data, &["--storage.logs.flush-interval=1s"]);
    std::thread::sleep(Duration::from_millis(1000));

    let written = writer.finish();
    assert!(written > 5000, "only {written} lines written");
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        counts.clear();
        for line in stored(&data) {
            let msg = line["message"].as_str().unwrap();
            let n: u64 = msg[5..13].parse().unwrap();
            *counts.entry(n).or_default() += 1;
        }
        // On timeout the assertions below say which lines are missing.
        if counts.len() as u64 >= written || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let twice: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).take(5).collect();
    assert!(twice.is_empty(), "stored twice: {twice:?}");
    let mut missing: Vec<(u64, u64)> = Vec::new();
    for n in (0..written).filter(|n| !counts.contains_key(n)) {
        match missing.last_mut() {
            Some((_, end)) if *end + 1 == n => *end = n,
            _ => missing.push((n, n)),
        }
    }
    assert!(missing.is_empty(), "lost of {written}: {missing:?}");
    assert_eq!(counts.len() as u64, written);
    let any = &stored(&data)[0];
    assert_eq!(any["app"], "app");
    assert_eq!(any["source"], format!("file://{}", log.display()));
    let metrics = crate::harness::get_text(&collector.url("/metrics"));
    assert!(
        metrics.contains("carbonio_collector_tail_lines_total{path="),
        "{metrics}"
    );
    // The head never filled: nothing was held.
    let held = metrics
        .lines()
        .find_map(|l| l.strip_prefix("carbonio_collector_log_head_full_seconds_total "));
    assert_eq!(held.map(str::parse::<f64>), Some(Ok(0.0)), "{metrics}");
    drop(collector);
}

#[test]
fn mailbox_and_nginx_logs_are_parsed() {
    let dir = tempfile::tempdir().unwrap();
    let mailbox = dir.path().join("mailbox.log");
    let access = dir.path().join("nginx.access.log");
    let old = dir.path().join("old.log");
    std::fs::write(
        &mailbox,
        "not a mailbox line at all\n\
         2024-03-01 10:00:00,123 INFO  [main] [] soap - started\n\
         2024-03-01 10:00:01,000 ERROR [qtp-7:https://mail/service/soap] [name=a@b.c;oip=10.1.2.3;] mailbox - boom\n\
         java.lang.IllegalStateException: boom\n\
         \tat com.zimbra.Foo.bar(Foo.java:42)\n\
         2024-03-01 10:00:02,000 WARN  [ImapServer-1] [ip=10.9.9.9;] security - cmd=Auth; account=x@b.c; protocol=imap; error=authentication failed for [x@b.c], invalid password;\n",
    )
    .unwrap();
    std::fs::write(
        &access,
        "10.0.0.1:51234 - - [01/Mar/2024:10:00:00 +0100]  \"GET https://mail.example.com/ HTTP/1.1\" 502 512 \"-\" \"Mozilla/5.0\" \"10.0.0.5:8080\" \"10.0.0.2:443\"\n",
    )
    .unwrap();
    std::fs::write(&old, "written before the first start\n").unwrap();
    let cfg = dir.path().join("carbonio-monitor.yml");
    std::fs::write(
        &cfg,
        format!(
            "tail:\n  poll_interval: 200ms\n  files:\n    - paths: ['{}']\n      parser: mailbox\n      timezone: Europe/Rome\n      host: mbox1\n    - paths: ['{}']\n      parser: nginx\n    - paths: ['{}']\n      read_from: end\n",
            mailbox.display(),
            access.display(),
            old.display()
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let collector = start_collector(&cfg, &data, &[]);
    std::thread::sleep(Duration::from_millis(500));
    std::fs::OpenOptions::new()
        .append(true)
        .open(&old)
        .unwrap()
        .write_all(b"new line\n")
        .unwrap();
    let mut lines = Vec::new();
    // The last mailbox record is complete after the 1 s multiline timeout.
    wait_until("6 records stored", Duration::from_secs(20), || {
        lines = stored(&data);
        lines.len() >= 6
    });
    let by_msg = |needle: &str| -> &serde_json::Value {
        lines
            .iter()
            .find(|l| l["message"].as_str().unwrap().contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in {lines:#?}"))
    };
    let boom = by_msg("boom\njava.lang.IllegalStateException");
    assert_eq!(boom["severity"], 3);
    assert_eq!(boom["msgid"], "mailbox");
    assert_eq!(boom["app"], "mailboxd");
    assert_eq!(boom["host"], "mbox1");
    assert!(boom["message"].as_str().unwrap().ends_with("(Foo.java:42)"));
    let sd: serde_json::Value =
        serde_json::from_str(boom["structured_data"].as_str().unwrap()).unwrap();
    assert_eq!(sd["mailbox"]["oip"], "10.1.2.3");
    // 10:00:01 in Rome (UTC+1 in March) is 09:00:01 UTC.
    assert_eq!(boom["timestamp"], 1_709_283_601_000_000_000i64);
    let auth = by_msg("cmd=Auth");
    assert_eq!(auth["severity"], 4);
    let unparsed = by_msg("not a mailbox line");
    assert_eq!(unparsed["app"], "mailboxd");
    let nginx = by_msg("GET https://mail.example.com/");
    assert_eq!(nginx["severity"], 3);
    assert_eq!(nginx["app"], "nginx");
    assert_eq!(nginx["timestamp"], 1_709_283_600_000_000_000i64);
    assert!(lines
        .iter()
        .all(|l| l["message"] != "written before the first start"));
    assert_eq!(by_msg("new line")["app"], "old");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(stored(&data).len(), 6, "{lines:#?}");
    let metrics = crate::harness::get_text(&collector.url("/metrics"));
    let fallbacks = metrics
        .lines()
        .find(|l| {
            l.starts_with("carbonio_collector_tail_parse_fallbacks_total")
                && l.contains("mailbox.log")
        })
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(fallbacks.ends_with(" 1"), "{fallbacks}");
}
