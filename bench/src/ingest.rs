//! `bench ingest`: the same synthetic targets scraped by Prometheus and by our
//! collector, one after the other on this machine, at the same interval.
//! Reports CPU per million samples ingested (the scrape, parse, WAL and head
//! path end to end), samples per CPU-second, and resident memory per series.

use crate::{clock_ticks, cpu_ticks, free_port, rss_kib};
use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Options {
    pub targets: usize,
    pub series: usize,
    pub seconds: u64,
    pub warmup: u64,
}

/// One synthetic target per listener, so every tool sees distinct instances.
/// Each answer carries `series` lines of counters and gauges that move on
/// every scrape, spread over 20 metric families.
pub(crate) struct Targets {
    pub(crate) ports: Vec<u16>,
    stop: Arc<AtomicBool>,
}

impl Targets {
    pub(crate) fn start(n: usize, series: usize) -> Result<Targets> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut ports = Vec::new();
        for shard in 0..n {
            let listener = TcpListener::bind("127.0.0.1:0").context("binding a target")?;
            listener.set_nonblocking(true)?;
            ports.push(listener.local_addr()?.port());
            let stop = stop.clone();
            let scrapes = Arc::new(AtomicU64::new(0));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let scrapes = scrapes.clone();
                            std::thread::spawn(move || {
                                let _ = answer(stream, shard, series, &scrapes);
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
        }
        Ok(Targets { ports, stop })
    }
}

impl Drop for Targets {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn answer(
    stream: std::net::TcpStream,
    shard: usize,
    series: usize,
    scrapes: &AtomicU64,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
    }
    let n = scrapes.fetch_add(1, Ordering::Relaxed) as f64;
    let families = 20;
    let mut body = String::with_capacity(series * 64);
    for f in 0..families {
        let kind = if f % 2 == 0 { "counter" } else { "gauge" };
        body.push_str(&format!(
            "# HELP bench_metric_{f} Synthetic family {f}.\n# TYPE bench_metric_{f} {kind}\n"
        ));
        for j in (f..series).step_by(families) {
            let v = if kind == "counter" {
                n * (j % 7) as f64
            } else {
                ((n + j as f64) * 0.37).sin() * 100.0
            };
            body.push_str(&format!(
                "bench_metric_{f}{{shard=\"{shard}\",item=\"{j}\",role=\"mailstore\"}} {v}\n"
            ));
        }
    }
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    out.flush()
}

/// What one tool measured.
struct Measured {
    name: &'static str,
    samples: f64,
    cpu_seconds: f64,
    rss_kib: u64,
    series: f64,
}

pub fn run(binary: &Path, o: &Options) -> Result<()> {
    let targets = Targets::start(o.targets, o.series)?;
    let mut config = String::from(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: bench\n    static_configs:\n      - targets:\n",
    );
    for p in &targets.ports {
        config.push_str(&format!("        - '127.0.0.1:{p}'\n"));
    }
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("config.yml"), &config)?;
    eprintln!(
        "{} targets x {} series, scraped every 1 s, {} s measured after {} s warm-up",
        o.targets, o.series, o.seconds, o.warmup
    );

    let prom_port = free_port()?;
    let prometheus = Command::new("/usr/bin/prometheus")
        .arg(format!(
            "--config.file={}",
            dir.path().join("config.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("prom").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("prometheus.log"))?)
        .spawn()
        .context("starting /usr/bin/prometheus (apt install prometheus)")?;
    let theirs = measure(
        "Prometheus",
        prometheus,
        &format!("http://127.0.0.1:{prom_port}/metrics"),
        "prometheus_tsdb_head_samples_appended_total",
        "prometheus_tsdb_head_series",
        o,
    )?;

    let our_port = free_port()?;
    let collector = Command::new(binary)
        .arg("collector")
        .arg("--config")
        .arg(dir.path().join("config.yml"))
        .arg("--data")
        .arg(dir.path().join("ours"))
        .arg(format!("--web.listen-address=127.0.0.1:{our_port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("collector.log"))?)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let ours = measure(
        "carbonio-monitor collector",
        collector,
        &format!("http://127.0.0.1:{our_port}/metrics"),
        "carbonio_collector_samples_appended_total",
        "carbonio_collector_head_series",
        o,
    )?;
    report(&[ours, theirs]);
    drop(targets);
    Ok(())
}

/// Runs one tool through warm-up and the measured window, then stops it.
fn measure(
    name: &'static str,
    mut child: Child,
    metrics_url: &str,
    samples_metric: &str,
    series_metric: &str,
    o: &Options,
) -> Result<Measured> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    let read = |metric: &str| -> Result<f64> {
        let body = agent
            .get(metrics_url)
            .set("Accept", "text/plain")
            .call()
            .with_context(|| format!("reading {metrics_url}"))?
            .into_string()?;
        Ok(super::metric_sum(&body, metric, None))
    };
    let started = Instant::now();
    while read(series_metric).unwrap_or(0.0) < 1.0 {
        if child.try_wait()?.is_some() || started.elapsed() > Duration::from_secs(60) {
            bail!("{name} did not start ingesting");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(o.warmup));
    let pid = child.id();
    let (cpu0, samples0) = (cpu_ticks(pid)?, read(samples_metric)?);
    std::thread::sleep(Duration::from_secs(o.seconds));
    let (cpu1, samples1) = (cpu_ticks(pid)?, read(samples_metric)?);
    let measured = Measured {
        name,
        samples: samples1 - samples0,
        cpu_seconds: (cpu1 - cpu0) as f64 / clock_ticks(),
        rss_kib: rss_kib(pid)?,
        series: read(series_metric)?,
    };
    let _ = child.kill();
    let _ = child.wait();
    Ok(measured)
}

fn report(rows: &[Measured]) {
    println!(
        "{:<28} {:>12} {:>10} {:>14} {:>12} {:>10} {:>12}",
        "tool", "samples", "CPU s", "CPU s/M samp", "samp/CPU s", "series", "RSS B/series"
    );
    for m in rows {
        println!(
            "{:<28} {:>12.0} {:>10.2} {:>14.3} {:>12.0} {:>10.0} {:>12.0}",
            m.name,
            m.samples,
            m.cpu_seconds,
            m.cpu_seconds / m.samples.max(1.0) * 1e6,
            m.samples / m.cpu_seconds.max(1e-9),
            m.series,
            m.rss_kib as f64 * 1024.0 / m.series.max(1.0)
        );
    }
    if let [ours, theirs] = rows {
        let per = |m: &Measured| m.cpu_seconds / m.samples.max(1.0);
        println!(
            "ratio ours/Prometheus: CPU per sample {:.2}, RSS {:.2}, RSS per series {:.2}",
            per(ours) / per(theirs),
            ours.rss_kib as f64 / theirs.rss_kib.max(1) as f64,
            (ours.rss_kib as f64 / ours.series.max(1.0))
                / (theirs.rss_kib as f64 / theirs.series.max(1.0))
        );
    }
}
