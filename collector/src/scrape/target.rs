//! One scrape of one target, as Prometheus does it: the request (Accept
//! negotiation, gzip, timeout header, auth), parsing, target labels merged
//! with `honor_labels` semantics, metric relabeling, `sample_limit`, the
//! synthetic series, and staleness markers for series that disappeared.

use super::parse::{Event, Format, MetricType, Parser};
use crate::config::{Job, Scheme};
use crate::relabel::{self, Labels};
use crate::store::SeriesLabels;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Prometheus's Accept header: OpenMetrics preferred, text 0.0.4 accepted.
pub const ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
/// The bit pattern Prometheus uses for a staleness marker.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;
/// Bodies larger than this are refused, so one target cannot exhaust memory.
const MAX_BODY: u64 = 256 << 20;

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// All labels, `__name__` included (shared with the scrape cache).
    pub labels: Arc<SeriesLabels>,
    pub value: f64,
    pub timestamp_ms: i64,
}

impl Sample {
    pub fn is_stale_marker(&self) -> bool {
        self.value.to_bits() == STALE_NAN_BITS
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    pub family: String,
    pub kind: Option<MetricType>,
    pub help: Option<String>,
    pub unit: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ScrapeResult {
    /// Scraped samples after relabeling, then staleness markers, then the synthetic series.
    pub samples: Vec<Sample>,
    pub metadata: Vec<Metadata>,
    pub error: Option<String>,
    pub duration: Duration,
}

/// What must survive between scrapes of one target: the scrape cache, as
/// Prometheus keeps one. It maps each series as written in the exposition
/// to its final labels (None: dropped by relabeling), so a known series
/// costs one hash lookup instead of label parsing, merging and relabeling;
/// and it knows which series the last scrape had, for staleness.
#[derive(Debug, Default)]
pub struct TargetState {
    cache: HashMap<String, CacheEntry, foldhash::fast::RandomState>,
    /// Number of the current scrape.
    scrape: u64,
    /// Bumped when the configuration may have changed: cached labels are
    /// recomputed on their next hit.
    generation: u64,
}

#[derive(Debug)]
struct CacheEntry {
    labels: Option<Arc<SeriesLabels>>,
    /// The last scrape that had this series, and the one before.
    seen: u64,
    prev: u64,
    generation: u64,
    /// Its last sample carried its own (honored) timestamp: as Prometheus
    /// does, such a series gets no staleness marker.
    timestamped: bool,
}

impl CacheEntry {
    fn see(&mut self, scrape: u64) {
        if self.seen != scrape {
            self.prev = self.seen;
            self.seen = scrape;
        }
    }
}

/// The series a scrape always writes besides the scraped ones.
const SYNTHETIC: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

impl TargetState {
    /// Staleness markers for every series of the last scrape, synthetic ones
    /// included: what Prometheus writes when a target goes away.
    pub fn end_of_run(&self, target: &Labels, now_ms: i64) -> Vec<Sample> {
        let mut out: Vec<Sample> = self
            .cache
            .values()
            .filter(|e| e.seen == self.scrape && !e.timestamped)
            .filter_map(|e| e.labels.clone())
            .map(|labels| stale(labels, now_ms))
            .collect();
        for name in SYNTHETIC {
            let mut labels = public_labels(target);
            labels.insert("__name__".into(), name.into());
            out.push(stale(Arc::new(SeriesLabels::new(labels)), now_ms));
        }
        out
    }

    /// Staleness markers for the series of the last scrape that are gone
    /// now (all of them when this scrape failed); the cache forgets them.
    fn finish_scrape(&mut self, failed: bool, now_ms: i64) -> Vec<Sample> {
        let (last, now) = (self.scrape - 1, self.scrape);
        let mut markers = Vec::new();
        self.cache.retain(|_, e| {
            let in_last = e.seen == last || (failed && e.seen == now && e.prev == last);
            let in_now = e.seen == now && !failed;
            if in_last && !in_now && !e.timestamped {
                if let Some(l) = &e.labels {
                    markers.push(stale(l.clone(), now_ms));
                }
            }
            in_now
        });
        markers
    }

    /// The configuration may have changed (a reload): labels are recomputed
    /// on their next hit, staleness still compares with the last scrape.
    pub fn rebind(&mut self) {
        self.generation += 1;
    }
}

fn stale(labels: Arc<SeriesLabels>, now_ms: i64) -> Sample {
    Sample {
        labels,
        value: f64::from_bits(STALE_NAN_BITS),
        timestamp_ms: now_ms,
    }
}

pub struct Scraper {
    /// Err: the job's `tls_config` cannot be used; every scrape says why.
    agent: Result<ureq::Agent, String>,
}

impl Scraper {
    /// A client for `job`'s targets, with its `tls_config`.
    pub fn for_job(job: &Job) -> Self {
        let builder = ureq::AgentBuilder::new()
            .user_agent(concat!("carbonio-monitor/", env!("CARGO_PKG_VERSION")));
        let agent = match &job.config.tls_config {
            Some(t) => super::tls::client_config(t).map(|c| builder.tls_config(c).build()),
            None => Ok(builder.build()),
        };
        if let Err(e) = &agent {
            tracing::error!(job = %job.config.job_name, error = %e, "tls_config unusable; scrapes will fail");
        }
        Scraper { agent }
    }

    /// Scrapes `target` (its final labels, `__` ones included) at `now_ms`.
    pub fn scrape(
        &self,
        job: &Job,
        target: &Labels,
        state: &mut TargetState,
        now_ms: i64,
    ) -> ScrapeResult {
        let start = Instant::now();
        let fetched = self.fetch(job, target);
        let duration = start.elapsed();
        state.scrape += 1;
        let mut added = 0;
        let (mut samples, metadata, scraped, error) = match fetched.and_then(|(body, format)| {
            process_cached(job, target, &body, format, now_ms, state, &mut added)
        }) {
            Ok((samples, metadata, scraped)) => (samples, metadata, scraped, None),
            Err(e) => (Vec::new(), Vec::new(), 0, Some(e)),
        };
        let post_relabel = samples.len();
        samples.extend(state.finish_scrape(error.is_some(), now_ms));
        let up = if error.is_none() { 1.0 } else { 0.0 };
        let values = [
            up,
            duration.as_secs_f64(),
            scraped as f64,
            post_relabel as f64,
            added as f64,
        ];
        for (name, value) in SYNTHETIC.into_iter().zip(values) {
            let mut labels = public_labels(target);
            labels.insert("__name__".into(), name.into());
            samples.push(Sample {
                labels: Arc::new(SeriesLabels::new(labels)),
                value,
                timestamp_ms: now_ms,
            });
        }
        ScrapeResult {
            samples,
            metadata,
            error,
            duration,
        }
    }

    fn fetch(&self, job: &Job, target: &Labels) -> Result<(String, Format), String> {
        let c = &job.config;
        let url = scrape_url(job, target);
        let agent = self.agent.as_ref().map_err(Clone::clone)?;
        let mut req = agent
            .get(&url)
            .timeout(job.timeout)
            .set("Accept", ACCEPT)
            .set("Accept-Encoding", "gzip")
            .set(
                "X-Prometheus-Scrape-Timeout-Seconds",
                &format!("{}", job.timeout.as_secs_f64()),
            );
        if let Some(header) = crate::config::auth_header(&c.basic_auth, &c.authorization)? {
            req = req.set("Authorization", &header);
        }
        let resp = req.call().map_err(|e| match e {
            ureq::Error::Status(code, _) => format!("server returned HTTP status {code}"),
            other => other.to_string(),
        })?;
        let format = if resp.content_type() == "application/openmetrics-text" {
            Format::OpenMetrics
        } else {
            Format::Text004
        };
        let gzip = resp
            .header("Content-Encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
        let mut raw = Vec::new();
        resp.into_reader()
            .take(MAX_BODY + 1)
            .read_to_end(&mut raw)
            .map_err(|e| e.to_string())?;
        let mut body = Vec::new();
        if gzip {
            flate2::read::GzDecoder::new(raw.as_slice())
                .take(MAX_BODY + 1)
                .read_to_end(&mut body)
                .map_err(|e| format!("gzip: {e}"))?;
        } else {
            body = raw;
        }
        if body.len() as u64 > MAX_BODY {
            return Err(format!("body larger than {MAX_BODY} bytes"));
        }
        let text = String::from_utf8(body).map_err(|_| "body is not UTF-8".to_string())?;
        Ok((text, format))
    }
}

/// The URL a target is scraped at, from its `__scheme__`, `__address__`,
/// `__metrics_path__` and `__param_*` labels.
pub fn scrape_url(job: &Job, target: &Labels) -> String {
    let get = |k: &str| target.get(k).map(String::as_str).unwrap_or("");
    let scheme = match get("__scheme__") {
        "" => match job.config.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        },
        s => s,
    };
    let params: Vec<String> = target
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("__param_")
                .map(|p| format!("{}={}", encode(p), encode(v)))
        })
        .collect();
    let mut url = format!(
        "{scheme}://{}{}",
        get("__address__"),
        get("__metrics_path__")
    );
    if !params.is_empty() {
        url.push('?');
        url.push_str(&params.join("&"));
    }
    url
}

/// The target's labels that series carry (job, instance, static labels).
fn public_labels(target: &Labels) -> Labels {
    target
        .iter()
        .filter(|(k, _)| !k.starts_with("__"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

type Processed = (Vec<Sample>, Vec<Metadata>, usize);

/// Parses a body and turns it into stored samples, without a cache (tests).
pub fn process(
    job: &Job,
    target: &Labels,
    body: &str,
    format: Format,
    now_ms: i64,
) -> Result<Processed, String> {
    let mut state = TargetState {
        scrape: 1,
        ..TargetState::default()
    };
    process_cached(job, target, body, format, now_ms, &mut state, &mut 0)
}

/// The final labels of one scraped series: target labels merged (with
/// `honor_labels`), metric relabeling; None when relabeling drops it.
fn final_labels(job: &Job, target_labels: &Labels, s: super::parse::Sample) -> Option<Labels> {
    let mut labels = s.into_labels();
    for (k, v) in target_labels {
        if job.config.honor_labels {
            labels.entry(k.clone()).or_insert_with(|| v.clone());
        } else {
            if let Some(existing) = labels.remove(k) {
                labels.insert(format!("exported_{k}"), existing);
            }
            labels.insert(k.clone(), v.clone());
        }
    }
    if !relabel::apply(&job.metric_relabel, &mut labels) {
        return None;
    }
    labels.retain(|_, v| !v.is_empty());
    Some(labels)
}

/// `process` through the target's scrape cache; counts new series in `added`.
fn process_cached(
    job: &Job,
    target: &Labels,
    body: &str,
    format: Format,
    now_ms: i64,
    state: &mut TargetState,
    added: &mut usize,
) -> Result<Processed, String> {
    let target_labels = public_labels(target);
    let mut samples = Vec::new();
    let mut meta: BTreeMap<String, Metadata> = BTreeMap::new();
    let mut scraped = 0usize;
    let (scrape, generation) = (state.scrape, state.generation);
    for event in Parser::new(body, format) {
        match event.map_err(|e| e.to_string())? {
            Event::Sample(s) => {
                scraped += 1;
                let value = s.value;
                let timestamp_ms = s.timestamp_ms.filter(|_| job.config.honor_timestamps);
                let timestamped = timestamp_ms.is_some();
                let labels = match state.cache.get_mut(s.series) {
                    Some(e) if e.generation == generation => {
                        e.see(scrape);
                        e.timestamped = timestamped;
                        e.labels.clone()
                    }
                    Some(e) => {
                        let labels = final_labels(job, &target_labels, s)
                            .map(|l| Arc::new(SeriesLabels::new(l)));
                        // Relabeled differently after a reload: the old series ends.
                        if let Some(old) = e.labels.take().filter(|o| Some(o) != labels.as_ref()) {
                            samples.push(stale(old, now_ms));
                        }
                        e.labels = labels.clone();
                        e.see(scrape);
                        e.generation = generation;
                        e.timestamped = timestamped;
                        labels
                    }
                    None => {
                        let key = s.series.to_string();
                        let labels = final_labels(job, &target_labels, s)
                            .map(|l| Arc::new(SeriesLabels::new(l)));
                        *added += usize::from(labels.is_some());
                        state.cache.insert(
                            key,
                            CacheEntry {
                                labels: labels.clone(),
                                seen: scrape,
                                prev: 0,
                                generation,
                                timestamped,
                            },
                        );
                        labels
                    }
                };
                let Some(labels) = labels else { continue };
                samples.push(Sample {
                    labels,
                    value,
                    timestamp_ms: timestamp_ms.unwrap_or(now_ms),
                });
            }
            Event::Help { family, text } => meta_entry(&mut meta, family).help = Some(text),
            Event::Type { family, kind } => meta_entry(&mut meta, family).kind = Some(kind),
            Event::Unit { family, unit } => {
                meta_entry(&mut meta, family).unit = Some(unit.to_string())
            }
            Event::Eof => {}
        }
    }
    let limit = job.config.sample_limit as usize;
    if limit > 0 && samples.len() > limit {
        return Err(format!(
            "sample limit exceeded: {} > {limit}",
            samples.len()
        ));
    }
    Ok((samples, meta.into_values().collect(), scraped))
}

fn meta_entry<'m>(meta: &'m mut BTreeMap<String, Metadata>, family: &str) -> &'m mut Metadata {
    meta.entry(family.to_string()).or_insert_with(|| Metadata {
        family: family.to_string(),
        kind: None,
        help: None,
        unit: None,
    })
}

/// A deterministic per-target offset inside the interval, so targets spread
/// their scrapes instead of all firing at once (as Prometheus does).
pub fn jitter(target: &Labels, interval: Duration) -> Duration {
    use md5::{Digest, Md5};
    let key: String = target.iter().map(|(k, v)| format!("{k}={v};")).collect();
    let d = Md5::digest(key.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    let ms = interval.as_millis().max(1) as u64;
    Duration::from_millis(u64::from_be_bytes(b) % ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn job(extra: &str) -> Job {
        let text = format!("scrape_configs:\n  - job_name: node\n{extra}    static_configs:\n      - targets: ['h:9100']\n");
        Config::parse(Path::new("t.yml"), &text)
            .unwrap()
            .1
            .remove(0)
    }

    fn target() -> Labels {
        [
            ("job", "node"),
            ("instance", "h:9100"),
            ("__address__", "h:9100"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn target_labels_win_unless_honored() {
        let body = "m{instance=\"other\",x=\"1\",empty=\"\"} 1 1000\n";
        let (s, _, n) = process(&job(""), &target(), body, Format::Text004, 5000).unwrap();
        assert_eq!(n, 1);
        assert_eq!(s[0].labels["instance"], "h:9100");
        assert_eq!(s[0].labels["exported_instance"], "other");
        assert!(!s[0].labels.contains_key("empty"));
        assert_eq!(s[0].timestamp_ms, 1000);
        let (s, _, _) = process(
            &job("    honor_labels: true\n    honor_timestamps: false\n"),
            &target(),
            body,
            Format::Text004,
            5000,
        )
        .unwrap();
        assert_eq!(s[0].labels["instance"], "other");
        assert_eq!(s[0].timestamp_ms, 5000);
    }

    #[test]
    fn metric_relabel_and_sample_limit() {
        let body = "go_goroutines 5\nnode_load1 0.5\nnode_load5 0.4\n";
        let j = job("    metric_relabel_configs:\n      - source_labels: [__name__]\n        regex: go_.*\n        action: drop\n");
        let (s, _, n) = process(&j, &target(), body, Format::Text004, 0).unwrap();
        assert_eq!((n, s.len()), (3, 2));
        let j = job("    sample_limit: 1\n");
        assert!(process(&j, &target(), body, Format::Text004, 0)
            .unwrap_err()
            .contains("sample limit"));
    }

    #[test]
    fn cache_gives_staleness_for_vanished_and_failed() {
        let j = job("");
        let mut st = TargetState::default();
        let run = |st: &mut TargetState, body: Option<&str>| {
            st.scrape += 1;
            let mut added = 0;
            let got = body.map(|b| {
                process_cached(&j, &target(), b, Format::Text004, 0, st, &mut added).unwrap()
            });
            let markers = st.finish_scrape(got.is_none(), 0);
            let mut names: Vec<String> = markers
                .iter()
                .map(|m| m.labels["__name__"].clone())
                .collect();
            names.sort();
            (added, names)
        };
        assert_eq!(run(&mut st, Some("a 1\nb 1\n")), (2, vec![]));
        assert_eq!(run(&mut st, Some("a 2\nc 1\n")), (1, vec!["b".to_string()]));
        // A failed scrape: everything of the last one goes stale.
        assert_eq!(
            run(&mut st, None),
            (0, vec!["a".to_string(), "c".to_string()])
        );
        assert_eq!(run(&mut st, Some("a 3\n")), (1, vec![]));
        assert_eq!(st.end_of_run(&target(), 0).len(), 1 + SYNTHETIC.len());

        // Series with their own timestamps never go stale, unless the job
        // ignores those timestamps.
        let mut st = TargetState::default();
        assert_eq!(run(&mut st, Some("t 1 1000\nu 1\n")), (2, vec![]));
        assert_eq!(run(&mut st, None), (0, vec!["u".to_string()]));
        assert_eq!(run(&mut st, Some("t 1 2000\nu 1\n")), (2, vec![]));
        assert_eq!(st.end_of_run(&target(), 0).len(), 1 + SYNTHETIC.len());
        let j = job("    honor_timestamps: false\n");
        let mut st = TargetState::default();
        let mut added = 0;
        st.scrape += 1;
        process_cached(
            &j,
            &target(),
            "t 1 1000\n",
            Format::Text004,
            0,
            &mut st,
            &mut added,
        )
        .unwrap();
        st.scrape += 1;
        assert_eq!(st.finish_scrape(true, 0).len(), 1);
    }

    #[test]
    fn metadata_is_kept() {
        let body = "# HELP a_total Things.\n# TYPE a_total counter\na_total 1\n";
        let (_, m, _) = process(&job(""), &target(), body, Format::Text004, 0).unwrap();
        assert_eq!(
            m,
            vec![Metadata {
                family: "a_total".into(),
                kind: Some(MetricType::Counter),
                help: Some("Things.".into()),
                unit: None
            }]
        );
    }

    #[test]
    fn jitter_is_stable_and_inside_the_interval() {
        let i = Duration::from_secs(15);
        assert_eq!(jitter(&target(), i), jitter(&target(), i));
        assert!(jitter(&target(), i) < i);
    }
}
