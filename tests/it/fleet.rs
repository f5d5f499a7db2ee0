//! Scale-out on one machine: two collectors, each in its own network
//! namespace (a host of its own, joined to this one by a veth pair),
//! shard the scrape targets with `hashmod` relabelling and also scrape one
//! target both (replicas, told apart by an external label); each uploads
//! to its prefix in one bucket (moto_server) and keeps its head. A
//! stateless `carbonio-monitor query` (`fleet:`) answers PromQL, series,
//! log search and SQL over the bucket and both heads, and must give what a
//! single `run` given the same input gives.
//!
//! Input is made deterministic: targets serve samples with explicit
//! timestamps, and a new version is only published once every scraper has
//! read the current one, so all collectors store the same samples.

use crate::harness::{
    free_port, http_get, http_request, moto_at, spawn, unix_now, wait_until, Service, OURS,
};
use crate::promql_compat::{base64, data_difference, percent_encode};
use serde_json::Value;
use std::collections::{BTreeSet, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const BUCKET: &str = "fleet";
const PASSWORD: &str = "fleet-password";
/// What query nodes (and this test) send the collectors, which require it.
const COLLECTOR_USER: (&str, &str) = ("query", "collector-secret");
const SHARDED: [&str; 6] = ["/t0", "/t1", "/t2", "/t3", "/t4", "/t5"];

/// A network namespace joined to this one by a veth pair: this side is
/// 10.231.N.1, the namespace's side 10.231.N.2. Deleted on drop.
struct Host {
    ns: String,
    inside: String,
    outside: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("ip {args:?}: {e} (needs the Debian package iproute2)"));
    assert!(
        out.status.success(),
        "ip {args:?}: {} (network namespaces need root)",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Host {
    fn new(n: u8) -> Host {
        let tag = format!("{}{n}", std::process::id() % 100_000);
        let ns = format!("cmfleet{tag}");
        let (outside, inside) = (format!("cmo{tag}"), format!("cmi{tag}"));
        let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        ip(&["netns", "add", &ns]);
        let host = Host {
            ns: ns.clone(),
            inside: format!("10.231.{n}.2"),
            outside: format!("10.231.{n}.1"),
        };
        ip(&[
            "link", "add", &outside, "type", "veth", "peer", "name", &inside,
        ]);
        ip(&["link", "set", &inside, "netns", &ns]);
        ip(&[
            "addr",
            "add",
            &format!("{}/24", host.outside),
            "dev",
            &outside,
        ]);
        ip(&["link", "set", &outside, "up"]);
        let in_ns = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &ns, "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        in_ns(&[
            "addr",
            "add",
            &format!("{}/24", host.inside),
            "dev",
            &inside,
        ]);
        in_ns(&["link", "set", &inside, "up"]);
        in_ns(&["link", "set", "lo", "up"]);
        in_ns(&["route", "add", "default", "via", &host.outside]);
        host
    }

    /// `command` run inside the namespace.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns, program]);
        cmd
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the veth pair, and so both.
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

/// Scrape targets with explicit timestamps: version `v` of a path holds
/// one gauge and one counter sample at `base + 15 s * v`. Remembers which
/// client read which path at which version.
struct Targets {
    port: u16,
    version: AtomicU64,
    base_ms: i64,
    reads: Mutex<HashSet<(IpAddr, String, u64)>>,
}

impl Targets {
    fn start(base_ms: i64) -> Arc<Targets> {
        let listener = TcpListener::bind("0.0.0.0:0").unwrap();
        let t = Arc::new(Targets {
            port: listener.local_addr().unwrap().port(),
            version: AtomicU64::new(0),
            base_ms,
            reads: Mutex::new(HashSet::new()),
        });
        let me = t.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let me = me.clone();
                std::thread::spawn(move || me.answer(conn));
            }
        });
        t
    }

    fn body(&self, path: &str, v: u64) -> String {
        let seed: u64 = path.bytes().map(u64::from).sum();
        let ts = self.base_ms + v as i64 * 15_000;
        let gauge = ((seed * 31 + v * 17) % 97) as f64 / 4.0;
        let counter = (1..=v).map(|k| (seed + k * 7) % 13).sum::<u64>();
        let name = path.trim_start_matches('/');
        format!(
            "# TYPE fleet_test_value gauge\nfleet_test_value{{target=\"{name}\"}} {gauge} {ts}\n\
             # TYPE fleet_test_total counter\nfleet_test_total{{target=\"{name}\"}} {counter} {ts}\n"
        )
    }

    fn answer(&self, mut conn: TcpStream) {
        let peer = conn.peer_addr().map(|a| a.ip());
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut request = String::new();
        if reader.read_line(&mut request).is_err() {
            return;
        }
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
            line.clear();
        }
        let path = request.split(' ').nth(1).unwrap_or("/").to_string();
        let v = self.version.load(Ordering::SeqCst);
        let body = self.body(&path, v);
        let _ = write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        if let Ok(ip) = peer {
            self.reads.lock().unwrap().insert((ip, path, v));
        }
    }

    /// Publishes the next version once each (client, path) in `scrapers`
    /// has read the current one.
    fn advance(&self, scrapers: &[(IpAddr, String)]) {
        let v = self.wait_read(scrapers);
        self.version.store(v + 1, Ordering::SeqCst);
    }

    /// Waits until each (client, path) in `scrapers` has read the current
    /// version; gives that version.
    fn wait_read(&self, scrapers: &[(IpAddr, String)]) -> u64 {
        let v = self.version.load(Ordering::SeqCst);
        wait_until(
            &format!("every scraper read version {v}"),
            Duration::from_secs(60),
            || {
                let reads = self.reads.lock().unwrap();
                scrapers
                    .iter()
                    .all(|(ip, p)| reads.contains(&(*ip, p.clone(), v)))
            },
        );
        v
    }
}

/// A collector's configuration: the sharded job keeps its `hashmod` shard
/// (None: every target), the replicated job scrapes `/shared`.
fn collector_config(
    targets: &str,
    shard: Option<u8>,
    replica: Option<&str>,
    syslog: &str,
    s3: Option<&str>,
) -> String {
    let mut text = String::from("global:\n  scrape_interval: 1s\n");
    if let Some(r) = replica {
        text.push_str(&format!("  external_labels:\n    replica: {r}\n"));
    }
    text.push_str("scrape_configs:\n  - job_name: sharded\n    static_configs:\n");
    for p in SHARDED {
        text.push_str(&format!(
            "      - targets: ['{targets}']\n        labels: {{path: '{p}'}}\n"
        ));
    }
    text.push_str(
        "    relabel_configs:\n\
         \x20     - {source_labels: [path], target_label: __metrics_path__}\n\
         \x20     - {target_label: instance, replacement: targets}\n",
    );
    if let Some(s) = shard {
        text.push_str(&format!(
            "      - {{source_labels: [path], modulus: 2, target_label: __tmp_shard, action: hashmod}}\n\
             \x20     - {{source_labels: [__tmp_shard], regex: '{s}', action: keep}}\n"
        ));
    }
    text.push_str(&format!(
        "  - job_name: shared\n    metrics_path: /shared\n    static_configs:\n\
         \x20     - targets: ['{targets}']\n    relabel_configs:\n\
         \x20     - {{target_label: instance, replacement: targets}}\n\
         syslog:\n  listeners:\n    - protocol: tcp\n      address: {syslog}\n"
    ));
    if let Some(prefix) = s3 {
        text.push_str(&s3_section(prefix));
        text.push_str("    upload_after: 0s\n    local_grace: 1s\n");
    }
    text
}

fn s3_section(prefix: &str) -> String {
    // The endpoint is this host as the namespaces reach it; the query node
    // (here) reaches it the same way.
    format!(
        "storage:\n  object_store:\n    endpoint: http://10.231.1.1:{{S3}}\n    bucket: {BUCKET}\n\
         \x20   prefix: {prefix}\n    access_key_id: test\n    secret_access_key: test\n\
         \x20   path_style: true\n"
    )
}

/// A collector in `host`, on data directory `data`.
fn start_collector(
    host: &Host,
    config: &Path,
    data: &Path,
    port: u16,
    flush: &str,
    dir: tempfile::TempDir,
) -> Service {
    let web = dir.path().join("web.yml");
    let hash = bcrypt::hash(COLLECTOR_USER.1, 4).unwrap();
    std::fs::write(
        &web,
        format!("basic_auth_users:\n  {}: {hash}\n", COLLECTOR_USER.0),
    )
    .unwrap();
    let mut cmd = host.command(OURS);
    cmd.arg("collector")
        .arg("--config")
        .arg(config)
        .arg("--web.config.file")
        .arg(&web)
        .arg("--data")
        .arg(data)
        .arg(format!("--web.listen-address={}:{port}", host.inside))
        .arg(format!("--storage.flush-interval={flush}"))
        .arg(format!("--storage.logs.flush-interval={flush}"));
    let svc = spawn("carbonio-monitor collector", dir, port, cmd);
    let url = format!("http://{}:{port}/-/ready", host.inside);
    wait_until("the collector is ready", Duration::from_secs(30), || {
        http_get(&url, &[("Authorization", &collector_auth())]).is_ok_and(|r| r.0 == 200)
    });
    svc
}

fn collector_auth() -> String {
    let (user, password) = COLLECTOR_USER;
    format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
}

/// Active targets' scrape paths at a collector's `/api/v1/targets`.
fn scraped_paths(url: &str) -> Vec<String> {
    let mut v = Value::Null;
    wait_until("targets are listed", Duration::from_secs(30), || {
        let (_, _, body) = http_get(
            &format!("{url}/api/v1/targets"),
            &[("Authorization", &collector_auth())],
        )
        .unwrap();
        v = serde_json::from_slice(&body).unwrap();
        v["data"]["activeTargets"]
            .as_array()
            .is_some_and(|t| !t.is_empty())
    });
    v["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let url = t["scrapeUrl"].as_str().unwrap();
            let path = url.splitn(4, '/').nth(3).unwrap_or("");
            format!("/{path}")
        })
        .collect()
}

/// RFC 5424 lines over TCP (octet-counted): `n` lines one second apart
/// from `from`, from `host`.
fn send_lines(addr: &str, host: &str, from: i64, n: usize) {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut out = Vec::new();
    for i in 0..n {
        let ts = chrono::DateTime::from_timestamp(from + i as i64, 0)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%SZ");
        let msg = format!(
            "<22>1 {ts} {host} postfix/smtpd {i} - - {host}-{i:04} connect from client{}",
            i % 7
        );
        out.extend_from_slice(format!("{} {msg}", msg.len()).as_bytes());
    }
    s.write_all(&out).unwrap();
}

/// Compares two query results; on a difference names the series and the
/// points that differ, rather than printing both whole.
fn assert_same_result(ours: &Value, single_node: &Value, what: &str) {
    if ours != single_node {
        let how = data_difference(single_node, ours)
            .unwrap_or_else(|| format!("  query node {ours}\n  single node {single_node}"));
        panic!(
            "{what}: the query node (\"ours\") and the single node (\"prometheus\") differ:\n{how}"
        );
    }
}

fn get(base: &str, path: &str) -> Value {
    let auth = format!("Basic {}", base64(format!("admin:{PASSWORD}").as_bytes()));
    let (status, _, body) = http_get(&format!("{base}{path}"), &[("Authorization", &auth)])
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    assert_eq!(status, 200, "{path}: {v}");
    v["data"].clone()
}

fn sql_rows(base: &str, q: &str) -> Value {
    get(base, &format!("/api/v1/sql?query={}", percent_encode(q)))["rows"].clone()
}

/// Remote blocks and parts in a collector's data directory.
fn remote_dirs(data: &Path, sub: &str) -> usize {
    std::fs::read_dir(data.join(sub))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().join("remote.json").exists())
                .count()
        })
        .unwrap_or(0)
}

/// Log lines without what differs between hosts by design (arrival time,
/// sender address).
fn lines_of(v: &Value) -> Vec<Value> {
    v["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let keep = [
                "timestamp",
                "host",
                "app",
                "procid",
                "msgid",
                "severity",
                "facility",
                "message",
                "structured_data",
            ];
            keep.iter()
                .map(|k| (k.to_string(), l[*k].clone()))
                .collect::<serde_json::Map<_, _>>()
                .into()
        })
        .collect()
}

#[test]
fn two_collectors_in_network_namespaces_answer_through_one_query_node_as_one_node() {
    let a_host = Host::new(1);
    let b_host = Host::new(2);
    let moto = moto_at("0.0.0.0", free_port(), BUCKET);
    let base_s = (unix_now() / 3600 - 3) * 3600;
    let targets = Targets::start(base_s * 1000);
    let tp = targets.port;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: String| -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text.replace("{S3}", &moto.port.to_string())).unwrap();
        p
    };

    // Two collectors, one per host, and the single node they are compared with.
    let (a_port, b_port, a_syslog, b_syslog) = (free_port(), free_port(), free_port(), free_port());
    let a_cfg = write(
        "a.yml",
        collector_config(
            &format!("{}:{tp}", a_host.outside),
            Some(0),
            Some("a"),
            &format!("{}:{a_syslog}", a_host.inside),
            Some("site/collector-a"),
        ),
    );
    let b_cfg = write(
        "b.yml",
        collector_config(
            &format!("{}:{tp}", b_host.outside),
            Some(1),
            Some("b"),
            &format!("{}:{b_syslog}", b_host.inside),
            Some("site/collector-b"),
        ),
    );
    let r_syslog = free_port();
    let r_cfg = write(
        "single.yml",
        collector_config(
            &format!("127.0.0.1:{tp}"),
            None,
            None,
            &format!("127.0.0.1:{r_syslog}"),
            None,
        ),
    );
    let (a_data, b_data) = (dir.path().join("a"), dir.path().join("b"));
    let mut a = start_collector(
        &a_host,
        &a_cfg,
        &a_data,
        a_port,
        "1s",
        tempfile::tempdir().unwrap(),
    );
    let mut b = start_collector(
        &b_host,
        &b_cfg,
        &b_data,
        b_port,
        "1s",
        tempfile::tempdir().unwrap(),
    );
    let single = crate::query_api::start_run(
        &dir.path().join("single"),
        free_port(),
        Some(PASSWORD),
        Some(&r_cfg),
        &[
            "--storage.flush-interval=1s",
            "--storage.logs.flush-interval=1s",
        ],
    );
    let a_url = format!("http://{}:{a_port}", a_host.inside);
    let b_url = format!("http://{}:{b_port}", b_host.inside);
    let mut scrapers: Vec<(IpAddr, String)> = Vec::new();
    let a_paths = scraped_paths(&a_url);
    let b_paths = scraped_paths(&b_url);
    assert!(
        a_paths.len() > 1 && b_paths.len() > 1,
        "hashmod gives each collector a shard: {a_paths:?} {b_paths:?}"
    );
    let (status, _, _) = http_get(&format!("{a_url}/api/v1/fleet/info"), &[]).unwrap();
    assert_eq!(status, 401, "a collector's data needs its credentials");
    let sharded: BTreeSet<&String> = a_paths
        .iter()
        .chain(&b_paths)
        .filter(|p| *p != "/shared")
        .collect();
    assert_eq!(
        sharded.len(),
        SHARDED.len(),
        "the shards cover every target once"
    );
    assert_eq!(a_paths.len() + b_paths.len(), SHARDED.len() + 2);
    scrapers.extend(
        a_paths
            .iter()
            .map(|p| (a_host.inside.parse().unwrap(), p.clone())),
    );
    scrapers.extend(
        b_paths
            .iter()
            .map(|p| (b_host.inside.parse().unwrap(), p.clone())),
    );
    for p in SHARDED.iter().chain(&["/shared"]) {
        scrapers.push(("127.0.0.1".parse().unwrap(), p.to_string()));
    }

    // Phase 1: flushed every second and uploaded at once. Every line has a
    // time of its own, so newest-first order is one order.
    for _ in 0..8 {
        targets.advance(&scrapers);
    }
    send_lines(
        &format!("{}:{a_syslog}", a_host.inside),
        "mta1",
        base_s + 60,
        200,
    );
    send_lines(
        &format!("{}:{b_syslog}", b_host.inside),
        "mx2",
        base_s + 300,
        200,
    );
    send_lines(&format!("127.0.0.1:{r_syslog}"), "mta1", base_s + 60, 200);
    send_lines(&format!("127.0.0.1:{r_syslog}"), "mx2", base_s + 300, 200);
    targets.advance(&scrapers);
    wait_until(
        "both collectors have blocks and log parts in the bucket",
        Duration::from_secs(120),
        || {
            [&a_data, &b_data]
                .iter()
                .all(|d| remote_dirs(d, "blocks") > 0 && remote_dirs(d, "logs/parts") > 0)
        },
    );

    // Phase 2: the collectors restart flushing hourly, so what follows
    // stays in their heads (WAL) and only they can tell it.
    a.kill_9();
    b.kill_9();
    drop((a, b));
    let _a = start_collector(
        &a_host,
        &a_cfg,
        &a_data,
        a_port,
        "1h",
        tempfile::tempdir().unwrap(),
    );
    let _b = start_collector(
        &b_host,
        &b_cfg,
        &b_data,
        b_port,
        "1h",
        tempfile::tempdir().unwrap(),
    );
    for _ in 0..6 {
        targets.advance(&scrapers);
    }
    let later = base_s + 3600 + 120;
    send_lines(&format!("{}:{a_syslog}", a_host.inside), "mta1", later, 150);
    send_lines(
        &format!("{}:{b_syslog}", b_host.inside),
        "mx2",
        later + 200,
        150,
    );
    send_lines(&format!("127.0.0.1:{r_syslog}"), "mta1", later, 150);
    send_lines(&format!("127.0.0.1:{r_syslog}"), "mx2", later + 200, 150);
    // The last version stays published: every scraper has read it.
    let last = targets.wait_read(&scrapers);
    assert_eq!(last, 15);
    let last_ts = base_s + 15 * last as i64;

    // The stateless query node: this host, the bucket, both collectors.
    let q_cfg = write(
        "query.yml",
        format!(
            "{}fleet:\n  replica_labels: [replica]\n  refresh_interval: 1s\n  collectors:\n\
             \x20   - url: {a_url}\n      prefix: site/collector-a\n      basic_auth: {{username: {user}, password: {password}}}\n\
             \x20   - url: {b_url}\n      prefix: site/collector-b\n      basic_auth: {{username: {user}, password: {password}}}\n",
            s3_section("site/query"),
            user = COLLECTOR_USER.0,
            password = COLLECTOR_USER.1,
        ),
    );
    let q_port = free_port();
    let mut cmd = Command::new(OURS);
    cmd.arg("query")
        .arg("--config")
        .arg(&q_cfg)
        .arg("--data")
        .arg(dir.path().join("query"))
        .arg(format!("--web.listen-address=127.0.0.1:{q_port}"))
        .env("CARBONIO_MONITOR_ADMIN_PASSWORD", PASSWORD);
    let q = spawn(
        "carbonio-monitor query",
        tempfile::tempdir().unwrap(),
        q_port,
        cmd,
    );
    wait_until("the query node is ready", Duration::from_secs(30), || {
        http_get(&q.url("/-/ready"), &[]).is_ok_and(|r| r.0 == 200)
    });
    let (qb, sb) = (q.url(""), single.url(""));

    // Compared once both have every line and sample: a scraper that read
    // the last version may have timed out on it (1 s, on a loaded machine)
    // and stores it at its next scrape.
    let total_lines = Value::from(700);
    let has_everything = |base: &str| {
        sql_rows(base, "SELECT count(*) AS n FROM logs")[0]["n"] == total_lines
            && get(
                base,
                &format!(
                    "/api/v1/query?query=count_over_time(fleet_test_value%5B2h%5D)&time={last_ts}"
                ),
            )["result"]
                .as_array()
                .is_some_and(|r| r.len() == 7 && r.iter().all(|s| s["value"][1] == "16"))
    };
    wait_until(
        "the single node and the query node have everything",
        Duration::from_secs(60),
        || has_everything(&sb) && has_everything(&qb),
    );
    let (from, to) = (base_s, last_ts);
    let mut compared = 0;
    for q in [
        "fleet_test_value".to_string(),
        "fleet_test_total".to_string(),
        "sum by (target) (rate(fleet_test_total[1m]))".to_string(),
        "sum(fleet_test_value)".to_string(),
        "fleet_test_value{target=~\"t[0-2]|shared\"}".to_string(),
        "count by (job) (fleet_test_value)".to_string(),
    ] {
        let path = format!(
            "/api/v1/query_range?query={}&start={from}&end={to}&step=15",
            percent_encode(&q)
        );
        let (ours, single_node) = (get(&qb, &path), get(&sb, &path));
        assert!(
            single_node["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty()),
            "{q}: no data"
        );
        assert_same_result(&ours, &single_node, &q);
        compared += 1;
    }
    let raw = format!(
        "/api/v1/query?query={}&time={to}",
        percent_encode("fleet_test_value[2h]")
    );
    assert_same_result(&get(&qb, &raw), &get(&sb, &raw), "raw samples");
    let series = format!(
        "/api/v1/series?match[]={}&start={from}&end={to}",
        percent_encode("{__name__=~\"fleet_test_.*\"}")
    );
    assert_eq!(get(&qb, &series), get(&sb, &series), "series");
    assert_eq!(
        get(&qb, "/api/v1/label/target/values"),
        get(&sb, "/api/v1/label/target/values")
    );
    // A replica's own data is still there to ask for by its label.
    let only_a = format!(
        "/api/v1/query?query={}&time={to}",
        percent_encode("count(fleet_test_value{replica=\"a\"})")
    );
    assert_eq!(
        get(&qb, &only_a)["result"][0]["value"][1],
        Value::from(a_paths.len().to_string())
    );

    // Logs: search, histogram and SQL, over bucket parts and heads.
    let (lf, lt) = (base_s, base_s + 2 * 3600);
    for search in [
        "connect",
        "mx2-0042",
        "\"connect from client3\"",
        "host:mta1 client5",
        "app:postfix/smtpd",
    ] {
        let path = format!(
            "/api/v1/logs/query?query={}&start={lf}&end={lt}&limit=1000",
            percent_encode(search)
        );
        let (ours, single_node) = (lines_of(&get(&qb, &path)), lines_of(&get(&sb, &path)));
        assert!(!single_node.is_empty(), "{search}: no lines");
        assert_eq!(ours, single_node, "{search}");
        compared += 1;
    }
    let hist = format!("/api/v1/logs/histogram?query=connect&start={lf}&end={lt}&step=60");
    assert_eq!(get(&qb, &hist), get(&sb, &hist), "histogram");
    let sql =
        "SELECT host, count(*) AS n, min(timestamp) AS first FROM logs GROUP BY host ORDER BY host";
    assert_eq!(sql_rows(&qb, sql), sql_rows(&sb, sql), "{sql}");
    eprintln!("fleet: {compared} queries answered alike");

    // A collector that cannot be reached makes the answer fail, naming it,
    // rather than quietly miss its data.
    drop(_b);
    let auth = format!("Basic {}", base64(format!("admin:{PASSWORD}").as_bytes()));
    let (status, _, body) = http_request(
        "GET",
        &format!("{qb}/api/v1/query?query=fleet_test_value&time={to}"),
        &[("Authorization", &auth)],
    )
    .unwrap();
    let text = String::from_utf8_lossy(&body);
    assert!(status >= 400 && text.contains(&b_url), "{status} {text}");
}
