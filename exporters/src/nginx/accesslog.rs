//! Opt-in request counters from the nginx access log, read on each scrape
//! from where the previous one stopped. Follows rotation by rename (the old
//! file is read to its end first) and by copytruncate (the file shrinks).
//!
//! Understands Carbonio's proxy format (`log_format upstream`) and nginx's
//! `combined`: both have `"<request>" <status> <bytes>`. A trailing number
//! (e.g. `$request_time` appended to the format) feeds a latency histogram;
//! Carbonio's stock format has no time field, so the histogram stays empty.

use crate::exposition::{Family, Kind, Sample};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// At most this much is read per scrape, so a huge backlog cannot stall one.
const MAX_READ_PER_SCRAPE: u64 = 64 << 20;

/// What one access-log line contributes.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub status: u16,
    pub bytes: u64,
    pub seconds: Option<f64>,
}

/// Parses one line; None when it has no `"request" status bytes` part.
pub fn parse_line(line: &str) -> Option<LogLine> {
    // The request is the first quoted field; status and bytes follow it.
    let open = line.find('"')?;
    let close = open + 1 + line[open + 1..].find('"')?;
    let mut rest = line[close + 1..].split_whitespace();
    let status: u16 = rest
        .next()?
        .parse()
        .ok()
        .filter(|s| (100..600).contains(s))?;
    let bytes: u64 = rest.next()?.parse().unwrap_or(0);
    let seconds = line
        .rsplit(' ')
        .next()
        .filter(|last| !last.ends_with('"'))
        .and_then(|last| last.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0);
    Some(LogLine {
        status,
        bytes,
        seconds,
    })
}

#[derive(Default)]
struct Counts {
    requests: [f64; 5],
    bytes: [f64; 5],
    buckets: [f64; BUCKETS.len()],
    duration_sum: f64,
    duration_count: f64,
    unparsed: f64,
}

struct Position {
    file: Option<File>,
    inode: u64,
    offset: u64,
    partial: Vec<u8>,
}

pub struct AccessLog {
    path: PathBuf,
    state: Mutex<(Position, Counts)>,
}

impl AccessLog {
    /// Starts at the current end of the file: history before the exporter
    /// started is not counted, as counters start at zero.
    pub fn new(path: PathBuf) -> Self {
        let mut pos = Position {
            file: None,
            inode: 0,
            offset: 0,
            partial: Vec::new(),
        };
        if let Ok(f) = File::open(&path) {
            if let Ok(meta) = f.metadata() {
                pos.inode = meta.ino();
                pos.offset = meta.len();
            }
            pos.file = Some(f);
        }
        AccessLog {
            path,
            state: Mutex::new((pos, Counts::default())),
        }
    }

    /// Reads what was appended since the last scrape and renders the counters.
    pub fn collect(&self) -> Vec<Family> {
        let mut guard = match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let (pos, counts) = &mut *guard;
        if let Err(e) = self.advance(pos, counts) {
            tracing::warn!(path = %self.path.display(), error = %e, "reading the nginx access log failed");
        }
        render(counts)
    }

    fn advance(&self, pos: &mut Position, counts: &mut Counts) -> std::io::Result<()> {
        let current = std::fs::metadata(&self.path).ok();
        let rotated = current.as_ref().is_some_and(|m| m.ino() != pos.inode);
        // Finish the file we had open (after a rename it may have got more lines).
        if let Some(f) = pos.file.as_mut() {
            let len = f.metadata()?.len();
            if len < pos.offset {
                // copytruncate: the file was emptied under us.
                pos.offset = 0;
                pos.partial.clear();
            }
            read_from(f, &mut pos.offset, &mut pos.partial, counts)?;
        }
        if rotated || pos.file.is_none() {
            if let Some(meta) = current {
                let mut f = File::open(&self.path)?;
                pos.inode = meta.ino();
                pos.offset = 0;
                pos.partial.clear();
                read_from(&mut f, &mut pos.offset, &mut pos.partial, counts)?;
                pos.file = Some(f);
            }
        }
        Ok(())
    }
}

fn read_from(
    f: &mut File,
    offset: &mut u64,
    partial: &mut Vec<u8>,
    counts: &mut Counts,
) -> std::io::Result<()> {
    f.seek(SeekFrom::Start(*offset))?;
    let mut buf = Vec::new();
    let n = f.by_ref().take(MAX_READ_PER_SCRAPE).read_to_end(&mut buf)?;
    *offset += n as u64;
    partial.extend_from_slice(&buf);
    // Only whole lines are counted; a line still being written waits for the next scrape.
    let Some(last_nl) = partial.iter().rposition(|b| *b == b'\n') else {
        return Ok(());
    };
    let complete: Vec<u8> = partial.drain(..=last_nl).collect();
    for line in String::from_utf8_lossy(&complete).lines() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line) {
            Some(l) => {
                let class = usize::from(l.status / 100 - 1);
                counts.requests[class] += 1.0;
                counts.bytes[class] += l.bytes as f64;
                if let Some(s) = l.seconds {
                    for (i, le) in BUCKETS.iter().enumerate() {
                        if s <= *le {
                            counts.buckets[i] += 1.0;
                        }
                    }
                    counts.duration_sum += s;
                    counts.duration_count += 1.0;
                }
            }
            None => counts.unparsed += 1.0,
        }
    }
    Ok(())
}

fn render(c: &Counts) -> Vec<Family> {
    let mut requests = Family::counter(
        "nginx_access_log_requests_total",
        "Requests logged in the nginx access log, by status class.",
    );
    let mut bytes = Family::counter(
        "nginx_access_log_response_bytes_total",
        "Bytes sent to clients as logged in the nginx access log, by status class.",
    );
    for (i, class) in CLASSES.iter().enumerate() {
        requests.add(&[("status_class", class)], c.requests[i]);
        bytes.add(&[("status_class", class)], c.bytes[i]);
    }
    let mut hist = Family::new(
        "nginx_access_log_request_duration_seconds",
        "Request time from the access log's trailing $request_time field.",
        Kind::Histogram,
    );
    for (i, le) in BUCKETS.iter().enumerate() {
        let mut le_s = String::new();
        crate::exposition::format_value(&mut le_s, *le);
        hist.samples.push(Sample {
            suffix: "_bucket",
            labels: vec![("le".into(), le_s)],
            value: c.buckets[i],
        });
    }
    hist.samples.push(Sample {
        suffix: "_bucket",
        labels: vec![("le".into(), "+Inf".into())],
        value: c.duration_count,
    });
    hist.samples.push(Sample {
        suffix: "_sum",
        labels: vec![],
        value: c.duration_sum,
    });
    hist.samples.push(Sample {
        suffix: "_count",
        labels: vec![],
        value: c.duration_count,
    });
    let unparsed = Family::counter(
        "nginx_access_log_unparsed_lines_total",
        "Access log lines without a \"request\" status bytes part.",
    )
    .with(&[], c.unparsed);
    vec![requests, bytes, hist, unparsed]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn carbonio_and_combined_lines() {
        let carbonio = r#"10.0.0.7:51234 - - [23/Nov/2026:10:00:01 +0000]  "GET https://mail.example.com/static/login/ HTTP/1.1" 502 1543 "-" "Mozilla/5.0" "10.0.0.2:8080" "10.0.0.1:443""#;
        assert_eq!(
            parse_line(carbonio),
            Some(LogLine {
                status: 502,
                bytes: 1543,
                seconds: None
            })
        );
        let combined = r#"127.0.0.1 - - [23/Nov/2026:10:00:01 +0000] "GET /stub_status HTTP/1.1" 200 97 "-" "curl/7.88" 0.004"#;
        assert_eq!(
            parse_line(combined),
            Some(LogLine {
                status: 200,
                bytes: 97,
                seconds: Some(0.004)
            })
        );
        assert_eq!(parse_line("garbage"), None);
        assert_eq!(parse_line(r#"x "GET / HTTP/1.1" 999 1"#), None);
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse_line(&s);
        }
    }
}
