//! `bench promql`: dashboard-typical PromQL range queries against a real
//! Prometheus and our query API on the same backfilled data, in the same
//! run. The dataset (node_exporter-like and HTTP-server-like families:
//! counters, gauges, classic histograms) is written as OpenMetrics, loaded
//! into Prometheus with `promtool tsdb create-blocks-from openmetrics` and
//! into our store with the backfill import, then compacted as a running
//! collector would. Both answers are compared before anything is timed.

use crate::{free_port, Exporter};
use anyhow::{bail, Context, Result};
use carbonio_collector::store::Store;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";
/// End of the generated data (Unix seconds): fixed so runs are comparable.
/// Prometheus's retention counts from its newest block, not the clock.
pub(crate) const DATA_END: i64 = 1_700_000_000;
/// The span our collector compacts blocks to (collector/src/service.rs).
const COMPACT_SPAN_MS: i64 = 24 * 3600 * 1000;
/// Relative tolerance when comparing the two answers.
const TOLERANCE: f64 = 1e-6;

pub struct Options {
    pub instances: usize,
    pub cpus: usize,
    pub hours: i64,
    pub interval: i64,
    pub reps: usize,
    pub warmup: usize,
    pub filter: Option<String>,
    pub work: Option<PathBuf>,
}

/// Dashboard panels: (name, query).
const QUERIES: &[(&str, &str)] = &[
    (
        "cpu busy by instance",
        r#"sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m]))"#,
    ),
    (
        "cpu utilisation %",
        r#"100 * (1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[5m])))"#,
    ),
    ("http rate", "rate(http_requests_total[5m])"),
    (
        "http rate by code",
        "sum by (code) (rate(http_requests_total[5m]))",
    ),
    (
        "http 5xx ratio",
        r#"sum by (instance) (rate(http_requests_total{code=~"5.."}[5m])) / sum by (instance) (rate(http_requests_total[5m]))"#,
    ),
    (
        "p99 latency",
        "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    ),
    (
        "p90 latency by handler",
        "histogram_quantile(0.9, sum by (le, handler) (rate(http_request_duration_seconds_bucket[5m])))",
    ),
    (
        "mean latency",
        "sum(rate(http_request_duration_seconds_sum[5m])) / sum(rate(http_request_duration_seconds_count[5m]))",
    ),
    (
        "memory available %",
        "100 * node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes",
    ),
    ("load avg_over_time", "avg_over_time(node_load1[5m])"),
    (
        "top 5 network rx",
        "topk(5, rate(node_network_receive_bytes_total[5m]))",
    ),
];

/// (label, range seconds, step seconds): the steps Grafana picks for a
/// ~1000 px wide panel, rounded to a scrape-interval multiple.
const WINDOWS: &[(&str, i64, i64)] =
    &[("1h", 3600, 15), ("6h", 6 * 3600, 60), ("24h", 86_400, 300)];

pub fn run(opts: &Options) -> Result<()> {
    if opts.reps == 0 || opts.instances == 0 || opts.hours <= 0 || opts.interval <= 0 {
        bail!("--reps, --instances, --hours and --interval must be positive");
    }
    for bin in [PROMETHEUS, PROMTOOL] {
        if !Path::new(bin).is_file() {
            bail!("{bin} not found; install the Debian package prometheus");
        }
    }
    let tmp = tempfile::tempdir().context("creating temporary directory")?;
    let work = opts
        .work
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let (series, samples) = prepare(&work, opts)?;

    let prom_port = free_port()?;
    let prom = start_prometheus(&work, prom_port)?;
    let (_rt, ours_port) = serve_ours(&work.join("ours"))?;
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(300))
        .build();
    let servers = [
        Server {
            name: "prometheus",
            base: format!("http://127.0.0.1:{prom_port}"),
        },
        Server {
            name: "ours",
            base: format!("http://127.0.0.1:{ours_port}"),
        },
    ];
    let compactions_before = prometheus_compactions(&agent, &servers[0]);

    let end = DATA_END;
    let mut cases = Vec::new();
    for &(window, range, step) in WINDOWS {
        if range > opts.hours * 3600 {
            continue;
        }
        for &(name, query) in QUERIES {
            if opts
                .filter
                .as_deref()
                .is_some_and(|f| !name.contains(f) && !query.contains(f))
            {
                continue;
            }
            cases.push(Case {
                name,
                query,
                window,
                start: end - range,
                end,
                step,
            });
        }
    }
    if cases.is_empty() {
        bail!("no query matches --filter");
    }

    eprintln!(
        "checking answers and warming up ({} queries, {} warm-up runs each)",
        cases.len(),
        opts.warmup.max(1)
    );
    let mut rows = Vec::new();
    let mut disagreements = 0;
    for case in &cases {
        let mut answers = Vec::new();
        for server in &servers {
            let body = case.fetch(&agent, server)?;
            answers.push(parse_matrix(&body).with_context(|| {
                format!("{} answered {}: {}", server.name, case.query, clip(&body))
            })?);
        }
        let verdict = compare(&answers[0], &answers[1]);
        if let Err(why) = &verdict {
            disagreements += 1;
            eprintln!(
                "DISAGREE {} [{}]: {}\n  {why}",
                case.name, case.window, case.query
            );
        }
        for _ in 1..opts.warmup {
            for server in &servers {
                case.fetch(&agent, server)?;
            }
        }
        rows.push(Row {
            series: answers[0].len(),
            agree: verdict.is_ok(),
            times: [Vec::new(), Vec::new()],
        });
    }

    eprintln!("measuring ({} repetitions, alternating servers)", opts.reps);
    for rep in 0..opts.reps {
        for (case, row) in cases.iter().zip(rows.iter_mut()) {
            let order = if rep % 2 == 0 { [0, 1] } else { [1, 0] };
            for k in order {
                let t = Instant::now();
                case.fetch(&agent, &servers[k])?;
                row.times[k].push(t.elapsed());
            }
        }
    }
    let compactions_after = prometheus_compactions(&agent, &servers[0]);
    drop(prom);

    report(&cases, &mut rows, series, samples, opts);
    if compactions_after != compactions_before {
        println!(
            "note: Prometheus compacted blocks during the run ({compactions_before:?} -> {compactions_after:?})"
        );
    }
    if disagreements > 0 {
        bail!("{disagreements} queries answered differently; see DISAGREE above");
    }
    Ok(())
}

struct Server {
    name: &'static str,
    base: String,
}

struct Case {
    name: &'static str,
    query: &'static str,
    window: &'static str,
    start: i64,
    end: i64,
    step: i64,
}

impl Case {
    /// One range query; the whole body is read (what a client waits for).
    fn fetch(&self, agent: &ureq::Agent, server: &Server) -> Result<String> {
        let resp = agent
            .get(&format!("{}/api/v1/query_range", server.base))
            .query("query", self.query)
            .query("start", &self.start.to_string())
            .query("end", &self.end.to_string())
            .query("step", &self.step.to_string())
            .call();
        let resp = match resp {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) => {
                let body = r.into_string().unwrap_or_default();
                bail!(
                    "{} answered {code} to {}: {}",
                    server.name,
                    self.query,
                    clip(&body)
                );
            }
            Err(e) => return Err(e).with_context(|| format!("querying {}", server.name)),
        };
        let mut body = String::new();
        resp.into_reader()
            .read_to_string(&mut body)
            .with_context(|| format!("reading the answer of {}", server.name))?;
        Ok(body)
    }
}

struct Row {
    series: usize,
    agree: bool,
    /// Latencies: [prometheus, ours].
    times: [Vec<Duration>; 2],
}

// ------------------------------------------------------------------ data

/// Writes the dataset and loads it into both stores under `work`, reusing
/// what a previous run with the same parameters left there. Returns the
/// series and sample counts.
pub(crate) fn prepare(work: &Path, opts: &Options) -> Result<(usize, usize)> {
    let stamp = format!(
        "instances={} cpus={} hours={} interval={} end={DATA_END}\n",
        opts.instances, opts.cpus, opts.hours, opts.interval
    );
    let stamp_path = work.join("dataset.txt");
    if std::fs::read_to_string(&stamp_path).ok().as_deref() != Some(stamp.as_str()) {
        for stale in ["data.om", "prometheus", "ours", "counts.txt"] {
            let p = work.join(stale);
            let _ = std::fs::remove_dir_all(&p);
            let _ = std::fs::remove_file(&p);
        }
        std::fs::write(&stamp_path, &stamp)?;
    }
    let om = work.join("data.om");
    let counts = work.join("counts.txt");
    if !om.is_file() || !counts.is_file() {
        let t = Instant::now();
        let (series, samples) = generate(&om, opts)?;
        std::fs::write(&counts, format!("{series} {samples}"))?;
        eprintln!(
            "generated {series} series, {samples} samples ({:.0} MB of OpenMetrics) in {:.1} s",
            std::fs::metadata(&om)?.len() as f64 / 1e6,
            t.elapsed().as_secs_f64()
        );
    }
    let text = std::fs::read_to_string(&counts)?;
    let mut it = text.split_whitespace().map(str::parse::<usize>);
    let (Some(Ok(series)), Some(Ok(samples))) = (it.next(), it.next()) else {
        bail!("malformed {}", counts.display());
    };

    let prom_data = work.join("prometheus/data");
    if !prom_data.is_dir() {
        let t = Instant::now();
        let tmp_out = work.join("prometheus/.blocks");
        let _ = std::fs::remove_dir_all(&tmp_out);
        std::fs::create_dir_all(&tmp_out)?;
        // 24 h blocks, as Prometheus's own compaction would leave a day of
        // data; otherwise it compacts the 2 h blocks while we measure.
        let out = std::process::Command::new(PROMTOOL)
            .args(["tsdb", "create-blocks-from", "openmetrics", "-q"])
            .arg("--max-block-duration=24h")
            .arg(&om)
            .arg(&tmp_out)
            .output()
            .context("running promtool")?;
        if !out.status.success() {
            bail!("promtool failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::fs::rename(&tmp_out, &prom_data)?;
        eprintln!(
            "promtool: blocks written in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }

    let ours = work.join("ours");
    if !ours.join("blocks").is_dir() {
        let t = Instant::now();
        let _ = std::fs::remove_dir_all(&ours);
        let text = std::fs::read_to_string(&om)?;
        let (store, _) = Store::open(&ours)?;
        let report = carbonio_collector::import::import_openmetrics(&store, &text, |_| {})
            .context("importing into our store")?;
        drop(text);
        let imported = t.elapsed();
        store.compact(COMPACT_SPAN_MS)?;
        let stats = store.block_stats();
        eprintln!(
            "ours: {} samples imported in {:.1} s, compacted in {:.1} s to {} blocks ({:.2} bytes per sample)",
            report.samples,
            imported.as_secs_f64(),
            (t.elapsed() - imported).as_secs_f64(),
            stats.blocks,
            stats.bytes as f64 / stats.samples.max(1) as f64
        );
    }
    Ok((series, samples))
}

/// Deterministic xorshift, so every run generates the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }
}

/// Writes series one after the other, every sample with its timestamp.
struct OmWriter {
    out: BufWriter<std::fs::File>,
    points: i64,
    start: i64,
    interval: i64,
    series: usize,
    samples: usize,
}

impl OmWriter {
    fn family(&mut self, name: &str, kind: &str) -> Result<()> {
        writeln!(self.out, "# TYPE {name} {kind}")?;
        Ok(())
    }

    /// One series; `value(i)` is its i-th sample.
    fn series(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        mut value: impl FnMut(i64) -> f64,
    ) -> Result<()> {
        let mut prefix = String::from(name);
        let parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        let _ = write!(prefix, "{{{}}}", parts.join(","));
        for i in 0..self.points {
            let v = value(i);
            writeln!(
                self.out,
                "{prefix} {v:?} {}",
                self.start + i * self.interval
            )?;
        }
        self.series += 1;
        self.samples += self.points as usize;
        Ok(())
    }
}

/// A counter's values: each step adds `inc(i)`, rounded to 3 decimals as
/// exporters' float formatting would keep it short.
fn counter(points: i64, initial: f64, mut inc: impl FnMut(i64) -> f64) -> Vec<f64> {
    let mut v = initial;
    (0..points)
        .map(|i| {
            if i > 0 {
                v = ((v + inc(i)) * 1000.0).round() / 1000.0;
            }
            v
        })
        .collect()
}

/// The dataset: per instance, node_exporter families (CPU per core and
/// mode, memory, load, network, filesystem) and an HTTP server's request
/// counter and latency histogram. Returns (series, samples).
fn generate(path: &Path, opts: &Options) -> Result<(usize, usize)> {
    let points = opts.hours * 3600 / opts.interval + 1;
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = OmWriter {
        out: BufWriter::with_capacity(1 << 20, file),
        points,
        start: DATA_END - (points - 1) * opts.interval,
        interval: opts.interval,
        series: 0,
        samples: 0,
    };
    let dt = opts.interval as f64;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let instances: Vec<String> = (0..opts.instances)
        .map(|i| format!("mail{:02}.example.com", i + 1))
        .collect();
    let node = |i: &str| format!("{i}:9100");
    let app = |i: &str| format!("{i}:8080");

    w.family("node_cpu_seconds", "counter")?;
    let modes = [
        ("idle", 0.70),
        ("iowait", 0.02),
        ("irq", 0.005),
        ("nice", 0.001),
        ("softirq", 0.01),
        ("steal", 0.0),
        ("system", 0.08),
        ("user", 0.18),
    ];
    for inst in &instances {
        for cpu in 0..opts.cpus {
            let cpu = cpu.to_string();
            for (mode, share) in modes {
                let values = counter(points, 1e5 * share, |_| share * dt * (0.5 + rng.unit()));
                w.series(
                    "node_cpu_seconds_total",
                    &[
                        ("instance", &node(inst)),
                        ("job", "node"),
                        ("cpu", &cpu),
                        ("mode", mode),
                    ],
                    |i| values[i as usize],
                )?;
            }
        }
    }
    w.family("node_memory_MemTotal_bytes", "gauge")?;
    for inst in &instances {
        w.series(
            "node_memory_MemTotal_bytes",
            &[("instance", &node(inst)), ("job", "node")],
            |_| 16e9,
        )?;
    }
    w.family("node_memory_MemAvailable_bytes", "gauge")?;
    for inst in &instances {
        let mut v = 8e9;
        w.series(
            "node_memory_MemAvailable_bytes",
            &[("instance", &node(inst)), ("job", "node")],
            |_| {
                v = (v + (rng.unit() - 0.5) * 5e7).clamp(1e9, 15e9).round();
                v
            },
        )?;
    }
    w.family("node_load1", "gauge")?;
    for inst in &instances {
        let mut v = 1.0;
        w.series(
            "node_load1",
            &[("instance", &node(inst)), ("job", "node")],
            |_| {
                v = ((v + (rng.unit() - 0.5) * 0.2).clamp(0.0, 16.0) * 100.0).round() / 100.0;
                v
            },
        )?;
    }
    for (family, scale) in [
        ("node_network_receive_bytes", 2e5),
        ("node_network_transmit_bytes", 1e5),
    ] {
        w.family(family, "counter")?;
        for inst in &instances {
            for (device, k) in [("eth0", 1.0), ("lo", 0.1)] {
                let values = counter(points, 1e9 * k, |_| (scale * k * dt * rng.unit()).round());
                w.series(
                    &format!("{family}_total"),
                    &[
                        ("instance", &node(inst)),
                        ("job", "node"),
                        ("device", device),
                    ],
                    |i| values[i as usize],
                )?;
            }
        }
    }
    w.family("node_filesystem_avail_bytes", "gauge")?;
    for inst in &instances {
        for mount in ["/", "/opt/zextras"] {
            let mut v = 5e10;
            w.series(
                "node_filesystem_avail_bytes",
                &[
                    ("instance", &node(inst)),
                    ("job", "node"),
                    ("mountpoint", mount),
                ],
                |_| {
                    v -= (rng.unit() * 4096.0).round();
                    v
                },
            )?;
        }
    }

    let handlers = ["/api/login", "/api/mail", "/api/search", "/service/soap"];
    w.family("http_requests", "counter")?;
    for inst in &instances {
        for handler in handlers {
            for method in ["GET", "POST"] {
                for (code, share) in [("200", 0.95), ("404", 0.04), ("500", 0.01)] {
                    let values = counter(points, 0.0, |_| (share * 40.0 * dt * rng.unit()).round());
                    w.series(
                        "http_requests_total",
                        &[
                            ("instance", &app(inst)),
                            ("job", "mailbox"),
                            ("handler", handler),
                            ("method", method),
                            ("code", code),
                        ],
                        |i| values[i as usize],
                    )?;
                }
            }
        }
    }
    w.family("http_request_duration_seconds", "histogram")?;
    let les = [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf",
    ];
    let bounds = [
        0.005,
        0.01,
        0.025,
        0.05,
        0.1,
        0.25,
        0.5,
        1.0,
        2.5,
        5.0,
        f64::INFINITY,
    ];
    for inst in &instances {
        for (h, handler) in handlers.iter().enumerate() {
            let scale = 0.02 * (h + 1) as f64;
            let mut buckets = vec![vec![0.0; points as usize]; les.len()];
            let (mut sum, mut count) = (vec![0.0; points as usize], vec![0.0; points as usize]);
            let mut acc = vec![0.0; les.len()];
            let (mut s, mut c) = (0.0f64, 0.0f64);
            for i in 0..points as usize {
                if i > 0 {
                    for _ in 0..5 + rng.next() % 20 {
                        let latency = (-rng.unit().ln() * scale * 1000.0).round() / 1000.0;
                        let first = bounds.partition_point(|b| *b < latency);
                        acc[first..].iter_mut().for_each(|a| *a += 1.0);
                        s += latency;
                        c += 1.0;
                    }
                }
                for (b, a) in acc.iter().enumerate() {
                    buckets[b][i] = *a;
                }
                sum[i] = (s * 1000.0).round() / 1000.0;
                count[i] = c;
            }
            let base = [
                ("instance", app(inst)),
                ("job", "mailbox".into()),
                ("handler", handler.to_string()),
            ];
            let labels: Vec<(&str, &str)> = base.iter().map(|(k, v)| (*k, v.as_str())).collect();
            for (b, le) in les.iter().enumerate() {
                let mut with_le = labels.clone();
                with_le.push(("le", le));
                w.series("http_request_duration_seconds_bucket", &with_le, |i| {
                    buckets[b][i as usize]
                })?;
            }
            w.series("http_request_duration_seconds_sum", &labels, |i| {
                sum[i as usize]
            })?;
            w.series("http_request_duration_seconds_count", &labels, |i| {
                count[i as usize]
            })?;
        }
    }
    writeln!(w.out, "# EOF")?;
    w.out.flush()?;
    Ok((w.series, w.samples))
}

// --------------------------------------------------------------- servers

fn start_prometheus(work: &Path, port: u16) -> Result<Exporter> {
    let dir = work.join("prometheus");
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 15s\n")?;
    let mut prom = Exporter::start(
        "prometheus".into(),
        Path::new(PROMETHEUS),
        &[
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ],
        &[],
        port,
        &dir,
        "install the Debian package prometheus".into(),
    )?;
    // /-/ready turns 200 once the TSDB is open (/metrics answers earlier).
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(5))
        .build();
    let t = Instant::now();
    loop {
        if agent
            .get(&format!("http://127.0.0.1:{port}/-/ready"))
            .call()
            .is_ok()
        {
            return Ok(prom);
        }
        if t.elapsed() > Duration::from_secs(120) || prom.child.try_wait()?.is_some() {
            prom.wait_ready(&agent)?;
            bail!("prometheus did not become ready");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Our query API on `data`, in this process: what `carbonio-monitor query`
/// serves, without authentication (the Prometheus it is compared with has none).
fn serve_ours(data: &Path) -> Result<(tokio::runtime::Runtime, u16)> {
    use carbonio_query::api;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let metrics = carbonio_query::source::RefreshingSnapshot::open(
        data.to_path_buf(),
        Duration::from_secs(15),
    )?;
    let svc = api::QueryService::new(
        metrics,
        carbonio_query::promql::Engine::default(),
        4,
        String::new(),
    );
    let app = api::router(svc).merge(api::health_routes());
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .context("binding our API")?;
    let port = listener.local_addr()?.port();
    rt.spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("our API stopped: {e}");
        }
    });
    Ok((rt, port))
}

/// Prometheus's compaction counter, to tell whether it worked in the background.
fn prometheus_compactions(agent: &ureq::Agent, prom: &Server) -> Option<f64> {
    let body = agent
        .get(&format!("{}/metrics", prom.base))
        .call()
        .ok()?
        .into_string()
        .ok()?;
    Some(crate::metric_sum(
        &body,
        "prometheus_tsdb_compactions_total",
        None,
    ))
}

// ------------------------------------------------------------ answers

type Matrix = BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>>;

fn parse_matrix(body: &str) -> Result<Matrix> {
    let v: serde_json::Value = serde_json::from_str(body).context("answer is not JSON")?;
    if v["status"] != "success" || v["data"]["resultType"] != "matrix" {
        bail!("not a successful matrix answer");
    }
    let mut out = Matrix::new();
    for s in v["data"]["result"].as_array().into_iter().flatten() {
        let labels: BTreeMap<String, String> = s["metric"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        let mut points = Vec::new();
        for p in s["values"].as_array().into_iter().flatten() {
            let t = p[0].as_f64().context("point without a timestamp")?;
            let v = p[1]
                .as_str()
                .and_then(parse_number)
                .context("point without a value")?;
            points.push((t, v));
        }
        if out.insert(labels, points).is_some() {
            bail!("duplicate series in the answer");
        }
    }
    Ok(out)
}

fn parse_number(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// Same series, same timestamps, values within TOLERANCE relative.
fn compare(prom: &Matrix, ours: &Matrix) -> Result<(), String> {
    if prom.len() != ours.len() {
        return Err(format!(
            "{} series from Prometheus, {} from ours",
            prom.len(),
            ours.len()
        ));
    }
    for ((pl, pp), (ol, op)) in prom.iter().zip(ours) {
        if pl != ol {
            return Err(format!("series {pl:?} vs {ol:?}"));
        }
        if pp.len() != op.len() {
            return Err(format!("{pl:?}: {} points vs {}", pp.len(), op.len()));
        }
        for (a, b) in pp.iter().zip(op) {
            let same_value = (a.1.is_nan() && b.1.is_nan())
                || a.1 == b.1
                || (a.1 - b.1).abs() <= TOLERANCE * a.1.abs().max(b.1.abs());
            if a.0 != b.0 || !same_value {
                return Err(format!("{pl:?}: point {a:?} vs {b:?}"));
            }
        }
    }
    Ok(())
}

fn clip(s: &str) -> &str {
    match s.char_indices().nth(300) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

// ------------------------------------------------------------- report

fn median_ms(v: &mut [Duration]) -> f64 {
    v.sort_unstable();
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2].as_secs_f64() * 1000.0,
        n => (v[n / 2 - 1] + v[n / 2]).as_secs_f64() * 500.0,
    }
}

fn report(cases: &[Case], rows: &mut [Row], series: usize, samples: usize, opts: &Options) {
    println!();
    println!(
        "{series} series, {samples} samples ({} instances, {} h at {} s); median of {} runs per query, servers alternating",
        opts.instances, opts.hours, opts.interval, opts.reps
    );
    println!(
        "{:<24} {:>4} {:>5} {:>7} {:>10} {:>10} {:>7}",
        "query", "span", "step", "series", "prom ms", "ours ms", "ratio"
    );
    let mut log_sum = 0.0;
    let mut per_window: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
    for (case, row) in cases.iter().zip(rows.iter_mut()) {
        let prom = median_ms(&mut row.times[0]);
        let ours = median_ms(&mut row.times[1]);
        let ratio = ours / prom.max(1e-9);
        log_sum += ratio.ln();
        let w = per_window.entry(case.window).or_default();
        w.0 += ratio.ln();
        w.1 += 1;
        println!(
            "{:<24} {:>4} {:>4}s {:>7} {:>10.2} {:>10.2} {:>7.3}{}",
            case.name,
            case.window,
            case.step,
            row.series,
            prom,
            ours,
            ratio,
            if row.agree { "" } else { "  DISAGREE" }
        );
    }
    println!();
    for (window, _, _) in WINDOWS {
        if let Some((sum, n)) = per_window.get(window) {
            println!(
                "geometric mean ours/prometheus over {window} queries: {:.3}",
                (sum / *n as f64).exp()
            );
        }
    }
    let geo = (log_sum / cases.len() as f64).exp();
    println!(
        "geometric mean ours/prometheus over all {} queries: {geo:.3} (goal: < 1)",
        cases.len()
    );
}
