//! `bench object-store`: latency of 24 h PromQL range queries over blocks in
//! object storage next to the same blocks on local disk, cold and warm.
//! The dataset is `bench promql`'s (generated, imported, compacted to day
//! blocks); a copy of the store is uploaded to moto_server (an S3 server
//! from PyPI) and read back by `carbonio-monitor query` with the
//! configuration's object store. Cold: a fresh query process, an empty
//! chunk cache and, when this runs as root, the kernel's page cache dropped
//! first. Warm: the same query again in the same process.

use crate::{free_port, promql};
use anyhow::{bail, Context, Result};
use carbonio_collector::store::{tier, Store};
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-object-store-token";
const BUCKET: &str = "carbonio-bench";

pub struct Options {
    pub binary: PathBuf,
    pub moto: PathBuf,
    pub work: PathBuf,
    pub instances: usize,
    pub reps: usize,
    /// A mail corpus (bench/corpus/gen_mail_corpus.py) for the log searches.
    pub corpus: Option<PathBuf>,
}

const QUERIES: &[(&str, &str)] = &[
    (
        "cpu busy by instance",
        r#"sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m]))"#,
    ),
    (
        "http rate by code",
        "sum by (code) (rate(http_requests_total[5m]))",
    ),
    (
        "p99 latency",
        "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    ),
];

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(300))
        .build()
}

fn wait_for(url: &str, what: &str) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if agent().get(url).call().is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{what} did not answer {url} within 60 s")
}

fn config(work: &Path, moto_port: u16, cache: &Path) -> Result<PathBuf> {
    let sha = sha2::Sha256::digest(TOKEN.as_bytes());
    let hex: String = sha.iter().map(|b| format!("{b:02x}")).collect();
    let path = work.join("object-store.yml");
    std::fs::write(
        &path,
        format!(
            "auth:\n  tokens:\n    - name: bench\n      sha256: {hex}\n\
             storage:\n  object_store:\n    endpoint: http://127.0.0.1:{moto_port}\n    bucket: {BUCKET}\n\
             \x20   access_key_id: bench\n    secret_access_key: bench\n    path_style: true\n\
             \x20   upload_after: 0s\n    cache_dir: {}\n",
            cache.display()
        ),
    )?;
    Ok(path)
}

fn drop_page_cache() -> bool {
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "1").is_ok()
}

/// One request to time: a path and its query parameters.
struct Request {
    path: &'static str,
    params: Vec<(&'static str, String)>,
    /// What an answer with data contains.
    expect: &'static str,
}

/// Cold and warm latency (ms) of `req` on `data`, and the bytes the cold
/// run left in the chunk cache.
fn measure(
    opts: &Options,
    data: &Path,
    cfg: &Path,
    cache: &Path,
    req: &Request,
) -> Result<(Vec<f64>, Vec<f64>, u64, String)> {
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    let mut fetched = 0;
    let mut answer = String::new();
    for _ in 0..opts.reps {
        let _ = std::fs::remove_dir_all(cache);
        drop_page_cache();
        let port = free_port()?;
        let child = Command::new(&opts.binary)
            .args(["query", "--config"])
            .arg(cfg)
            .arg("--data")
            .arg(data)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting carbonio-monitor query")?;
        let _child = Killed(child);
        let base = format!("http://127.0.0.1:{port}");
        wait_for(&format!("{base}/-/ready"), "carbonio-monitor query")?;
        let run = |answer: &mut String| -> Result<f64> {
            let t = Instant::now();
            let mut r = agent().get(&format!("{base}{}", req.path));
            for (k, v) in &req.params {
                r = r.query(k, v);
            }
            let body = r
                .set("Authorization", &format!("Bearer {TOKEN}"))
                .call()
                .with_context(|| format!("{} {:?} on {}", req.path, req.params, data.display()))?
                .into_string()?;
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            if !body.contains(req.expect) {
                bail!(
                    "{:?}: unexpected answer: {}",
                    req.params,
                    &body[..body.len().min(300)]
                );
            }
            *answer = body;
            Ok(ms)
        };
        cold.push(run(&mut answer)?);
        fetched = dir_bytes(cache);
        for _ in 0..5 {
            warm.push(run(&mut answer)?);
        }
    }
    Ok((cold, warm, fetched, answer))
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

pub fn run(opts: &Options) -> Result<()> {
    if !opts.moto.is_file() {
        bail!(
            "{} not found: python3 -m venv ~/.cache/carbonio-monitor/moto && ~/.cache/carbonio-monitor/moto/bin/pip install 'moto[server]'",
            opts.moto.display()
        );
    }
    std::fs::create_dir_all(&opts.work)?;
    let dataset = promql::Options {
        instances: opts.instances,
        cpus: 4,
        hours: 24,
        interval: 15,
        reps: opts.reps,
        warmup: 0,
        filter: None,
        work: Some(opts.work.clone()),
    };
    let (series, samples) = promql::prepare(&opts.work, &dataset)?;
    let local = opts.work.join("ours");
    let remote = opts.work.join("ours-s3");
    let _ = std::fs::remove_dir_all(&remote);
    let out = Command::new("cp")
        .arg("-a")
        .arg(&local)
        .arg(&remote)
        .output()?;
    if !out.status.success() {
        bail!(
            "copying the store: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let moto_port = free_port()?;
    let moto = Command::new(&opts.moto)
        .args(["-H", "127.0.0.1", "-p", &moto_port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting moto_server")?;
    let _moto = Killed(moto);
    let bucket_url = format!("http://127.0.0.1:{moto_port}/{BUCKET}");
    let start = Instant::now();
    while agent().put(&bucket_url).call().is_err() {
        if start.elapsed() > Duration::from_secs(30) {
            bail!("moto_server did not start");
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    let cache = opts.work.join("object-cache");
    let cfg = config(&opts.work, moto_port, &cache)?;
    let (parsed, _) = carbonio_collector::config::Config::load(&cfg)?;
    let Some(os) = parsed.storage.object_store.as_ref() else {
        bail!("no object store in {}", cfg.display());
    };
    let t = tier::Tier::new(os, &remote)?;
    tier::install(std::sync::Arc::new(t));
    let Some(installed) = tier::installed() else {
        bail!("the object storage tier is not installed");
    };
    let t0 = Instant::now();
    let uploaded = {
        let (store, _) = Store::open(&remote)?;
        store.upload_blocks(installed, i64::MAX)?
    };
    let upload_s = t0.elapsed().as_secs_f64();
    let stats = installed.stats();
    eprintln!(
        "{series} series, {samples} samples; {uploaded} blocks ({:.1} MB) uploaded to moto_server in {upload_s:.1} s",
        stats.upload_bytes as f64 / 1e6
    );
    let dropped = drop_page_cache();

    let (start, end) = (promql::DATA_END - 24 * 3600, promql::DATA_END);
    let mut cases: Vec<(String, Request, PathBuf, PathBuf)> = QUERIES
        .iter()
        .map(|(name, query)| {
            let req = Request {
                path: "/api/v1/query_range",
                params: vec![
                    ("query", query.to_string()),
                    ("start", start.to_string()),
                    ("end", end.to_string()),
                    ("step", "60".into()),
                ],
                expect: "\"result\":[{",
            };
            (
                format!("PromQL 24 h: {name}"),
                req,
                local.clone(),
                remote.clone(),
            )
        })
        .collect();
    if let Some(corpus) = &opts.corpus {
        cases.extend(log_cases(opts, corpus, installed)?);
    }
    println!(
        "| query | local cold ms | local warm ms | S3 cold ms | S3 warm ms | S3/local cold | S3/local warm | fetched cold |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (name, req, local, remote) in &cases {
        let (lc, lw, _, local_answer) = measure(opts, local, &cfg, &cache, req)?;
        let (rc, rw, fetched, remote_answer) = measure(opts, remote, &cfg, &cache, req)?;
        if local_answer != remote_answer {
            bail!("{name}: the object-storage answer differs from the local one");
        }
        let median = crate::logsearch::median;
        let (lc, lw, rc, rw) = (median(&lc), median(&lw), median(&rc), median(&rw));
        println!(
            "| {name} | {lc:.1} | {lw:.1} | {rc:.1} | {rw:.1} | {:.2} | {:.2} | {:.1} MB |",
            rc / lc,
            rw / lw,
            fetched as f64 / 1e6
        );
    }
    println!(
        "\nmedians of {} cold runs (fresh process, empty chunk cache{}) and {} warm runs; moto_server on 127.0.0.1 (no network latency)",
        opts.reps,
        if dropped { ", page cache dropped" } else { "; page cache NOT dropped (not root)" },
        opts.reps * 5
    );
    Ok(())
}

/// The log store of `corpus` (as `bench log-search` builds it) in a local
/// data directory and a copy whose parts are uploaded; the explorer's
/// searches as requests.
fn log_cases(
    opts: &Options,
    corpus: &Path,
    tier: &tier::Tier,
) -> Result<Vec<(String, Request, PathBuf, PathBuf)>> {
    let local = opts.work.join("logs-local");
    let remote = opts.work.join("logs-s3");
    let (store, first, last) = crate::logsearch::open_or_build(corpus, &local.join("logs"))?;
    drop(store);
    let _ = std::fs::remove_dir_all(&remote);
    std::fs::create_dir_all(&remote)?;
    let out = Command::new("cp")
        .arg("-a")
        .arg(local.join("logs"))
        .arg(remote.join("logs"))
        .output()?;
    if !out.status.success() {
        bail!(
            "copying the log store: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let t = Instant::now();
    let before = tier.stats().upload_bytes;
    let parts = {
        let (logs, _) = carbonio_collector::store::logs::LogStore::open(&remote.join("logs"))?;
        logs.upload_parts(tier, i64::MAX, Duration::ZERO)?
    };
    eprintln!(
        "{parts} log parts ({:.1} MB) uploaded in {:.1} s",
        (tier.stats().upload_bytes - before) as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let secs = |ns: i64| format!("{:.3}", ns as f64 / 1e9);
    Ok(crate::logsearch::queries(first, last)
        .into_iter()
        .map(|q| {
            let (path, expect, mut params) = match q.kind {
                crate::logsearch::Kind::Page => (
                    "/api/v1/logs/query",
                    "\"status\":\"success\"",
                    vec![("limit", "100".to_string())],
                ),
                crate::logsearch::Kind::Histogram => (
                    "/api/v1/logs/histogram",
                    "\"status\":\"success\"",
                    vec![("step", "1m".to_string())],
                ),
            };
            params.push(("query", q.search.clone()));
            params.push(("start", secs(q.range.0)));
            params.push(("end", secs(q.range.1)));
            let req = Request {
                path,
                params,
                expect,
            };
            (
                format!("logs: {}", q.name),
                req,
                local.clone(),
                remote.clone(),
            )
        })
        .collect())
}
