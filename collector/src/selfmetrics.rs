//! The collector's own metrics (OpenMetrics through prometheus-client):
//! scrape counts per job, samples appended, WAL failures, reloads, and the
//! store's head and block figures, bytes per sample included.

use crate::remote_write::send::{QueueCounts, SendStats};
use crate::store::logs::LogStore;
use crate::store::Store;
use crate::syslog::stats::{udp_receive_buffer_errors, ListenerCounts, SyslogStats};
use crate::tail::{FileCounts, TailStats};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, Default, Clone, Copy)]
struct JobStats {
    targets: u64,
    scrapes: u64,
    failures: u64,
}

#[derive(Debug, Default)]
pub struct Stats {
    jobs: Mutex<BTreeMap<String, JobStats>>,
    samples_appended: AtomicU64,
    append_failures: AtomicU64,
    reloads: AtomicU64,
    reload_failures: AtomicU64,
    last_reload_ok: AtomicBool,
    last_reload_success_ms: AtomicI64,
}

impl Stats {
    pub fn set_targets(&self, per_job: BTreeMap<&str, usize>) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        for s in jobs.values_mut() {
            s.targets = 0;
        }
        for (job, n) in per_job {
            jobs.entry(job.to_string()).or_default().targets = n as u64;
        }
    }

    pub fn scraped(&self, job: &str, ok: bool) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let s = jobs.entry(job.to_string()).or_default();
        s.scrapes += 1;
        if !ok {
            s.failures += 1;
        }
    }

    pub fn appended(&self, samples: usize) {
        self.samples_appended
            .fetch_add(samples as u64, Ordering::Relaxed);
    }

    pub fn append_failed(&self) {
        self.append_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn reloaded(&self, ok: bool, now_ms: i64) {
        self.reloads.fetch_add(1, Ordering::Relaxed);
        self.last_reload_ok.store(ok, Ordering::Relaxed);
        if ok {
            self.last_reload_success_ms.store(now_ms, Ordering::Relaxed);
        } else {
            self.reload_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn samples_appended(&self) -> u64 {
        self.samples_appended.load(Ordering::Relaxed)
    }
}

/// Renders the self-metrics as OpenMetrics text.
pub fn render(
    stats: &Arc<Stats>,
    store: &Arc<Store>,
    logs: &Arc<LogStore>,
    syslog: &Arc<SyslogStats>,
    tail: &Arc<TailStats>,
    remote_write: &Arc<SendStats>,
) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SelfCollector {
        stats: stats.clone(),
        store: store.clone(),
        logs: logs.clone(),
        syslog: syslog.clone(),
        tail: tail.clone(),
        remote_write: remote_write.clone(),
    }));
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        tracing::error!(error = %e, "encoding self-metrics failed");
    }
    // The `process_*` families as client_golang names them (the exporters'
    // writer, which ends with its own `# EOF`).
    let process = carbonio_exporters::selfmetrics::process_families();
    if let Some(body) = out.strip_suffix("# EOF\n") {
        let mut joined = body.to_string();
        joined.push_str(&carbonio_exporters::exposition::encode(
            &process,
            carbonio_exporters::exposition::Format::OpenMetrics,
        ));
        return joined;
    }
    out
}

struct SelfCollector {
    stats: Arc<Stats>,
    store: Arc<Store>,
    logs: Arc<LogStore>,
    syslog: Arc<SyslogStats>,
    tail: Arc<TailStats>,
    remote_write: Arc<SendStats>,
}

impl std::fmt::Debug for SelfCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SelfCollector")
    }
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)
}

/// One metric family of `kind` with a labelled sample per row; its HELP and
/// TYPE are written even when there are no rows yet.
fn family<'a, M: EncodeMetric, const N: usize>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    rows: impl Iterator<Item = ([(&'a str, &'a str); N], M)>,
) -> std::fmt::Result {
    let mut f = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, m) in rows {
        m.encode(f.encode_family(&labels)?)?;
    }
    Ok(())
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
}

impl Collector for SelfCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let s = &self.stats;
        let jobs = s.jobs.lock().unwrap_or_else(|p| p.into_inner()).clone();
        family(
            &mut enc,
            "carbonio_collector_targets",
            "Active scrape targets per job",
            MetricType::Gauge,
            jobs.iter()
                .map(|(j, st)| ([("job", j.as_str())], ConstGauge::new(st.targets as i64))),
        )?;
        type Pick = fn(&JobStats) -> u64;
        let counters: [(&str, &str, Pick); 2] = [
            ("carbonio_collector_scrapes", "Scrapes done per job", |j| {
                j.scrapes
            }),
            (
                "carbonio_collector_scrape_failures",
                "Scrapes that failed (up == 0) per job",
                |j| j.failures,
            ),
        ];
        for (name, help, pick) in counters {
            let rows = jobs
                .iter()
                .map(|(j, st)| ([("job", j.as_str())], ConstCounter::new(pick(st))));
            family(&mut enc, name, help, MetricType::Counter, rows)?;
        }
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut enc,
            "carbonio_collector_samples_appended",
            "Samples written to the WAL and the head",
            load(&s.samples_appended),
        )?;
        counter(
            &mut enc,
            "carbonio_collector_append_failures",
            "Scrape batches the WAL refused (not acknowledged)",
            load(&s.append_failures),
        )?;
        counter(
            &mut enc,
            "carbonio_collector_config_reloads",
            "Configuration reload attempts",
            load(&s.reloads),
        )?;
        counter(
            &mut enc,
            "carbonio_collector_config_reload_failures",
            "Configuration reloads rejected",
            load(&s.reload_failures),
        )?;
        gauge(
            &mut enc,
            "carbonio_collector_config_last_reload_successful",
            "Whether the last configuration reload succeeded",
            f64::from(u8::from(s.last_reload_ok.load(Ordering::Relaxed))),
        )?;
        gauge(
            &mut enc,
            "carbonio_collector_config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully",
            s.last_reload_success_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        )?;
        let (series, samples) = self
            .store
            .with_head(|h| (h.series_count(), h.sample_count()));
        gauge(
            &mut enc,
            "carbonio_collector_head_series",
            "Series in the in-memory head",
            series as f64,
        )?;
        gauge(
            &mut enc,
            "carbonio_collector_head_samples",
            "Samples in the in-memory head",
            samples as f64,
        )?;
        gauge(
            &mut enc,
            "carbonio_collector_metric_families",
            "Metric families with metadata",
            self.store.with_head(|h| h.metadata().len()) as f64,
        )?;
        let blocks = self.store.block_stats();
        gauge(
            &mut enc,
            "carbonio_collector_blocks",
            "Parquet blocks on disk",
            blocks.blocks as f64,
        )?;
        gauge(
            &mut enc,
            "carbonio_collector_blocks_bytes",
            "Bytes of all Parquet blocks",
            blocks.bytes as f64,
        )?;
        gauge(
            &mut enc,
            "carbonio_collector_blocks_samples",
            "Samples in all Parquet blocks",
            blocks.samples as f64,
        )?;
        let per_sample = if blocks.samples == 0 {
            0.0
        } else {
            blocks.bytes as f64 / blocks.samples as f64
        };
        gauge(
            &mut enc,
            "carbonio_collector_blocks_bytes_per_sample",
            "Bytes per stored sample across all blocks",
            per_sample,
        )?;
        gauge(
            &mut enc,
            "carbonio_collector_wal_bytes",
            "Bytes of the write-ahead log on disk",
            self.store.wal_bytes() as f64,
        )?;
        self.encode_logs(&mut enc)?;
        self.encode_remote_write(&mut enc)?;
        if let Some(tier) = crate::store::tier::installed() {
            let t = tier.stats();
            for (name, help, v) in [
                (
                    "carbonio_collector_object_store_uploads",
                    "Blocks uploaded to object storage",
                    t.uploads,
                ),
                (
                    "carbonio_collector_object_store_upload_bytes",
                    "Bytes uploaded to object storage",
                    t.upload_bytes,
                ),
                (
                    "carbonio_collector_object_store_upload_failures",
                    "Block uploads that failed (tried again)",
                    t.upload_failures,
                ),
                (
                    "carbonio_collector_object_store_range_requests",
                    "Range requests reads made to object storage",
                    t.range_requests,
                ),
                (
                    "carbonio_collector_object_store_block_deletions",
                    "Blocks deleted from object storage",
                    t.deletes,
                ),
            ] {
                counter(&mut enc, name, help, v)?;
            }
            gauge(
                &mut enc,
                "carbonio_collector_object_store_cache_bytes",
                "Bytes of remote files held in the local cache",
                t.cache.bytes as f64,
            )?;
        }
        self.encode_tail(&mut enc)
    }
}

impl SelfCollector {
    fn encode_remote_write(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        type Pick = fn(&QueueCounts) -> u64;
        let queues = self.remote_write.snapshot();
        let counters: [(&str, &str, Pick); 5] = [
            (
                "carbonio_collector_remote_write_samples_sent",
                "Samples the receiver accepted",
                |c| c.samples_sent,
            ),
            (
                "carbonio_collector_remote_write_samples_failed",
                "Samples the receiver refused with a non-retryable status (dropped)",
                |c| c.samples_failed,
            ),
            (
                "carbonio_collector_remote_write_samples_retried",
                "Samples in requests that failed and were tried again",
                |c| c.samples_retried,
            ),
            (
                "carbonio_collector_remote_write_samples_dropped",
                "Samples dropped by write_relabel_configs",
                |c| c.samples_dropped,
            ),
            (
                "carbonio_collector_remote_write_samples_given_up",
                "Unsent samples given up because the backlog passed max_backlog_bytes",
                |c| c.samples_given_up,
            ),
        ];
        for (name, help, pick) in counters {
            let rows = queues.iter().map(|(q, c)| {
                (
                    [("remote_name", q.as_str()), ("url", c.url.as_str())],
                    ConstCounter::new(pick(c)),
                )
            });
            family(enc, name, help, MetricType::Counter, rows)?;
        }
        family(
            enc,
            "carbonio_collector_remote_write_highest_sent_timestamp_seconds",
            "Newest sample timestamp the receiver accepted",
            MetricType::Gauge,
            queues.iter().map(|(q, c)| {
                (
                    [("remote_name", q.as_str()), ("url", c.url.as_str())],
                    ConstGauge::new(c.highest_sent_ms as f64 / 1000.0),
                )
            }),
        )?;
        family(
            enc,
            "carbonio_collector_remote_write_backlog_bytes",
            "WAL bytes not yet sent (kept for the queue)",
            MetricType::Gauge,
            queues.iter().map(|(q, c)| {
                (
                    [("remote_name", q.as_str()), ("url", c.url.as_str())],
                    ConstGauge::new(c.backlog_bytes as f64),
                )
            }),
        )
    }

    fn encode_tail(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        type Pick = fn(&FileCounts) -> u64;
        let files = self.tail.snapshot();
        let per_file: [(&str, &str, Pick); 7] = [
            (
                "carbonio_collector_tail_lines",
                "Log records read from tailed files",
                |c| c.lines,
            ),
            (
                "carbonio_collector_tail_bytes",
                "Bytes read from tailed files",
                |c| c.bytes,
            ),
            (
                "carbonio_collector_tail_parse_fallbacks",
                "Records kept as plain text because the file's parser did not match",
                |c| c.parse_fallbacks,
            ),
            (
                "carbonio_collector_tail_truncated",
                "Records cut at max_line_size or the multiline max_lines",
                |c| c.truncated,
            ),
            (
                "carbonio_collector_tail_rotations",
                "Times a tailed path was renamed away or deleted",
                |c| c.rotations,
            ),
            (
                "carbonio_collector_tail_truncations",
                "Times a tailed file was truncated in place (copytruncate)",
                |c| c.truncations,
            ),
            (
                "carbonio_collector_tail_write_failures",
                "Batches the WAL refused (read again)",
                |c| c.write_failures,
            ),
        ];
        for (name, help, pick) in per_file {
            let rows = files
                .iter()
                .map(|(p, c)| ([("path", p.as_str())], ConstCounter::new(pick(c))));
            family(enc, name, help, MetricType::Counter, rows)?;
        }
        gauge(
            enc,
            "carbonio_collector_tail_files",
            "Files open for tailing (rotated ones still draining included)",
            self.tail.followed() as f64,
        )
    }

    fn encode_logs(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        type Pick = fn(&ListenerCounts) -> u64;
        let listeners = self.syslog.listeners();
        let per_listener: [(&str, &str, Pick); 6] = [
            (
                "carbonio_collector_syslog_messages",
                "Syslog messages received",
                |c| c.messages,
            ),
            (
                "carbonio_collector_syslog_bytes",
                "Syslog message bytes received",
                |c| c.bytes,
            ),
            (
                "carbonio_collector_syslog_parse_fallbacks",
                "Messages stored raw because no syslog header parsed",
                |c| c.fallbacks,
            ),
            (
                "carbonio_collector_syslog_truncated",
                "Messages cut to max_message_size",
                |c| c.truncated,
            ),
            (
                "carbonio_collector_syslog_udp_dropped",
                "UDP messages dropped because the write queue was full",
                |c| c.dropped,
            ),
            (
                "carbonio_collector_syslog_write_failures",
                "Lines the WAL refused",
                |c| c.write_failures,
            ),
        ];
        for (name, help, pick) in per_listener {
            let rows = listeners
                .iter()
                .map(|(l, c)| ([("listener", l.as_str())], ConstCounter::new(pick(c))));
            family(enc, name, help, MetricType::Counter, rows)?;
        }
        let peers = self.syslog.peers();
        for (name, help, bytes) in [
            (
                "carbonio_collector_syslog_peer_messages",
                "Syslog messages received per sending host",
                false,
            ),
            (
                "carbonio_collector_syslog_peer_bytes",
                "Syslog bytes received per sending host",
                true,
            ),
        ] {
            let peer_names: Vec<String> = peers.keys().map(|(_, ip)| ip.to_string()).collect();
            let rows = peers.iter().zip(&peer_names).map(|(((l, _), c), peer)| {
                let v = if bytes { c.bytes } else { c.messages };
                (
                    [("listener", l.as_str()), ("peer", peer.as_str())],
                    ConstCounter::new(v),
                )
            });
            family(enc, name, help, MetricType::Counter, rows)?;
        }
        if let Some(n) = udp_receive_buffer_errors() {
            counter(enc, "carbonio_collector_udp_receive_buffer_errors", "UDP datagrams the kernel dropped for a full receive buffer (host-wide RcvbufErrors)", n)?;
        }
        let (parts, rows, bytes) = self.logs.part_stats();
        gauge(
            enc,
            "carbonio_collector_log_head_lines",
            "Log lines in the in-memory head",
            self.logs.head_len() as f64,
        )?;
        let held = ConstCounter::new(self.logs.held_at_cap().as_secs_f64());
        held.encode(enc.encode_descriptor(
            "carbonio_collector_log_head_full_seconds",
            "Time appends waited because the log head was full, summed over the appenders waiting (TCP, TLS and file senders were slowed; UDP dropped)",
            None,
            held.metric_type(),
        )?)?;
        gauge(
            enc,
            "carbonio_collector_log_parts",
            "Log part directories on disk",
            parts as f64,
        )?;
        gauge(
            enc,
            "carbonio_collector_log_lines_stored",
            "Log lines in Parquet parts",
            rows as f64,
        )?;
        gauge(
            enc,
            "carbonio_collector_log_bytes",
            "Bytes of all log Parquet files",
            bytes as f64,
        )?;
        let per_line = if rows == 0 {
            0.0
        } else {
            bytes as f64 / rows as f64
        };
        gauge(
            enc,
            "carbonio_collector_log_bytes_per_line",
            "Stored bytes per log line",
            per_line,
        )?;
        Ok(())
    }
}
