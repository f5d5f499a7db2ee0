//! Keeps one scrape loop per discovered target: re-discovers when a file_sd
//! file changes (watched with `notify`, re-read every `refresh_interval` as a
//! fallback), starts loops for new targets and stops vanished ones with
//! staleness markers, as Prometheus's scrape manager does.

use crate::config::Job;
use crate::discovery::{self, SdCache};
use crate::relabel::Labels;
use crate::scrape::parse::MetricType;
use crate::scrape::target::{jitter, scrape_url, Scraper, TargetState};
use crate::selfmetrics::Stats;
use crate::store::record::MetricMeta;
use crate::store::Store;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Prometheus's default file_sd `refresh_interval`.
const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
/// Prometheus's default consul_sd `refresh_interval`.
const CONSUL_REFRESH: Duration = Duration::from_secs(30);

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A target is known by its job and final label set.
pub type TargetKey = (String, Labels);

/// What `/api/v1/targets` reports for one active target.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetStatus {
    pub job: String,
    pub discovered: Labels,
    pub labels: Labels,
    pub scrape_url: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// None until the first scrape finished.
    pub last_scrape_ms: Option<i64>,
    pub last_duration: Duration,
    pub last_error: Option<String>,
}

/// Target states handed from one configuration's loops to the next, so a
/// reload neither repeats "series added" nor misses staleness.
pub type StateStash = Arc<Mutex<HashMap<TargetKey, TargetState>>>;

const RUN: u8 = 0;
/// Stop and hand the state over (reload).
const HAND_OVER: u8 = 1;
/// Stop and mark every series stale (the target is gone).
const RETIRE: u8 = 2;

struct Loop {
    control: Arc<AtomicU8>,
    status: Arc<Mutex<TargetStatus>>,
    handle: JoinHandle<()>,
}

type Loops = Arc<Mutex<BTreeMap<TargetKey, Loop>>>;
/// Targets relabeling dropped, as (job, discovered labels).
type Dropped = Arc<Mutex<Vec<(String, Labels)>>>;

/// The scrape loops of one configuration.
pub struct Manager {
    stop: Arc<AtomicBool>,
    loops: Loops,
    dropped: Dropped,
    discovery: Option<JoinHandle<()>>,
}

/// What the loops need besides their target.
#[derive(Clone)]
pub struct Shared {
    pub store: Arc<Store>,
    pub stats: Arc<Stats>,
    pub stash: StateStash,
}

impl Manager {
    /// Discovers the targets once, starts their loops, and keeps discovering
    /// in the background. Returns once the first set of loops is running.
    pub fn start(jobs: Vec<Job>, shared: Shared) -> Manager {
        let stop = Arc::new(AtomicBool::new(false));
        let loops: Loops = Arc::default();
        let dropped: Dropped = Arc::default();
        let mut cache = SdCache::new();
        sync_targets(&jobs, &mut cache, &loops, &dropped, &shared);
        let discovery = {
            let (stop, loops, dropped) = (stop.clone(), loops.clone(), dropped.clone());
            std::thread::Builder::new()
                .name("discovery".into())
                .spawn(move || discovery_loop(&jobs, cache, &loops, &dropped, &shared, &stop))
                .map_err(|e| tracing::error!(error = %e, "could not start target discovery"))
                .ok()
        };
        Manager {
            stop,
            loops,
            dropped,
            discovery,
        }
    }

    pub fn targets(&self) -> Vec<TargetStatus> {
        let loops = self.loops.lock().unwrap_or_else(|p| p.into_inner());
        loops
            .values()
            .map(|l| l.status.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect()
    }

    pub fn dropped(&self) -> Vec<(String, Labels)> {
        self.dropped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stops discovery and every loop after its scrape in flight, handing
    /// their states to the stash for the next configuration.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.discovery.take() {
            let _ = h.join();
        }
        let loops = std::mem::take(&mut *self.loops.lock().unwrap_or_else(|p| p.into_inner()));
        for l in loops.values() {
            l.control.store(HAND_OVER, Ordering::Relaxed);
        }
        for (_, l) in loops {
            let _ = l.handle.join();
        }
    }
}

/// Marks stale the series of targets whose state was handed over but that
/// no loop took back: they vanished with a configuration change.
pub fn retire_unclaimed(stash: &StateStash, store: &Store) {
    let gone: Vec<(TargetKey, TargetState)> = stash
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain()
        .collect();
    let now = now_ms();
    for ((_, target), state) in gone {
        write_samples(store, state.end_of_run(&target, now));
    }
}

fn discovery_loop(
    jobs: &[Job],
    mut cache: SdCache,
    loops: &Loops,
    dropped: &Dropped,
    shared: &Shared,
    stop: &AtomicBool,
) {
    let (tx, rx) = mpsc::channel();
    // Kept alive for as long as the loop runs; without it, polling alone.
    let _watcher = watch_sd_dirs(jobs, tx);
    let refresh = jobs
        .iter()
        .flat_map(|j| {
            let files = (j.config.file_sd_configs.iter())
                .map(|sd| sd.refresh_interval.map_or(DEFAULT_REFRESH, |d| d.0));
            let consul = (j.config.consul_sd_configs.iter())
                .map(|sd| sd.refresh_interval.map_or(CONSUL_REFRESH, |d| d.0));
            files.chain(consul)
        })
        .min();
    let mut last = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let changed = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(()) => {
                // Let an editor finish writing before reading the files.
                std::thread::sleep(Duration::from_millis(100));
                while rx.try_recv().is_ok() {}
                true
            }
            Err(mpsc::RecvTimeoutError::Timeout) => refresh.is_some_and(|r| last.elapsed() >= r),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // No watcher (no file_sd, or watching failed): poll only.
                std::thread::sleep(Duration::from_millis(200));
                refresh.is_some_and(|r| last.elapsed() >= r)
            }
        };
        if changed {
            last = std::time::Instant::now();
            sync_targets(jobs, &mut cache, loops, dropped, shared);
        }
    }
}

/// Watches the directories holding file_sd files (files are often replaced
/// by rename, so their directories are what must be watched).
fn watch_sd_dirs(jobs: &[Job], tx: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    let patterns = jobs
        .iter()
        .flat_map(|j| &j.config.file_sd_configs)
        .flat_map(|sd| &sd.files);
    crate::watch::watch_dirs(patterns, "file_sd", tx)
}

/// Brings the running loops in line with what discovery finds now.
fn sync_targets(
    jobs: &[Job],
    cache: &mut SdCache,
    loops: &Loops,
    dropped: &Dropped,
    shared: &Shared,
) {
    let mut wanted: BTreeMap<TargetKey, (&Job, Labels)> = BTreeMap::new();
    let mut now_dropped = Vec::new();
    for job in jobs {
        let (targets, errors) = discovery::targets_cached(job, cache);
        for e in errors {
            tracing::error!(job = %job.config.job_name, error = %e, "target discovery failed; keeping the file's last good targets");
        }
        for t in targets {
            match t.labels {
                Some(labels) => {
                    wanted.insert((job.config.job_name.clone(), labels), (job, t.discovered));
                }
                None => now_dropped.push((job.config.job_name.clone(), t.discovered)),
            }
        }
    }
    *dropped.lock().unwrap_or_else(|p| p.into_inner()) = now_dropped;
    let mut running = loops.lock().unwrap_or_else(|p| p.into_inner());
    let gone: Vec<TargetKey> = running
        .keys()
        .filter(|k| !wanted.contains_key(*k))
        .cloned()
        .collect();
    let mut retired = Vec::new();
    for key in gone {
        if let Some(l) = running.remove(&key) {
            tracing::info!(job = %key.0, instance = key.1.get("instance").map(String::as_str).unwrap_or(""), "target gone; marking its series stale");
            l.control.store(RETIRE, Ordering::Relaxed);
            retired.push(l.handle);
        }
    }
    for (key, (job, discovered)) in wanted {
        if running.contains_key(&key) {
            continue;
        }
        if let Some(l) = start_loop(job, &key, discovered, shared) {
            running.insert(key, l);
        }
    }
    let mut per_job: BTreeMap<&str, usize> = jobs
        .iter()
        .map(|j| (j.config.job_name.as_str(), 0))
        .collect();
    for (job, _) in running.keys() {
        *per_job.entry(job.as_str()).or_default() += 1;
    }
    shared.stats.set_targets(per_job);
    drop(running);
    // Joined outside the lock: a retiring loop may be in a scrape for up to its timeout.
    for h in retired {
        let _ = h.join();
    }
}

fn start_loop(job: &Job, key: &TargetKey, discovered: Labels, shared: &Shared) -> Option<Loop> {
    let status = Arc::new(Mutex::new(TargetStatus {
        job: key.0.clone(),
        discovered,
        labels: key.1.clone(),
        scrape_url: scrape_url(job, &key.1),
        interval: job.interval,
        timeout: job.timeout,
        last_scrape_ms: None,
        last_duration: Duration::ZERO,
        last_error: None,
    }));
    let control = Arc::new(AtomicU8::new(RUN));
    let state = shared
        .stash
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(key)
        .map(|mut s| {
            s.rebind();
            s
        })
        .unwrap_or_default();
    let name = format!(
        "scrape {}",
        key.1.get("instance").map(String::as_str).unwrap_or("?")
    );
    let (job, key2, st, ctl, shared2) = (
        job.clone(),
        key.clone(),
        status.clone(),
        control.clone(),
        shared.clone(),
    );
    let spawned = std::thread::Builder::new()
        .name(name)
        .spawn(move || scrape_loop(&job, key2, state, &st, &ctl, &shared2));
    match spawned {
        Ok(handle) => Some(Loop {
            control,
            status,
            handle,
        }),
        Err(e) => {
            tracing::error!(error = %e, "could not start a scrape thread");
            None
        }
    }
}

fn scrape_loop(
    job: &Job,
    key: TargetKey,
    mut state: TargetState,
    status: &Mutex<TargetStatus>,
    control: &AtomicU8,
    shared: &Shared,
) {
    let target = &key.1;
    let interval = job.interval.as_millis().max(1) as i64;
    let offset = jitter(target, job.interval).as_millis() as i64;
    let mut next = (now_ms() / interval) * interval + offset;
    if next < now_ms() {
        next += interval;
    }
    let scraper = Scraper::for_job(job);
    loop {
        // Sleep in short steps so a stop request is seen promptly.
        while now_ms() < next {
            match control.load(Ordering::Relaxed) {
                RUN => {}
                RETIRE => {
                    write_samples(&shared.store, state.end_of_run(target, now_ms()));
                    return;
                }
                _ => {
                    shared
                        .stash
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(key, state);
                    return;
                }
            }
            let left = (next - now_ms()).clamp(1, 100) as u64;
            std::thread::sleep(Duration::from_millis(left));
        }
        let ts = now_ms();
        let result = scraper.scrape(job, target, &mut state, ts);
        if let Some(e) = &result.error {
            tracing::warn!(job = %job.config.job_name, instance = target.get("instance").map(String::as_str).unwrap_or(""), error = %e, "scrape failed");
        }
        shared
            .stats
            .scraped(&job.config.job_name, result.error.is_none());
        {
            let mut s = status.lock().unwrap_or_else(|p| p.into_inner());
            s.last_scrape_ms = Some(ts);
            s.last_duration = result.duration;
            s.last_error = result.error.clone();
        }
        let samples = result.samples.len();
        if write_samples(&shared.store, result.samples) {
            shared.stats.appended(samples);
        } else {
            shared.stats.append_failed();
        }
        let metadata: Vec<(String, MetricMeta)> = result
            .metadata
            .into_iter()
            .map(|m| {
                let meta = MetricMeta {
                    kind: m.kind.unwrap_or(MetricType::Unknown).as_str().to_string(),
                    help: m.help.unwrap_or_default(),
                    unit: m.unit.unwrap_or_default(),
                };
                (m.family, meta)
            })
            .collect();
        if let Err(e) = shared.store.record_metadata(&metadata) {
            tracing::error!(error = %e, "writing metric metadata to the WAL failed");
        }
        next += interval;
        // After a long stall, skip missed slots rather than scraping in a burst.
        while next <= now_ms() {
            next += interval;
        }
    }
}

/// Appends samples as one acknowledged batch; false if the WAL refused them.
fn write_samples(store: &Store, samples: Vec<crate::scrape::target::Sample>) -> bool {
    let batch: Vec<(Arc<crate::store::SeriesLabels>, i64, f64)> = samples
        .into_iter()
        .map(|s| (s.labels, s.timestamp_ms, s.value))
        .collect();
    match store.append(&batch) {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, "writing samples to the WAL failed; not acknowledged");
            false
        }
    }
}
