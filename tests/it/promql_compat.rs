//! PromQL correctness: the same backfilled data in a real Prometheus (2.42)
//! and in ours, the same ~1,300 queries (instant and range, valid and
//! invalid) against both HTTP APIs, the same answers: status, result type,
//! label sets, values to 1e-9 relative, error types. Plus promtool's `query`
//! subcommands against our API.
//!
//! Debugging: PROMQL_COMPAT_FILTER=text runs only the queries containing it;
//! PROMQL_COMPAT_VERBOSE=1 prints every query with Prometheus's answer.

use crate::harness::{
    free_port, http_get, prometheus_with_storage, require, run_ok, spawn, wait_until, Service, OURS,
};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Mismatches that do not fail the test: (query, why). Each entry needs a
/// reason a reviewer accepts, e.g. a documented Prometheus quirk we
/// deliberately do not reproduce.
const KNOWN_QUIRKS: &[(&str, &str)] = &[];

/// `CARBONIO_MONITOR_ADMIN_PASSWORD` of our query server; `admin` is the user.
const PASSWORD: &str = "promql-compat-s3cret";

/// Sample spacing of the generated data (a 15 s scrape interval), seconds.
const STEP: i64 = 15;
/// Samples of a full-length series: two hours at STEP, both ends included.
const POINTS: i64 = 481;

// ---------------------------------------------------------------- the data

/// Generated OpenMetrics backfill: samples at `start + i * STEP`, i < POINTS.
pub struct Dataset {
    pub start: i64,
    pub end: i64,
    pub text: String,
}

/// OpenMetrics number text: what both parsers read to the same f64.
fn om_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v:?}")
    }
}

struct Om {
    text: String,
    start: i64,
}

impl Om {
    fn family(&mut self, name: &str, kind: &str) {
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    /// One series; `value(i)` is None where the series has no sample.
    fn series(&mut self, name: &str, labels: &[(&str, &str)], value: impl Fn(i64) -> Option<f64>) {
        let mut prefix = String::from(name);
        if !labels.is_empty() {
            let parts: Vec<String> = labels
                .iter()
                .map(|(k, v)| {
                    let escaped = v
                        .replace('\\', "\\\\")
                        .replace('"', "\\\"")
                        .replace('\n', "\\n");
                    format!("{k}=\"{escaped}\"")
                })
                .collect();
            let _ = write!(prefix, "{{{}}}", parts.join(","));
        }
        for i in 0..POINTS {
            if let Some(v) = value(i) {
                let _ = writeln!(
                    self.text,
                    "{prefix} {} {}",
                    om_value(v),
                    self.start + i * STEP
                );
            }
        }
    }
}

/// xorshift64*: deterministic pseudo-random numbers for the histogram.
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

/// A counter from per-step increments, starting over (from the increment)
/// at the sample indices in `resets`; `None` outside [from, to).
fn counter(
    from: i64,
    to: i64,
    initial: f64,
    resets: &[i64],
    inc: &dyn Fn(i64) -> f64,
) -> impl Fn(i64) -> Option<f64> {
    let mut values = vec![None; POINTS as usize];
    let mut v = initial;
    for i in from..to.min(POINTS) {
        if resets.contains(&i) {
            v = 0.0;
        }
        if i > from || resets.contains(&i) {
            v += inc(i);
        }
        values[i as usize] = Some(v);
    }
    move |i| values[i as usize]
}

/// A value for each sample index.
type Curve = fn(i64) -> f64;
/// A value for some sample indices.
type Sparse = fn(i64) -> Option<f64>;

/// The jobs/instances most metrics share (for vector matching).
const TARGETS: [(&str, &str); 4] = [
    ("api", "10.0.0.1:8080"),
    ("api", "10.0.0.2:8080"),
    ("web", "10.0.1.1:80"),
    ("web", "10.0.1.2:80"),
];

/// Two hours of data ending at `end` (a whole minute).
pub fn dataset(end: i64) -> Dataset {
    let start = end - (POINTS - 1) * STEP;
    let mut om = Om {
        text: String::new(),
        start,
    };

    // Counters: different slopes, fractional and sparse integer increments,
    // resets, one series starting late (already high), one stopping early.
    om.family("http_requests", "counter");
    for (ti, (job, instance)) in TARGETS.iter().take(3).enumerate() {
        for (mi, method) in ["GET", "POST"].iter().enumerate() {
            for (ci, code) in ["200", "500"].iter().enumerate() {
                let idx = (ti * 4 + mi * 2 + ci) as i64;
                let resets: &[i64] = match idx {
                    1 | 6 => &[160],
                    9 => &[300, 330],
                    _ => &[],
                };
                let base = [3.0, 1.2, 0.4][ti] * if mi == 1 { 0.25 } else { 1.0 };
                let values = if ci == 0 {
                    counter(0, POINTS, 10.0 * idx as f64, resets, &move |i| {
                        let x = base * 15.0 * (1.0 + 0.5 * (i as f64 * 0.07 + idx as f64).sin());
                        (x * 1000.0).round() / 1000.0
                    })
                } else {
                    counter(0, POINTS, idx as f64, resets, &move |i| {
                        if (i * 7 + idx) % 5 == 0 {
                            1.0
                        } else {
                            0.0
                        }
                    })
                };
                om.series(
                    "http_requests_total",
                    &[
                        ("job", job),
                        ("instance", instance),
                        ("method", method),
                        ("code", code),
                    ],
                    values,
                );
            }
        }
    }
    om.series(
        "http_requests_total",
        &[
            ("job", "web"),
            ("instance", "10.0.1.2:80"),
            ("method", "GET"),
            ("code", "200"),
        ],
        counter(240, POINTS, 1000.0, &[], &|_| 30.0),
    );
    om.series(
        "http_requests_total",
        &[
            ("job", "api"),
            ("instance", "10.0.0.1:8080"),
            ("method", "GET"),
            ("code", "404"),
        ],
        counter(0, 400, 0.0, &[], &|i| if i % 3 == 0 { 2.0 } else { 0.0 }),
    );

    om.family("cpu_seconds", "counter");
    for (k, (mode, slope)) in [("user", 0.37), ("system", 0.11), ("idle", 1.52)]
        .into_iter()
        .enumerate()
    {
        for host in ["mx1", "mx2"] {
            let resets: &[i64] = if host == "mx2" && k == 0 { &[420] } else { &[] };
            om.series(
                "cpu_seconds_total",
                &[("instance", host), ("mode", mode)],
                counter(0, POINTS, 1234.5, resets, &move |i| {
                    slope * 15.0 + 0.01 * ((i + k as i64) % 4) as f64
                }),
            );
        }
    }

    // A classic histogram: two instances with different latency profiles,
    // the second resetting half-way.
    om.family("http_request_duration_seconds", "histogram");
    let les = ["0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "+Inf"];
    let bounds = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, f64::INFINITY];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for (n, (job, instance)) in TARGETS.iter().take(2).enumerate() {
        let scale = [0.2, 0.6][n];
        let mut buckets = vec![vec![0.0f64; POINTS as usize]; les.len()];
        let (mut sum, mut count) = (vec![0.0f64; POINTS as usize], vec![0.0f64; POINTS as usize]);
        let mut acc = vec![0.0f64; les.len()];
        let (mut s, mut c) = (0.0f64, 0.0f64);
        for i in 0..POINTS as usize {
            if n == 1 && i == 240 {
                acc.iter_mut().for_each(|a| *a = 0.0);
                (s, c) = (0.0, 0.0);
            }
            if i > 0 {
                let k = 5 + rng.next() % 10;
                for _ in 0..k {
                    let latency = (-rng.unit().ln() * scale * 1000.0).round() / 1000.0;
                    for (b, bound) in bounds.iter().enumerate() {
                        if latency <= *bound {
                            acc[b] += 1.0;
                        }
                    }
                    s += latency;
                    c += 1.0;
                }
            }
            for b in 0..les.len() {
                buckets[b][i] = acc[b];
            }
            sum[i] = (s * 1000.0).round() / 1000.0;
            count[i] = c;
        }
        for (b, le) in les.iter().enumerate() {
            let values = &buckets[b];
            om.series(
                "http_request_duration_seconds_bucket",
                &[("job", job), ("instance", instance), ("le", le)],
                |i| Some(values[i as usize]),
            );
        }
        om.series(
            "http_request_duration_seconds_sum",
            &[("job", job), ("instance", instance)],
            |i| Some(sum[i as usize]),
        );
        om.series(
            "http_request_duration_seconds_count",
            &[("job", job), ("instance", instance)],
            |i| Some(count[i as usize]),
        );
    }

    // Gauges with negative, fractional and exactly-half values.
    om.family("node_temperature_celsius", "gauge");
    let temps: [(&str, &str, Curve); 5] = [
        ("10.0.0.1:8080", "cpu", |i| {
            (55000.0 + 10000.0 * (i as f64 / 20.0).sin()).round() / 1000.0
        }),
        ("10.0.0.1:8080", "ambient", |i| {
            (-3500.0 + 4000.0 * (i as f64 / 37.0 + 1.0).sin()).round() / 1000.0
        }),
        ("10.0.0.2:8080", "cpu", |i| 61.25 + 0.25 * (i % 7) as f64),
        ("10.0.0.2:8080", "ambient", |i| {
            -12.75 + 0.5 * (i / 60) as f64
        }),
        ("10.0.0.2:8080", "gpu", |i| -2.5 + 0.5 * (i % 11) as f64),
    ];
    for (instance, sensor, f) in temps {
        om.series(
            "node_temperature_celsius",
            &[("job", "api"), ("instance", instance), ("sensor", sensor)],
            move |i| Some(f(i)),
        );
    }

    // Gaps: one series stops half-way, one starts late, one has a 15 min
    // hole (longer than the 5 min lookback), one is sampled every 2 min.
    om.family("queue_size", "gauge");
    let queues: [(&str, &str, Sparse); 5] = [
        ("mx1", "active", |i| Some(((i * 13) % 50) as f64)),
        ("mx1", "deferred", |i| {
            (i < 200).then_some(100.0 - (i / 4) as f64)
        }),
        ("mx2", "active", |i| {
            (i >= 300).then_some((i % 9) as f64 * 1.5)
        }),
        ("mx2", "deferred", |i| {
            (!(100..160).contains(&i)).then_some(20.0 + ((i / 10) % 6) as f64)
        }),
        ("mx2", "hold", |i| {
            (i % 8 == 0).then_some((i / 8) as f64 * 0.25)
        }),
    ];
    for (host, queue, f) in queues {
        om.series("queue_size", &[("host", host), ("queue", queue)], f);
    }

    // NaN and infinities among ordinary values.
    om.family("weird_values", "gauge");
    om.series("weird_values", &[("kind", "nan")], |i| {
        Some(if i % 10 == 0 {
            f64::NAN
        } else {
            (i % 17) as f64 - 8.0
        })
    });
    om.series("weird_values", &[("kind", "inf")], |i| {
        Some(match i % 40 {
            0 => f64::INFINITY,
            20 => f64::NEG_INFINITY,
            _ => 1.5 * (i % 5) as f64,
        })
    });
    om.series("weird_values", &[("kind", "plain")], |i| {
        Some(0.1 * i as f64)
    });

    // Info-style metric for label_replace/label_join/group_left; one label
    // value needs escaping.
    om.family("build_info", "gauge");
    let builds = [
        ("1.2.3", "abc123", "main", ""),
        ("1.2.3", "def456", "main", ""),
        ("2.0.0-rc.1", "0f0f0f", "release/2.0", ""),
        ("2.0.0", "beef", "release/2.0", "say \"hi\" \\ bye"),
    ];
    for ((job, instance), (version, revision, branch, note)) in TARGETS.iter().zip(builds) {
        let mut labels = vec![
            ("job", *job),
            ("instance", *instance),
            ("version", version),
            ("revision", revision),
            ("branch", branch),
        ];
        if !note.is_empty() {
            labels.push(("note", note));
        }
        om.series("build_info", &labels, |_| Some(1.0));
    }

    om.family("machine_cpu_cores", "gauge");
    for ((job, instance), cores) in TARGETS.iter().zip([4.0, 8.0, 2.0, 2.0]) {
        om.series(
            "machine_cpu_cores",
            &[("job", job), ("instance", instance)],
            move |_| Some(cores),
        );
    }
    om.family("machine_memory_bytes", "gauge");
    for ((job, instance), bytes) in TARGETS.iter().zip([16e9, 32e9, 8e9, 8e9]) {
        om.series(
            "machine_memory_bytes",
            &[("job", job), ("instance", instance)],
            move |_| Some(bytes),
        );
    }
    om.family("config_version", "gauge");
    for (n, (job, instance)) in TARGETS.iter().enumerate() {
        om.series(
            "config_version",
            &[("job", job), ("instance", instance)],
            move |i| {
                Some(match n {
                    0 | 1 => 3.0,
                    2 if i < 300 => 4.0,
                    2 => 6.0,
                    _ => 5.0,
                })
            },
        );
    }

    // Unix timestamps for the date functions: a leap day, a year's last
    // half second, the first of March 2000 and of 2100 (not a leap year);
    // the second instance restarts half-way.
    om.family("process_start_time_seconds", "gauge");
    let restart = (start + 240 * STEP) as f64;
    let starts: [fn(i64, f64) -> f64; 4] = [
        |_, _| 1_709_251_199.0,
        |i, restart| if i < 240 { 1_704_067_199.5 } else { restart },
        |_, _| 951_868_800.0,
        |_, _| 4_107_542_400.0,
    ];
    for ((job, instance), f) in TARGETS.iter().zip(starts) {
        om.series(
            "process_start_time_seconds",
            &[("job", job), ("instance", instance)],
            move |i| Some(f(i, restart)),
        );
    }

    // Large, nearly linear values for deriv/predict_linear.
    om.family("disk_free_bytes", "gauge");
    for (k, (host, device)) in [("mx1", "sda"), ("mx1", "sdb"), ("mx2", "sda")]
        .into_iter()
        .enumerate()
    {
        om.series(
            "disk_free_bytes",
            &[("instance", host), ("device", device)],
            move |i| {
                let kf = k as f64;
                Some(
                    (5e11 - i as f64 * 1.5e6 * (kf + 1.0) + 2e6 * (i as f64 / 9.0 + kf).sin())
                        .round(),
                )
            },
        );
    }

    // 0/1 flapping for changes/count_values/bool comparisons.
    om.family("service_up", "gauge");
    for (k, service) in ["mta", "proxy", "mailbox", "ldap"].into_iter().enumerate() {
        for host in ["mx1", "mx2"] {
            let steady = service == "ldap" && host == "mx2";
            let period = 20 + 7 * k as i64 + if host == "mx2" { 3 } else { 0 };
            om.series(
                "service_up",
                &[("service", service), ("host", host)],
                move |i| {
                    Some(if !steady && (i / period) % 5 == 4 {
                        0.0
                    } else {
                        1.0
                    })
                },
            );
        }
    }

    // A recording-rule style name with colons.
    om.family("job:http_requests:rate5m", "gauge");
    for (n, job) in ["api", "web"].into_iter().enumerate() {
        om.series("job:http_requests:rate5m", &[("job", job)], move |i| {
            Some((n + 1) as f64 * 2.5 + (i % 13) as f64 * 0.1)
        });
    }

    // Untyped buckets: service a is not monotonic, service b has no +Inf.
    let rpc: [(&str, &str, Curve); 5] = [
        ("a", "0.1", |i| 10.0 + i as f64),
        ("a", "1.0", |i| 8.0 + i as f64),
        ("a", "+Inf", |i| 20.0 + 2.0 * i as f64),
        ("b", "0.1", |i| 5.0 + i as f64),
        ("b", "1.0", |i| 9.0 + 2.0 * i as f64),
    ];
    om.family("rpc_latency_seconds_bucket", "unknown");
    for (service, le, f) in rpc {
        om.series(
            "rpc_latency_seconds_bucket",
            &[("service", service), ("le", le)],
            move |i| Some(f(i)),
        );
    }

    om.text.push_str("# EOF\n");
    Dataset {
        start,
        end,
        text: om.text,
    }
}

// ---------------------------------------------------------------- the queries

#[derive(Clone, Debug, PartialEq)]
pub enum Expect {
    /// Must succeed on Prometheus.
    Valid,
    /// Must fail on Prometheus with this errorType.
    Invalid(&'static str),
}

#[derive(Clone, Debug)]
pub enum Kind {
    Instant(f64),
    Range { start: f64, end: f64, step: String },
}

#[derive(Clone, Debug)]
pub struct Case {
    pub query: String,
    pub kind: Kind,
    pub expect: Expect,
}

impl Case {
    /// The API path and query string (without the server).
    fn path(&self) -> String {
        let q = percent_encode(&self.query);
        match &self.kind {
            Kind::Instant(t) => format!("/api/v1/query?query={q}&time={}", fmt_time(*t)),
            Kind::Range { start, end, step } => format!(
                "/api/v1/query_range?query={q}&start={}&end={}&step={}",
                fmt_time(*start),
                fmt_time(*end),
                percent_encode(step)
            ),
        }
    }

    fn describe(&self) -> String {
        match &self.kind {
            Kind::Instant(t) => format!("instant {} @ {}", self.query, fmt_time(*t)),
            Kind::Range { start, end, step } => format!(
                "range {} [{} .. {} step {step}]",
                self.query,
                fmt_time(*start),
                fmt_time(*end)
            ),
        }
    }

    /// Whether the result order is part of the answer: instant queries whose
    /// outermost operation is sort or sort_desc.
    fn ordered(&self) -> bool {
        if !matches!(self.kind, Kind::Instant(_)) {
            return false;
        }
        let q = self.query.trim();
        let Some(inner) = q
            .strip_prefix("sort_desc(")
            .or_else(|| q.strip_prefix("sort("))
        else {
            return false;
        };
        // The parenthesis opened by sort( must be the one closing the query.
        let mut depth = 1i32;
        for (n, ch) in inner.char_indices() {
            match ch {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        return n == inner.len() - 1;
                    }
                }
                _ => {}
            }
        }
        false
    }
}

fn fmt_time(t: f64) -> String {
    format!("{t}")
}

pub fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

pub fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

struct Suite {
    cases: Vec<Case>,
}

impl Suite {
    fn instant(&mut self, query: impl Into<String>, t: f64) {
        self.cases.push(Case {
            query: query.into(),
            kind: Kind::Instant(t),
            expect: Expect::Valid,
        });
    }
    fn range(&mut self, query: impl Into<String>, (start, end, step): (f64, f64, &str)) {
        self.cases.push(Case {
            query: query.into(),
            kind: Kind::Range {
                start,
                end,
                step: step.into(),
            },
            expect: Expect::Valid,
        });
    }
    fn invalid(&mut self, query: impl Into<String>, t: f64, error_type: &'static str) {
        self.cases.push(Case {
            query: query.into(),
            kind: Kind::Instant(t),
            expect: Expect::Invalid(error_type),
        });
    }
    fn invalid_range(
        &mut self,
        query: impl Into<String>,
        (start, end, step): (f64, f64, &str),
        error_type: &'static str,
    ) {
        self.cases.push(Case {
            query: query.into(),
            kind: Kind::Range {
                start,
                end,
                step: step.into(),
            },
            expect: Expect::Invalid(error_type),
        });
    }
}

/// The whole suite for data starting at `s` and ending at `e`.
pub fn cases(d: &Dataset) -> Vec<Case> {
    let (s, e) = (d.start as f64, d.end as f64);
    // Evaluation times: inside the data (between samples and on one), near
    // its start, in the late part, at its end, within the 5 min lookback
    // after it, and past the lookback.
    let mid = s + 3607.0;
    let near_start = s + 130.0;
    let late = s + 5403.5;
    let at_end = e;
    let after = e + 150.0;
    let past = e + 420.0;
    // Range queries: across the start at 60 s, a quarter hour at 15 s, all
    // of it into the lookback at 5 min, an unaligned window at 37 s.
    let r_start = (s - 300.0, s + 1800.0, "60s");
    let r_mid = (s + 3000.0, s + 3900.0, "15s");
    let r_all = (s, e + 600.0, "5m");
    let r_odd = (s + 2437.0, s + 4237.0, "37");
    let r_end = (e - 900.0, e + 600.0, "1m");

    let mut t = Suite { cases: Vec::new() };

    // ---- selectors
    for q in [
        "http_requests_total",
        r#"http_requests_total{job="api"}"#,
        r#"http_requests_total{job!="api"}"#,
        r#"http_requests_total{code=~"5.."}"#,
        r#"http_requests_total{method!~"G.*"}"#,
        r#"http_requests_total{job=~"api|web", instance!~"10\\.0\\.0\\.1.*"}"#,
        r#"http_requests_total{job="api", code=~"2..|4..", method="GET"}"#,
        r#"{__name__=~"http_requests_total|machine_cpu_cores"}"#,
        r#"{__name__=~"machine_.*", job="web"}"#,
        r#"{__name__="build_info", branch=~"release/.*"}"#,
        r#"{job="api", code=""}"#,
        r#"{instance=~"mx.", __name__!~"disk.*"}"#,
        r#"build_info{note=~".*\"hi\".*"}"#,
        r#"build_info{note!=""}"#,
        r#"http_requests_total{job="API"}"#,
        r#"http_requests_total{job=~"(?i)API"}"#,
        r#"http_requests_total{instance=~".*:80"}"#,
        "queue_size",
        "weird_values",
        "job:http_requests:rate5m",
        "rpc_latency_seconds_bucket",
        "http_request_duration_seconds_count",
        "process_start_time_seconds",
    ] {
        t.instant(q, mid);
        t.range(q, r_odd);
    }
    for at in [near_start, late, at_end, after, past] {
        t.instant("queue_size", at);
        t.instant(r#"http_requests_total{job="web"}"#, at);
    }
    t.range("queue_size", r_all);
    t.range("queue_size", r_mid);
    t.range("weird_values", r_mid);
    t.range(r#"http_requests_total{code="404"}"#, r_end);
    // Range vectors as instant results.
    t.instant(r#"http_requests_total{job="web"}[2m]"#, mid);
    t.instant("queue_size[10m]", mid);
    t.instant(r#"weird_values{kind="nan"}[1m]"#, mid);
    t.instant("queue_size[5m]", after);

    // ---- offset and @
    for q in [
        r#"http_requests_total{job="api"} offset 10m"#,
        r#"http_requests_total{job="api"} offset -5m"#,
        "queue_size offset 1h",
        "rate(http_requests_total[5m] offset 1h)",
        "sum(rate(http_requests_total[5m] offset 30m)) by (job)",
        "queue_size - queue_size offset 5m",
        "time() - process_start_time_seconds offset 30m",
    ] {
        t.instant(q, mid);
        t.range(q, r_mid);
    }
    t.instant("queue_size offset 10m", after);
    t.instant("queue_size offset -10m", s - 60.0);
    let at_mid = (s + 1800.0) as i64;
    for q in [
        format!("http_requests_total @ {at_mid}"),
        format!("rate(http_requests_total[5m] @ {at_mid})"),
        format!("queue_size @ {at_mid} offset 10m"),
        format!("queue_size offset 10m @ {at_mid}"),
        format!("sum(http_requests_total @ {}.5)", at_mid + 3),
        "http_requests_total @ start()".into(),
        "http_requests_total @ end()".into(),
        "rate(http_requests_total[10m] @ end())".into(),
        "queue_size @ start() - queue_size".into(),
        "max_over_time(queue_size[30m] @ end())".into(),
    ] {
        t.instant(q.clone(), mid);
        t.range(q, r_mid);
    }
    t.range("http_requests_total @ start()", r_all);
    t.range("sum(rate(http_requests_total[5m] @ end()))", r_all);

    // ---- subqueries
    for q in [
        "max_over_time(rate(http_requests_total[5m])[30m:1m])",
        "avg_over_time(queue_size[20m:])",
        "min_over_time(sum(rate(http_requests_total[1m]))[10m:30s] offset 5m)",
        r#"rate(http_requests_total{job="api"}[10m:30s])"#,
        "max_over_time(deriv(rate(http_requests_total[1m])[5m:1m])[10m:])",
        "sum_over_time((queue_size > 10)[15m:1m])",
        "count_over_time(weird_values[10m:2m])",
        "last_over_time(http_requests_total[10m:45s])",
    ] {
        t.instant(q, mid);
        t.instant(q, after);
        t.range(q, r_mid);
    }
    t.instant(
        format!("max_over_time(rate(http_requests_total[5m])[30m:1m] @ {at_mid})"),
        mid,
    );
    t.instant(r#"rate(http_requests_total{job="web"}[5m])[10m:2m]"#, mid);
    t.instant("queue_size[5m:1m]", late);

    // ---- arithmetic and comparisons
    for q in [
        "1 + 2 * 3",
        "2 ^ 3 ^ 2",
        "-2 ^ 2",
        "(1 + 2) / 4",
        "5 % 3",
        "-5 % 3",
        "5.5 % -2",
        "1 / 0",
        "-1 / 0",
        "0 / 0",
        "1 > bool 0",
        "1 == bool 1",
        "2 < bool 1",
        "1 - -1",
        "- - 1",
        "+1",
    ] {
        t.instant(q, mid);
    }
    t.range("1 + 2 * 3", r_mid);
    for q in [
        "node_temperature_celsius * 2",
        "2 * node_temperature_celsius",
        "node_temperature_celsius / 0",
        "node_temperature_celsius % 2",
        "node_temperature_celsius ^ 2",
        "-node_temperature_celsius",
        "100 - node_temperature_celsius",
        "weird_values + 1",
        "weird_values * 0",
        "node_temperature_celsius > 0",
        "node_temperature_celsius > bool 0",
        "0 < node_temperature_celsius",
        "0 < bool node_temperature_celsius",
        "node_temperature_celsius == -2.5",
        "node_temperature_celsius != bool 61.25",
        "node_temperature_celsius <= 10",
        "node_temperature_celsius >= bool 10",
        "weird_values > 0",
        "weird_values == bool weird_values",
        "machine_cpu_cores == bool 4",
        "queue_size >= queue_size offset 5m",
        "queue_size > bool queue_size offset 5m",
        "machine_memory_bytes / machine_cpu_cores",
        "machine_memory_bytes - machine_memory_bytes",
        "machine_cpu_cores > config_version",
        "machine_cpu_cores > bool config_version",
        "rate(http_requests_total[5m]) * 60",
        "http_requests_total / http_requests_total offset 10m",
        "http_requests_total - http_requests_total",
        "disk_free_bytes / 1024 / 1024",
    ] {
        t.instant(q, mid);
        t.range(q, r_odd);
    }

    // ---- vector matching
    for q in [
        "rate(http_requests_total[5m]) * on(job, instance) group_left(version) build_info",
        "rate(http_requests_total[5m]) * on(job, instance) group_left(version, branch) build_info",
        "build_info * on(job, instance) group_right(version) http_requests_total",
        "http_requests_total / ignoring(method, code) group_left machine_cpu_cores",
        "sum by (job, instance) (rate(http_requests_total[5m])) / on(job, instance) machine_cpu_cores",
        "machine_memory_bytes / on(instance) machine_cpu_cores",
        "machine_memory_bytes / ignoring(job) machine_cpu_cores",
        "http_requests_total > on(job, instance) group_left machine_cpu_cores * 100",
        "http_requests_total > bool on(job, instance) group_left machine_cpu_cores * 100",
        "machine_cpu_cores == bool on(job, instance) config_version",
        "machine_cpu_cores * on(instance) group_left(version, revision) build_info",
        "sum by (job) (machine_cpu_cores) * on(job) group_right machine_memory_bytes",
        "machine_cpu_cores + on() group_left sum(machine_cpu_cores)",
        "http_request_duration_seconds_sum / http_request_duration_seconds_count",
        "rate(http_request_duration_seconds_sum[5m]) / rate(http_request_duration_seconds_count[5m])",
        "node_temperature_celsius - on(instance) group_left machine_cpu_cores",
        "node_temperature_celsius - ignoring(sensor) group_left machine_cpu_cores",
        "machine_cpu_cores / on(job, instance) group_left(sensor) node_temperature_celsius{sensor=\"cpu\"}",
    ] {
        t.instant(q, mid);
        t.range(q, r_odd);
    }

    // ---- set operators
    for q in [
        r#"http_requests_total and http_requests_total{code="500"}"#,
        r#"http_requests_total{job="api"} or http_requests_total{code="500"}"#,
        r#"http_requests_total unless on(job) build_info{version="2.0.0"}"#,
        r#"http_requests_total unless http_requests_total{method="GET"}"#,
        "machine_cpu_cores and on(instance) (process_start_time_seconds > 1e9)",
        "machine_cpu_cores unless ignoring(__name__) (config_version == 3)",
        "queue_size or on(host) vector(0)",
        "queue_size or vector(0)",
        r#"queue_size{queue="deferred"} or queue_size{host="mx1"}"#,
        "rate(http_requests_total[5m]) > 0.5 and on(job, instance) machine_cpu_cores > 2",
        "machine_cpu_cores or machine_memory_bytes",
        "machine_cpu_cores and machine_memory_bytes",
        "machine_cpu_cores and ignoring(job) machine_memory_bytes",
        "weird_values and weird_values > 0",
        "nonexistent_metric or machine_cpu_cores",
        "machine_cpu_cores unless nonexistent_metric",
    ] {
        t.instant(q, mid);
        t.range(q, r_mid);
    }
    t.range(
        r#"queue_size{queue="deferred"} or queue_size{host="mx1"}"#,
        r_all,
    );
    t.range("queue_size or on(host) vector(0)", r_all);

    // ---- aggregations, generated: operator × grouping × input
    let aggs = [
        "sum", "avg", "min", "max", "count", "group", "stddev", "stdvar",
    ];
    let groupings = [
        "",
        " by (job)",
        " without (instance)",
        " by (job, code)",
        " by ()",
    ];
    let inputs = [
        "http_requests_total",
        "rate(http_requests_total[5m])",
        "node_temperature_celsius",
        "weird_values",
    ];
    for (n, agg) in aggs.iter().enumerate() {
        for (g, grouping) in groupings.iter().enumerate() {
            for (i, input) in inputs.iter().enumerate() {
                // Every grouping with every input would be 160 queries; a
                // rotating subset keeps each pairing represented.
                if (n + g + i) % 2 == 1 {
                    continue;
                }
                t.instant(format!("{agg}{grouping} ({input})"), mid);
                if (n + g + i) % 4 == 0 {
                    t.range(format!("{agg}{grouping} ({input})"), r_odd);
                }
            }
        }
        // The trailing-clause syntax too.
        t.instant(format!("{agg}(http_requests_total) by (job, method)"), late);
        t.range(format!("{agg}(queue_size) without (queue)"), r_all);
    }
    for q in [
        "topk(3, http_requests_total)",
        "topk by (job) (1, rate(http_requests_total[5m]))",
        "topk(2, weird_values)",
        "topk(0, http_requests_total)",
        "topk(1.5, node_temperature_celsius)",
        "topk(scalar(count(machine_cpu_cores)) - 2, machine_cpu_cores)",
        "bottomk(2, node_temperature_celsius)",
        "bottomk without (sensor) (1, node_temperature_celsius)",
        "bottomk(1, weird_values)",
        "quantile(0.5, http_requests_total)",
        "quantile by (job) (0.9, rate(http_requests_total[5m]))",
        "quantile(0, node_temperature_celsius)",
        "quantile(1, node_temperature_celsius)",
        "quantile(1.5, node_temperature_celsius)",
        "quantile(-1, node_temperature_celsius)",
        "quantile(0.25, weird_values)",
        r#"count_values("value", config_version)"#,
        r#"count_values by (job) ("v", config_version)"#,
        r#"count_values("up", service_up)"#,
        r#"count_values("job", config_version)"#,
        r#"count_values("temp", node_temperature_celsius)"#,
        r#"count_values("v", weird_values)"#,
        "group by (version) (build_info)",
        "max(sum by (job) (rate(http_requests_total[5m])))",
        "avg without (code) (rate(http_requests_total[5m]))",
        r#"count by (__name__) ({job="api"})"#,
        "sum(weird_values)",
        "avg(weird_values)",
        "max(weird_values)",
        "min by (host) (queue_size)",
        "sum by (le) (rate(http_request_duration_seconds_bucket[5m]))",
        "count(nonexistent_metric)",
        "sum without (job, instance, method, code) (http_requests_total)",
        "stddev by (mode) (rate(cpu_seconds_total[5m]))",
        "avg(disk_free_bytes)",
    ] {
        t.instant(q, mid);
        t.range(q, r_mid);
    }

    // ---- functions over range vectors, generated: function × selector × window
    let range_fns = [
        "rate",
        "irate",
        "increase",
        "delta",
        "idelta",
        "deriv",
        "resets",
        "changes",
        "avg_over_time",
        "min_over_time",
        "max_over_time",
        "sum_over_time",
        "count_over_time",
        "stddev_over_time",
        "stdvar_over_time",
        "last_over_time",
        "present_over_time",
        "quantile_over_time(0.9,",
        "predict_linear(",
    ];
    let range_inputs = [
        "http_requests_total{job=\"api\"}[5m]",
        "cpu_seconds_total[1m]",
        "queue_size[10m]",
        "disk_free_bytes[15m]",
        "weird_values[2m]",
        "service_up[30m]",
    ];
    for (n, f) in range_fns.iter().enumerate() {
        for (i, input) in range_inputs.iter().enumerate() {
            let q = match *f {
                "quantile_over_time(0.9," => format!("quantile_over_time(0.9, {input})"),
                "predict_linear(" => format!("predict_linear({input}, 600)"),
                f => format!("{f}({input})"),
            };
            t.instant(q.clone(), mid);
            if (n + i) % 2 == 0 {
                t.instant(q.clone(), near_start);
            } else {
                t.instant(q.clone(), after);
            }
            if (n + i) % 3 == 0 {
                t.range(q, r_start);
            } else {
                t.range(q, r_mid);
            }
        }
        let q = match *f {
            "quantile_over_time(0.9," => "quantile_over_time(0.9, queue_size[15m])".to_string(),
            "predict_linear(" => "predict_linear(queue_size[15m], 3600)".to_string(),
            f => format!("{f}(queue_size[15m])"),
        };
        t.instant(q.clone(), past);
        t.range(q, r_all);
    }
    for q in [
        "rate(http_requests_total[1h30m])",
        "rate(http_requests_total[90s])",
        "increase(http_requests_total[1m30s])",
        "count_over_time(http_requests_total{job=\"web\"}[1d])",
        "count_over_time(http_requests_total{job=\"web\"}[1w])",
        "count_over_time(http_requests_total{job=\"web\"}[1y])",
        "count_over_time(queue_size[30s])",
        "count_over_time(queue_size[15s])",
        "changes(process_start_time_seconds[2h])",
        "resets(http_requests_total[2h])",
        "changes(config_version[1h])",
        "quantile_over_time(0, node_temperature_celsius[10m])",
        "quantile_over_time(1, node_temperature_celsius[10m])",
        "quantile_over_time(1.5, node_temperature_celsius[10m])",
        "quantile_over_time(-0.5, node_temperature_celsius[10m])",
        "predict_linear(disk_free_bytes[30m], 86400)",
        "predict_linear(node_temperature_celsius[10m], -300)",
        "deriv(node_temperature_celsius[10m])",
        "delta(node_temperature_celsius[10m])",
        "idelta(queue_size[5m])",
        "irate(queue_size[5m])",
        "rate(queue_size[10m])",
    ] {
        t.instant(q, late);
        t.range(q, r_odd);
    }
    // Windows reaching before the data and past its end.
    for q in [
        "rate(http_requests_total[5m])",
        "increase(http_requests_total[10m])",
        "delta(queue_size[5m])",
    ] {
        t.instant(q, s + 20.0);
        t.instant(q, past);
    }

    // ---- histogram_quantile
    for q in [
        "histogram_quantile(0.9, rate(http_request_duration_seconds_bucket[5m]))",
        "histogram_quantile(0.5, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
        "histogram_quantile(0.99, sum by (job, le) (rate(http_request_duration_seconds_bucket[10m])))",
        "histogram_quantile(0, rate(http_request_duration_seconds_bucket[5m]))",
        "histogram_quantile(1, rate(http_request_duration_seconds_bucket[5m]))",
        "histogram_quantile(1.5, rate(http_request_duration_seconds_bucket[5m]))",
        "histogram_quantile(-0.5, rate(http_request_duration_seconds_bucket[5m]))",
        "histogram_quantile(0.75, http_request_duration_seconds_bucket)",
        "histogram_quantile(0.5, rpc_latency_seconds_bucket)",
        "histogram_quantile(0.9, rate(rpc_latency_seconds_bucket[5m]))",
        "histogram_quantile(0.5, http_requests_total)",
    ] {
        t.instant(q, mid);
        t.range(q, r_mid);
    }
    t.instant(
        "histogram_quantile(0.9, rate(http_request_duration_seconds_bucket[5m]))",
        s + 240.0 * STEP as f64 + 30.0,
    );

    // ---- functions over instant vectors, generated
    let math_fns = [
        "abs(X)",
        "ceil(X)",
        "floor(X)",
        "round(X)",
        "round(X, 0.5)",
        "round(X, 10)",
        "exp(X)",
        "ln(X)",
        "log2(X)",
        "log10(X)",
        "sqrt(X)",
        "clamp(X, -1, 5)",
        "clamp(X, 5, -1)",
        "clamp_min(X, 0)",
        "clamp_max(X, 0.5)",
    ];
    let math_inputs = ["node_temperature_celsius", "weird_values", "queue_size"];
    for (n, f) in math_fns.iter().enumerate() {
        for (i, input) in math_inputs.iter().enumerate() {
            let q = f.replace('X', input);
            t.instant(q.clone(), mid);
            if (n + i) % 2 == 0 {
                t.range(q, r_mid);
            } else {
                t.range(q, r_odd);
            }
        }
    }
    t.instant("exp(disk_free_bytes)", mid);
    t.instant("ln(0 * machine_cpu_cores)", mid);
    t.instant("abs(vector(-1))", mid);
    t.instant("sqrt(vector(-1))", mid);
    t.instant("round(vector(-2.5))", mid);
    t.instant("round(vector(2.5))", mid);

    // ---- label_replace / label_join
    for q in [
        r#"label_replace(build_info, "major", "$1", "version", "(\\d+)\\..*")"#,
        r#"label_replace(http_requests_total{job="api"}, "host", "$1", "instance", "(.*):.*")"#,
        r#"label_replace(build_info, "x", "$1", "branch", "nomatch(.*)")"#,
        r#"label_replace(build_info, "branch_base", "${1}-x", "branch", "release/(.*)")"#,
        r#"label_replace(build_info, "version", "", "version", ".*")"#,
        r#"label_replace(vector(1), "foo", "bar", "", "")"#,
        r#"label_replace(rate(http_requests_total[5m]), "code_class", "${1}xx", "code", "(.).*")"#,
        r#"label_replace(machine_cpu_cores, "name", "$0", "__name__", ".*")"#,
        r#"label_join(build_info, "id", "/", "job", "instance")"#,
        r#"label_join(build_info, "version", "", "branch")"#,
        r#"label_join(machine_cpu_cores, "empty", ",")"#,
        r#"label_join(http_requests_total, "key", "-", "method", "code", "nonexistent")"#,
        r#"label_join(sum by (job, method) (rate(http_requests_total[5m])), "jm", ":", "job", "method")"#,
    ] {
        t.instant(q, mid);
        t.range(q, r_mid);
    }

    // ---- sort
    for q in [
        r#"sort(http_requests_total{job="api"})"#,
        "sort_desc(rate(http_requests_total[5m]))",
        "sort(weird_values)",
        "sort_desc(weird_values)",
        "sort_desc(node_temperature_celsius)",
        "sort(sum by (job) (http_requests_total))",
        "sort(queue_size)",
        "sort_desc(-machine_cpu_cores)",
    ] {
        t.instant(q, mid);
        t.instant(q, late);
        t.range(q, r_mid);
    }

    // ---- time, timestamp, vector, scalar
    for q in [
        "time()",
        "time() - 60",
        r#"timestamp(http_requests_total{job="web"})"#,
        "timestamp(queue_size)",
        "timestamp(sum(machine_cpu_cores))",
        "timestamp(queue_size offset 3m)",
        "vector(1)",
        "vector(time())",
        "vector(scalar(machine_cpu_cores{instance=\"10.0.0.1:8080\"}))",
        "scalar(machine_cpu_cores{instance=\"10.0.0.1:8080\"})",
        "scalar(machine_cpu_cores)",
        "scalar(nonexistent_metric)",
        "machine_cpu_cores * scalar(sum(machine_cpu_cores))",
        "time() - timestamp(queue_size)",
    ] {
        t.instant(q, mid);
        t.instant(q, after);
        t.range(q, r_odd);
    }

    // ---- absent / absent_over_time
    for q in [
        "absent(nonexistent_metric)",
        r#"absent(nonexistent_metric{job="x", code=~"5.."})"#,
        r#"absent(nonexistent_metric{job="x", job="y"})"#,
        "absent(http_requests_total)",
        "absent(sum(nonexistent_metric))",
        r#"absent(queue_size{host="mx1", queue="deferred"})"#,
        r#"absent_over_time(nonexistent_metric{a="b"}[5m])"#,
        r#"absent_over_time(queue_size{host="mx1", queue="deferred"}[5m])"#,
        r#"absent_over_time(queue_size{host="mx2", queue="deferred"}[10m])"#,
        "absent_over_time(http_requests_total[5m])",
    ] {
        t.instant(q, mid);
        t.range(q, r_all);
    }

    // ---- date functions, without argument (the evaluation time) and with
    for f in [
        "day_of_month",
        "day_of_week",
        "day_of_year",
        "days_in_month",
        "hour",
        "minute",
        "month",
        "year",
    ] {
        t.instant(format!("{f}()"), mid);
        t.range(format!("{f}()"), r_all);
        t.instant(format!("{f}(process_start_time_seconds)"), mid);
        t.instant(format!("{f}(process_start_time_seconds)"), late);
        t.range(format!("{f}(process_start_time_seconds)"), r_odd);
        t.instant(format!("{f}(vector(1709251199))"), mid);
        t.instant(format!("{f}(vector(951782400 - 1))"), mid);
    }

    // ---- literals
    for q in [
        "1",
        "-1.5",
        "1e3",
        "1.5e-3",
        "0x1F",
        ".5",
        "Inf",
        "-Inf",
        "NaN",
        "inf",
        "nan",
        r#""a string""#,
        "'single quoted'",
        "`raw \\ string`",
        "(((42)))",
    ] {
        t.instant(q, mid);
    }
    t.range("-1.5", r_mid);
    t.range("NaN", r_mid);

    // ---- invalid queries: syntax and types (bad_data), evaluation (execution)
    for q in [
        "sum(",
        r#"http_requests_total{job="api""#,
        "http_requests_total{job=}",
        "rate(http_requests_total)",
        "rate(http_requests_total[5m], 1)",
        "foo_bar_fn(http_requests_total)",
        "(http_requests_total)[5m]",
        "rate(sum(http_requests_total)[5m])",
        r#"abs("foo")"#,
        r#"sum by (job) "x""#,
        "topk(http_requests_total, 3)",
        r#"1 + "a""#,
        "http_requests_total and 1",
        "1 or 2",
        "{}",
        r#"{job=~".*"}"#,
        "http_requests_total[5x]",
        "http_requests_total offset",
        r#"http_requests_total{job=~"("}"#,
        "rate(http_requests_total[5m:1m:2m])",
        "time(1)",
        "histogram_quantile(0.9)",
        "clamp(node_temperature_celsius, 0)",
        r#"round(node_temperature_celsius, "x")"#,
        "vector(http_requests_total)",
        "scalar(http_requests_total[5m])",
        r#"count_values(5, config_version)"#,
        "sum without (job) by (instance) (http_requests_total)",
        "http_requests_total @ 1 @ 2",
        "absent(nonexistent_metric[5m])",
        "sort(http_requests_total[5m])",
        "deriv(http_requests_total)",
        "machine_cpu_cores + on(job) group_left machine_memory_bytes + on(job) group_right(x) config_version[",
        "sum(http_requests_total) by",
        "http_requests_total == bool",
        "1 == bool",
        "machine_cpu_cores * on(job) group_left(job) build_info",
        "",
    ] {
        t.invalid(q, mid, "bad_data");
    }
    for q in [
        "http_requests_total + on(job) machine_cpu_cores",
        "machine_cpu_cores * on(job) group_left machine_memory_bytes",
        "machine_memory_bytes * on(job) group_right machine_cpu_cores",
        "machine_cpu_cores + on(job) sum by (job) (machine_memory_bytes)",
        r#"label_replace(http_requests_total, "dst", "$1", "instance", "(")"#,
        r#"label_replace(http_requests_total, "1invalid", "$1", "instance", "(.*)")"#,
        r#"label_join(build_info, "1invalid", ",", "job")"#,
        r#"label_replace(machine_cpu_cores, "instance", "", "instance", ".*")"#,
        r#"label_replace(http_requests_total{job="api", method="GET", code="200"}, "instance", "same", "", "")"#,
    ] {
        t.invalid(q, mid, "execution");
    }
    t.invalid_range(
        "http_requests_total + on(job) machine_cpu_cores",
        r_mid,
        "execution",
    );
    // Bad requests rather than bad expressions.
    t.invalid_range("machine_cpu_cores", (s, e, "0.5"), "bad_data");
    t.invalid_range("machine_cpu_cores", (e, s, "60"), "bad_data");
    t.invalid_range("machine_cpu_cores", (s, e, "0"), "bad_data");
    t.invalid_range("machine_cpu_cores", (s, e, "-60"), "bad_data");
    t.invalid_range(r#""a string""#, r_mid, "bad_data");
    t.invalid_range("http_requests_total[5m]", r_mid, "bad_data");
    t.invalid_range("sum(", r_mid, "bad_data");

    t.cases
}

// ---------------------------------------------------------------- replies

/// A normalised API answer.
#[derive(Debug)]
enum Reply {
    Error {
        http: u16,
        error_type: String,
        message: String,
    },
    Success {
        result_type: String,
        /// Label set (printed canonically) → points; a scalar or string is
        /// one entry with an empty label set.
        series: Vec<(String, Vec<(f64, Value)>)>,
    },
    /// Not a Prometheus API answer at all.
    Broken(String),
}

#[derive(Debug, Clone)]
enum Value {
    Num(f64),
    Text(String),
}

fn labels_text(m: &serde_json::Value) -> Result<String, String> {
    let obj = m.as_object().ok_or("metric is not an object")?;
    let mut sorted = BTreeMap::new();
    for (k, v) in obj {
        sorted.insert(k.clone(), v.as_str().ok_or("label value not a string")?);
    }
    let parts: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    Ok(format!("{{{}}}", parts.join(", ")))
}

fn parse_number(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok().filter(|v: &f64| v.is_finite()),
    }
}

fn point(p: &serde_json::Value, text: bool) -> Result<(f64, Value), String> {
    let pair = p
        .as_array()
        .filter(|a| a.len() == 2)
        .ok_or("point is not [t, v]")?;
    let t = pair[0].as_f64().ok_or("timestamp is not a number")?;
    let v = pair[1].as_str().ok_or("value is not a string")?;
    let value = if text {
        Value::Text(v.to_string())
    } else {
        Value::Num(parse_number(v).ok_or_else(|| format!("bad value {v:?}"))?)
    };
    Ok((t, value))
}

fn parse_reply(http: u16, body: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(body);
    let v: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            return Reply::Broken(format!("HTTP {http}, not JSON ({e}): {}", clip(&text, 300)))
        }
    };
    match v["status"].as_str() {
        Some("error") => Reply::Error {
            http,
            error_type: v["errorType"].as_str().unwrap_or("<none>").to_string(),
            message: v["error"].as_str().unwrap_or("").to_string(),
        },
        Some("success") => match success(&v["data"]) {
            Ok(r) => r,
            Err(e) => Reply::Broken(format!("HTTP {http}, {e}: {}", clip(&text, 300))),
        },
        _ => Reply::Broken(format!("HTTP {http}, no status: {}", clip(&text, 300))),
    }
}

/// How two answers' `data` differ, shown as `compare` shows them with
/// `expected` as "prometheus": for tests comparing two servers of ours.
/// None when `compare` finds no difference.
pub fn data_difference(expected: &serde_json::Value, ours: &serde_json::Value) -> Option<String> {
    match (success(expected), success(ours)) {
        (Ok(a), Ok(b)) => compare(&a, &b, false),
        (Err(e), _) | (_, Err(e)) => Some(format!("  not a query answer: {e}")),
    }
}

fn success(data: &serde_json::Value) -> Result<Reply, String> {
    let result_type = data["resultType"]
        .as_str()
        .ok_or("no resultType")?
        .to_string();
    let result = &data["result"];
    let mut series = Vec::new();
    match result_type.as_str() {
        "scalar" | "string" => {
            series.push((String::new(), vec![point(result, result_type == "string")?]))
        }
        "vector" | "matrix" => {
            for item in result.as_array().ok_or("result is not an array")? {
                let labels = labels_text(&item["metric"])?;
                let points = if result_type == "vector" {
                    vec![point(&item["value"], false)?]
                } else {
                    item["values"]
                        .as_array()
                        .ok_or("values is not an array")?
                        .iter()
                        .map(|p| point(p, false))
                        .collect::<Result<_, _>>()?
                };
                series.push((labels, points));
            }
        }
        other => return Err(format!("unknown resultType {other}")),
    }
    Ok(Reply::Success {
        result_type,
        series,
    })
}

fn same_number(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a == b {
        return true;
    }
    if !a.is_finite() || !b.is_finite() {
        return false;
    }
    // Relative 1e-9, with an absolute floor for results that cancel to
    // (almost) zero, where the last bits depend on summation order.
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()) || (a - b).abs() <= 1e-12
}

fn same_point(a: &(f64, Value), b: &(f64, Value)) -> bool {
    (a.0 - b.0).abs() < 1e-6
        && match (&a.1, &b.1) {
            (Value::Num(x), Value::Num(y)) => same_number(*x, *y),
            (Value::Text(x), Value::Text(y)) => x == y,
            _ => false,
        }
}

fn show_point(p: &(f64, Value)) -> String {
    match &p.1 {
        Value::Num(v) => format!("[{}, {}]", p.0, om_value(*v)),
        Value::Text(s) => format!("[{}, {s:?}]", p.0),
    }
}

fn show_points(points: &[(f64, Value)]) -> String {
    let shown: Vec<String> = points.iter().take(4).map(show_point).collect();
    let more = if points.len() > 4 {
        format!(" … ({} points)", points.len())
    } else {
        String::new()
    };
    format!("{}{more}", shown.join(" "))
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

fn summary(r: &Reply) -> String {
    match r {
        Reply::Error {
            http,
            error_type,
            message,
        } => format!("error HTTP {http} {error_type}: {}", clip(message, 200)),
        Reply::Success {
            result_type,
            series,
        } => format!("{result_type} with {} series", series.len()),
        Reply::Broken(s) => format!("broken: {s}"),
    }
}

/// None if the replies agree, else a short description of how they differ.
fn compare(prom: &Reply, ours: &Reply, ordered: bool) -> Option<String> {
    match (prom, ours) {
        (
            Reply::Error {
                http: h1,
                error_type: e1,
                ..
            },
            Reply::Error {
                http: h2,
                error_type: e2,
                ..
            },
        ) => (e1 != e2 || h1 != h2).then(|| {
            format!(
                "  prometheus: {}\n  ours:       {}",
                summary(prom),
                summary(ours)
            )
        }),
        (
            Reply::Success {
                result_type: t1,
                series: s1,
            },
            Reply::Success {
                result_type: t2,
                series: s2,
            },
        ) => {
            if t1 != t2 {
                return Some(format!(
                    "  prometheus: {}\n  ours:       {}",
                    summary(prom),
                    summary(ours)
                ));
            }
            let mut diff = Vec::new();
            if ordered {
                let v1: Vec<String> = s1
                    .iter()
                    .flat_map(|(_, p)| p.iter().map(show_point))
                    .collect();
                let v2: Vec<String> = s2
                    .iter()
                    .flat_map(|(_, p)| p.iter().map(show_point))
                    .collect();
                let order_ok = s1.len() == s2.len()
                    && s1.iter().zip(s2).all(|((_, a), (_, b))| {
                        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_point(x, y))
                    });
                if !order_ok {
                    diff.push(format!(
                        "  order of values differs:\n    prometheus: {}\n    ours:       {}",
                        clip(&v1.join(" "), 300),
                        clip(&v2.join(" "), 300)
                    ));
                }
            }
            let mut a: Vec<&(String, Vec<(f64, Value)>)> = s1.iter().collect();
            let mut b: Vec<&(String, Vec<(f64, Value)>)> = s2.iter().collect();
            a.sort_by(|x, y| x.0.cmp(&y.0));
            b.sort_by(|x, y| x.0.cmp(&y.0));
            let (mut i, mut j) = (0, 0);
            while i < a.len() || j < b.len() {
                let ord = match (a.get(i), b.get(j)) {
                    (Some(x), Some(y)) => x.0.cmp(&y.0),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    _ => std::cmp::Ordering::Greater,
                };
                match ord {
                    std::cmp::Ordering::Less => {
                        diff.push(format!(
                            "  only in prometheus: {} {}",
                            a[i].0,
                            show_points(&a[i].1)
                        ));
                        i += 1;
                    }
                    std::cmp::Ordering::Greater => {
                        diff.push(format!(
                            "  only in ours:       {} {}",
                            b[j].0,
                            show_points(&b[j].1)
                        ));
                        j += 1;
                    }
                    std::cmp::Ordering::Equal => {
                        let (pa, pb) = (&a[i].1, &b[j].1);
                        let first_bad = (0..pa.len().max(pb.len())).find(|&k| {
                            !matches!((pa.get(k), pb.get(k)), (Some(x), Some(y)) if same_point(x, y))
                        });
                        if let Some(k) = first_bad {
                            let at = |p: &[(f64, Value)]| {
                                p.get(k).map(show_point).unwrap_or_else(|| "(none)".into())
                            };
                            diff.push(format!(
                                "  {} differs at point {k} of {}/{}: prometheus {} vs ours {}",
                                a[i].0,
                                pa.len(),
                                pb.len(),
                                at(pa),
                                at(pb)
                            ));
                        }
                        i += 1;
                        j += 1;
                    }
                }
            }
            if diff.is_empty() {
                None
            } else {
                let total = diff.len();
                diff.truncate(8);
                if total > 8 {
                    diff.push(format!("  … {} more differences", total - 8));
                }
                Some(diff.join("\n"))
            }
        }
        _ => Some(format!(
            "  prometheus: {}\n  ours:       {}",
            summary(prom),
            summary(ours)
        )),
    }
}

/// Whether a success carries data (a scalar or string always does).
fn non_empty(r: &Reply) -> bool {
    matches!(r, Reply::Success { series, .. } if !series.is_empty())
}

fn ask(base: &str, auth: &[(&str, &str)], case: &Case) -> Reply {
    let url = format!("{base}{}", case.path());
    match http_get(&url, auth) {
        Ok((status, _, body)) => parse_reply(status, &body),
        Err(e) => Reply::Broken(format!("GET {url}: {e}")),
    }
}

/// Problems with the suite itself, judged on Prometheus's answers: a valid
/// query that fails, an invalid one that does not fail as intended, or too
/// many empty results (the comparison would prove little).
fn suite_problems(cases: &[Case], replies: &[Reply]) -> Vec<String> {
    let mut problems = Vec::new();
    let (mut valid, mut with_data) = (0usize, 0usize);
    for (case, reply) in cases.iter().zip(replies) {
        match (&case.expect, reply) {
            (Expect::Valid, Reply::Success { .. }) => {
                valid += 1;
                with_data += usize::from(non_empty(reply));
            }
            (Expect::Invalid(want), Reply::Error { error_type, .. }) if error_type == want => {}
            (expect, _) => problems.push(format!(
                "{}: expected {expect:?}, Prometheus gave {}",
                case.describe(),
                summary(reply)
            )),
        }
    }
    if (with_data as f64) < 0.9 * valid as f64 {
        problems.push(format!(
            "only {with_data} of {valid} valid queries return data on Prometheus (want ≥ 90%)"
        ));
    }
    problems
}

// ---------------------------------------------------------------- servers

/// The backfill file and its times, written into `dir`; data ends about 30
/// minutes ago on a whole minute.
fn write_dataset(dir: &Path) -> (Dataset, std::path::PathBuf) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    let d = dataset((now - 1800) / 60 * 60);
    let file = dir.join("backfill.om");
    std::fs::write(&file, &d.text).expect("write backfill");
    (d, file)
}

/// A real Prometheus on the backfill `file` (promtool writes the blocks).
fn prometheus_on(file: &Path) -> Service {
    let promtool = require("promtool", "prometheus");
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("data");
    run_ok(
        Command::new(promtool)
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(file)
            .arg(&storage),
    );
    prometheus_with_storage(
        "global:\n  evaluation_interval: 1m\nscrape_configs: []\n",
        dir,
    )
}

/// Our query service on the backfill `file` (`import openmetrics` writes the blocks).
fn ours_on(file: &Path) -> Service {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    run_ok(
        Command::new(OURS)
            .args(["import", "openmetrics"])
            .arg(file)
            .arg("--data")
            .arg(&data),
    );
    let port = free_port();
    let mut cmd = Command::new(OURS);
    cmd.arg("query")
        .arg("--data")
        .arg(&data)
        .arg("--web.listen-address")
        .arg(format!("127.0.0.1:{port}"))
        .env("CARBONIO_MONITOR_ADMIN_PASSWORD", PASSWORD);
    let svc = spawn("carbonio-monitor query", dir, port, cmd);
    let url = svc.url("/-/ready");
    wait_until(
        "our query service /-/ready",
        Duration::from_secs(60),
        || matches!(http_get(&url, &[]), Ok((200, _, _))),
    );
    svc
}

fn auth_header() -> String {
    format!("Basic {}", base64(format!("admin:{PASSWORD}").as_bytes()))
}

// ---------------------------------------------------------------- tests

#[test]
fn promql_matches_prometheus_on_the_same_data() {
    let files = tempfile::tempdir().expect("tempdir");
    let (d, file) = write_dataset(files.path());
    let prom = prometheus_on(&file);
    let ours = ours_on(&file);
    let auth = auth_header();
    let auth = [("Authorization", auth.as_str())];

    // Our API refuses requests without the password.
    let probe = &cases(&d)[0];
    let (status, _, _) = http_get(&ours.url(&probe.path()), &[]).expect("GET without auth");
    assert_eq!(status, 401, "our API answered a query without credentials");

    // PROMQL_COMPAT_FILTER=text runs only the queries containing it;
    // PROMQL_COMPAT_VERBOSE=1 prints every query with Prometheus's answer.
    let filter = std::env::var("PROMQL_COMPAT_FILTER").unwrap_or_default();
    let verbose = std::env::var_os("PROMQL_COMPAT_VERBOSE").is_some();
    let cases: Vec<Case> = cases(&d)
        .into_iter()
        .filter(|c| c.query.contains(&filter))
        .collect();
    let prom_base = prom.url("");
    let ours_base = ours.url("");
    let theirs: Vec<Reply> = cases.iter().map(|c| ask(&prom_base, &[], c)).collect();
    if verbose {
        for (case, reply) in cases.iter().zip(&theirs) {
            println!("{}\n  prometheus: {}", case.describe(), summary(reply));
        }
    }
    let instant = cases
        .iter()
        .filter(|c| matches!(c.kind, Kind::Instant(_)))
        .count();
    let invalid = cases.iter().filter(|c| c.expect != Expect::Valid).count();
    let with_data = theirs.iter().filter(|r| non_empty(r)).count();
    println!(
        "promql compat suite: {} queries ({instant} instant, {} range; {invalid} invalid), {with_data} with data on Prometheus",
        cases.len(),
        cases.len() - instant
    );
    let mut problems = suite_problems(&cases, &theirs);
    if !filter.is_empty() {
        problems.retain(|p| !p.starts_with("only "));
    }
    assert!(
        problems.is_empty(),
        "the suite itself is wrong ({} problems):\n{}",
        problems.len(),
        problems.join("\n")
    );

    let mut agree = 0;
    let mut failures = Vec::new();
    let mut quirks_seen = Vec::new();
    for (case, prom_reply) in cases.iter().zip(&theirs) {
        let our_reply = ask(&ours_base, &auth, case);
        match compare(prom_reply, &our_reply, case.ordered()) {
            None => agree += 1,
            Some(diff) => {
                let text = format!("{}\n{diff}", case.describe());
                match KNOWN_QUIRKS.iter().find(|(q, _)| *q == case.query) {
                    Some((_, why)) => {
                        quirks_seen.push(case.query.clone());
                        println!("known quirk ({why}): {text}");
                    }
                    None => failures.push(text),
                }
            }
        }
    }
    println!("promql compat: {agree}/{} queries agree", cases.len());
    for (q, _) in KNOWN_QUIRKS {
        if !quirks_seen.iter().any(|s| s == q) {
            println!("KNOWN_QUIRKS entry no longer needed: {q}");
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} queries disagree with Prometheus:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

/// promtool's `query` subcommands (instant, range, series, label values)
/// work against our API, with basic auth from the server URL.
#[test]
fn promtool_queries_our_api() {
    let promtool = require("promtool", "prometheus");
    let files = tempfile::tempdir().expect("tempdir");
    let (d, file) = write_dataset(files.path());
    let ours = ours_on(&file);
    let server = format!("http://admin:{PASSWORD}@127.0.0.1:{}", ours.port);
    let t = d.start + 3600;

    let out = run_ok(Command::new(&promtool).args([
        "query",
        "instant",
        &format!("--time={t}"),
        &server,
        r#"machine_cpu_cores{instance="10.0.0.2:8080"}"#,
    ]));
    assert_eq!(
        out.trim(),
        format!(r#"machine_cpu_cores{{instance="10.0.0.2:8080", job="api"}} => 8 @[{t}]"#),
        "{out}"
    );

    let out = run_ok(Command::new(&promtool).args([
        "query",
        "range",
        &format!("--start={t}"),
        &format!("--end={}", t + 120),
        "--step=1m",
        &server,
        r#"sum by (job) (machine_cpu_cores)"#,
    ]));
    let expected = format!(
        "{{job=\"api\"}} =>\n12 @[{t}]\n12 @[{}]\n12 @[{}]\n{{job=\"web\"}} =>\n4 @[{t}]\n4 @[{}]\n4 @[{}]",
        t + 60,
        t + 120,
        t + 60,
        t + 120
    );
    assert_eq!(out.trim(), expected, "{out}");

    let out = run_ok(Command::new(&promtool).args([
        "query",
        "series",
        "--match=machine_cpu_cores",
        "--match=build_info{branch=\"main\"}",
        &server,
    ]));
    let mut lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    lines.sort_unstable();
    let mut expected = vec![
        r#"{__name__="build_info", branch="main", instance="10.0.0.1:8080", job="api", revision="abc123", version="1.2.3"}"#.to_string(),
        r#"{__name__="build_info", branch="main", instance="10.0.0.2:8080", job="api", revision="def456", version="1.2.3"}"#.to_string(),
    ];
    for (job, instance) in TARGETS {
        expected.push(format!(
            r#"{{__name__="machine_cpu_cores", instance="{instance}", job="{job}"}}"#
        ));
    }
    expected.sort_unstable();
    assert_eq!(lines, expected, "{out}");

    let out = run_ok(Command::new(&promtool).args(["query", "labels", &server, "job"]));
    let values: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(values, ["api", "web"], "{out}");
    let out = run_ok(Command::new(&promtool).args(["query", "labels", &server, "queue"]));
    let values: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(values, ["active", "deferred", "hold"], "{out}");

    // Without credentials promtool gets no data.
    let no_auth = Command::new(&promtool)
        .args([
            "query",
            "instant",
            &format!("http://127.0.0.1:{}", ours.port),
            "machine_cpu_cores",
        ])
        .output()
        .expect("promtool");
    assert!(
        !no_auth.status.success(),
        "promtool without credentials succeeded: {}",
        String::from_utf8_lossy(&no_auth.stdout)
    );
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(base64(b"admin:pw"), "YWRtaW46cHc=");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
        assert_eq!(percent_encode("a b{c=\"d\"}"), "a%20b%7Bc%3D%22d%22%7D");
        let sorted = Case {
            query: "sort_desc(rate(x[5m]))".into(),
            kind: Kind::Instant(0.0),
            expect: Expect::Valid,
        };
        assert!(sorted.ordered());
        let not = Case {
            query: "sort(x) + sort(y)".into(),
            ..sorted.clone()
        };
        assert!(!not.ordered());
        assert!(same_number(f64::NAN, f64::NAN));
        assert!(!same_number(f64::INFINITY, f64::NEG_INFINITY));
        assert!(same_number(1.0, 1.0 + 1e-12));
        assert!(!same_number(1.0, 1.0001));
    }

    fn vector(items: &[(&str, &str)]) -> Reply {
        let result: Vec<String> = items
            .iter()
            .map(|(job, v)| format!(r#"{{"metric":{{"job":"{job}"}},"value":[10.5,"{v}"]}}"#))
            .collect();
        let body = format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
            result.join(",")
        );
        parse_reply(200, body.as_bytes())
    }

    #[test]
    fn comparison() {
        let a = vector(&[("a", "1"), ("b", "NaN"), ("c", "+Inf")]);
        let shuffled = vector(&[("c", "+Inf"), ("a", "1.0000000000001"), ("b", "NaN")]);
        assert_eq!(compare(&a, &shuffled, false), None);
        let diff = compare(&a, &shuffled, true).expect("order differs");
        assert!(diff.contains("order of values differs"), "{diff}");
        let other = vector(&[("a", "2"), ("c", "+Inf"), ("d", "1")]);
        let diff = compare(&a, &other, false).expect("differs");
        assert!(diff.contains(r#"{job="a"} differs at point 0"#), "{diff}");
        assert!(diff.contains(r#"only in prometheus: {job="b"}"#), "{diff}");
        assert!(diff.contains(r#"only in ours:       {job="d"}"#), "{diff}");
        let bad = parse_reply(
            400,
            br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#,
        );
        let exec = parse_reply(
            422,
            br#"{"status":"error","errorType":"execution","error":"many-to-many"}"#,
        );
        assert_eq!(compare(&bad, &bad, false), None);
        assert!(compare(&bad, &exec, false).is_some());
        assert!(compare(&bad, &a, false).is_some());
        let scalar = parse_reply(
            200,
            br#"{"status":"success","data":{"resultType":"scalar","result":[1,"-Inf"]}}"#,
        );
        assert!(non_empty(&scalar));
        assert!(compare(&scalar, &a, false).is_some());
        assert!(matches!(parse_reply(200, b"<html>"), Reply::Broken(_)));
        // Two servers of ours, compared by their answers' data.
        let matrix = |v: &str| {
            serde_json::json!({"resultType": "matrix", "result": [
                {"metric": {"job": "a"}, "values": [[1, "1"], [2, v]]}]})
        };
        assert_eq!(data_difference(&matrix("2"), &matrix("2")), None);
        let diff = data_difference(&matrix("2"), &matrix("1")).expect("differs");
        assert!(diff.contains(r#"{job="a"} differs at point 1"#), "{diff}");
        let diff = data_difference(&serde_json::Value::Null, &matrix("1")).expect("broken");
        assert!(diff.contains("not a query answer"), "{diff}");
    }
}
