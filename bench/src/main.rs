//! Benchmarks comparing Carbonio Monitoring with the upstream tools on the
//! same machine.
//!
//! `bench exporters` starts our exporter and the upstream Debian exporter side
//! by side, scrapes them alternately (so both see the same machine state and
//! the same background noise) and reports latency, CPU per scrape and RSS.
//! `bench promql` times dashboard range queries against a real Prometheus
//! and our query API on the same backfilled data.

mod encodings;
mod ingest;
mod loglayout;
mod logs;
mod logsearch;
mod objectstore;
mod promql;
mod rules;
mod services;
mod zmstat;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use std::fs::File;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Upstream binaries as installed by the Debian packages of the same name.
const UPSTREAM_NODE: &str = "/usr/bin/prometheus-node-exporter";
const UPSTREAM_PROCESS: &str = "/usr/bin/prometheus-process-exporter";
const UPSTREAM_POSTGRES: &str = "/usr/bin/prometheus-postgres-exporter";
const UPSTREAM_NGINX: &str = "/usr/bin/prometheus-nginx-exporter";

/// How long an exporter may take to answer its first scrape.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Sample RSS every this many measured scrapes, to catch peaks between scrapes.
const RSS_SAMPLE_EVERY: usize = 10;

/// The process-exporter config: one group per command name, matching every
/// process, so both implementations do the most work they can.
const PROCESS_CONFIG: &str = "process_names:\n  - name: \"{{.Comm}}\"\n    cmdline: ['.+']\n";

#[derive(Parser, Debug)]
#[command(
    name = "bench",
    about = "Compare Carbonio Monitoring with the upstream tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Scrape our exporters and the upstream Debian exporters alternately.
    Exporters {
        /// Measured scrapes per exporter.
        #[arg(long, default_value_t = 200)]
        scrapes: usize,
        /// Unmeasured scrapes per exporter first, so lazy initialisation and cold caches are not measured.
        #[arg(long, default_value_t = 10)]
        warmup: usize,
        /// Our binary [default: $CARGO_TARGET_DIR or <workspace>/target, then release/carbonio-monitor].
        #[arg(long)]
        binary: Option<PathBuf>,
        /// Run only one pair.
        #[arg(long, value_enum)]
        only: Option<Pair>,
    },
    /// Bytes per sample of our Parquet blocks vs Prometheus's TSDB block on the same scraped data.
    Encodings {
        /// Scrapes of each exporter (stamped 15 s apart).
        #[arg(long, default_value_t = 120)]
        scrapes: usize,
        /// Our binary [default: $CARGO_TARGET_DIR or <workspace>/target, then release/carbonio-monitor].
        #[arg(long)]
        binary: Option<PathBuf>,
    },
    /// Ingest cost (CPU per sample) and memory per series: Prometheus and our collector scraping the same synthetic targets.
    Ingest {
        /// Synthetic targets (each its own listener).
        #[arg(long, default_value_t = 10)]
        targets: usize,
        /// Series per target.
        #[arg(long, default_value_t = 10_000)]
        series: usize,
        /// Measured seconds per tool.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Seconds after the first ingested scrape before measuring.
        #[arg(long, default_value_t = 15)]
        warmup: u64,
        /// Our binary [default: $CARGO_TARGET_DIR or <workspace>/target, then release/carbonio-monitor].
        #[arg(long)]
        binary: Option<PathBuf>,
    },
    /// Log Parquet layouts (sort order, row-group size, zstd level, dictionary, bloom filters): size and row groups a search reads.
    LogLayouts {
        /// Corpus of syslog lines, made by bench/corpus/gen_mail_corpus.py.
        corpus: PathBuf,
        /// Lines of the corpus to use.
        #[arg(long, default_value_t = 2_000_000)]
        lines: usize,
    },
    /// Syslog ingest, storage size and UDP loss: our collector and rsyslog writing a plain file, on the same corpus.
    Logs {
        /// Corpus of syslog lines, made by bench/corpus/gen_mail_corpus.py.
        corpus: PathBuf,
        /// UDP send rates (messages/s) at which loss is measured.
        #[arg(long, value_delimiter = ',', default_value = "10000,50000,100000")]
        udp_rates: Vec<u64>,
        /// Seconds of UDP sending per rate.
        #[arg(long, default_value_t = 5)]
        udp_seconds: u64,
        /// Ingest rounds, alternating which tool goes first; the median ratio is reported.
        #[arg(long, default_value_t = 1)]
        rounds: usize,
        /// Our binary [default: $CARGO_TARGET_DIR or <workspace>/target, then release/carbonio-monitor].
        #[arg(long)]
        binary: Option<PathBuf>,
    },
    /// Log search (newest 100 matches, per-minute histogram): ours, ripgrep over the raw corpus, DuckDB over our Parquet files.
    LogSearch {
        /// Corpus of syslog lines, made by bench/corpus/gen_mail_corpus.py.
        corpus: PathBuf,
        /// Where our store of the corpus is built, and reused by later runs.
        #[arg(long, default_value = "target/bench-log-search")]
        store: PathBuf,
        /// Timed rounds (the median is reported).
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// A Python with the duckdb and pytz modules (pip install duckdb pytz).
        #[arg(long, default_value = "python3")]
        python: PathBuf,
    },
    /// Alerting rules evaluated live: Prometheus and `carbonio-monitor run` scraping the same synthetic targets.
    Rules {
        /// Alerting rules (a mix of aggregations, thresholds, *_over_time, predict_linear, ratios, regex matchers, absent).
        #[arg(long, default_value_t = 1000)]
        rules: usize,
        /// Groups the rules are spread over.
        #[arg(long, default_value_t = 10)]
        groups: usize,
        /// Synthetic targets (each its own listener).
        #[arg(long, default_value_t = 10)]
        targets: usize,
        /// Series per target.
        #[arg(long, default_value_t = 2000)]
        series: usize,
        /// Evaluation interval in seconds.
        #[arg(long, default_value_t = 10)]
        interval: u64,
        /// Measured seconds per tool, with the rules and again without them.
        #[arg(long, default_value_t = 120)]
        seconds: u64,
        /// Seconds after a tool is ready before measuring.
        #[arg(long, default_value_t = 30)]
        warmup: u64,
        /// Our binary [default: $CARGO_TARGET_DIR or <workspace>/target, then release/carbonio-monitor].
        #[arg(long)]
        binary: Option<PathBuf>,
    },
    /// Dashboard PromQL range queries: latency of Prometheus and our query API on the same backfilled data.
    Promql {
        /// Monitored hosts in the dataset (each: node_exporter and HTTP server families, 117 series with 4 CPUs).
        #[arg(long, default_value_t = 8)]
        instances: usize,
        /// CPUs per host (node_cpu_seconds_total has 8 modes per CPU).
        #[arg(long, default_value_t = 4)]
        cpus: usize,
        /// Hours of data.
        #[arg(long, default_value_t = 24)]
        hours: i64,
        /// Seconds between samples (the scrape interval).
        #[arg(long, default_value_t = 15)]
        interval: i64,
        /// Measured runs per query and server.
        #[arg(long, default_value_t = 10)]
        reps: usize,
        /// Unmeasured runs per query and server first (the first also checks that both answers agree).
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        /// Run only the queries whose name or text contains this.
        #[arg(long)]
        filter: Option<String>,
        /// Keep the dataset and both stores here and reuse them on the next run with the same dataset flags
        /// (delete DIR/ours to rebuild our store alone).
        #[arg(long)]
        work: Option<PathBuf>,
    },
    /// 24 h PromQL range queries over blocks in object storage (moto_server) next to the same blocks on local disk, cold and warm.
    ObjectStore {
        /// Monitored hosts in `bench promql`'s dataset.
        #[arg(long, default_value_t = 8)]
        instances: usize,
        /// Cold runs per query and store (each also followed by 5 warm runs).
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Where the dataset and both stores go (kept and reused).
        #[arg(long, default_value = "target/bench-object-store")]
        work: PathBuf,
        /// moto_server [default: ~/.cache/carbonio-monitor/moto/bin/moto_server].
        #[arg(long)]
        moto: Option<PathBuf>,
        /// A mail corpus (bench/corpus/gen_mail_corpus.py): also time `bench log-search`'s searches.
        #[arg(long)]
        corpus: Option<PathBuf>,
        /// Our binary [default: $CARGO_TARGET_DIR or <workspace>/target, then release/carbonio-monitor].
        #[arg(long)]
        binary: Option<PathBuf>,
    },
    /// Import rate of a year of generated zmstat files, and our import of its first days next to promtool's backfill of the same samples.
    ZmstatImport {
        /// Days of zmstat files to generate and import.
        #[arg(long, default_value_t = 365)]
        days: usize,
        /// Days also converted to OpenMetrics and backfilled with promtool.
        #[arg(long, default_value_t = 7)]
        compare_days: usize,
        /// Where the generated files (kept and reused) and the stores go.
        #[arg(long, default_value = "target/bench-zmstat")]
        work: PathBuf,
        /// Our binary [default: $CARGO_TARGET_DIR or <workspace>/target, then release/carbonio-monitor].
        #[arg(long)]
        binary: Option<PathBuf>,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Pair {
    Node,
    Process,
    Postgres,
    Nginx,
    Ldap,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Exporters {
            scrapes,
            warmup,
            binary,
            only,
        } => exporters(&release_binary(binary), scrapes, warmup, only),
        Cmd::Encodings { scrapes, binary } => encodings::run(&release_binary(binary), scrapes),
        Cmd::Ingest {
            targets,
            series,
            seconds,
            warmup,
            binary,
        } => ingest::run(
            &release_binary(binary),
            &ingest::Options {
                targets,
                series,
                seconds,
                warmup,
            },
        ),
        Cmd::LogLayouts { corpus, lines } => loglayout::run(&corpus, lines),
        Cmd::LogSearch {
            corpus,
            store,
            reps,
            python,
        } => logsearch::run(&logsearch::Options {
            corpus,
            store,
            reps,
            python,
        }),
        Cmd::Logs {
            corpus,
            udp_rates,
            udp_seconds,
            rounds,
            binary,
        } => logs::run(
            &release_binary(binary),
            &logs::Options {
                corpus,
                udp_rates,
                udp_seconds,
                rounds,
            },
        ),
        Cmd::Rules {
            rules,
            groups,
            targets,
            series,
            interval,
            seconds,
            warmup,
            binary,
        } => rules::run(
            &release_binary(binary),
            &rules::Options {
                rules,
                groups,
                targets,
                series,
                interval,
                seconds,
                warmup,
            },
        ),
        Cmd::ZmstatImport {
            days,
            compare_days,
            work,
            binary,
        } => zmstat::run(
            &release_binary(binary),
            &zmstat::Options {
                days,
                compare_days,
                work,
            },
        ),
        Cmd::ObjectStore {
            instances,
            reps,
            work,
            moto,
            binary,
            corpus,
        } => objectstore::run(&objectstore::Options {
            corpus,
            binary: release_binary(binary),
            moto: moto.unwrap_or_else(|| {
                PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                    .join(".cache/carbonio-monitor/moto/bin/moto_server")
            }),
            work,
            instances,
            reps,
        }),
        Cmd::Promql {
            instances,
            cpus,
            hours,
            interval,
            reps,
            warmup,
            filter,
            work,
        } => promql::run(&promql::Options {
            instances,
            cpus,
            hours,
            interval,
            reps,
            warmup,
            filter,
            work,
        }),
    }
}

/// The given binary, or the release build (under `CARGO_TARGET_DIR` when it
/// is set): a debug build would make any comparison meaningless.
fn release_binary(given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
        target.join("release/carbonio-monitor")
    })
}

/// Results for one exporter, one row of the report.
struct Stats {
    name: String,
    p50_ms: f64,
    p99_ms: f64,
    cpu_ms_per_scrape: f64,
    max_rss_mib: f64,
    samples: usize,
    body_bytes: usize,
}

fn exporters(binary: &Path, scrapes: usize, warmup: usize, only: Option<Pair>) -> Result<()> {
    if scrapes == 0 {
        bail!("--scrapes must be at least 1");
    }
    if !binary.is_file() {
        bail!(
            "our binary {} does not exist; build with cargo build --release (or pass --binary)",
            binary.display()
        );
    }
    let tmp = tempfile::tempdir().context("creating temporary directory")?;
    let clk_tck = clock_ticks();
    // Keep-alive pooling as Prometheus does; ureq without default features
    // never asks for gzip, so both sides serialise plain text.
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build();

    let mut rows = Vec::new();
    let mut pairs = Vec::new();
    for pair in [
        Pair::Node,
        Pair::Process,
        Pair::Postgres,
        Pair::Nginx,
        Pair::Ldap,
    ] {
        if only.is_some_and(|o| o != pair) {
            continue;
        }
        if pair == Pair::Ldap {
            // No upstream LDAP exporter is packaged: compare with the direct
            // cn=Monitor search an operator would run instead.
            rows.extend(ldap_pair(
                binary,
                scrapes,
                warmup,
                tmp.path(),
                &agent,
                clk_tck,
            )?);
            pairs.push("ldap");
            continue;
        }
        let (ours_args, upstream_args): (Vec<String>, Vec<String>);
        let mut upstream_env: Vec<(&str, String)> = Vec::new();
        let mut _service = None;
        let (label, upstream_bin, package) = match pair {
            Pair::Node => ("node", UPSTREAM_NODE, "prometheus-node-exporter"),
            Pair::Process => ("process", UPSTREAM_PROCESS, "prometheus-process-exporter"),
            Pair::Postgres => (
                "postgres",
                UPSTREAM_POSTGRES,
                "prometheus-postgres-exporter",
            ),
            Pair::Nginx | Pair::Ldap => ("nginx", UPSTREAM_NGINX, "prometheus-nginx-exporter"),
        };
        let ours_port = free_port()?;
        let up_port = free_port()?;
        match pair {
            Pair::Node => {
                ours_args = vec![
                    "exporter".into(),
                    "node".into(),
                    format!("--web.listen-address=127.0.0.1:{ours_port}"),
                ];
                upstream_args = vec![format!("--web.listen-address=127.0.0.1:{up_port}")];
            }
            Pair::Process => {
                let cfg = tmp.path().join("process.yml");
                std::fs::write(&cfg, PROCESS_CONFIG)
                    .with_context(|| format!("writing {}", cfg.display()))?;
                ours_args = vec![
                    "exporter".into(),
                    "process".into(),
                    format!("--web.listen-address=127.0.0.1:{ours_port}"),
                    format!("--config.path={}", cfg.display()),
                ];
                // Upstream uses Go's single-dash flags; threads and smaps on so
                // it reports the same metric families we do.
                upstream_args = vec![
                    format!("-web.listen-address=127.0.0.1:{up_port}"),
                    format!("-config.path={}", cfg.display()),
                    "-threads=true".into(),
                    "-gather-smaps=true".into(),
                ];
            }
            Pair::Postgres => {
                let svc = services::postgres(&tmp.path().join("pg"), free_port()?)?;
                let dsn = format!(
                    "postgresql://postgres@127.0.0.1:{}/postgres?sslmode=disable",
                    svc.port
                );
                ours_args = vec![
                    "exporter".into(),
                    "postgres".into(),
                    format!("--web.listen-address=127.0.0.1:{ours_port}"),
                    format!("--data-source-name={dsn}"),
                ];
                upstream_args = vec![format!("--web.listen-address=127.0.0.1:{up_port}")];
                upstream_env.push(("DATA_SOURCE_NAME", dsn));
                _service = Some(svc);
            }
            Pair::Nginx | Pair::Ldap => {
                let svc = services::nginx(&tmp.path().join("nginx"), free_port()?)?;
                let uri = format!("http://127.0.0.1:{}/stub_status", svc.port);
                ours_args = vec![
                    "exporter".into(),
                    "nginx".into(),
                    format!("--web.listen-address=127.0.0.1:{ours_port}"),
                    format!("--nginx.scrape-uri={uri}"),
                ];
                upstream_args = vec![
                    format!("-web.listen-address=127.0.0.1:{up_port}"),
                    format!("-nginx.scrape-uri={uri}"),
                ];
                _service = Some(svc);
            }
        }

        if !Path::new(upstream_bin).is_file() {
            bail!("{upstream_bin} not found; install the Debian package {package}");
        }
        let mut ours = Exporter::start(
            format!("{label} (ours)"),
            binary,
            &ours_args,
            &[],
            ours_port,
            tmp.path(),
            "build with cargo build --release".into(),
        )?;
        let mut upstream = Exporter::start(
            format!("{label} (upstream)"),
            Path::new(upstream_bin),
            &upstream_args,
            &upstream_env,
            up_port,
            tmp.path(),
            format!("install the Debian package {package}"),
        )?;
        ours.wait_ready(&agent)?;
        upstream.wait_ready(&agent)?;

        eprintln!("{label}: warming up ({warmup} scrapes each)");
        for _ in 0..warmup {
            ours.scrape(&agent)?;
            upstream.scrape(&agent)?;
        }

        eprintln!("{label}: measuring ({scrapes} scrapes each, alternating)");
        let both = [&ours, &upstream];
        let mut lat: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
        let mut last: [(usize, usize); 2] = [(0, 0); 2];
        let mut max_rss = [0u64; 2];
        let cpu_before = [cpu_ticks(ours.pid)?, cpu_ticks(upstream.pid)?];
        for i in 0..scrapes {
            // Alternate who goes first so neither always scrapes a "warm" machine.
            let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
            for k in order {
                let t = Instant::now();
                let body = both[k].scrape(&agent)?;
                lat[k].push(t.elapsed());
                last[k] = (body.len(), count_samples(&body));
            }
            if i % RSS_SAMPLE_EVERY == 0 {
                for k in 0..2 {
                    max_rss[k] = max_rss[k].max(rss_kib(both[k].pid)?);
                }
            }
        }
        let cpu_after = [cpu_ticks(ours.pid)?, cpu_ticks(upstream.pid)?];

        let mut pair_rows = Vec::new();
        for k in 0..2 {
            max_rss[k] = max_rss[k].max(rss_kib(both[k].pid)?);
            let ticks = cpu_after[k].saturating_sub(cpu_before[k]);
            pair_rows.push(Stats {
                name: both[k].name.clone(),
                p50_ms: percentile_ms(&mut lat[k], 50.0),
                p99_ms: percentile_ms(&mut lat[k], 99.0),
                cpu_ms_per_scrape: ticks as f64 / clk_tck * 1000.0 / scrapes as f64,
                max_rss_mib: max_rss[k] as f64 / 1024.0,
                samples: last[k].1,
                body_bytes: last[k].0,
            });
        }
        // `ours` and `upstream` drop here: both children are killed before the
        // next pair starts, so pairs do not disturb each other.
        pairs.push(label);
        rows.extend(pair_rows);
    }

    report(&rows, &pairs, scrapes, clk_tck);
    Ok(())
}

/// Our LDAP exporter against `ldapsearch` of the cn=Monitor subtree (the
/// "upstream" row): the same data, read the way an operator would without us.
fn ldap_pair(
    binary: &Path,
    scrapes: usize,
    warmup: usize,
    dir: &Path,
    agent: &ureq::Agent,
    clk_tck: f64,
) -> Result<Vec<Stats>> {
    let slapd = services::slapd(&dir.join("slapd"), free_port()?)?;
    let port = free_port()?;
    let args = vec![
        "exporter".to_string(),
        "ldap".into(),
        format!("--web.listen-address=127.0.0.1:{port}"),
        format!("--ldap.addr=127.0.0.1:{}", slapd.port),
        format!("--ldap.user={}", services::LDAP_DN),
        format!("--ldap.password={}", services::LDAP_PW),
    ];
    let mut ours = Exporter::start(
        "ldap (ours)".into(),
        binary,
        &args,
        &[],
        port,
        dir,
        "build with cargo build --release".into(),
    )?;
    ours.wait_ready(agent)?;
    let search = || -> Result<String> {
        let out = Command::new("/usr/bin/ldapsearch")
            .args([
                "-x",
                "-LLL",
                "-H",
                &format!("ldap://127.0.0.1:{}/", slapd.port),
                "-D",
                services::LDAP_DN,
                "-w",
                services::LDAP_PW,
            ])
            .args([
                "-b",
                "cn=Monitor",
                "-s",
                "sub",
                "(objectClass=*)",
                "monitoredInfo",
                "monitorCounter",
                "monitorOpInitiated",
                "monitorOpCompleted",
            ])
            .output()
            .context("running ldapsearch: install the Debian package ldap-utils")?;
        if !out.status.success() {
            bail!(
                "ldapsearch failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    eprintln!("ldap: warming up ({warmup} scrapes each)");
    for _ in 0..warmup {
        ours.scrape(agent)?;
        search()?;
    }
    eprintln!("ldap: measuring ({scrapes} scrapes each, alternating)");
    let mut lat: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let mut last = [(0usize, 0usize); 2];
    let mut max_rss = 0u64;
    let cpu_before = cpu_ticks(ours.pid)?;
    let mut search_cpu = Duration::ZERO;
    for i in 0..scrapes {
        let t = Instant::now();
        let body = ours.scrape(agent)?;
        lat[0].push(t.elapsed());
        last[0] = (body.len(), count_samples(&body));
        let children_before = children_cpu();
        let t = Instant::now();
        let ldif = search()?;
        lat[1].push(t.elapsed());
        search_cpu += children_cpu().saturating_sub(children_before);
        last[1] = (
            ldif.len(),
            ldif.lines().filter(|l| l.starts_with("monitor")).count(),
        );
        if i % RSS_SAMPLE_EVERY == 0 {
            max_rss = max_rss.max(rss_kib(ours.pid)?);
        }
    }
    let ticks = cpu_ticks(ours.pid)?.saturating_sub(cpu_before);
    Ok(vec![
        Stats {
            name: "ldap (ours)".into(),
            p50_ms: percentile_ms(&mut lat[0], 50.0),
            p99_ms: percentile_ms(&mut lat[0], 99.0),
            cpu_ms_per_scrape: ticks as f64 / clk_tck * 1000.0 / scrapes as f64,
            max_rss_mib: max_rss.max(rss_kib(ours.pid)?) as f64 / 1024.0,
            samples: last[0].1,
            body_bytes: last[0].0,
        },
        Stats {
            name: "ldap (ldapsearch)".into(),
            p50_ms: percentile_ms(&mut lat[1], 50.0),
            p99_ms: percentile_ms(&mut lat[1], 99.0),
            cpu_ms_per_scrape: search_cpu.as_secs_f64() * 1000.0 / scrapes as f64,
            max_rss_mib: 0.0,
            samples: last[1].1,
            body_bytes: last[1].0,
        },
    ])
}

/// CPU time used by this process's waited-for children (ldapsearch runs).
fn children_cpu() -> Duration {
    // SAFETY: getrusage only writes into the zeroed struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Prints the table and the ours/upstream ratios. Rows come in pairs (ours, upstream).
fn report(rows: &[Stats], pairs: &[&str], scrapes: usize, clk_tck: f64) {
    println!();
    println!(
        "{scrapes} measured scrapes per exporter; CPU from /proc/PID/stat at {clk_tck} ticks/s"
    );
    println!(
        "{:<20} {:>9} {:>9} {:>12} {:>12} {:>9} {:>11}",
        "exporter", "p50 ms", "p99 ms", "CPU ms/scr", "max RSS MiB", "samples", "body bytes"
    );
    for r in rows {
        println!(
            "{:<20} {:>9.2} {:>9.2} {:>12.2} {:>12.1} {:>9} {:>11}",
            r.name, r.p50_ms, r.p99_ms, r.cpu_ms_per_scrape, r.max_rss_mib, r.samples, r.body_bytes
        );
    }
    println!();
    println!("goal: latency and CPU <= 0.33, RSS <= 0.5");
    for (label, pair) in pairs.iter().zip(rows.chunks(2)) {
        let [ours, up] = pair else { continue };
        let checks = [
            ("p50", ours.p50_ms, up.p50_ms, 0.33),
            ("p99", ours.p99_ms, up.p99_ms, 0.33),
            (
                "CPU/scrape",
                ours.cpu_ms_per_scrape,
                up.cpu_ms_per_scrape,
                0.33,
            ),
            ("RSS", ours.max_rss_mib, up.max_rss_mib, 0.5),
        ];
        let parts: Vec<String> = checks
            .iter()
            .map(|&(what, o, u, goal)| {
                // CPU can round to 0 ticks at low scrape counts; say so rather than print inf/NaN.
                if u <= 0.0 {
                    return format!("{what} n/a (upstream 0)");
                }
                let ratio = o / u;
                let verdict = if ratio <= goal { "ok" } else { "MISS" };
                format!("{what} {ratio:.2} {verdict}")
            })
            .collect();
        println!("{label:<8} ours/upstream: {}", parts.join(", "));
    }
}

/// A running exporter. Dropping it kills the child, so early returns with `?`
/// never leave exporters behind.
struct Exporter {
    name: String,
    child: Child,
    pid: u32,
    url: String,
    log: PathBuf,
    /// What to tell the user if it does not come up.
    hint: String,
}

impl Exporter {
    fn start(
        name: String,
        bin: &Path,
        args: &[String],
        env: &[(&str, String)],
        port: u16,
        dir: &Path,
        hint: String,
    ) -> Result<Self> {
        let log = dir.join(format!("{}.log", name.replace([' ', '(', ')'], "_")));
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().context("duplicating log file handle")?;
        let child = Command::new(bin)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name}: {} ({hint})", bin.display()))?;
        Ok(Exporter {
            name,
            pid: child.id(),
            child,
            url: format!("http://127.0.0.1:{port}/metrics"),
            log,
            hint,
        })
    }

    /// Polls /metrics until it answers 200, the child exits, or the timeout hits.
    fn wait_ready(&mut self, agent: &ureq::Agent) -> Result<()> {
        let start = Instant::now();
        loop {
            if self.scrape(agent).is_ok() {
                return Ok(());
            }
            // An early exit (bad flag, port taken) is reported at once rather than after the timeout.
            let exited = self
                .child
                .try_wait()
                .with_context(|| format!("checking whether {} is running", self.name))?;
            if exited.is_some() || start.elapsed() > READY_TIMEOUT {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                eprintln!("--- log of {} ---\n{log}--- end of log ---", self.name);
                let why = match exited {
                    Some(status) => format!("exited ({status}) before serving /metrics"),
                    None => format!("did not answer {} within {READY_TIMEOUT:?}", self.url),
                };
                bail!("{} {why}; {}", self.name, self.hint);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One plain-text scrape; returns the whole body.
    fn scrape(&self, agent: &ureq::Agent) -> Result<String> {
        let resp = agent
            .get(&self.url)
            .set("Accept", "text/plain")
            .call()
            .with_context(|| format!("scraping {} ({})", self.name, self.url))?;
        let mut body = String::new();
        resp.into_reader()
            .read_to_string(&mut body)
            .with_context(|| format!("reading body from {}", self.name))?;
        Ok(body)
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        // Errors here mean it is already gone; nothing useful to do about them.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago. There is a small race until the exporter
/// binds it, acceptable for a benchmark on an idle machine.
/// Sum of every sample of `name` in a text exposition, over the lines that
/// hold `label` (e.g. `listener="udp://…"`) when given.
fn metric_sum(body: &str, name: &str, label: Option<&str>) -> f64 {
    body.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
                && label.is_none_or(|want| l.contains(want))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0 to find a free port")?;
    Ok(l.local_addr().context("reading local address")?.port())
}

/// Clock ticks per second for /proc/PID/stat, via getconf to avoid a libc dependency.
fn clock_ticks() -> f64 {
    let ticks = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|&t| t > 0.0);
    ticks.unwrap_or_else(|| {
        eprintln!("warning: getconf CLK_TCK failed, assuming 100");
        100.0
    })
}

/// utime + stime of the whole process (all threads), in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // comm (field 2) may contain spaces and ')', so split after the last ')'.
    // The remainder starts at field 3, hence utime (14) is index 11, stime (15) index 12.
    let rest = stat
        .rsplit_once(')')
        .with_context(|| format!("malformed {path}"))?
        .1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("malformed {path}: field {}", i + 3))
    };
    Ok(field(11)? + field(12)?)
}

/// Resident set size in KiB from /proc/PID/status.
fn rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no VmRSS in {path}"))
}

/// Sample lines of the text exposition format: everything but comments and blanks.
fn count_samples(body: &str) -> usize {
    body.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count()
}

/// Nearest-rank percentile in milliseconds; sorts in place.
fn percentile_ms(v: &mut [Duration], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    let idx = rank.clamp(1, v.len()) - 1;
    v[idx].as_secs_f64() * 1000.0
}
