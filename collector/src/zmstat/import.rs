//! `carbonio-monitor import zmstat DIR`: a zmstat directory (today's
//! `*.csv` and earlier days' `YYYY-MM-DD/*.csv.gz`) into the metric store.
//!
//! Re-runs add nothing: a ledger (`DATA/imports/zmstat.json`) keeps, per
//! host and file, the time spans already imported and the entities of
//! each span's last timestamp; rows inside them are skipped. So a day read
//! from today's `.csv` and later again from its `.csv.gz` is stored once.
//! The ledger is written after the samples it covers (a crash in between
//! stores rows twice, which reads de-duplicate).

use super::layout::{Column, Header};
use super::{read_rows, series_labels, Event, Row, Skip};
use crate::relabel::Labels;
use crate::store::wal::WalError;
use crate::store::{SeriesLabels, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Imported blocks span a day: zmstat has at most one row per 30 s.
pub const BLOCK_WINDOW_MS: i64 = 24 * 3600 * 1000;
/// Samples held before they are written out.
const BATCH_SAMPLES: usize = 4_000_000;

#[derive(Debug, thiserror::Error)]
pub enum ZmstatError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} holds no zmstat file (*.csv, YYYY-MM-DD/*.csv.gz)")]
    NotZmstat(PathBuf),
    #[error("import ledger {path}: {message}")]
    Ledger { path: PathBuf, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Wal(#[from] WalError),
}

/// One CSV file of the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub path: PathBuf,
    /// `cpu`, `io-x`, `mailboxd`, ...
    pub stem: String,
    /// The archive day directory; `None` for today's files.
    pub day: Option<String>,
}

/// The CSV files of a zmstat directory, archived days first (oldest
/// first), then today's.
pub fn sources(dir: &Path) -> Result<Vec<Source>, ZmstatError> {
    let io = |source| ZmstatError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut days: Vec<Source> = Vec::new();
    let mut today: Vec<Source> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)?.filter_map(|e| e.ok()) {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if path.is_dir() && is_day(&name) {
            let rd = std::fs::read_dir(&path).map_err(|source| ZmstatError::Io {
                path: path.clone(),
                source,
            })?;
            for f in rd.filter_map(|e| e.ok()) {
                let fname = f.file_name().to_string_lossy().to_string();
                if let Some(stem) = csv_stem(&fname) {
                    days.push(Source {
                        path: f.path(),
                        stem,
                        day: Some(name.clone()),
                    });
                }
            }
        } else if let Some(stem) = name.strip_suffix(".csv") {
            today.push(Source {
                path,
                stem: stem.to_string(),
                day: None,
            });
        }
    }
    days.sort_by(|a, b| (&a.day, &a.stem).cmp(&(&b.day, &b.stem)));
    today.sort_by(|a, b| a.stem.cmp(&b.stem));
    days.extend(today);
    if days.is_empty() {
        return Err(ZmstatError::NotZmstat(dir.to_path_buf()));
    }
    Ok(days)
}

fn is_day(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
}

fn csv_stem(name: &str) -> Option<String> {
    name.strip_suffix(".csv.gz")
        .or_else(|| name.strip_suffix(".csv"))
        .map(str::to_string)
}

/// Reads a file whole, gunzipping `.gz`; invalid UTF-8 is replaced.
fn read_text(path: &Path) -> Result<String, ZmstatError> {
    let io = |source| ZmstatError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    let file = std::fs::File::open(path).map_err(io)?;
    if path.extension().is_some_and(|e| e == "gz") {
        flate2::read::MultiGzDecoder::new(file)
            .read_to_end(&mut bytes)
            .map_err(io)?;
    } else {
        std::io::BufReader::new(file)
            .read_to_end(&mut bytes)
            .map_err(io)?;
    }
    Ok(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// Time spans imported, per host and file.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    hosts: BTreeMap<String, BTreeMap<String, Vec<Span>>>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub min: i64,
    pub max: i64,
    /// Entities whose row at `max` was imported (files with a row per
    /// entity write a timestamp's rows one by one).
    pub at_max: BTreeSet<String>,
}

impl Span {
    fn at(ts: i64, entity: &str) -> Span {
        Span {
            min: ts,
            max: ts,
            at_max: BTreeSet::from([entity.to_string()]),
        }
    }

    fn extend(&mut self, ts: i64, entity: &str) {
        self.min = self.min.min(ts);
        if ts > self.max {
            self.max = ts;
            self.at_max.clear();
        }
        if ts == self.max {
            self.at_max.insert(entity.to_string());
        }
    }

    fn covers(&self, ts: i64, entity: &str) -> bool {
        (self.min <= ts && ts < self.max) || (ts == self.max && self.at_max.contains(entity))
    }
}

impl Ledger {
    pub fn load(path: &Path) -> Result<Ledger, ZmstatError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ZmstatError::Ledger {
                path: path.to_path_buf(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ledger::default()),
            Err(source) => Err(ZmstatError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Written to a temporary file, synced and renamed into place.
    pub fn save(&self, path: &Path) -> Result<(), ZmstatError> {
        let io = |source| ZmstatError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(self).map_err(|e| ZmstatError::Ledger {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    fn covers(&self, host: &str, file: &str, ts: i64, entity: &str) -> bool {
        self.hosts
            .get(host)
            .and_then(|files| files.get(file))
            .is_some_and(|spans| spans.iter().any(|s| s.covers(ts, entity)))
    }

    /// Adds `span` and merges the spans it touches.
    fn add(&mut self, host: &str, file: &str, span: Span) {
        let spans = self
            .hosts
            .entry(host.to_string())
            .or_default()
            .entry(file.to_string())
            .or_default();
        spans.push(span);
        spans.sort_by_key(|s| s.min);
        let mut merged: Vec<Span> = Vec::with_capacity(spans.len());
        for s in spans.drain(..) {
            match merged.last_mut() {
                Some(last) if s.min <= last.max => {
                    if s.max > last.max {
                        last.max = s.max;
                        last.at_max = s.at_max;
                    } else if s.max == last.max {
                        last.at_max.extend(s.at_max);
                    }
                }
                _ => merged.push(s),
            }
        }
        *spans = merged;
    }
}

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Report {
    pub files: usize,
    pub rows: usize,
    pub samples: usize,
    pub series: usize,
    pub blocks: usize,
    pub empty_cells: usize,
    pub bad_cells: usize,
    pub skipped: BTreeMap<Skip, usize>,
}

impl Report {
    pub fn skipped_rows(&self) -> usize {
        self.skipped.values().sum()
    }
}

/// Where imported samples go: straight into blocks (a backfill), or the
/// WAL and head (`--watch`, where rows arrive as they are written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Blocks,
    Head,
}

pub struct Importer<'s> {
    store: &'s Store,
    host: String,
    base: Labels,
    tz: chrono_tz::Tz,
    target: Target,
    ledger_path: PathBuf,
    ledger: Ledger,
    /// Series ids by header, entity and column position (0 = no value).
    ids: HashMap<(u64, String), Vec<u64>>,
    series: Vec<Arc<SeriesLabels>>,
    pending: Vec<(u64, i64, f64)>,
    pending_spans: Vec<(String, Span)>,
    described: HashSet<u64>,
    report: Report,
}

impl<'s> Importer<'s> {
    /// Samples get `host` and `job="zmstat"`; zone-less times are read in `tz`.
    pub fn new(
        store: &'s Store,
        data: &Path,
        host: &str,
        tz: chrono_tz::Tz,
        target: Target,
    ) -> Result<Importer<'s>, ZmstatError> {
        let ledger_path = data.join("imports").join("zmstat.json");
        let ledger = Ledger::load(&ledger_path)?;
        let base = Labels::from([
            ("host".to_string(), host.to_string()),
            ("job".to_string(), "zmstat".to_string()),
        ]);
        Ok(Importer {
            store,
            host: host.to_string(),
            base,
            tz,
            target,
            ledger_path,
            ledger,
            ids: HashMap::new(),
            series: Vec::new(),
            pending: Vec::new(),
            pending_spans: Vec::new(),
            described: HashSet::new(),
            report: Report::default(),
        })
    }

    pub fn report(&self) -> &Report {
        &self.report
    }

    /// Imports one file; samples are written once enough have gathered
    /// (and by `finish`).
    pub fn import_file(&mut self, source: &Source) -> Result<(), ZmstatError> {
        let text = read_text(&source.path)?;
        self.import_text(&source.stem, &text)?;
        if self.pending.len() >= BATCH_SAMPLES {
            self.write_pending()?;
        }
        Ok(())
    }

    /// The rows of one file's text (`stem` as in `cpu` for `cpu.csv`).
    pub fn import_text(&mut self, stem: &str, text: &str) -> Result<(), ZmstatError> {
        self.report.files += 1;
        // Spans by header; named by file and layout (Zimbra's ldap.csv holds two).
        let mut spans: HashMap<u64, (String, Span)> = HashMap::new();
        read_rows(stem, text, self.tz, |event| {
            match event {
                Event::Header(header) => {
                    if self.described.insert(header.id) {
                        self.store.record_metadata(&header.metadata())?;
                    }
                }
                Event::Skip(skip) => *self.report.skipped.entry(skip).or_default() += 1,
                Event::Row(header, ts, row) => {
                    let entity = row.entity_key();
                    let (file, span) = spans.entry(header.id).or_insert_with(|| {
                        (format!("{stem}/{}", header.file), Span::at(ts, &entity))
                    });
                    span.extend(ts, &entity);
                    if self.ledger.covers(&self.host, file, ts, &entity) {
                        *self
                            .report
                            .skipped
                            .entry(Skip::AlreadyImported)
                            .or_default() += 1;
                    } else {
                        self.add_row(header, ts, &row, entity);
                    }
                }
            }
            Ok::<(), ZmstatError>(())
        })?;
        self.pending_spans.extend(spans.into_values());
        Ok(())
    }

    fn add_row(&mut self, header: &Header, ts: i64, row: &Row, entity: String) {
        let key = (header.id, entity);
        if !self.ids.contains_key(&key) {
            let ids = (0..header.columns.len())
                .map(|col| match header.columns[col] {
                    Column::Value(_) => {
                        let labels = series_labels(header, col, &row.entity, &self.base);
                        self.series.push(Arc::new(SeriesLabels::new(labels)));
                        self.series.len() as u64
                    }
                    _ => 0,
                })
                .collect();
            self.ids.insert(key.clone(), ids);
        }
        let ids = &self.ids[&key];
        for (col, value) in &row.values {
            self.pending.push((ids[*col], ts, *value));
        }
        self.report.rows += 1;
        self.report.samples += row.values.len();
        self.report.empty_cells += row.empty_cells;
        self.report.bad_cells += row.bad_cells;
    }

    /// Writes what is pending, then records its spans in the ledger.
    pub fn write_pending(&mut self) -> Result<(), ZmstatError> {
        let samples = std::mem::take(&mut self.pending);
        if !samples.is_empty() {
            match self.target {
                Target::Blocks => {
                    let present: BTreeSet<u64> = samples.iter().map(|s| s.0).collect();
                    let series: Vec<(u64, Labels)> = present
                        .into_iter()
                        .map(|id| (id, (**self.series[id as usize - 1]).clone()))
                        .collect();
                    let blocks = self.store.write_blocks(&series, samples, BLOCK_WINDOW_MS)?;
                    self.report.blocks += blocks.len();
                }
                Target::Head => {
                    let batch: Vec<(Arc<SeriesLabels>, i64, f64)> = samples
                        .iter()
                        .map(|(id, ts, v)| (self.series[*id as usize - 1].clone(), *ts, *v))
                        .collect();
                    for chunk in batch.chunks(100_000) {
                        self.store.append(chunk)?;
                    }
                }
            }
        }
        if self.pending_spans.is_empty() {
            return Ok(());
        }
        for (file, span) in std::mem::take(&mut self.pending_spans) {
            self.ledger.add(&self.host, &file, span);
        }
        self.report.series = self.series.len();
        self.ledger.save(&self.ledger_path)
    }
}

/// Imports every file of `dir`; `progress` gets (files done, files).
pub fn import_dir(
    importer: &mut Importer,
    dir: &Path,
    mut progress: impl FnMut(usize, usize),
) -> Result<(), ZmstatError> {
    let all = sources(dir)?;
    for (i, source) in all.iter().enumerate() {
        importer.import_file(source)?;
        progress(i + 1, all.len());
    }
    importer.write_pending()
}

/// Follows `dir` after the import: whenever a file changes (`notify`, or
/// every `poll` when events do not come), changed files are read again and
/// their new rows appended (the ledger skips the rows already stored).
pub fn watch(
    importer: &mut Importer,
    dir: &Path,
    poll: std::time::Duration,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<(), ZmstatError> {
    use notify::Watcher;
    let (tx, rx) = std::sync::mpsc::channel();
    let watcher = notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    })
    .and_then(|mut w| {
        w.watch(dir, notify::RecursiveMode::Recursive)?;
        Ok(w)
    });
    if let Err(e) = &watcher {
        tracing::warn!(error = %e, "no file notifications; polling");
    }
    let mut seen: HashMap<PathBuf, (u64, std::time::SystemTime)> = HashMap::new();
    let mut first = true;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        if !first {
            let _ = rx.recv_timeout(poll);
            while rx.try_recv().is_ok() {}
        }
        for source in sources(dir)? {
            let Ok(meta) = std::fs::metadata(&source.path) else {
                continue;
            };
            let stamp = (meta.len(), meta.modified().unwrap_or(std::time::UNIX_EPOCH));
            if seen.get(&source.path) == Some(&stamp) {
                continue;
            }
            seen.insert(source.path.clone(), stamp);
            if !first {
                importer.import_file(&source)?;
            }
        }
        importer.write_pending()?;
        first = false;
    }
    drop(watcher);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::head::Matcher;
    use crate::store::MetricRead;

    fn select(store: &Store, name: &str) -> Vec<(Labels, Vec<(i64, f64)>)> {
        let m = [Matcher::Equal("__name__".into(), name.into())];
        store.select(&m, 0, i64::MAX).unwrap()
    }

    #[test]
    fn spans_merge_and_cover() {
        let mut l = Ledger::default();
        l.add("h", "df", Span::at(10, "/"));
        let mut s = Span::at(10, "/");
        s.extend(20, "/");
        s.extend(20, "/opt");
        l.add("h", "df", s);
        assert!(l.covers("h", "df", 15, "x"));
        assert!(l.covers("h", "df", 20, "/opt"));
        assert!(!l.covers("h", "df", 20, "/var"));
        assert!(!l.covers("h", "cpu", 15, "x"));
        l.add("h", "df", Span::at(20, "/var"));
        assert!(l.covers("h", "df", 20, "/var"));
        assert_eq!(l.hosts["h"]["df"].len(), 1);
    }

    #[test]
    fn rows_headers_and_reimport() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        let mut imp =
            Importer::new(&store, dir.path(), "mbox1", chrono_tz::UTC, Target::Blocks).unwrap();
        let text = "timestamp, path, disk, disk_use, disk_space, disk_pct_used\n\
            01/02/2024 10:00:00, /, /dev/sda1, 100, 1000, 10\n\
            01/02/2024 10:00:00, /opt, /dev/sdb1, 200, 2000, \n\
            garbage\n\
            13/45/2024 10:00:00, /, /dev/sda1, 1, 1, 1\n";
        imp.import_text("df", text).unwrap();
        imp.write_pending().unwrap();
        let r = imp.report().clone();
        assert_eq!((r.rows, r.samples, r.empty_cells), (2, 5, 1));
        assert_eq!(r.skipped[&Skip::CellCount], 1);
        assert_eq!(r.skipped[&Skip::BadTimestamp], 1);
        let got = select(&store, "zmstat_df_disk_use");
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].0["path"], "/opt");
        assert_eq!(got[1].0["host"], "mbox1");
        assert_eq!(got[1].1, vec![(1_704_189_600_000, 200.0)]);

        let mut again =
            Importer::new(&store, dir.path(), "mbox1", chrono_tz::UTC, Target::Blocks).unwrap();
        again.import_text("df", text).unwrap();
        again.write_pending().unwrap();
        assert_eq!(again.report().rows, 0);
        assert_eq!(again.report().skipped[&Skip::AlreadyImported], 2);
    }
}
