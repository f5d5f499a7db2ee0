//! The live form of zmstat: each collector also logs its row over syslog
//! `local1` with ident `zimbramon`, as `zmstat cpu.csv: <header>:: <row>`
//! (the mailbox JVM: `mailboxd.csv: ...` or `mailboxd: ...`). Rows over
//! 800 characters come in chunks: every chunk but the last ends with
//! `:::<uuid>:::`, every chunk but the first starts with the previous
//! chunk's marker. Reassembled rows become the same metrics as the
//! importer's, labelled with the sender's host.
//!
//! The rows carry local time without a zone: the sender's offset is taken
//! from the syslog timestamp (rounded to 15 minutes), which the row's own
//! time differs from only by the offset and a few seconds of delay.

use super::layout::Header;
use super::{read_row, series_labels, split_cells};
use crate::logs::LineRef;
use crate::relabel::Labels;
use crate::store::Store;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Chunks waiting for their continuation, at most.
const MAX_PARTIAL: usize = 1000;
/// A chunk whose continuation has not come in this long is dropped.
const PARTIAL_TTL_NS: i64 = 10 * 60 * 1_000_000_000;
const QUARTER_HOUR_MS: i64 = 15 * 60 * 1000;

/// The part of a log line the stream needs.
#[derive(Debug, Clone, PartialEq)]
pub struct StatLine {
    pub host: String,
    pub timestamp_ns: i64,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct StreamStats {
    pub rows: AtomicU64,
    pub samples: AtomicU64,
    /// Lines from `zimbramon` that are not a zmstat row (STATUS, QUEUE...).
    pub other: AtomicU64,
    /// Rows whose cell count differs from their header, or with a bad time.
    pub bad_rows: AtomicU64,
    /// Chunks dropped before their row was complete (expired, or over the cap).
    pub orphan_chunks: AtomicU64,
}

pub struct Stream {
    store: Arc<Store>,
    partial: Mutex<Vec<Chunk>>,
    described: Mutex<HashSet<u64>>,
    pub stats: StreamStats,
}

impl Stream {
    pub fn new(store: Arc<Store>) -> Stream {
        Stream {
            store,
            partial: Mutex::default(),
            described: Mutex::default(),
            stats: StreamStats::default(),
        }
    }

    /// The lines of `records` the stream reads: ident `zimbramon`.
    pub fn pick<'a>(lines: impl IntoIterator<Item = LineRef<'a>>) -> Vec<StatLine> {
        lines
            .into_iter()
            .filter(|r| r.app == "zimbramon")
            .map(|r| StatLine {
                host: r.host.to_string(),
                timestamp_ns: r.timestamp_ns,
                message: r.message.to_string(),
            })
            .collect()
    }

    /// Turns acknowledged lines into samples in the metric store.
    pub fn feed(&self, lines: Vec<StatLine>) {
        let mut batch: Vec<(Labels, i64, f64)> = Vec::new();
        for line in lines {
            let Some(text) = self.reassemble(&line) else {
                continue;
            };
            self.row_samples(&line, &text, &mut batch);
        }
        if batch.is_empty() {
            return;
        }
        self.stats
            .samples
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        if let Err(e) = self.store.append(&batch) {
            tracing::error!(error = %e, "zmstat rows from syslog not stored");
        }
    }

    /// The whole message once all its chunks are in, in whatever order
    /// they arrived (separate connections or relays can reorder them).
    fn reassemble(&self, line: &StatLine) -> Option<String> {
        let body = strip_priority_prefix(&line.message);
        let (prev, rest) = match leading_marker(body) {
            Some((uuid, rest)) => (Some(uuid.to_string()), rest),
            None => (None, body),
        };
        let (next, text) = match trailing_marker(rest) {
            Some((uuid, len)) => (Some(uuid), &rest[..len]),
            None => (None, rest),
        };
        if prev.is_none() && next.is_none() {
            return Some(text.to_string());
        }
        let mut partial = self.partial.lock().unwrap_or_else(|p| p.into_inner());
        let before = partial.len();
        partial.retain(|c| line.timestamp_ns - c.at < PARTIAL_TTL_NS);
        if partial.len() >= MAX_PARTIAL {
            partial.remove(0);
        }
        let dropped = before - partial.len();
        self.stats
            .orphan_chunks
            .fetch_add(dropped as u64, Ordering::Relaxed);
        partial.push(Chunk {
            host: line.host.clone(),
            prev,
            next,
            text: text.to_string(),
            at: line.timestamp_ns,
        });
        complete_chain(&mut partial, &line.host)
    }

    fn row_samples(&self, line: &StatLine, text: &str, out: &mut Vec<(Labels, i64, f64)>) {
        let Some((stem, header_line, row_line)) = split_stat(text) else {
            self.stats.other.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let header = Header::parse(stem, header_line);
        let cells = split_cells(row_line);
        let ts = match (header.accepts(cells.len()), cells.first()) {
            (true, Some(t)) => sender_time(t, line.timestamp_ns / 1_000_000),
            _ => None,
        };
        let Some(ts) = ts else {
            self.stats.bad_rows.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let new_header = self
            .described
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(header.id);
        if new_header {
            if let Err(e) = self.store.record_metadata(&header.metadata()) {
                tracing::warn!(error = %e, "zmstat metadata not stored");
            }
        }
        let cells = header.align(cells);
        let row = read_row(&header, &cells);
        let base = Labels::from([
            ("host".to_string(), line.host.clone()),
            ("job".to_string(), "zmstat".to_string()),
        ]);
        for (col, value) in &row.values {
            out.push((series_labels(&header, *col, &row.entity, &base), ts, *value));
        }
        self.stats.rows.fetch_add(1, Ordering::Relaxed);
    }
}

/// A piece of a long row: its text and the markers linking it to the
/// pieces before and after it.
#[derive(Debug)]
struct Chunk {
    host: String,
    prev: Option<String>,
    next: Option<String>,
    text: String,
    at: i64,
}

/// Takes out and joins a chain of `host`'s chunks from first to last, if
/// one is complete.
fn complete_chain(chunks: &mut Vec<Chunk>, host: &str) -> Option<String> {
    for head in 0..chunks.len() {
        if chunks[head].host != host || chunks[head].prev.is_some() {
            continue;
        }
        let mut chain = vec![head];
        let mut cur = head;
        while let Some(next) = chunks[cur].next.as_deref() {
            let found = chunks
                .iter()
                .position(|c| c.host == host && c.prev.as_deref() == Some(next));
            match found {
                Some(i) if !chain.contains(&i) => {
                    chain.push(i);
                    cur = i;
                }
                _ => break,
            }
        }
        if chunks[cur].next.is_some() {
            continue;
        }
        let text: String = chain.iter().map(|&i| chunks[i].text.as_str()).collect();
        chain.sort_unstable();
        for i in chain.into_iter().rev() {
            chunks.remove(i);
        }
        return Some(text);
    }
    None
}

/// Perl's Logger writes `<pid>:<level>: ` before the text.
fn strip_priority_prefix(message: &str) -> &str {
    let digits = message.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return message;
    }
    let rest = &message[digits..];
    let Some(rest) = rest.strip_prefix(':') else {
        return message;
    };
    match rest.split_once(": ") {
        Some((level, text)) if level.bytes().all(|b| b.is_ascii_alphabetic()) => text,
        _ => message,
    }
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36 && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// `:::<uuid>:::rest` → (uuid, rest).
fn leading_marker(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix(":::")?;
    let uuid = rest.get(..36)?;
    let after = rest.get(36..)?.strip_prefix(":::")?;
    is_uuid(uuid).then_some((uuid, after))
}

/// `head:::<uuid>:::` → (uuid, head length).
fn trailing_marker(text: &str) -> Option<(String, usize)> {
    let rest = text.strip_suffix(":::")?;
    let start = rest.len().checked_sub(36)?;
    let uuid = rest.get(start..)?;
    let head = rest.get(..start)?.strip_suffix(":::")?;
    is_uuid(uuid).then(|| (uuid.to_string(), head.len()))
}

/// `zmstat cpu.csv: <header>:: <row>` → (`cpu`, header, row).
pub fn split_stat(text: &str) -> Option<(&str, &str, &str)> {
    let text = text.trim().strip_prefix("zmstat ").unwrap_or(text.trim());
    let (name, rest) = text.split_once(": ")?;
    let stem = name.strip_suffix(".csv").unwrap_or(name);
    let valid = !stem.is_empty()
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid || !rest.starts_with("timestamp") {
        return None;
    }
    let (header, row) = rest.split_once("::")?;
    Some((stem, header, row.trim_start()))
}

/// The row's `MM/DD/YYYY HH:MM:SS`, in the zone whose offset brings it
/// nearest to when the line was sent.
fn sender_time(cell: &str, sent_ms: i64) -> Option<i64> {
    let naive = super::local_time(cell)?;
    let as_utc = naive.and_utc().timestamp_millis();
    let offset =
        ((as_utc - sent_ms) as f64 / QUARTER_HOUR_MS as f64).round() as i64 * QUARTER_HOUR_MS;
    Some(if offset.abs() <= 14 * 3600 * 1000 {
        as_utc - offset
    } else {
        as_utc
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::head::Matcher;
    use crate::store::MetricRead;

    const UUID1: &str = "CD897126-A1B4-11EB-9C85-EB0C489C3827";
    const UUID2: &str = "cd897126-a1b4-11eb-9c85-eb0c489c3828";
    const UUID3: &str = "cd897126-a1b4-11eb-9c85-eb0c489c3829";

    fn line(message: &str, sent_ms: i64) -> StatLine {
        StatLine {
            host: "mta1".into(),
            timestamp_ns: sent_ms * 1_000_000,
            message: message.into(),
        }
    }

    #[test]
    fn pieces() {
        assert_eq!(strip_priority_prefix("1234:info: zmstat x"), "zmstat x");
        assert_eq!(strip_priority_prefix("12:30 x"), "12:30 x");
        assert_eq!(
            leading_marker(&format!(":::{UUID1}:::rest")),
            Some((UUID1, "rest"))
        );
        assert_eq!(
            trailing_marker(&format!("abc:::{UUID1}:::")),
            Some((UUID1.to_string(), 3))
        );
        assert_eq!(
            split_stat(
                "zmstat mtaqueue.csv: timestamp, KBytes, requests:: 04/23/2013 18:19:30, 0, 0"
            ),
            Some((
                "mtaqueue",
                "timestamp, KBytes, requests",
                "04/23/2013 18:19:30, 0, 0"
            ))
        );
        assert_eq!(split_stat("STATUS: mta1: mta: Running"), None);
        // Rome in April is UTC+2: 11:56:30 local is 09:56:30 UTC.
        let sent = 1_618_307_795_000; // 2021-04-13T09:56:35Z
        assert_eq!(
            sender_time("04/13/2021 11:56:30", sent),
            Some(1_618_307_790_000)
        );
    }

    #[test]
    fn split_rows_are_reassembled() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        let stream = Stream::new(Arc::new(store));
        let sent = 1_618_307_795_000;
        let msg = "1:info: zmstat cpu.csv: timestamp, cpu:user, cpu0:user:: 04/13/2021 09:56:30, 8.6, 9.1";
        let (a, b) = msg.split_at(60);
        let (b, c) = b.split_at(10);
        // Out of order, as separate connections can deliver them.
        stream.feed(vec![
            line(&format!(":::{UUID2}:::{c}"), sent),
            line(&format!("{a}:::{UUID1}:::"), sent),
            line(&format!(":::{UUID3}:::orphan"), sent),
            line(&format!("1:info: :::{UUID1}:::{b}:::{UUID2}:::"), sent),
            line("STATUS: mta1: mta: Running", sent),
        ]);
        assert_eq!(stream.stats.rows.load(Ordering::Relaxed), 1);
        assert_eq!(stream.stats.other.load(Ordering::Relaxed), 1);
        assert_eq!(stream.partial.lock().unwrap().len(), 1);
        // The orphan expires.
        stream.feed(vec![line("STATUS: x", sent + 11 * 60 * 1000)]);
        stream.feed(vec![line(
            &format!("a:::{UUID1}:::"),
            sent + 11 * 60 * 1000,
        )]);
        assert_eq!(stream.stats.orphan_chunks.load(Ordering::Relaxed), 1);
        let m = [Matcher::Equal("__name__".into(), "zmstat_cpu_user".into())];
        let got = stream.store.select(&m, 0, i64::MAX).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0["host"], "mta1");
        assert_eq!(got[0].1, vec![(1_618_307_790_000, 9.1)]);
        assert_eq!(got[1].0["cpu"], "all");
    }
}
