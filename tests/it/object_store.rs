//! The object storage tier against a real S3 implementation (moto_server):
//! blocks uploaded, verified and read back through range requests give the
//! same query results as the same data kept local; an upload cut by the
//! server dying (killed mid-body by a proxy) leaves the block local and is
//! done again once the server is back; compaction and retention work on
//! remote blocks and leave no object behind.

use crate::harness::{
    free_port, moto_on, run_ok, s3_list, self_metric, unix_now, wait_until, Service, OURS,
};
use crate::promql_compat::percent_encode;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

const BUCKET: &str = "carbonio";
const PASSWORD: &str = "object-store-password";
/// Bytes of one request after which the proxy kills the server.
const CUT_AFTER: usize = 256 << 10;

/// OpenMetrics backfill: `series` gauges `name` with pseudo-random values
/// (so blocks hold megabytes) and a counter, every 15 s over [from, to).
fn backfill(path: &Path, name: &str, series: usize, from: i64, to: i64, seed: u64) {
    let mut out = String::new();
    let mut x = seed;
    let mut next = || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    out.push_str(&format!("# TYPE {name}_value gauge\n"));
    for s in 0..series {
        for t in (from..to).step_by(15) {
            out.push_str(&format!(
                "{name}_value{{series=\"{s}\"}} {} {t}\n",
                next() * 1000.0
            ));
        }
    }
    out.push_str(&format!("# TYPE {name} counter\n"));
    for s in 0..series {
        let mut total = 0.0;
        for t in (from..to).step_by(15) {
            total += (next() * 10.0).floor();
            out.push_str(&format!("{name}_total{{series=\"{s}\"}} {total} {t}\n"));
        }
    }
    out.push_str("# EOF\n");
    std::fs::write(path, out).unwrap();
}

fn import(file: &Path, data: &Path) {
    run_ok(
        Command::new(OURS)
            .args(["import", "openmetrics"])
            .arg(file)
            .arg("--data")
            .arg(data),
    );
}

/// Block directories of a data directory, and whether each is remote.
fn blocks(data: &Path) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = std::fs::read_dir(data.join("blocks"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
                .map(|p| {
                    let remote =
                        p.join("remote.json").exists() && !p.join("samples.parquet").exists();
                    (p.file_name().unwrap().to_string_lossy().to_string(), remote)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// A TCP proxy in front of the S3 server that, once armed, kills the
/// server (SIGKILL) in the middle of the first request longer than
/// `CUT_AFTER` bytes, as a crash during an upload.
struct CutProxy {
    port: u16,
    fired: Arc<AtomicBool>,
}

fn cut_proxy(target: u16, server_pid: Arc<AtomicU32>) -> CutProxy {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let fired = Arc::new(AtomicBool::new(false));
    let f = fired.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                continue;
            };
            let (mut c_read, mut s_write) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut s_read, mut c_write) = (server, client);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s_read, &mut c_write);
                let _ = c_write.shutdown(Shutdown::Both);
            });
            let fired = f.clone();
            let pid = server_pid.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 16 << 10];
                let mut sent = 0usize;
                loop {
                    let n = match c_read.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    sent += n;
                    if sent > CUT_AFTER && !fired.swap(true, Ordering::SeqCst) {
                        // SAFETY: signalling the test's own child process.
                        unsafe { libc::kill(pid.load(Ordering::SeqCst) as i32, libc::SIGKILL) };
                        let _ = c_read.shutdown(Shutdown::Both);
                        let _ = s_write.shutdown(Shutdown::Both);
                        break;
                    }
                    if s_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = s_write.shutdown(Shutdown::Write);
            });
        }
    });
    CutProxy { port, fired }
}

fn start(data: &Path, config: &Path, extra: &[&str]) -> Service {
    let mut args = vec!["--storage.flush-interval=1s"];
    args.extend_from_slice(extra);
    crate::query_api::start_run(data, free_port(), Some(PASSWORD), Some(config), &args)
}

fn query(svc: &Service, path: &str) -> Value {
    let (status, v) = crate::query_api::get(svc, path, PASSWORD);
    assert_eq!(status, 200, "{path}: {v}");
    v["data"].clone()
}

/// The same queries on the local-only and the object-storage server.
fn assert_same_answers(local: &Service, remote: &Service, from: i64, to: i64, metrics: &[&str]) {
    for m in metrics {
        for q in [
            format!("{m}_value"),
            format!("sum(rate({m}_total[5m]))"),
            format!("max_over_time({m}_value[1h])"),
        ] {
            let path = format!(
                "/api/v1/query_range?query={}&start={from}&end={to}&step=300",
                percent_encode(&q)
            );
            let (a, b) = (query(local, &path), query(remote, &path));
            assert!(
                a["result"].as_array().is_some_and(|r| !r.is_empty()),
                "{q}: no data"
            );
            assert!(a == b, "{q}: the object-storage answer differs");
        }
        let raw = format!(
            "/api/v1/query?query={}&time={}",
            percent_encode(&format!("{m}_value[2h]")),
            to
        );
        assert_eq!(
            query(local, &raw),
            query(remote, &raw),
            "{m}: raw samples differ"
        );
    }
}

fn config(dir: &Path, s3_port: Option<u16>) -> PathBuf {
    let mut text = String::from("global:\n  scrape_interval: 15s\n");
    if let Some(port) = s3_port {
        text.push_str(&format!(
            "storage:\n  object_store:\n    endpoint: http://127.0.0.1:{port}\n    bucket: {BUCKET}\n\
             \x20   prefix: collector-a\n    access_key_id: test\n    secret_access_key: test\n\
             \x20   path_style: true\n    upload_after: 0s\n    cache_max_bytes: 3000000\n"
        ));
    }
    let path = dir.join(if s3_port.is_some() {
        "s3.yml"
    } else {
        "local.yml"
    });
    std::fs::write(&path, text).unwrap();
    path
}

/// Every remote block has exactly its three objects in the bucket (the
/// samples of the size its marker says), and nothing else is there.
fn assert_bucket_matches(moto: &Service, data: &Path) {
    let objects = s3_list(moto, BUCKET);
    let mut expected = Vec::new();
    for (name, remote) in blocks(data) {
        assert!(remote, "{name} is still local");
        let marker: Value = serde_json::from_slice(
            &std::fs::read(data.join("blocks").join(&name).join("remote.json")).unwrap(),
        )
        .unwrap();
        // Each upload gets its own folder: `blocks/<name>.<upload time>/`.
        let samples_key = marker["key"].as_str().unwrap();
        let folder = samples_key.strip_suffix("samples.parquet").unwrap();
        assert!(
            folder.starts_with(&format!("collector-a/blocks/{name}.")),
            "{folder}"
        );
        for file in ["meta.json", "samples.parquet", "series.parquet"] {
            let key = format!("{folder}{file}");
            let size = objects
                .iter()
                .find(|(k, _)| *k == key)
                .unwrap_or_else(|| panic!("{key} missing from the bucket: {objects:?}"))
                .1;
            if file == "samples.parquet" {
                assert_eq!(Some(size), marker["bytes"].as_u64(), "{key}");
            } else {
                let local = std::fs::metadata(data.join("blocks").join(&name).join(file))
                    .unwrap()
                    .len();
                assert_eq!(size, local, "{key}");
            }
            expected.push(key);
        }
    }
    let mut keys: Vec<String> = objects.into_iter().map(|(k, _)| k).collect();
    keys.sort();
    expected.sort();
    assert_eq!(
        keys, expected,
        "the bucket holds exactly the blocks' objects"
    );
}

#[test]
fn blocks_in_object_storage_answer_as_local_ones_through_a_crash_compaction_and_retention() {
    let dir = tempfile::tempdir().unwrap();
    let now = unix_now();
    let (from, to) = (now - 50 * 3600, now - 2 * 3600);
    let first = dir.path().join("first.om");
    backfill(&first, "tier_test", 30, from, to, 7);
    let (local_data, s3_data) = (dir.path().join("local"), dir.path().join("s3"));
    import(&first, &local_data);
    import(&first, &s3_data);

    let moto_port = free_port();
    let mut moto = moto_on(moto_port, BUCKET);
    let pid = Arc::new(AtomicU32::new(moto.pid().unwrap()));
    let proxy = cut_proxy(moto_port, pid.clone());
    let local_cfg = config(dir.path(), None);
    let s3_cfg = config(dir.path(), Some(proxy.port));
    let local = start(&local_data, &local_cfg, &[]);
    let remote = start(&s3_data, &s3_cfg, &[]);

    // The first upload dies with the server: every block stays local.
    wait_until("the proxy cuts an upload", Duration::from_secs(60), || {
        proxy.fired.load(Ordering::SeqCst)
    });
    moto.kill_9();
    std::thread::sleep(Duration::from_secs(2));
    let after_cut = blocks(&s3_data);
    assert!(after_cut.len() >= 2, "{after_cut:?}");
    assert!(after_cut.iter().all(|(_, remote)| !remote), "{after_cut:?}");
    assert_same_answers(&local, &remote, from, to, &["tier_test"]);

    // The server comes back (empty, as moto keeps nothing): all goes up.
    let moto = moto_on(moto_port, BUCKET);
    pid.store(moto.pid().unwrap(), Ordering::SeqCst);
    wait_until("every block is remote", Duration::from_secs(60), || {
        let b = blocks(&s3_data);
        !b.is_empty() && b.iter().all(|(_, remote)| *remote)
    });
    assert_bucket_matches(&moto, &s3_data);
    assert_same_answers(&local, &remote, from, to, &["tier_test"]);
    let metric = |name: &str| self_metric(&remote, name);
    assert!(metric("carbonio_collector_object_store_upload_failures_total") >= 1.0);
    assert!(metric("carbonio_collector_object_store_range_requests_total") >= 1.0);
    let cached = metric("carbonio_collector_object_store_cache_bytes");
    assert!(
        cached > 0.0 && cached <= 3_000_000.0,
        "cache within its budget: {cached}"
    );
    drop(remote);
    drop(local);

    // Late data for a day already remote: compaction merges the remote
    // block with the new one, uploads the result, deletes the inputs.
    let late = dir.path().join("late.om");
    backfill(&late, "tier_late", 5, from + 3600, from + 3 * 3600, 11);
    import(&late, &local_data);
    import(&late, &s3_data);
    let before: Vec<String> = blocks(&s3_data).into_iter().map(|(n, _)| n).collect();
    let local = start(&local_data, &local_cfg, &[]);
    let remote = start(&s3_data, &s3_cfg, &[]);
    wait_until(
        "the late block is merged and uploaded",
        Duration::from_secs(60),
        || {
            let b = blocks(&s3_data);
            b.iter().all(|(_, remote)| *remote)
                && b.len() < before.len() + 1
                && b.iter().any(|(n, _)| !before.contains(n))
        },
    );
    assert_bucket_matches(&moto, &s3_data);
    assert_same_answers(&local, &remote, from, to, &["tier_test", "tier_late"]);
    drop(remote);
    drop(local);

    // Retention deletes old remote blocks, objects included.
    let keep = ["--storage.retention.time=30h"];
    let local = start(&local_data, &local_cfg, &keep);
    let remote = start(&s3_data, &s3_cfg, &keep);
    let count = before.len();
    wait_until(
        "retention removed old blocks",
        Duration::from_secs(60),
        || {
            // A deletion hides the block, then deletes its objects.
            let hidden_left = std::fs::read_dir(s3_data.join("blocks")).is_ok_and(|rd| {
                rd.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with(".deleting-"))
            });
            blocks(&s3_data).len() < count
                && blocks(&local_data).len() == blocks(&s3_data).len()
                && !hidden_left
        },
    );
    assert_bucket_matches(&moto, &s3_data);
    assert_same_answers(&local, &remote, now - 26 * 3600, to, &["tier_test"]);
}

/// RFC 5424 lines over TCP (octet-counted), `n` of them `secs_apart` from
/// `from` (Unix seconds), with messages `<tag>-<i>`.
fn send_lines(port: u16, tag: &str, from: i64, n: usize) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut out = Vec::new();
    for i in 0..n {
        let ts = chrono::DateTime::from_timestamp(from + i as i64, 0)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%SZ");
        let msg = format!("<22>1 {ts} mta1 postfix/smtpd 7 - - {tag}-{i:05} connect from client");
        out.extend_from_slice(format!("{} {msg}", msg.len()).as_bytes());
    }
    s.write_all(&out).unwrap();
}

fn sql_count(svc: &Service, where_: &str) -> u64 {
    let q = format!("SELECT count(*) AS n FROM logs {where_}");
    query(svc, &format!("/api/v1/sql?query={}", percent_encode(&q)))["rows"][0]["n"]
        .as_u64()
        .unwrap_or(0)
}

/// Log parts of a data directory: (name, files kept locally, remote).
fn parts(data: &Path) -> Vec<(String, usize, bool)> {
    let mut out: Vec<(String, usize, bool)> = std::fs::read_dir(data.join("logs/parts"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
                .map(|p| {
                    let local = std::fs::read_dir(&p)
                        .unwrap()
                        .filter(|e| {
                            e.as_ref().is_ok_and(|e| {
                                e.file_name().to_string_lossy().ends_with(".parquet")
                            })
                        })
                        .count();
                    let name = p.file_name().unwrap().to_string_lossy().to_string();
                    (name, local, p.join("remote.json").exists())
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn log_parts_in_object_storage_are_searched_compacted_and_expired() {
    let dir = tempfile::tempdir().unwrap();
    let moto = moto_on(free_port(), BUCKET);
    let syslog_port = free_port();
    let cfg = dir.path().join("logs.yml");
    std::fs::write(
        &cfg,
        format!(
            "syslog:\n  listeners:\n    - protocol: tcp\n      address: 127.0.0.1:{syslog_port}\n\
             storage:\n  object_store:\n    endpoint: http://127.0.0.1:{}\n    bucket: {BUCKET}\n\
             \x20   prefix: collector-a\n    access_key_id: test\n    secret_access_key: test\n\
             \x20   path_style: true\n    upload_after: 0s\n    local_grace: 1s\n",
            moto.port
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let logs_flush = ["--storage.logs.flush-interval=1s"];
    let svc = start(&data, &cfg, &logs_flush);
    // An hour that is over: its lines arrive in two flushes.
    let hour = (unix_now() / 3600 - 3) * 3600;
    send_lines(syslog_port, "early", hour + 60, 400);
    wait_until("the first part is remote", Duration::from_secs(60), || {
        let p = parts(&data);
        p.len() == 1 && p[0].1 == 0 && p[0].2
    });
    let first = parts(&data)[0].0.clone();
    assert_eq!(sql_count(&svc, ""), 400);
    let (from, to) = (hour, hour + 3600);
    let found = |q: &str| -> usize {
        query(
            &svc,
            &format!(
                "/api/v1/logs/query?query={}&start={from}&end={to}&limit=1000",
                percent_encode(q)
            ),
        )["lines"]
            .as_array()
            .map_or(0, Vec::len)
    };
    assert_eq!(found("early-00042"), 1, "a token in a remote file");
    assert_eq!(found("\"connect from\""), 400);
    let keys: Vec<String> = s3_list(&moto, BUCKET).into_iter().map(|(k, _)| k).collect();
    assert!(
        keys.iter().any(
            |k| k.starts_with(&format!("collector-a/logs/parts/{first}."))
                && k.ends_with("meta.json")
        ),
        "{keys:?}"
    );

    // More lines for the same hour: compaction joins the remote part with
    // the new one (brought back, merged, uploaded; the inputs deleted).
    send_lines(syslog_port, "late", hour + 1800, 300);
    wait_until(
        "the hour is one remote part again",
        Duration::from_secs(60),
        || {
            let p = parts(&data);
            p.len() == 1 && p[0].0 != first && p[0].1 == 0 && p[0].2
        },
    );
    assert_eq!(sql_count(&svc, ""), 700);
    assert_eq!(found("late-00299"), 1);
    assert_eq!(sql_count(&svc, "WHERE message LIKE 'early-%'"), 400);
    let merged = parts(&data)[0].0.clone();
    let keys: Vec<String> = s3_list(&moto, BUCKET).into_iter().map(|(k, _)| k).collect();
    assert!(
        keys.iter()
            .all(|k| !k.contains("/logs/parts/") || k.contains(&merged)),
        "only the merged part is left in the bucket: {keys:?}"
    );
    drop(svc);

    // Retention takes the remote part and its objects.
    let mut args = logs_flush.to_vec();
    args.push("--storage.retention.time=1h");
    let svc = start(&data, &cfg, &args);
    // Deletion hides the part first, then deletes its objects.
    wait_until(
        "the old part and its objects are gone",
        Duration::from_secs(60),
        || {
            std::fs::read_dir(data.join("logs/parts")).is_ok_and(|mut rd| rd.next().is_none())
                && s3_list(&moto, BUCKET)
                    .iter()
                    .all(|(k, _)| !k.contains("/logs/parts/"))
        },
    );
    assert_eq!(sql_count(&svc, ""), 0);
}
