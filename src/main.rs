//! `carbonio-monitor`: one binary, thin CLI wiring the libraries together.

mod cli;
mod dashboards;

use anyhow::{anyhow, Context, Result};
use carbonio_exporters::{ldap, mesh, nginx, node, postgres, process, serve};
use clap::Parser;
use cli::{
    Cli, Command, ExporterKind, LdapArgs, MeshArgs, NginxArgs, NodeArgs, PostgresArgs, ProcessArgs,
};
use std::sync::Arc;

fn main() -> std::process::ExitCode {
    // Few malloc arenas: exporters allocate little, and per-thread arenas
    // would otherwise dominate their resident memory. Buffers up to 64 MiB
    // come from the heap and freed memory is kept up to 256 MiB: a log
    // flush allocates and frees megabytes per row group, and mapping them
    // fresh each time cost a tenth of ingest in page faults (profiled).
    // SAFETY: mallopt only tunes the allocator; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
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
        Command::Run(args) => run_all(args),
        Command::Collector(args) => run_collector(args),
        Command::Query(args) => run_query(args),
        Command::CheckConfig { file } => check_config(&file),
        Command::CheckRules { files } => check_rules(&files),
        Command::Import(cli::ImportCommand::Openmetrics { file, data }) => {
            import_openmetrics(&file, &data)
        }
        Command::Import(cli::ImportCommand::Zmstat {
            dir,
            data,
            host,
            timezone,
            watch,
        }) => import_zmstat(&dir, &data, host, timezone, watch),
        Command::Dashboards(cli::DashboardsCommand::Export { dir }) => dashboards::export(&dir),
        Command::Debug(cmd) => debug(cmd),
    }
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
/// Offline rule evaluation over a data directory (rule results are
/// written into it), printing the alerts after each step.
fn eval_rules(
    data: &std::path::Path,
    rules: &std::path::Path,
    start: i64,
    end: i64,
    interval: std::time::Duration,
) -> Result<()> {
    use carbonio_query::rules::{Env, GroupState, RuleKind};
    let groups = carbonio_query::rules::file::load(rules)?;
    let (store, _) = carbonio_collector::store::Store::open(data)?;
    let store = Arc::new(store);
    let env = Env {
        engine: carbonio_query::promql::Engine::default(),
        reader: store.clone(),
        sink: store.clone(),
        logs: None,
        notify: Vec::new(),
        external_labels: Default::default(),
        external_url: String::new(),
        default_interval: interval,
        resend_delay: std::time::Duration::from_secs(60),
        outage_tolerance: std::time::Duration::from_secs(3600),
        grace_period: std::time::Duration::from_secs(600),
    };
    let mut groups: Vec<GroupState> = groups
        .into_iter()
        .map(|g| GroupState::new(g, interval))
        .collect();
    let step = (interval.as_millis() as i64).max(1);
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let mut t = start * 1000;
    while t <= end * 1000 {
        let mut alerts = Vec::new();
        for g in &mut groups {
            g.eval(t, &env);
            for r in &g.rules {
                if let RuleKind::Alerting(a) = &r.kind {
                    for x in a.pending_or_firing() {
                        alerts.push(serde_json::json!({
                            "labels": x.labels,
                            "annotations": x.annotations,
                            "state": x.state.as_str(),
                        }));
                    }
                }
                if !r.last_error.is_empty() {
                    tracing::warn!(t, error = %r.last_error, "rule failed");
                }
            }
        }
        writeln!(
            out,
            "{}",
            serde_json::json!({"t": t / 1000, "alerts": alerts})
        )?;
        t += step;
    }
    Ok(())
}

/// Checks each file and says what it found, as promtool does; fails if any is bad.
fn check_rules(files: &[std::path::PathBuf]) -> Result<()> {
    let mut failed = 0;
    for f in files {
        println!("Checking {}", f.display());
        match carbonio_query::rules::file::load(f) {
            Ok(groups) => {
                let n: usize = groups.iter().map(|g| g.rules.len()).sum();
                println!("  SUCCESS: {n} rules found");
            }
            Err(e) => {
                failed += 1;
                eprintln!("  FAILED:\n{e}");
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} rule files failed the check", files.len());
    }
    Ok(())
}

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
        DebugCommand::HeadDump { data, values } => {
            use carbonio_collector::store::MetricRead;
            let snapshot = carbonio_collector::store::Snapshot::open(&data)?;
            let report = snapshot.report.clone();
            let mut out = std::io::stdout().lock();
            let all = [carbonio_collector::store::head::Matcher::NotEqual(
                "__name__".into(),
                String::new(),
            )];
            for (labels, samples) in snapshot.select(&all, i64::MIN, i64::MAX)? {
                let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                let last = if values {
                    let all: Vec<String> =
                        samples.iter().map(|(t, v)| format!("{t}:{v}")).collect();
                    all.join(" ")
                } else {
                    samples
                        .last()
                        .map(|(t, v)| format!("{t} {v}"))
                        .unwrap_or_default()
                };
                writeln!(out, "{{{}}} {} {last}", l.join(","), samples.len())?;
            }
            writeln!(
                out,
                "# {} records, {} damaged segments, {} orphan samples, {} raw samples",
                report.wal.records,
                report.wal.damaged.len(),
                report.orphan_samples,
                snapshot.raw_sample_count()?
            )?;
            Ok(())
        }
        DebugCommand::EvalRules {
            data,
            rules,
            start,
            end,
            interval,
        } => eval_rules(&data, &rules, start, end, interval),
        DebugCommand::LogsDump { data } => {
            use carbonio_collector::store::logs::{from_batch, LogSnapshot};
            let snapshot = LogSnapshot::open(&data.join("logs"))?;
            let mut out = std::io::stdout().lock();
            for batch in snapshot.scan(i64::MIN, i64::MAX)? {
                for r in from_batch(&batch) {
                    let line = serde_json::json!({
                        "timestamp": r.timestamp_ns,
                        "received": r.received_ns,
                        "host": r.host,
                        "app": r.app,
                        "procid": r.procid,
                        "msgid": r.msgid,
                        "facility": r.facility,
                        "severity": r.severity,
                        "message": r.message,
                        "structured_data": r.structured_data,
                        "source": r.source,
                    });
                    writeln!(out, "{line}")?;
                }
            }
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

/// The embedded default's configuration, written to DATA/config.yml on
/// first start so the operator can edit it.
const DEFAULT_CONFIG: &str = concat!(
    "\
# Carbonio Monitoring: written on first start of `carbonio-monitor run`.
global:
  scrape_interval: 15s
  evaluation_interval: 1m
scrape_configs:
  - job_name: carbonio-monitor
    static_configs:
      - targets: ['{listen}']
syslog:
  listeners:
    - protocol: udp
      address: 127.0.0.1:1514
    - protocol: tcp
      address: 127.0.0.1:1514
",
    include_str!("../deploy/examples/log-metrics.yml")
);

/// Query limits and users from the config file's `query:` and `auth:` sections.
fn query_setup(
    config: &carbonio_collector::config::Config,
    data: &std::path::Path,
) -> Result<(
    carbonio_query::promql::Engine,
    Arc<carbonio_query::auth::Auth>,
)> {
    use carbonio_query::auth::{Auth, Token, User};
    let q = &config.query;
    let engine = carbonio_query::promql::Engine::new(carbonio_query::promql::EngineOptions {
        lookback_delta_ms: q.lookback_delta.0.as_millis() as i64,
        default_step_ms: config.global.evaluation_interval.0.as_millis() as i64,
        max_samples: q.max_samples,
        timeout: q.timeout.0,
    });
    let users = config
        .auth
        .users
        .iter()
        .map(|u| User {
            username: u.username.clone(),
            password_hash: u.password_hash.clone(),
            role: u.role,
        })
        .collect();
    let tokens = config
        .auth
        .tokens
        .iter()
        .map(|t| Token {
            name: t.name.clone(),
            sha256: t.sha256.clone(),
            role: t.role,
        })
        .collect();
    let admin_password = std::env::var("CARBONIO_MONITOR_ADMIN_PASSWORD").ok();
    let (mut auth, boot) = Auth::load(data, users, tokens, admin_password.as_deref())?;
    auth.sessions
        .set_idle_timeout(config.auth.session_idle_timeout.0);
    if let Some(ldap) = &config.auth.ldap {
        auth.ldap = Some(carbonio_query::auth::ldap::LdapLogin::new(ldap.clone())?);
    }
    if let Some(p) = boot.generated_password {
        // Printed once, on the terminal only: the data directory keeps the hash.
        println!(
            "Created user \"admin\" with password: {p}\n(stored hashed in {}; set CARBONIO_MONITOR_ADMIN_PASSWORD to choose it)",
            data.join("users.json").display()
        );
    }
    Ok((engine, Arc::new(auth)))
}

fn run_query(args: cli::QueryArgs) -> Result<()> {
    use carbonio_query::api;
    let (config, text) = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            (carbonio_collector::config::Config::load(path)?.0, text)
        }
        None => (
            serde_yaml_ng::from_str("{}").context("default configuration")?,
            String::new(),
        ),
    };
    let (engine, auth) = query_setup(&config, &args.data)?;
    // Blocks the collector moved to object storage are read from there.
    carbonio_collector::store::tier::install_configured(
        config.storage.object_store.as_ref(),
        &args.data,
    )?;
    type Metrics = Arc<dyn carbonio_collector::store::MetricRead + Send + Sync>;
    type Logs = Arc<dyn carbonio_query::logs_table::LogSource>;
    let (metrics, logs): (Metrics, Logs) = match &config.fleet {
        // Several collectors: their bucket prefixes and their heads.
        Some(fleet) => {
            let f = carbonio_query::fleet::Fleet::start(fleet, &args.data)?;
            tracing::info!(
                collectors = fleet.collectors.len(),
                "serving a fleet of collectors"
            );
            (f.clone(), f)
        }
        None => (
            carbonio_query::source::RefreshingSnapshot::open(
                args.data.clone(),
                args.refresh_interval,
            )?,
            carbonio_query::source::RefreshingLogs::open(
                args.data.join("logs"),
                args.refresh_interval,
            )?,
        ),
    };
    let log_api = log_api(&config, logs, metrics.clone());
    let svc = api::QueryService::new(metrics, engine, config.query.max_concurrency, text);
    let tls = web_tls(args.web_config.as_deref())?;
    let app = api::protect(
        api::router(svc.clone())
            .merge(api::standalone_routes(svc))
            .merge(api::logs::routes(log_api))
            .merge(api::health_routes())
            .merge(ui_routes(&auth, tls.is_some())?),
        auth,
    );
    serve_api(&args.listen, app, tls)
}

/// The web UI with the built-in dashboards.
fn ui_routes(auth: &Arc<carbonio_query::auth::Auth>, secure_cookies: bool) -> Result<axum::Router> {
    let dashboards = dashboards::DASHBOARDS
        .iter()
        .map(|(name, text)| serde_json::from_str(text).with_context(|| format!("dashboard {name}")))
        .collect::<Result<Vec<_>>>()?;
    Ok(carbonio_query::ui::routes(Arc::new(
        carbonio_query::ui::Ui {
            auth: auth.clone(),
            dashboards,
            secure_cookies,
        },
    )))
}

/// TLS settings from an exporter-toolkit web config file, if it has them.
fn web_tls(path: Option<&std::path::Path>) -> Result<Option<Arc<rustls::ServerConfig>>> {
    let Some(path) = path else { return Ok(None) };
    let web = carbonio_exporters::webconfig::WebConfig::load(path)?;
    Ok(web.rustls_config(path)?)
}

/// Log search and SQL over `logs` and the metrics, with the query limits.
fn log_api(
    config: &carbonio_collector::config::Config,
    logs: Arc<dyn carbonio_query::logs_table::LogSource>,
    metrics: Arc<dyn carbonio_collector::store::MetricRead + Send + Sync>,
) -> Arc<carbonio_query::api::logs::LogApi> {
    use carbonio_query::logs::search::{Limits, LogSearch};
    let q = &config.query;
    Arc::new(carbonio_query::api::logs::LogApi {
        search: LogSearch::new(
            logs.clone(),
            Limits {
                timeout: q.timeout.0,
                memory_bytes: q.max_memory_bytes,
            },
        ),
        sql: carbonio_query::sql::Sql::new(logs, metrics, q.timeout.0, q.max_memory_bytes),
    })
}

/// Serves `app` until SIGTERM or Ctrl-C.
fn serve_api(
    listen: &str,
    app: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Result<()> {
    let rt = runtime()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        tracing::info!(address = %listen, tls = tls.is_some(), "query API listening");
        tokio::select! {
            r = serve_http(listener, app, tls) => r,
            _ = shutdown_signal() => Ok(()),
        }
    })
}

/// Plain HTTP, or TLS when configured.
async fn serve_http(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Result<()> {
    match tls {
        Some(cfg) => {
            carbonio_exporters::serve::serve_tls(listener, app, cfg).await;
            Ok(())
        }
        None => axum::serve(listener, app)
            .await
            .context("HTTP listener failed"),
    }
}

/// Collector and query service in one process.
fn run_all(args: cli::RunArgs) -> Result<()> {
    use carbonio_collector::service::{Collector, Options};
    use carbonio_query::api;
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("creating {}", args.data.display()))?;
    let config_path = match &args.config {
        Some(p) => p.clone(),
        None => {
            let p = args.data.join("config.yml");
            if !p.exists() {
                std::fs::write(&p, DEFAULT_CONFIG.replace("{listen}", &args.listen))
                    .with_context(|| format!("writing {}", p.display()))?;
                tracing::info!(path = %p.display(), "wrote the default configuration");
            }
            p
        }
    };
    let (config, _) = carbonio_collector::config::Config::load(&config_path)?;
    let (engine, auth) = query_setup(&config, &args.data)?;
    let (collector, report) = Collector::start(Options {
        config: config_path.clone(),
        data: args.data.clone(),
        flush_interval: args.storage.flush_interval,
        retention_time: args.storage.retention_time,
        retention_size: args.storage.retention_size,
        logs_flush_interval: args.storage.logs_flush_interval,
    })?;
    tracing::info!(
        records = report.wal.records,
        series = collector.store().with_head(|h| h.series_count()),
        "WAL replayed"
    );
    for addr in collector.syslog_addresses() {
        tracing::info!(address = %addr, "syslog listening");
    }
    let metrics: Arc<dyn carbonio_collector::store::MetricRead + Send + Sync> =
        collector.store().clone();
    let log_api = log_api(&config, collector.logs().clone(), metrics.clone());
    let rt = runtime()?;
    let rules = start_rules(
        &config,
        &config_path,
        &args,
        &collector,
        engine.clone(),
        &rt,
    )?;
    {
        let (path, rules) = (config_path.clone(), rules.clone());
        collector.on_reload(Box::new(move |config| reload_rules(config, &path, &rules)));
    }
    let svc = api::QueryService::new(
        metrics,
        engine,
        config.query.max_concurrency,
        collector.config_text(),
    );
    let tls = web_tls(args.web_config.as_deref())?;
    let app = api::protect(
        api::router(svc)
            .merge(api::logs::routes(log_api))
            .merge(api::rules::routes(rules.clone()))
            .merge(carbonio_collector::http::router(
                collector.clone(),
                args.enable_lifecycle,
                true, // behind api::protect
            ))
            .merge(ui_routes(&auth, tls.is_some())?),
        auth,
    );
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(&args.listen))
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(address = %args.listen, tls = tls.is_some(), "API and web UI listening");
    rt.spawn(async move {
        if let Err(e) = serve_http(listener, app, tls).await {
            tracing::error!(error = %e, "HTTP listener failed");
        }
    });
    let (tx, rx) = std::sync::mpsc::channel::<Option<&'static str>>();
    spawn_signal_events(&rt, tx.clone())?;
    let stop_watch = Arc::new(std::sync::atomic::AtomicBool::new(false));
    watch_file(&config_path, tx, stop_watch.clone());
    while let Ok(Some(reason)) = rx.recv() {
        let _ = collector.reload(reason);
    }
    stop_watch.store(true, std::sync::atomic::Ordering::Relaxed);
    rules.stop();
    collector.shutdown();
    Ok(())
}

/// Reloads the rule files `config` (just loaded by the collector's reload)
/// names; on any error the running rules stay. Notifier settings
/// (`alerting:`) need a restart.
fn reload_rules(
    config: &carbonio_collector::config::Config,
    config_path: &std::path::Path,
    rules: &carbonio_query::rules::Manager,
) {
    let base = config_path.parent().unwrap_or(std::path::Path::new("."));
    match carbonio_query::rules::file::load_patterns(base, &config.rule_files) {
        Ok(groups) => rules.reload(groups),
        Err(e) => tracing::error!(error = %e, "rules not reloaded"),
    }
}

/// Loads `rule_files` (relative to the configuration file) and starts
/// their evaluation, notifying the configured Alertmanagers and webhooks.
fn start_rules(
    config: &carbonio_collector::config::Config,
    config_path: &std::path::Path,
    args: &cli::RunArgs,
    collector: &Arc<carbonio_collector::service::Collector>,
    engine: carbonio_query::promql::Engine,
    rt: &tokio::runtime::Runtime,
) -> Result<Arc<carbonio_query::rules::Manager>> {
    use carbonio_query::logs::search::{Limits, LogSearch};
    use carbonio_query::rules::{self, notify::Alertmanagers, webhook::Webhooks, Notify};
    let base = config_path.parent().unwrap_or(std::path::Path::new("."));
    let groups = rules::file::load_patterns(base, &config.rule_files)?;
    let external_labels = config.global.external_labels.clone();
    let external_url = format!("http://{}", args.listen);
    let a = &config.alerting;
    let mut notify: Vec<Arc<dyn Notify>> = Vec::new();
    if !a.alertmanagers.is_empty() {
        notify.push(Arc::new(Alertmanagers::start(
            &a.alertmanagers,
            external_labels.clone(),
        )?));
    }
    if !a.webhooks.is_empty() {
        notify.push(Arc::new(Webhooks::start(
            &a.webhooks,
            &args.data.join("alerting"),
            external_url.clone(),
            external_labels.clone(),
        )?));
    }
    let search = LogSearch::new(
        collector.logs().clone(),
        Limits {
            timeout: config.query.timeout.0,
            memory_bytes: config.query.max_memory_bytes,
        },
    );
    let env = rules::Env {
        engine,
        reader: collector.store().clone(),
        sink: collector.store().clone(),
        logs: Some(Arc::new(rules::SearchCounter {
            search,
            runtime: rt.handle().clone(),
        })),
        notify,
        external_labels,
        external_url,
        default_interval: config.global.evaluation_interval.0,
        resend_delay: a.resend_delay.0,
        outage_tolerance: a.for_outage_tolerance.0,
        grace_period: a.for_grace_period.0,
    };
    let count: usize = groups.iter().map(|g| g.rules.len()).sum();
    if count > 0 {
        tracing::info!(
            groups = groups.len(),
            rules = count,
            "rule evaluation started"
        );
    }
    Ok(Arc::new(rules::Manager::start(groups, Arc::new(env))))
}

fn run_collector(args: cli::CollectorArgs) -> Result<()> {
    use carbonio_collector::service::{Collector, Options};
    let (collector, report) = Collector::start(Options {
        config: args.config.clone(),
        data: args.data.clone(),
        flush_interval: args.storage.flush_interval,
        retention_time: args.storage.retention_time,
        retention_size: args.storage.retention_size,
        logs_flush_interval: args.storage.logs_flush_interval,
    })?;
    for addr in collector.syslog_addresses() {
        tracing::info!(address = %addr, "syslog listening");
    }
    tracing::info!(
        records = report.wal.records,
        damaged_segments = report.wal.damaged.len(),
        damaged_blocks = report.damaged_blocks.len(),
        series = collector.store().with_head(|h| h.series_count()),
        "WAL replayed"
    );
    let rt = runtime()?;
    let (tx, rx) = std::sync::mpsc::channel::<Option<&'static str>>();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(&args.listen))
        .with_context(|| format!("listening on {}", args.listen))?;
    let web = match &args.web_config {
        Some(path) => carbonio_exporters::webconfig::WebConfig::load(path)?,
        None => Default::default(),
    };
    let tls = web_tls(args.web_config.as_deref())?;
    tracing::info!(address = %args.listen, tls = tls.is_some(), basic_auth = !web.basic_auth_users.is_empty(), "collector listening");
    let app = carbonio_exporters::serve::protect(
        carbonio_collector::http::router(
            collector.clone(),
            args.enable_lifecycle,
            !web.basic_auth_users.is_empty(),
        ),
        &web,
    );
    rt.spawn(async move {
        if let Err(e) = serve_http(listener, app, tls).await {
            tracing::error!(error = %e, "HTTP listener failed");
        }
    });
    spawn_signal_events(&rt, tx.clone())?;
    let stop_watch = Arc::new(std::sync::atomic::AtomicBool::new(false));
    watch_file(&args.config, tx, stop_watch.clone());
    tracing::info!(targets = collector.targets().len(), "collector started");
    while let Ok(Some(reason)) = rx.recv() {
        // Errors are logged and counted by reload; the running configuration stays.
        let _ = collector.reload(reason);
    }
    stop_watch.store(true, std::sync::atomic::Ordering::Relaxed);
    collector.shutdown();
    Ok(())
}

/// Sends `Some("SIGHUP")` on each SIGHUP and `None` on SIGTERM or Ctrl-C.
fn spawn_signal_events(
    rt: &tokio::runtime::Runtime,
    tx: std::sync::mpsc::Sender<Option<&'static str>>,
) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
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
    rt.spawn(async move {
        shutdown_signal().await;
        let _ = tx.send(None);
    });
    Ok(())
}

/// Sends a reload request when the file changes. Polled: cheap, and it also
/// sees edits made through a symlink swap.
fn watch_file(
    path: &std::path::Path,
    tx: std::sync::mpsc::Sender<Option<&'static str>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let path = path.to_path_buf();
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
}

fn import_zmstat(
    dir: &std::path::Path,
    data: &std::path::Path,
    host: Option<String>,
    timezone: Option<String>,
    watch: bool,
) -> Result<()> {
    use carbonio_collector::zmstat::import::{self, Importer, Target};
    let host = match host {
        Some(h) => h,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .context("reading this machine's name; give --host")?
            .trim()
            .to_string(),
    };
    let zone = timezone.unwrap_or_else(local_zone_name);
    let tz = carbonio_collector::config::parse_timezone(&zone).map_err(|e| anyhow!(e))?;
    let (store, _) = carbonio_collector::store::Store::open(data)?;
    let target = if watch { Target::Head } else { Target::Blocks };
    let mut importer = Importer::new(&store, data, &host, tz, target)?;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} files {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = std::time::Instant::now();
    import::import_dir(&mut importer, dir, |done, all| {
        bar.set_length(all as u64);
        bar.set_position(done as u64);
    })
    .with_context(|| format!("importing {}", dir.display()))?;
    bar.finish_and_clear();
    print_zmstat_report(importer.report(), &host, &zone, started.elapsed());
    if watch {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let rt = runtime()?;
        let flag = stop.clone();
        rt.spawn(async move {
            shutdown_signal().await;
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        println!("following {} (Ctrl-C to stop)", dir.display());
        import::watch(&mut importer, dir, std::time::Duration::from_secs(2), &stop)?;
        store.flush()?;
        print_zmstat_report(importer.report(), &host, &zone, started.elapsed());
    }
    Ok(())
}

fn print_zmstat_report(
    r: &carbonio_collector::zmstat::import::Report,
    host: &str,
    zone: &str,
    took: std::time::Duration,
) {
    println!(
        "host {host}, timezone {zone}: {} files, {} rows imported ({} samples, {} series, {} blocks) in {:.1} s ({:.0} rows/s); {} rows skipped",
        r.files,
        r.rows,
        r.samples,
        r.series,
        r.blocks,
        took.as_secs_f64(),
        r.rows as f64 / took.as_secs_f64().max(1e-9),
        r.skipped_rows()
    );
    for (skip, n) in &r.skipped {
        println!("  skipped {n} rows: {}", skip.reason());
    }
    if r.empty_cells + r.bad_cells > 0 {
        println!(
            "  {} empty cells, {} non-numeric cells left out",
            r.empty_cells, r.bad_cells
        );
    }
}

/// This machine's zone name: TZ, then /etc/timezone, then UTC.
fn local_zone_name() -> String {
    std::env::var("TZ")
        .ok()
        .map(|z| z.trim_start_matches(':').to_string())
        .filter(|z| !z.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/timezone")
                .ok()
                .map(|z| z.trim().to_string())
        })
        .filter(|z| !z.is_empty())
        .unwrap_or_else(|| "UTC".to_string())
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
