//! `carbonio-monitor`: one binary, thin CLI wiring the libraries together.

mod cli;

use anyhow::{Context, Result};
use carbonio_exporters::{ldap, mesh, nginx, node, postgres, process, serve};
use clap::Parser;
use cli::{
    Cli, Command, ExporterKind, LdapArgs, MeshArgs, NginxArgs, NodeArgs, PostgresArgs, ProcessArgs,
};
use std::sync::Arc;

fn main() -> std::process::ExitCode {
    // Few malloc arenas: exporters allocate little, and per-thread arenas
    // would otherwise dominate their resident memory.
    // SAFETY: mallopt only tunes the allocator; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    let cli = Cli::parse_from(cli::normalize_args(std::env::args_os()));
    init_tracing(&cli.log_level);
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("carbonio-monitor: {}", error_chain(&e));
            std::process::ExitCode::from(1)
        }
    }
}

/// The error and its causes, leaving out causes already quoted by the message above them.
fn error_chain(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if msg.contains(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg
}

fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Exporter { kind } => match kind {
            ExporterKind::Node(args) => run_node(*args),
            ExporterKind::Process(args) => run_process(args),
            ExporterKind::Nginx(args) => run_nginx(args),
            ExporterKind::Mesh(args) => run_mesh(args),
            ExporterKind::Ldap(args) => run_ldap(args),
            ExporterKind::Postgres(args) => run_postgres(args),
        },
        Command::Run => not_built("run (collector + query + UI in one process)", 4),
        Command::Collector {
            config,
            data,
            flush_interval,
            retention_time,
            retention_size,
        } => run_collector(
            &config,
            &data,
            StorageOptions {
                flush_interval,
                retention_time,
                retention_size,
            },
        ),
        Command::Query => not_built("query", 6),
        Command::CheckConfig { file } => check_config(&file),
        Command::CheckRules { .. } => not_built("check-rules", 7),
        Command::Import(cli::ImportCommand::Openmetrics { file, data }) => {
            import_openmetrics(&file, &data)
        }
        Command::Import(cli::ImportCommand::Zmstat) => not_built("import zmstat", 10),
        Command::Dashboards => not_built("dashboards export", 8),
        Command::Debug(cmd) => debug(cmd),
    }
}

fn not_built(what: &str, issue: u32) -> Result<()> {
    Err(carbonio_collector::NotBuilt {
        what: what.to_string(),
        issue,
    }
    .into())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Builds the exporter inside the runtime (database pools need it), then serves it.
fn serve_exporter<E: carbonio_exporters::Exporter>(
    build: impl FnOnce() -> Result<E>,
    web: cli::WebArgs,
) -> Result<()> {
    let rt = runtime()?;
    let exporter: Arc<dyn carbonio_exporters::Exporter> = {
        let _entered = rt.enter();
        Arc::new(build()?)
    };
    let opts = serve::ServeOptions {
        listen_address: cli::listen_address(&web.listen_address),
        telemetry_path: web.telemetry_path,
        web_config_file: web.config_file,
    };
    rt.block_on(async {
        tokio::select! {
            r = serve::serve(exporter, opts) => r.context("exporter stopped"),
            _ = shutdown_signal() => Ok(()),
        }
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn run_node(args: NodeArgs) -> Result<()> {
    let config = args.to_config()?;
    tracing::info!(collectors = ?config.enabled, "starting node exporter");
    serve_exporter(|| Ok(node::NodeExporter::new(config)), args.web)
}

fn run_process(args: ProcessArgs) -> Result<()> {
    let config = match &args.config_path {
        Some(path) => process::config::Config::load(path)?,
        None => process::config::Config::carbonio_default()?,
    };
    let opts = process::ProcessOptions {
        proc_root: args.procfs.clone(),
        config,
        children: args.children,
        threads: args.threads,
        gather_smaps: args.gather_smaps,
    };
    serve_exporter(|| Ok(process::ProcessExporter::new(opts)), args.web)
}

fn run_nginx(args: NginxArgs) -> Result<()> {
    let opts = nginx::NginxOptions {
        scrape_uri: args.scrape_uri,
        timeout: args.timeout,
        access_log: args.access_log,
    };
    serve_exporter(|| Ok(nginx::NginxExporter::new(opts)), args.web)
}

fn run_mesh(args: MeshArgs) -> Result<()> {
    let opts = mesh::MeshOptions {
        server: args.server_url(),
        token: args.token()?,
        ca_file: args.ca_file.clone(),
        timeout: args.timeout,
        health_summary: args.health_summary,
        allow_stale: args.allow_stale,
    };
    serve_exporter(|| Ok(mesh::MeshExporter::new(opts)?), args.web)
}

fn run_ldap(args: LdapArgs) -> Result<()> {
    let opts = ldap::LdapOptions {
        url: cli::ldap_url(&args.addr),
        consumers: args.consumers.iter().map(|c| cli::ldap_url(c)).collect(),
        bind_dn: args.user.clone(),
        password: args.password()?,
        starttls: args.starttls,
        ca_file: args.ca_file.clone(),
        timeout: args.timeout,
        replication_objects: args.replication_objects.clone(),
    };
    serve_exporter(|| Ok(ldap::LdapExporter::new(opts)?), args.web)
}

fn run_postgres(args: PostgresArgs) -> Result<()> {
    let opts = postgres::PostgresOptions {
        dsns: args
            .dsns
            .iter()
            .map(|d| d.trim().to_string())
            .filter(|d| !d.is_empty())
            .collect(),
        timeout: args.timeout,
        user_tables_databases: args.user_tables_databases.clone(),
    };
    serve_exporter(|| Ok(postgres::PostgresExporter::new(opts)?), args.web)
}

/// Like `promtool check config`: parse, validate, and check referenced files exist.
fn check_config(file: &std::path::Path) -> Result<()> {
    println!("Checking {}", file.display());
    let (_, jobs) = carbonio_collector::config::Config::load(file)?;
    for job in &jobs {
        let c = &job.config;
        let files = c
            .basic_auth
            .iter()
            .filter_map(|b| b.password_file.as_ref())
            .chain(
                c.authorization
                    .iter()
                    .filter_map(|a| a.credentials_file.as_ref()),
            )
            .chain(
                c.tls_config
                    .iter()
                    .flat_map(|t| [&t.ca_file, &t.cert_file, &t.key_file])
                    .flatten(),
            );
        for f in files {
            if !f.exists() {
                anyhow::bail!("job {:?}: file {} does not exist", c.job_name, f.display());
            }
        }
    }
    println!(
        "  SUCCESS: {} is valid configuration ({} scrape jobs)",
        file.display(),
        jobs.len()
    );
    Ok(())
}

fn debug(cmd: cli::DebugCommand) -> Result<()> {
    use carbonio_collector::store::wal::{Wal, DEFAULT_SEGMENT_SIZE};
    use cli::DebugCommand;
    use std::io::Write;
    match cmd {
        DebugCommand::WalWrite { dir, start, count } => {
            let (wal, _) = Wal::open(&dir, 1 << 20, |_| {})?;
            let mut out = std::io::stdout().lock();
            for n in start..start + count {
                wal.append(&[format!("id:{n}").as_bytes()])?;
                writeln!(out, "ack {n}")?;
                out.flush()?;
            }
            Ok(())
        }
        DebugCommand::HeadDump { data } => {
            let snapshot = carbonio_collector::store::Snapshot::open(&data)?;
            let report = snapshot.report.clone();
            let mut out = std::io::stdout().lock();
            let all = [carbonio_collector::store::head::Matcher::NotEqual(
                "__name__".into(),
                String::new(),
            )];
            for (labels, samples) in snapshot.select(&all, i64::MIN, i64::MAX)? {
                let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                let last = samples
                    .last()
                    .map(|(t, v)| format!("{t} {v}"))
                    .unwrap_or_default();
                writeln!(out, "{{{}}} {} {last}", l.join(","), samples.len())?;
            }
            writeln!(
                out,
                "# {} records, {} damaged segments, {} orphan samples",
                report.wal.records,
                report.wal.damaged.len(),
                report.orphan_samples
            )?;
            Ok(())
        }
        DebugCommand::WalRead { dir } => {
            let mut out = std::io::stdout().lock();
            let mut err = None;
            let (_, report) = Wal::open(&dir, DEFAULT_SEGMENT_SIZE, |r| {
                if let Err(e) = out.write_all(r).and_then(|_| out.write_all(b"\n")) {
                    err = Some(e);
                }
            })?;
            if let Some(e) = err {
                return Err(e.into());
            }
            writeln!(
                out,
                "# {} records in {} segments, {} damaged",
                report.records,
                report.segments,
                report.damaged.len()
            )?;
            Ok(())
        }
    }
}

/// Storage settings of the collector role.
struct StorageOptions {
    flush_interval: std::time::Duration,
    retention_time: std::time::Duration,
    retention_size: u64,
}

fn run_collector(
    config: &std::path::Path,
    data: &std::path::Path,
    storage: StorageOptions,
) -> Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let (_, jobs) = carbonio_collector::config::Config::load(config)?;
    let (store, report) = carbonio_collector::store::Store::open(data)?;
    tracing::info!(
        records = report.wal.records,
        damaged_segments = report.wal.damaged.len(),
        series = store.with_head(|h| h.series_count()),
        "WAL replayed"
    );
    let store = Arc::new(store);
    let stop_all = Arc::new(AtomicBool::new(false));
    let maintenance = {
        let (store, stop) = (store.clone(), stop_all.clone());
        std::thread::spawn(move || {
            let mut last = std::time::Instant::now();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(100));
                if last.elapsed() < storage.flush_interval {
                    continue;
                }
                last = std::time::Instant::now();
                maintain(&store, &storage);
            }
        })
    };
    let events = control_events(config, stop_all.clone())?;
    let mut generation = Generation::start(&jobs, &store);
    tracing::info!(targets = generation.handles.len(), "collector started");
    while let Ok(event) = events.rx.recv() {
        let Some(why) = event else { break };
        // A bad new configuration is rejected; the running one stays.
        match carbonio_collector::config::Config::load(config) {
            Ok((_, jobs)) => {
                // The old scrape loops finish their scrape in flight before the new ones start.
                generation.stop();
                generation = Generation::start(&jobs, &store);
                tracing::info!(
                    reason = why,
                    targets = generation.handles.len(),
                    "configuration reloaded"
                );
            }
            Err(e) => {
                tracing::error!(reason = why, error = %error_chain(&e.into()), "configuration reload rejected; keeping the running configuration")
            }
        }
    }
    generation.stop();
    stop_all.store(true, Ordering::Relaxed);
    let _ = maintenance.join();
    drop(events);
    Ok(())
}

/// The scrape loops of one configuration.
struct Generation {
    stop: Arc<std::sync::atomic::AtomicBool>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl Generation {
    fn start(
        jobs: &[carbonio_collector::config::Job],
        store: &Arc<carbonio_collector::store::Store>,
    ) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let handles = carbonio_collector::runner::start(jobs, store.clone(), stop.clone());
        Generation { stop, handles }
    }

    fn stop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// Reload requests (`Some(reason)`: SIGHUP, file changed) and the shutdown (`None`).
struct ControlEvents {
    rx: std::sync::mpsc::Receiver<Option<&'static str>>,
    _runtime: tokio::runtime::Runtime,
}

fn control_events(
    config: &std::path::Path,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Result<ControlEvents> {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = std::sync::mpsc::channel();
    let rt = runtime()?;
    let mut hup = {
        let _entered = rt.enter();
        signal(SignalKind::hangup()).context("listening for SIGHUP")?
    };
    let hup_tx = tx.clone();
    rt.spawn(async move {
        while hup.recv().await.is_some() {
            if hup_tx.send(Some("SIGHUP")).is_err() {
                break;
            }
        }
    });
    let shutdown_tx = tx.clone();
    rt.spawn(async move {
        shutdown_signal().await;
        let _ = shutdown_tx.send(None);
    });
    // The file is polled: cheap, and it also sees edits made through a symlink swap.
    let path = config.to_path_buf();
    std::thread::spawn(move || {
        let stamp = |p: &std::path::Path| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.modified().ok(), m.len()))
        };
        let mut last = stamp(&path);
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            std::thread::sleep(std::time::Duration::from_millis(500));
            let now = stamp(&path);
            if now != last {
                last = now;
                if tx.send(Some("configuration file changed")).is_err() {
                    break;
                }
            }
        }
    });
    Ok(ControlEvents { rx, _runtime: rt })
}

/// Flush the head to a block, merge small blocks up to a day, apply retention.
fn maintain(store: &carbonio_collector::store::Store, storage: &StorageOptions) {
    match store.flush() {
        Ok(Some(meta)) => tracing::info!(
            samples = meta.samples,
            series = meta.series,
            bytes_per_sample = meta.bytes_per_sample(),
            "head flushed to a block"
        ),
        Ok(None) => {}
        Err(e) => tracing::error!(error = %e, "flushing the head failed; data stays in the WAL"),
    }
    if let Err(e) = store.compact(24 * 3600 * 1000) {
        tracing::error!(error = %e, "compaction failed");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let max_age = storage.retention_time.as_millis() as i64;
    if let Err(e) = store.apply_retention(now, max_age, storage.retention_size) {
        tracing::error!(error = %e, "retention failed");
    }
}

fn import_openmetrics(file: &std::path::Path, data: &std::path::Path) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let (store, _) = carbonio_collector::store::Store::open(data)?;
    let bar = indicatif::ProgressBar::new(text.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let report = carbonio_collector::import::import_openmetrics(&store, &text, |n| {
        bar.set_position(n as u64)
    })
    .with_context(|| format!("importing {}", file.display()))?;
    bar.finish_and_clear();
    let bytes: u64 = report.blocks.iter().map(|b| b.bytes).sum();
    println!(
        "imported {} samples of {} series into {} blocks ({:.2} bytes per sample)",
        report.samples,
        report.series,
        report.blocks.len(),
        bytes as f64 / report.samples.max(1) as f64
    );
    Ok(())
}
