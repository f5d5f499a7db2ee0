//! Prometheus remote write 1.0, sending side. Each `remote_write:` queue
//! follows the store's WAL from a position kept in
//! `DATA/remote_write/<name>.json`, so samples wait in the WAL (pinned
//! against removal, up to `max_backlog_bytes`) while the receiver is down
//! and are sent in order once it is back; a restart resumes at the position.
//! Delivery is at least once: a crash between a send and the position write
//! resends that batch, which receivers accept as duplicates.

use super::{Label, Sample, TimeSeries};
use crate::config::RemoteWriteConfig;
use crate::relabel::{self, Labels, Rule};
use crate::store::record::Record;
use crate::store::walfollow::{Follower, Next, Position};
use crate::store::Store;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Counters of one queue, for the self-metrics.
#[derive(Debug, Default, Clone)]
pub struct QueueCounts {
    pub url: String,
    pub samples_sent: u64,
    /// Refused by the receiver with a non-retryable status.
    pub samples_failed: u64,
    /// Samples in requests that were tried again.
    pub samples_retried: u64,
    /// Dropped by `write_relabel_configs` (or of series never declared).
    pub samples_dropped: u64,
    /// Given up because the backlog grew past `max_backlog_bytes`, or the
    /// WAL was damaged under them.
    pub samples_given_up: u64,
    pub highest_sent_ms: i64,
    pub backlog_bytes: u64,
}

#[derive(Debug, Default)]
pub struct SendStats {
    queues: Mutex<BTreeMap<String, QueueCounts>>,
}

impl SendStats {
    pub fn snapshot(&self) -> BTreeMap<String, QueueCounts> {
        self.queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut QueueCounts)) {
        let mut q = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        f(q.entry(name.to_string()).or_default());
    }
}

/// A running queue; dropping it stops the sender (a request in flight ends
/// first, bounded by `remote_timeout`).
pub struct Queue {
    pub config: RemoteWriteConfig,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn position_file(data: &Path, name: &str) -> PathBuf {
    data.join("remote_write").join(format!("{name}.json"))
}

fn read_position(path: &Path) -> Option<Position> {
    let text = std::fs::read_to_string(path).ok()?;
    match serde_json::from_str(&text) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "remote write position unreadable; starting at the end of the WAL");
            None
        }
    }
}

fn write_position(path: &Path, at: Position) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(serde_json::to_string(&at).unwrap_or_default().as_bytes())?;
    f.sync_data()?;
    std::fs::rename(&tmp, path)
}

/// Starts sending what the store appends from now on (or from the queue's
/// saved position). The WAL is pinned before this returns, so a flush
/// cannot remove what the queue still has to send.
pub fn start(
    store: Arc<Store>,
    data: &Path,
    config: RemoteWriteConfig,
    stats: Arc<SendStats>,
) -> Queue {
    let name = config.queue_name();
    let file = position_file(data, &name);
    let from = read_position(&file).unwrap_or_else(|| store.wal_end());
    store.pin_wal(&name, from.segment);
    stats.update(&name, |c| c.url = config.url.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let sender = Sender {
        name: name.clone(),
        config: config.clone(),
        rules: config
            .write_relabel_configs
            .iter()
            .filter_map(|r| r.compile().ok())
            .collect(),
        agent: agent(&config),
        store,
        stats,
        file,
        stop: stop.clone(),
        series: HashMap::new(),
        start: from,
        skip_until: from,
    };
    let handle = std::thread::Builder::new()
        .name(format!("remote-write-{name}"))
        .spawn(move || sender.run(from))
        .map_err(|e| tracing::error!(queue = %name, error = %e, "could not start the remote write sender"))
        .ok();
    Queue {
        config,
        stop,
        handle,
    }
}

fn agent(config: &RemoteWriteConfig) -> Result<ureq::Agent, String> {
    let builder = ureq::AgentBuilder::new()
        .timeout(config.remote_timeout.0)
        .user_agent(concat!("carbonio-monitor/", env!("CARGO_PKG_VERSION")));
    match &config.tls_config {
        Some(t) => crate::scrape::tls::client_config(t).map(|c| builder.tls_config(c).build()),
        None => Ok(builder.build()),
    }
}

struct Sender {
    name: String,
    config: RemoteWriteConfig,
    rules: Vec<Rule>,
    agent: Result<ureq::Agent, String>,
    store: Arc<Store>,
    stats: Arc<SendStats>,
    file: PathBuf,
    stop: Arc<AtomicBool>,
    /// Series id → labels after `write_relabel_configs` (None: dropped).
    series: HashMap<u64, Option<Arc<Vec<Label>>>>,
    /// Samples in records ending at or before this were sent before start.
    start: Position,
    /// Samples in records ending at or before this are given up.
    skip_until: Position,
}

/// Samples read but not yet sent, and the WAL position after the last
/// record they came from.
struct Batch {
    samples: Vec<(u64, i64, f64)>,
    since: Option<Instant>,
    end: Position,
}

enum Sent {
    Done,
    Stopped,
    /// The backlog passed its limit while the receiver was failing.
    GaveUp,
}

const IDLE: Duration = Duration::from_millis(100);

impl Sender {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn run(mut self, from: Position) {
        let first = crate::store::wal::segments(&self.store.wal_dir())
            .ok()
            .and_then(|s| s.first().copied())
            .unwrap_or(from.segment);
        // Series are declared before `from` (at least since the last flush's
        // re-declaration): read them from the oldest segment kept.
        let mut follower = Follower::new(
            &self.store.wal_dir(),
            Position {
                segment: first.min(from.segment),
                offset: 0,
            },
        );
        let mut batch = Batch {
            samples: Vec::new(),
            since: None,
            end: from,
        };
        let mut saved = from;
        let mut last_save = Instant::now();
        while !self.stopping() {
            let next = match follower.read_next() {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(queue = %self.name, error = %e, "reading the WAL failed");
                    self.sleep(Duration::from_secs(1));
                    continue;
                }
            };
            match next {
                Next::Record(bytes, end) => {
                    self.take_record(&bytes, end, &mut batch);
                }
                Next::Skipped { from, to, why } => {
                    tracing::warn!(queue = %self.name, ?from, ?to, why, "remote write skipped part of the WAL");
                }
                Next::Pending if !self.due(&batch) => {
                    if batch.samples.is_empty()
                        && batch.end > saved
                        && last_save.elapsed() > Duration::from_secs(5)
                    {
                        // Nothing to send: move the pin on anyway.
                        saved = self.save(batch.end);
                        last_save = Instant::now();
                    }
                    self.sleep(IDLE);
                    continue;
                }
                Next::Pending => {}
            }
            let full = batch.samples.len() >= self.config.queue_config.max_samples_per_send;
            if !(full || self.due(&batch)) {
                continue;
            }
            match self.send_all(&batch.samples, saved) {
                Sent::Done => {}
                Sent::Stopped => break,
                Sent::GaveUp => {
                    let n = batch.samples.len() as u64;
                    self.stats.update(&self.name, |c| c.samples_given_up += n);
                    // Samples up to the WAL's end now are given up too; the
                    // queue starts again with what comes next.
                    self.skip_until = self.store.wal_end();
                    tracing::error!(queue = %self.name, samples = n, "remote write backlog exceeded max_backlog_bytes; unsent samples given up");
                }
            }
            batch.samples.clear();
            batch.since = None;
            saved = self.save(batch.end);
            last_save = Instant::now();
        }
    }

    /// Takes a WAL record: series are remembered, samples not sent yet
    /// join the batch.
    fn take_record(&mut self, bytes: &[u8], end: Position, batch: &mut Batch) {
        match Record::decode(bytes) {
            Ok(Record::Series { id, labels }) => {
                let kept = self.relabel(labels);
                self.series.insert(id, kept);
            }
            Ok(Record::Samples(samples)) if end > self.start && end <= self.skip_until => {
                let n = samples.len() as u64;
                self.stats.update(&self.name, |c| c.samples_given_up += n);
            }
            Ok(Record::Samples(samples)) if end > self.start => {
                let mut dropped = 0u64;
                for s in samples {
                    match self.series.get(&s.0) {
                        Some(Some(_)) => batch.samples.push(s),
                        _ => dropped += 1,
                    }
                }
                if dropped > 0 {
                    self.stats
                        .update(&self.name, |c| c.samples_dropped += dropped);
                }
                if batch.since.is_none() && !batch.samples.is_empty() {
                    batch.since = Some(Instant::now());
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(queue = %self.name, error = %e, "undecodable WAL record skipped");
            }
        }
        if end > batch.end {
            batch.end = end;
        }
    }

    fn relabel(&self, mut labels: Labels) -> Option<Arc<Vec<Label>>> {
        if !relabel::apply(&self.rules, &mut labels) || !labels.contains_key("__name__") {
            return None;
        }
        // BTreeMap order is the byte order remote write asks for.
        Some(Arc::new(
            labels
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(name, value)| Label { name, value })
                .collect(),
        ))
    }

    /// Whether the batch has waited `batch_send_deadline`.
    fn due(&self, batch: &Batch) -> bool {
        batch
            .since
            .is_some_and(|t| t.elapsed() >= self.config.queue_config.batch_send_deadline.0)
    }

    fn save(&self, at: Position) -> Position {
        if let Err(e) = write_position(&self.file, at) {
            tracing::error!(queue = %self.name, file = %self.file.display(), error = %e, "saving the remote write position failed");
        }
        self.store.pin_wal(&self.name, at.segment);
        let backlog = self
            .store
            .wal_bytes_from(at.segment)
            .saturating_sub(at.offset);
        self.stats.update(&self.name, |c| c.backlog_bytes = backlog);
        at
    }

    fn sleep(&self, d: Duration) {
        let until = Instant::now() + d;
        while !self.stopping() && Instant::now() < until {
            std::thread::sleep(IDLE.min(until.saturating_duration_since(Instant::now())));
        }
    }

    fn send_all(&self, samples: &[(u64, i64, f64)], saved: Position) -> Sent {
        for chunk in samples.chunks(self.config.queue_config.max_samples_per_send) {
            match self.send(chunk, saved) {
                Sent::Done => {}
                other => return other,
            }
        }
        Sent::Done
    }

    /// One request, tried until it succeeds, is refused for good, the
    /// queue stops, or the backlog passes its limit.
    fn send(&self, samples: &[(u64, i64, f64)], saved: Position) -> Sent {
        let body = self.request_body(samples);
        let n = samples.len() as u64;
        let highest = samples.iter().map(|s| s.1).max().unwrap_or(0);
        let q = &self.config.queue_config;
        let mut backoff = q.min_backoff.0;
        loop {
            if self.stopping() {
                return Sent::Stopped;
            }
            match self.post(&body) {
                Ok(()) => {
                    self.stats.update(&self.name, |c| {
                        c.samples_sent += n;
                        c.highest_sent_ms = c.highest_sent_ms.max(highest);
                    });
                    return Sent::Done;
                }
                Err(Failure::Permanent(why)) => {
                    tracing::error!(queue = %self.name, samples = n, error = %why, "remote write refused a batch; it is dropped");
                    self.stats.update(&self.name, |c| c.samples_failed += n);
                    return Sent::Done;
                }
                Err(Failure::Retry(why)) => {
                    tracing::warn!(queue = %self.name, samples = n, error = %why, retry_in = ?backoff, "remote write failed; retrying");
                    self.stats.update(&self.name, |c| c.samples_retried += n);
                }
            }
            let backlog = self.store.wal_bytes_from(saved.segment);
            self.stats.update(&self.name, |c| c.backlog_bytes = backlog);
            if backlog > q.max_backlog_bytes {
                return Sent::GaveUp;
            }
            self.sleep(backoff);
            backoff = (backoff * 2).min(q.max_backoff.0);
        }
    }

    /// Groups the samples by series, each series' samples in WAL order.
    fn request_body(&self, samples: &[(u64, i64, f64)]) -> Vec<u8> {
        let mut order: Vec<u64> = Vec::new();
        let mut by_series: HashMap<u64, Vec<Sample>> = HashMap::new();
        for &(id, timestamp, value) in samples {
            by_series
                .entry(id)
                .or_insert_with(|| {
                    order.push(id);
                    Vec::new()
                })
                .push(Sample { value, timestamp });
        }
        let timeseries = order
            .into_iter()
            .filter_map(|id| {
                let labels = self.series.get(&id)?.as_ref()?;
                Some(TimeSeries {
                    labels: labels.as_ref().clone(),
                    samples: by_series.remove(&id)?,
                })
            })
            .collect();
        super::encode(timeseries)
    }

    fn post(&self, body: &[u8]) -> Result<(), Failure> {
        let agent = self
            .agent
            .as_ref()
            .map_err(|e| Failure::Retry(format!("tls_config: {e}")))?;
        let mut req = agent
            .post(&self.config.url)
            .set("Content-Encoding", "snappy")
            .set("Content-Type", "application/x-protobuf")
            .set("X-Prometheus-Remote-Write-Version", "0.1.0");
        for (k, v) in &self.config.headers {
            req = req.set(k, v);
        }
        if let Some(h) =
            crate::config::auth_header(&self.config.basic_auth, &self.config.authorization)
                .map_err(Failure::Retry)?
        {
            req = req.set("Authorization", &h);
        }
        match req.send_bytes(body) {
            Ok(_) => Ok(()),
            Err(ureq::Error::Status(code, resp)) => {
                let text: String = resp
                    .into_string()
                    .unwrap_or_default()
                    .chars()
                    .take(512)
                    .collect();
                let why = format!("HTTP {code}: {}", text.trim());
                let retry =
                    code >= 500 || (code == 429 && self.config.queue_config.retry_on_http_429);
                Err(if retry {
                    Failure::Retry(why)
                } else {
                    Failure::Permanent(why)
                })
            }
            Err(e) => Err(Failure::Retry(e.to_string())),
        }
    }
}

enum Failure {
    Retry(String),
    Permanent(String),
}
