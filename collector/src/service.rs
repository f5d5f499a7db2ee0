//! The collector role as one object: the store, the scrape manager of the
//! running configuration, reloads (a bad configuration is rejected and the
//! running one kept), and storage maintenance (flush, compaction, retention).

use crate::config::{Config, ConfigError};
use crate::manager::{self, Manager, Shared, StateStash, TargetStatus};
use crate::selfmetrics::Stats;
use crate::store::logs::{LogStore, LogStoreError};
use crate::store::{OpenReport, Store, StoreError};
use crate::syslog::listen::ListenError;
use crate::syslog::stats::SyslogStats;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Options {
    pub config: PathBuf,
    pub data: PathBuf,
    /// How often the head is written out as a block.
    pub flush_interval: Duration,
    /// Blocks entirely older than this are deleted.
    pub retention_time: Duration,
    /// Oldest blocks go while all blocks exceed this many bytes (0: no
    /// limit); the same limit applies to the log parts on their own.
    pub retention_size: u64,
    /// How often the log head is written out as Parquet (also when it holds
    /// `LOG_HEAD_MAX_LINES`).
    pub logs_flush_interval: Duration,
}

/// A log head this large is flushed without waiting for the interval.
const LOG_HEAD_MAX_LINES: usize = 500_000;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    LogStore(#[from] LogStoreError),
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error("starting the syslog runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Tier(#[from] crate::store::tier::TierError),
}

pub struct Collector {
    options: Options,
    store: Arc<Store>,
    logs: Arc<LogStore>,
    syslog_stats: Arc<SyslogStats>,
    syslog_addresses: Vec<std::net::SocketAddr>,
    /// The syslog section listeners were started with (changes need a restart).
    syslog_config: crate::config::SyslogConfig,
    tail_stats: Arc<crate::tail::TailStats>,
    /// The tail section the tailer runs with, and the tailer.
    tailer: Mutex<Option<(crate::config::TailConfig, crate::tail::Tailer)>>,
    /// Runs the syslog listeners; dropped last.
    _runtime: tokio::runtime::Runtime,
    stats: Arc<Stats>,
    stash: StateStash,
    /// The running configuration's text and scrape manager; the lock also
    /// serialises reloads.
    running: Mutex<Running>,
    stop: Arc<AtomicBool>,
    maintenance: Mutex<Option<JoinHandle<()>>>,
    /// Run after each successful reload (the rules of `run`).
    reload_hooks: Mutex<Vec<ReloadHook>>,
    /// Log-derived counters, written to the store every scrape interval.
    log_metrics: Arc<crate::logmetrics::LogMetrics>,
    log_metrics_interval: Mutex<Duration>,
    /// Remote-write queues of the running configuration.
    remote_write: Mutex<Vec<crate::remote_write::send::Queue>>,
    remote_write_stats: Arc<crate::remote_write::send::SendStats>,
}

/// Work done after a configuration reload, given the configuration just
/// loaded; it reports its own errors.
pub type ReloadHook = Box<dyn Fn(&Config) + Send + Sync>;

struct Running {
    text: String,
    external_labels: crate::relabel::Labels,
    manager: Option<Manager>,
}

impl Collector {
    /// Opens the store (replaying the WAL), loads the configuration and
    /// starts scraping and maintenance.
    pub fn start(options: Options) -> Result<(Arc<Collector>, OpenReport), ServiceError> {
        let (config, jobs, text) = load(&options.config)?;
        crate::store::tier::install_configured(
            config.storage.object_store.as_ref(),
            &options.data,
        )?;
        let (store, report) = Store::open(&options.data)?;
        let store = Arc::new(store);
        let (logs, log_report) = LogStore::open(&options.data.join("logs"))?;
        tracing::info!(
            lines = log_report.wal.records,
            damaged_segments = log_report.wal.damaged.len(),
            damaged_parts = log_report.damaged_parts.len(),
            "log WAL replayed"
        );
        let logs = Arc::new(logs);
        // Before any listener starts, so no acknowledged line goes uncounted.
        let log_metrics = Arc::new(crate::logmetrics::LogMetrics::new(
            config.log_metrics.clone(),
        ));
        logs.observe_with(log_metrics.clone());
        logs.stream_zmstat_to(Arc::new(crate::zmstat::stream::Stream::new(store.clone())));
        let syslog_stats = Arc::new(SyslogStats::default());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("syslog")
            .enable_all()
            .build()
            .map_err(ServiceError::Runtime)?;
        let syslog_addresses = runtime.block_on(crate::syslog::listen::start(
            &config.syslog,
            logs.clone(),
            syslog_stats.clone(),
        ))?;
        let tail_stats = Arc::new(crate::tail::TailStats::default());
        let tailer =
            crate::tail::Tailer::start(config.tail.clone(), logs.clone(), tail_stats.clone());
        // Before maintenance starts, so no flush removes what they must send.
        let remote_write_stats = Arc::new(crate::remote_write::send::SendStats::default());
        let queues = config
            .remote_write
            .iter()
            .map(|rw| {
                crate::remote_write::send::start(
                    store.clone(),
                    &options.data,
                    rw.clone(),
                    remote_write_stats.clone(),
                )
            })
            .collect();
        let stats = Arc::new(Stats::default());
        stats.reloaded(true, manager::now_ms());
        let stash = StateStash::default();
        let manager = Manager::start(
            jobs,
            Shared {
                store: store.clone(),
                stats: stats.clone(),
                stash: stash.clone(),
            },
        );
        let collector = Arc::new(Collector {
            options,
            store,
            logs,
            syslog_stats,
            syslog_addresses,
            syslog_config: config.syslog.clone(),
            tail_stats,
            tailer: Mutex::new(Some((config.tail, tailer))),
            _runtime: runtime,
            stats,
            stash,
            running: Mutex::new(Running {
                text,
                external_labels: config.global.external_labels.clone(),
                manager: Some(manager),
            }),
            stop: Arc::new(AtomicBool::new(false)),
            maintenance: Mutex::new(None),
            reload_hooks: Mutex::new(Vec::new()),
            log_metrics,
            log_metrics_interval: Mutex::new(config.global.scrape_interval.0),
            remote_write: Mutex::new(queues),
            remote_write_stats,
        });
        let handle = {
            let c = collector.clone();
            std::thread::Builder::new()
                .name("maintenance".into())
                .spawn(move || c.maintenance_loop())
                .map_err(|e| tracing::error!(error = %e, "could not start storage maintenance"))
                .ok()
        };
        *collector
            .maintenance
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = handle;
        Ok((collector, report))
    }

    /// Loads the configuration file again. On error the running
    /// configuration keeps scraping and the error is returned.
    pub fn reload(&self, reason: &str) -> Result<(), ConfigError> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let (config, jobs, text) = match load(&self.options.config) {
            Ok(loaded) => loaded,
            Err(e) => {
                self.stats.reloaded(false, manager::now_ms());
                tracing::error!(reason, error = %e, "configuration reload rejected; keeping the running configuration");
                return Err(e);
            }
        };
        // Old loops finish their scrape in flight and hand their state over;
        // targets that no longer exist get their staleness markers.
        if let Some(old) = running.manager.take() {
            old.stop();
        }
        let manager = Manager::start(jobs, self.shared());
        manager::retire_unclaimed(&self.stash, &self.store);
        tracing::info!(
            reason,
            targets = manager.targets().len(),
            "configuration reloaded"
        );
        running.manager = Some(manager);
        running.text = text;
        running.external_labels = config.global.external_labels.clone();
        self.log_metrics.set_rules(config.log_metrics.clone());
        *self
            .log_metrics_interval
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = config.global.scrape_interval.0;
        self.restart_tailer_if_changed(config.tail.clone());
        self.restart_changed_queues(&config.remote_write);
        if config.syslog != self.syslog_config {
            tracing::warn!(
                "the syslog section changed: its listeners keep their settings until a restart"
            );
        }
        self.stats.reloaded(true, manager::now_ms());
        for hook in self
            .reload_hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            hook(&config);
        }
        Ok(())
    }

    /// Runs `hook` after every successful reload, whatever triggered it
    /// (SIGHUP, a changed file, `POST /-/reload`).
    pub fn on_reload(&self, hook: ReloadHook) {
        self.reload_hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(hook);
    }

    /// A changed `tail:` section restarts the tailer; it resumes every file
    /// from its stored checkpoint.
    fn restart_tailer_if_changed(&self, tail: crate::config::TailConfig) {
        let mut slot = self.tailer.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_some_and(|(running, _)| *running == tail) {
            return;
        }
        drop(slot.take());
        let tailer =
            crate::tail::Tailer::start(tail.clone(), self.logs.clone(), self.tail_stats.clone());
        *slot = Some((tail, tailer));
        tracing::info!("file tailing restarted with the new tail section");
    }

    /// Queues whose settings changed restart from their saved position;
    /// removed ones stop and release the WAL.
    fn restart_changed_queues(&self, wanted: &[crate::config::RemoteWriteConfig]) {
        let mut queues = self.remote_write.lock().unwrap_or_else(|p| p.into_inner());
        let (kept, gone): (Vec<_>, Vec<_>) =
            queues.drain(..).partition(|q| wanted.contains(&q.config));
        for q in gone {
            let name = q.config.queue_name();
            drop(q);
            if !wanted.iter().any(|w| w.queue_name() == name) {
                self.store.unpin_wal(&name);
            }
        }
        *queues = kept;
        for rw in wanted {
            if !queues.iter().any(|q| &q.config == rw) {
                tracing::info!(queue = %rw.queue_name(), url = %rw.url, "remote write queue (re)started");
                queues.push(crate::remote_write::send::start(
                    self.store.clone(),
                    &self.options.data,
                    rw.clone(),
                    self.remote_write_stats.clone(),
                ));
            }
        }
    }

    fn shared(&self) -> Shared {
        Shared {
            store: self.store.clone(),
            stats: self.stats.clone(),
            stash: self.stash.clone(),
        }
    }

    pub fn targets(&self) -> Vec<TargetStatus> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running
            .manager
            .as_ref()
            .map(Manager::targets)
            .unwrap_or_default()
    }

    /// Targets that relabeling dropped: (job, discovered labels).
    pub fn dropped_targets(&self) -> Vec<(String, crate::relabel::Labels)> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running
            .manager
            .as_ref()
            .map(Manager::dropped)
            .unwrap_or_default()
    }

    /// The text of the running configuration (`/api/v1/status/config`).
    pub fn config_text(&self) -> String {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .text
            .clone()
    }

    /// `global.external_labels` of the running configuration: a query node
    /// adds them to this collector's series, as Thanos does.
    pub fn external_labels(&self) -> crate::relabel::Labels {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .external_labels
            .clone()
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn logs(&self) -> &Arc<LogStore> {
        &self.logs
    }

    /// Where the syslog listeners are bound, in configuration order.
    pub fn syslog_addresses(&self) -> &[std::net::SocketAddr] {
        &self.syslog_addresses
    }

    /// The self-metrics as OpenMetrics text.
    pub fn metrics(&self) -> String {
        crate::selfmetrics::render(
            &self.stats,
            &self.store,
            &self.logs,
            &self.syslog_stats,
            &self.tail_stats,
            &self.remote_write_stats,
        )
    }

    /// Stops scraping (loops finish their scrape in flight) and maintenance.
    /// The head stays in the WAL for the next start.
    pub fn shutdown(&self) {
        if let Some(m) = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .manager
            .take()
        {
            m.stop();
        }
        drop(self.tailer.lock().unwrap_or_else(|p| p.into_inner()).take());
        // Counts since the last write, before the store closes.
        self.write_log_metrics();
        // Unsent samples stay in the WAL for the next start.
        self.remote_write
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.stop.store(true, Ordering::Relaxed);
        let handle = self
            .maintenance
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    fn maintenance_loop(&self) {
        let mut last = std::time::Instant::now();
        let mut last_logs = std::time::Instant::now();
        let mut last_counted = std::time::Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            let every = *self
                .log_metrics_interval
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if last_counted.elapsed() >= every {
                last_counted = std::time::Instant::now();
                self.write_log_metrics();
            }
            if last_logs.elapsed() >= self.options.logs_flush_interval
                || self.logs.head_len() >= LOG_HEAD_MAX_LINES
            {
                last_logs = std::time::Instant::now();
                self.maintain_logs();
            }
            if last.elapsed() < self.options.flush_interval {
                continue;
            }
            last = std::time::Instant::now();
            self.maintain();
        }
    }

    fn write_log_metrics(&self) {
        let samples = self.log_metrics.samples(manager::now_ms());
        if samples.is_empty() {
            return;
        }
        if let Err(e) = self.store.append(&samples) {
            tracing::error!(error = %e, "writing log-derived metrics failed");
        }
    }

    /// Flush the log head, compact finished hours (deleting what earlier
    /// compactions replaced once readers are done), apply retention.
    pub fn maintain_logs(&self) {
        match self.logs.flush() {
            Ok(Some(meta)) => tracing::info!(
                lines = meta.rows(),
                bytes = meta.bytes(),
                "log head flushed"
            ),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "flushing the log head failed; lines stay in the WAL")
            }
        }
        let now_ns = manager::now_ms().saturating_mul(1_000_000);
        if let Err(e) = self.logs.compact(now_ns) {
            tracing::error!(error = %e, "log compaction failed");
        }
        let tier = crate::store::tier::installed();
        let grace = tier.map_or(crate::store::logs::REPLACED_GRACE, |t| t.local_grace());
        if let Err(e) = self.logs.remove_replaced(grace) {
            tracing::error!(error = %e, "deleting compacted log parts failed; tried again later");
        }
        let max_age = (self.options.retention_time.as_nanos() as i64).max(0);
        if let Err(e) = self
            .logs
            .apply_retention(now_ns, max_age, self.options.retention_size)
        {
            tracing::error!(error = %e, "log retention failed");
        }
        if let Some(tier) = tier {
            if let Err(e) = self.logs.upload_parts(tier, now_ns, tier.local_grace()) {
                tracing::error!(error = %e, "uploading log parts failed; they stay local and are tried again");
            }
        }
    }

    /// Flush the head to a block, merge small blocks up to a day, apply retention.
    pub fn maintain(&self) {
        match self.store.flush() {
            Ok(Some(meta)) => tracing::info!(
                samples = meta.samples,
                series = meta.series,
                bytes_per_sample = meta.bytes_per_sample(),
                "head flushed to a block"
            ),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "flushing the head failed; data stays in the WAL")
            }
        }
        if let Err(e) = self.store.compact(24 * 3600 * 1000) {
            tracing::error!(error = %e, "compaction failed");
        }
        let max_age = self.options.retention_time.as_millis() as i64;
        if let Err(e) =
            self.store
                .apply_retention(manager::now_ms(), max_age, self.options.retention_size)
        {
            tracing::error!(error = %e, "retention failed");
        }
        if let Some(tier) = crate::store::tier::installed() {
            if let Err(e) = self.store.upload_blocks(tier, manager::now_ms()) {
                tracing::error!(error = %e, "uploading blocks failed; they stay local and are tried again");
            }
        }
    }
}

fn load(path: &std::path::Path) -> Result<(Config, Vec<crate::config::Job>, String), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let (config, jobs) = Config::parse(path, &text)?;
    Ok((config, jobs, text))
}
