//! The log store: a WAL in front (a line is acknowledged once fsynced), an
//! in-memory head, and immutable parts on disk. A flush writes the head as
//! one Parquet file per hour of event time, all in one part directory
//! renamed into place at once, whose manifest records which WAL segments it
//! covers: on start, those segments are dropped before replay, so every
//! line is stored exactly once whatever instant a crash hits.
//!
//! Inside an hour file, lines are sorted by app, host, then time: similar
//! lines side by side compress 20 % better, and row-group statistics then
//! let an `app:`/`host:` search skip most row groups (`bench log-layouts`).
//! Compaction joins an hour's files that follow each other in time row
//! group by row group, without re-encoding.
//!
//! Layout: `DIR/wal/`, `DIR/parts/<id>/{<hour>.parquet…, meta.json}`,
//! damaged parts moved to `DIR/damaged/`.

use super::block::{batches, BlockError};
use super::loghead::LogHead;
use super::tokens::{self, RowGroupFilter};
use super::wal::{self, RecordBuf, Wal, WalError};
use crate::logs::{Checkpoint, FileId, LineRef, LogRecord, WalEntry};
use arrow_array::types::Int32Type;
use arrow_array::{Array, RecordBatch, StringArray, TimestampNanosecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::arrow_writer::{compute_leaves, ArrowColumnChunk, ArrowColumnWriter};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

pub const HOUR_NS: i64 = 3_600_000_000_000;
/// Rows per Parquet row group: small enough that a time range skips most of
/// a file by its row-group statistics, and that a rare word's search reads
/// few rows past its token filters. Twice 65,536 rows stores the mail corpus
/// 1.3 % smaller (fewer words repeated across filters, fewer pages).
const ROW_GROUP_ROWS: usize = 131_072;
/// zstd compresses each page on its own: larger pages compress better
/// (measured with `bench log-layouts`); a row group's messages mostly fit
/// in one.
const DATA_PAGE_BYTES: usize = 16 << 20;
/// Every column, messages included, at zstd 3: zstd 5 (lazy matching)
/// stores messages 4 % smaller but made flushes 40 % slower (10 M lines:
/// 1.37–1.70 against 0.96–1.14 s per million lines), and flushes are most
/// of the log store's CPU.
const ZSTD_LEVEL: i32 = 3;
/// Lines a head holds before appends wait for a flush to empty it. Lines
/// may come faster than flushes write them (a burst of 10 M lines over TCP
/// ran heads up to 2–3 M lines); this bounds the memory of the head and the
/// one being written to about 800 MB of mail logs. A 1 M cap cost 5–10 %
/// of that burst's rate for half the memory.
const HEAD_CAP_LINES: usize = 2_000_000;

/// The WAL bytes of `lines` lines holding `text` bytes of fields: each adds
/// its frame header, kind, times, facility, severity and 7 field lengths.
fn wal_bytes(lines: usize, text: usize) -> usize {
    text + lines * (wal::HEADER + 1 + 16 + 2 + 7 * 4)
}

/// Room a flushed head keeps for the next: a head grows past the flush
/// threshold while a flush runs (to 3 M lines in a 10 M-line TCP run), and buffers
/// refilled rather than allocated again cost no page faults; a backlog's
/// larger buffers are cut down to this.
const SPARE_LINES: usize = 4 << 20;
const SPARE_TEXT_BYTES: usize = 512 << 20;
/// How long parts a compaction replaced stay when no object store sets
/// `local_grace`: searches and SQL that listed them finish reading.
pub const REPLACED_GRACE: std::time::Duration = std::time::Duration::from_secs(300);
/// Columns written without min/max statistics.
const UNPRUNED_COLUMNS: [&str; 7] = [
    "procid",
    "msgid",
    "facility_name",
    "severity_name",
    "message",
    "structured_data",
    "source",
];

#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error(transparent)]
    Block(#[from] BlockError),
    #[error("{path}: {msg}")]
    Io { path: PathBuf, msg: String },
    #[error(transparent)]
    Tier(#[from] super::tier::TierError),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> LogStoreError + '_ {
    move |e| LogStoreError::Io {
        path: path.to_path_buf(),
        msg: e.to_string(),
    }
}

/// The `logs` table's Arrow schema.
pub fn schema() -> Arc<Schema> {
    let ts = DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
    let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    Arc::new(Schema::new(vec![
        Field::new("timestamp", ts.clone(), false),
        Field::new("received", ts, false),
        Field::new("host", dict.clone(), false),
        Field::new("app", dict.clone(), false),
        Field::new("procid", dict.clone(), false),
        Field::new("msgid", dict.clone(), false),
        Field::new("facility", DataType::UInt8, true),
        Field::new("facility_name", dict.clone(), true),
        Field::new("severity", DataType::UInt8, true),
        Field::new("severity_name", dict.clone(), true),
        Field::new("message", DataType::Utf8, false),
        Field::new("structured_data", DataType::Utf8, false),
        Field::new("source", dict, false),
    ]))
}

/// The token filter of one row group's messages.
fn token_filter(batch: &RecordBatch) -> RowGroupFilter {
    match batch
        .column_by_name("message")
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
    {
        Some(m) => RowGroupFilter::of(m.iter().flatten()),
        None => RowGroupFilter::Unknown,
    }
}

/// Writes rows as an hour file, one row group per `ROW_GROUP_ROWS` rows
/// (or per batch, if shorter), their token filters after them; fsynced.
fn write_hour_file(
    path: &Path,
    batches: impl Iterator<Item = Result<RecordBatch, arrow_schema::ArrowError>> + Send,
    props: WriterProperties,
) -> Result<usize, LogStoreError> {
    // The next row group is gathered (from the head, in file order) while
    // this one is encoded.
    std::thread::scope(|scope| {
        let (next, gathered) = std::sync::mpsc::sync_channel(1);
        scope.spawn(move || {
            for batch in batches {
                if next.send(batch).is_err() {
                    break; // the writer failed
                }
            }
        });
        write_batches(path, gathered.into_iter(), props)
    })
}

fn write_batches(
    path: &Path,
    batches: impl Iterator<Item = Result<RecordBatch, arrow_schema::ArrowError>>,
    props: WriterProperties,
) -> Result<usize, LogStoreError> {
    let pq = |e: parquet::errors::ParquetError| LogStoreError::Io {
        path: path.to_path_buf(),
        msg: e.to_string(),
    };
    let file = std::fs::File::create(path).map_err(io(path))?;
    let schema = schema();
    // The Arrow writer sets up the file (schema, Arrow metadata); row groups
    // are then encoded column by column, on two threads.
    let (mut w, columns) = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(props))
        .and_then(|w| w.into_serialized_writer())
        .map_err(pq)?;
    let mut filters = Vec::new();
    let mut rows = 0;
    for batch in batches {
        let batch = batch.map_err(|e| LogStoreError::Io {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        let mut start = 0;
        while start < batch.num_rows() {
            let group = batch.slice(start, ROW_GROUP_ROWS.min(batch.num_rows() - start));
            let writers = columns.create_column_writers(filters.len()).map_err(pq)?;
            let (chunks, filter) = encode_row_group(&schema, &group, writers).map_err(pq)?;
            let mut row_group = w.next_row_group().map_err(pq)?;
            for chunk in chunks {
                chunk.append_to_row_group(&mut row_group).map_err(pq)?;
            }
            row_group.close().map_err(pq)?;
            filters.push(filter);
            start += group.num_rows();
        }
        rows += batch.num_rows();
    }
    let at = w.bytes_written();
    let location = tokens::embed(&filters, at, |b| w.write_all(b)).map_err(io(path))?;
    w.append_key_value_metadata(location);
    let file = w.into_inner().map_err(pq)?;
    file.sync_all().map_err(io(path))?;
    Ok(rows)
}

/// Encodes one row group's columns and builds its token filter: the
/// messages (most of the compression) on a second thread, the rest here.
/// A flush is most of the log store's CPU, and ingest often leaves a core
/// for it.
fn encode_row_group(
    schema: &Schema,
    group: &RecordBatch,
    writers: Vec<ArrowColumnWriter>,
) -> Result<(Vec<ArrowColumnChunk>, RowGroupFilter), parquet::errors::ParquetError> {
    let encode = |i: usize, mut writer: ArrowColumnWriter| {
        for leaf in compute_leaves(schema.field(i), group.column(i))? {
            writer.write(&leaf)?;
        }
        writer.close()
    };
    let mut writers: Vec<Option<ArrowColumnWriter>> = writers.into_iter().map(Some).collect();
    let aside = schema.index_of("message").ok();
    let aside_writer = aside.and_then(|i| writers.get_mut(i)?.take());
    std::thread::scope(|scope| {
        let other = aside
            .zip(aside_writer)
            .map(|(i, writer)| scope.spawn(move || encode(i, writer)));
        // Column order, as the file's schema has them.
        let mut chunks = Vec::with_capacity(writers.len());
        for (i, writer) in writers.into_iter().enumerate() {
            chunks.push(writer.map(|w| encode(i, w)).transpose()?);
        }
        let filter = token_filter(group);
        if let Some((i, thread)) = aside.zip(other) {
            let panicked =
                || parquet::errors::ParquetError::General("encoding the messages panicked".into());
            chunks[i] = Some(thread.join().map_err(|_| panicked())??);
        }
        let chunks = chunks.into_iter().flatten().collect();
        Ok((chunks, filter))
    })
}

/// One Parquet file of a part: its hour and event-time range.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PartFile {
    pub file: String,
    pub min_time: i64,
    pub max_time: i64,
    pub rows: usize,
    pub bytes: u64,
}

/// `meta.json` of a part directory.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PartMeta {
    pub files: Vec<PartFile>,
    /// Every WAL segment numbered below this is in this part or an older one.
    pub wal_before: u64,
    /// Parts this one merged; if they are still present after a crash, they go.
    #[serde(default)]
    pub replaces: Vec<String>,
}

impl PartMeta {
    pub fn rows(&self) -> usize {
        self.files.iter().map(|f| f.rows).sum()
    }
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct LogOpenReport {
    pub wal: wal::ReplayReport,
    pub undecodable_records: usize,
    /// WAL segments dropped because a part already holds their lines.
    pub flushed_segments_dropped: usize,
    pub damaged_parts: Vec<PathBuf>,
}

pub struct LogStore {
    dir: PathBuf,
    wal: Wal,
    /// Appenders hold it shared while they write the WAL and the head; a
    /// flush holds it exclusively to cut the WAL and take the head together.
    head: RwLock<LogHead>,
    /// Lines a running flush took from the head, with the WAL segment its
    /// part will carry: readers see them until that part is listed, so a
    /// search during a flush neither misses nor doubles them.
    flushing: RwLock<Flushing>,
    /// The last flushed head, emptied with its buffers kept: the next head
    /// grows into memory already mapped (page faults on fresh buffers were
    /// a tenth of ingest).
    spare: std::sync::Mutex<LogHead>,
    /// Latest checkpoint per tailed file, re-declared in each new WAL segment.
    checkpoints: std::sync::Mutex<BTreeMap<FileId, Checkpoint>>,
    gate: RwLock<()>,
    /// One flush or compaction at a time.
    maintenance: std::sync::Mutex<()>,
    /// `HEAD_CAP_LINES`, smaller in tests.
    head_cap: usize,
    /// Nanoseconds appenders were held at `head_cap` (see `wait_for_room`).
    held_at_cap_ns: std::sync::atomic::AtomicU64,
    /// Counts acknowledged lines into log-derived metrics.
    observer: RwLock<Option<Arc<crate::logmetrics::LogMetrics>>>,
    /// Turns acknowledged zmstat rows (ident `zimbramon`) into metrics.
    zmstat: RwLock<Option<Arc<crate::zmstat::stream::Stream>>>,
}

/// What observers take from lines, found before any store lock is taken
/// and delivered once the lines are acknowledged.
struct Seen {
    hits: Vec<crate::relabel::Labels>,
    stats: Vec<crate::zmstat::stream::StatLine>,
}

impl LogStore {
    /// Every line acknowledged from now on is also counted by `metrics`.
    pub fn observe_with(&self, metrics: Arc<crate::logmetrics::LogMetrics>) {
        *self.observer.write().unwrap_or_else(|p| p.into_inner()) = Some(metrics);
    }

    /// zmstat rows acknowledged from now on also go to `stream`.
    pub fn stream_zmstat_to(&self, stream: Arc<crate::zmstat::stream::Stream>) {
        *self.zmstat.write().unwrap_or_else(|p| p.into_inner()) = Some(stream);
    }

    fn log_metrics(&self) -> Option<Arc<crate::logmetrics::LogMetrics>> {
        self.observer
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn zmstat_stream(&self) -> Option<Arc<crate::zmstat::stream::Stream>> {
        self.zmstat
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn observe<'a>(&self, lines: impl Iterator<Item = LineRef<'a>> + Clone) -> Seen {
        Seen {
            hits: self
                .log_metrics()
                .map(|m| m.matches(lines.clone()))
                .unwrap_or_default(),
            stats: match self.zmstat_stream() {
                Some(_) => crate::zmstat::stream::Stream::pick(lines),
                None => Vec::new(),
            },
        }
    }

    /// Counts log-metric hits once their lines are acknowledged.
    fn count(&self, seen: &mut Seen) {
        if let Some(m) = self.log_metrics() {
            m.count(std::mem::take(&mut seen.hits));
        }
    }

    /// Feeds zmstat rows once their lines are acknowledged, outside the
    /// store's locks (it writes the metric store).
    fn deliver_stats(&self, seen: Seen) {
        if seen.stats.is_empty() {
            return;
        }
        if let Some(z) = self.zmstat_stream() {
            z.feed(seen.stats);
        }
    }

    /// Opens `dir` (created): sets damaged parts aside, drops WAL segments a
    /// part already covers, replays the rest into the head.
    pub fn open(dir: &Path) -> Result<(LogStore, LogOpenReport), LogStoreError> {
        std::fs::create_dir_all(dir.join("parts")).map_err(io(dir))?;
        let mut report = LogOpenReport::default();
        let mut wal_before = 0;
        // Parts a compaction replaced (kept for the last run's readers) go.
        let listed = listed_parts(dir)?;
        for (_, meta) in &listed {
            for name in &meta.replaces {
                remove_part_after_inputs(&dir.join("parts"), name, &listed)?;
            }
        }
        for part in list_parts(dir)? {
            match verify_part(&part) {
                Ok(meta) => wal_before = wal_before.max(meta.wal_before),
                Err(e) => {
                    let target = super::block::set_aside(dir, &part)?;
                    tracing::error!(error = %e, moved_to = %target.display(), "damaged log part set aside");
                    report.damaged_parts.push(target);
                }
            }
        }
        report.flushed_segments_dropped = wal::drop_segments_before(&dir.join("wal"), wal_before)?;
        let mut head = LogHead::default();
        let mut checkpoints = BTreeMap::new();
        let mut undecodable = 0;
        let (wal, wal_report) = Wal::open(&dir.join("wal"), wal::DEFAULT_SEGMENT_SIZE, |b| {
            if let Err(e) = replay_entry(b, &mut head, &mut checkpoints) {
                tracing::warn!(error = %e, "skipping undecodable log WAL record");
                undecodable += 1;
            }
        })?;
        report.wal = wal_report;
        report.undecodable_records = undecodable;
        Ok((
            LogStore {
                dir: dir.to_path_buf(),
                // Nothing follows the log WAL; it is read again only on start.
                wal: wal.uncached(),
                head: RwLock::new(head),
                flushing: RwLock::new(Flushing::default()),
                spare: std::sync::Mutex::new(LogHead::default()),
                checkpoints: std::sync::Mutex::new(checkpoints),
                gate: RwLock::new(()),
                maintenance: std::sync::Mutex::new(()),
                head_cap: HEAD_CAP_LINES,
                held_at_cap_ns: Default::default(),
                observer: RwLock::new(None),
                zmstat: RwLock::new(None),
            },
            report,
        ))
    }

    /// Appends lines; they are acknowledged (durable) when this returns Ok.
    /// Concurrent appenders share fsyncs.
    pub fn append(&self, records: Vec<LogRecord>) -> Result<(), WalError> {
        let text: usize = records.iter().map(|r| r.as_line().text_len()).sum();
        self.append_lines(
            records.iter().map(LogRecord::as_line),
            wal_bytes(records.len(), text),
            |head| head.extend(&records),
        )
    }

    /// Appends lines gathered column by column (the syslog listeners do):
    /// no allocation per line on the way to the WAL and the head.
    pub fn append_batch(&self, batch: &LogHead) -> Result<(), WalError> {
        self.append_lines(
            batch.lines(),
            wal_bytes(batch.len(), batch.text_len()),
            |head| head.append(batch),
        )
    }

    /// Writes `lines` to the WAL (`bytes` sizes its buffer), then gives the
    /// head to `into_head` to add them.
    fn append_lines<'a>(
        &self,
        lines: impl Iterator<Item = LineRef<'a>> + Clone,
        bytes: usize,
        into_head: impl FnOnce(&mut LogHead),
    ) -> Result<(), WalError> {
        let mut encoded = RecordBuf::with_capacity(bytes);
        for line in lines.clone() {
            encoded.push(|out| WalEntry::encode_line(&line, out))?;
        }
        if encoded.is_empty() {
            return Ok(());
        }
        let mut seen = self.observe(lines);
        self.wait_for_room();
        let gate = self.gate.read().unwrap_or_else(|p| p.into_inner());
        self.wal.append_buf(&encoded)?;
        self.count(&mut seen);
        into_head(&mut self.head.write().unwrap_or_else(|p| p.into_inner()));
        drop(gate);
        self.deliver_stats(seen);
        Ok(())
    }

    /// Appends lines read from a file with the checkpoint after them, in one
    /// WAL record: durable together when this returns Ok.
    pub fn append_tailed(
        &self,
        checkpoint: Checkpoint,
        records: Vec<LogRecord>,
    ) -> Result<(), WalError> {
        let mut b =
            Vec::with_capacity(64 + records.iter().map(|r| 96 + r.message.len()).sum::<usize>());
        WalEntry::encode_tailed(&checkpoint, &records, &mut b);
        let mut seen = self.observe(records.iter().map(LogRecord::as_line));
        self.wait_for_room();
        let gate = self.gate.read().unwrap_or_else(|p| p.into_inner());
        self.wal.append(&[&b])?;
        self.count(&mut seen);
        self.head
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .extend(&records);
        self.checkpoints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(checkpoint.file, checkpoint);
        drop(gate);
        self.deliver_stats(seen);
        Ok(())
    }

    /// The latest checkpoint of one tailed file.
    pub fn checkpoint(&self, file: &FileId) -> Option<Checkpoint> {
        self.checkpoints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(file)
            .cloned()
    }

    /// The latest checkpoint of every tailed file.
    pub fn checkpoints(&self) -> BTreeMap<FileId, Checkpoint> {
        self.checkpoints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A file that is gone for good: its checkpoint is not carried into new segments.
    pub fn forget_checkpoint(&self, file: &FileId) {
        self.checkpoints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(file);
    }

    pub fn head_len(&self) -> usize {
        self.head.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Holds an appender while the head is full, until a flush empties it:
    /// one under way (it holds the maintenance lock), or else one this
    /// appender runs (after any compaction holding that lock). Readers of
    /// TCP, TLS and files then stop reading, so the senders slow down (as
    /// for a slow disk).
    fn wait_for_room(&self) {
        if self.head_len() < self.head_cap {
            return;
        }
        let since = std::time::Instant::now();
        let _one = self.maintenance.lock().unwrap_or_else(|p| p.into_inner());
        // A flush may have emptied it while this appender waited.
        if self.head_len() >= self.head_cap {
            if let Err(e) = self.flush_locked() {
                tracing::error!(error = %e, "flushing a full log head failed; it keeps growing");
            }
        }
        let held = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.held_at_cap_ns
            .fetch_add(held, std::sync::atomic::Ordering::Relaxed);
    }

    /// How long appenders were held because the head was full, in total:
    /// time the senders over TCP, TLS and files were slowed.
    pub fn held_at_cap(&self) -> std::time::Duration {
        let ns = self
            .held_at_cap_ns
            .load(std::sync::atomic::Ordering::Relaxed);
        std::time::Duration::from_nanos(ns)
    }

    /// Writes the head out as a part; returns its manifest (None if empty).
    pub fn flush(&self) -> Result<Option<PartMeta>, LogStoreError> {
        let _one = self.maintenance.lock().unwrap_or_else(|p| p.into_inner());
        self.flush_locked()
    }

    /// `flush`, the maintenance lock held.
    fn flush_locked(&self) -> Result<Option<PartMeta>, LogStoreError> {
        let (empty, wal_before) = {
            let _gate = self.gate.write().unwrap_or_else(|p| p.into_inner());
            let segment = self.wal.cut_segment()?;
            // Checkpoints live on in the new segment, so the old ones can go.
            let declared: Vec<Vec<u8>> = self
                .checkpoints()
                .values()
                .map(|c| {
                    let mut b = Vec::new();
                    WalEntry::encode_tailed(c, &[], &mut b);
                    b
                })
                .collect();
            if !declared.is_empty() {
                let refs: Vec<&[u8]> = declared.iter().map(Vec::as_slice).collect();
                self.wal.append(&refs)?;
            }
            let mut head = self.head.write().unwrap_or_else(|p| p.into_inner());
            let mut flushing = self.flushing.write().unwrap_or_else(|p| p.into_inner());
            let spare = std::mem::take(&mut *self.spare.lock().unwrap_or_else(|p| p.into_inner()));
            *flushing = Flushing {
                records: std::mem::replace(&mut *head, spare),
                wal_before: segment,
            };
            (flushing.records.is_empty(), segment)
        };
        if empty {
            return Ok(None);
        }
        let written = {
            let flushing = self.flushing.read().unwrap_or_else(|p| p.into_inner());
            self.publish(&flushing.records, wal_before)
        };
        // Same lock order as readers: head, then flushing.
        let mut head = self.head.write().unwrap_or_else(|p| p.into_inner());
        let taken = std::mem::take(&mut *self.flushing.write().unwrap_or_else(|p| p.into_inner()));
        let meta = match written {
            Ok(m) => m,
            Err(e) => {
                // Not written: the lines go back to the head; the WAL still has them.
                let newer = std::mem::replace(&mut *head, taken.records);
                head.append(&newer);
                return Err(e);
            }
        };
        drop(head);
        self.recycle(taken.records);
        self.wal.remove_before(wal_before)?;
        Ok(Some(meta))
    }

    /// Keeps a flushed head's buffers for the next head.
    fn recycle(&self, mut spent: LogHead) {
        spent.clear_within(SPARE_LINES, SPARE_TEXT_BYTES);
        *self.spare.lock().unwrap_or_else(|p| p.into_inner()) = spent;
    }

    /// Writes head lines into a new part: one file per hour of event time.
    fn publish(&self, head: &LogHead, wal_before: u64) -> Result<PartMeta, LogStoreError> {
        let order = head.file_order();
        let hours = order
            .chunk_by(|a, b| head.hour_of(*a) == head.hour_of(*b))
            .map(|rows| HourSource::Head { head, rows })
            .collect();
        self.write_part(hours, wal_before, Vec::new())
    }

    /// Writes one file per hour (time-sorted rows, or existing files to join
    /// as they are) into a new part directory, then renames the directory
    /// into place.
    fn write_part(
        &self,
        hours: Vec<HourSource<'_>>,
        wal_before: u64,
        replaces: Vec<String>,
    ) -> Result<PartMeta, LogStoreError> {
        // Each source's time range, once: a head's is a pass over its rows.
        let hours: Vec<(HourSource, (i64, i64))> = hours
            .into_iter()
            .filter_map(|h| h.time_range().map(|r| (h, r)))
            .collect();
        let first = hours.iter().map(|(_, r)| r.0).min().unwrap_or(0);
        let last = hours.iter().map(|(_, r)| r.1).max().unwrap_or(0);
        let parts = self.dir.join("parts");
        let name = format!(
            "{first:020}-{last:020}-{wal_before:08}-{}",
            std::process::id()
        );
        let tmp = parts.join(format!(".tmp-{name}"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(ZSTD_LEVEL).unwrap_or_default(),
            ))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_data_page_size_limit(DATA_PAGE_BYTES);
        // Free text: a dictionary only costs hashing before falling back to
        // plain encoding.
        let props = ["message", "structured_data"]
            .into_iter()
            .fold(props, |props, column| {
                props.set_column_dictionary_enabled(ColumnPath::from(column), false)
            });
        // Lengths apart from the text: zstd then sees the messages back to
        // back, and stores them 1.6 % smaller than plain encoding does.
        let props = props.set_column_encoding(
            ColumnPath::from("message"),
            Encoding::DELTA_LENGTH_BYTE_ARRAY,
        );
        // Event times ascend within each app and host: small deltas.
        let props = props
            .set_column_dictionary_enabled(ColumnPath::from("timestamp"), false)
            .set_column_encoding(ColumnPath::from("timestamp"), Encoding::DELTA_BINARY_PACKED);
        // Min/max strings cost a comparison per row, and searches prune by
        // time, host and app only (words go through the token filters).
        let props = UNPRUNED_COLUMNS
            .into_iter()
            .fold(props, |props, column| {
                props.set_column_statistics_enabled(
                    ColumnPath::from(column),
                    EnabledStatistics::None,
                )
            })
            .build();
        let mut files = Vec::new();
        for (source, (min_time, max_time)) in hours {
            let hour = min_time.div_euclid(HOUR_NS) * HOUR_NS;
            let file = format!("{hour:020}.parquet");
            let path = tmp.join(&file);
            let rows = match source {
                HourSource::Rows(batches) => {
                    write_hour_file(&path, batches.into_iter().map(Ok), props.clone())?
                }
                HourSource::Head { head, rows } => {
                    write_hour_file(&path, head.batches(rows, ROW_GROUP_ROWS), props.clone())?
                }
                HourSource::Files(inputs) => {
                    let paths: Vec<&Path> = inputs.iter().map(|(p, _)| p.as_path()).collect();
                    super::concat::concat(&paths, &path).map_err(|e| LogStoreError::Io {
                        path: path.clone(),
                        msg: e.to_string(),
                    })?
                }
            };
            files.push(PartFile {
                file,
                min_time,
                max_time,
                rows,
                bytes: std::fs::metadata(&path).map_err(io(&path))?.len(),
            });
        }
        let meta = PartMeta {
            files,
            wal_before,
            replaces,
        };
        let meta_path = tmp.join("meta.json");
        let json = serde_json::to_vec_pretty(&meta).map_err(|e| LogStoreError::Io {
            path: meta_path.clone(),
            msg: e.to_string(),
        })?;
        std::fs::write(&meta_path, json).map_err(io(&meta_path))?;
        std::fs::File::open(&meta_path)
            .and_then(|f| f.sync_all())
            .map_err(io(&meta_path))?;
        // The files' directory entries are durable before the part shows.
        std::fs::File::open(&tmp)
            .and_then(|d| d.sync_all())
            .map_err(io(&tmp))?;
        let dest = parts.join(&name);
        std::fs::rename(&tmp, &dest).map_err(io(&dest))?;
        // The part is listed now: an error here must not put its lines back
        // into the head (the next flush would store them twice).
        if let Err(e) = std::fs::File::open(&parts).and_then(|d| d.sync_all()) {
            tracing::error!(path = %parts.display(), error = %e, "fsync of the parts directory failed after a new part");
        }
        Ok(meta)
    }

    /// Lines with event time in [start_ns, end_ns] as Arrow batches: parts
    /// pruned by their manifest's per-file time ranges, then the head.
    pub fn scan(&self, start_ns: i64, end_ns: i64) -> Result<Vec<RecordBatch>, LogStoreError> {
        Ok(read_view(self.view(start_ns, end_ns)?, start_ns, end_ns))
    }

    /// Files and head lines for [start_ns, end_ns], for a query engine to read.
    pub fn view(&self, start_ns: i64, end_ns: i64) -> Result<LogView, LogStoreError> {
        self.view_except(start_ns, end_ns, &Default::default())
    }

    /// `scan` leaving out the parts named in `known` (a query node reads
    /// those from object storage itself), with the parts it did read:
    /// (name, parts that one replaces).
    pub fn scan_except(
        &self,
        start_ns: i64,
        end_ns: i64,
        known: &std::collections::HashSet<String>,
    ) -> Result<(Vec<RecordBatch>, PartNames), LogStoreError> {
        let view = self.view_except(start_ns, end_ns, known)?;
        let parts = view.parts.clone();
        Ok((read_view(view, start_ns, end_ns), parts))
    }

    fn view_except(
        &self,
        start_ns: i64,
        end_ns: i64,
        known: &std::collections::HashSet<String>,
    ) -> Result<LogView, LogStoreError> {
        let head = self.head.read().unwrap_or_else(|p| p.into_inner());
        let flushing = self.flushing.read().unwrap_or_else(|p| p.into_inner());
        let listed = live_parts(&self.dir)?;
        view_in(
            &self.dir,
            listed,
            &head,
            Some(&flushing),
            start_ns,
            end_ns,
            known,
        )
    }

    /// Merges the files of each finished hour that is spread over several
    /// parts (one flush after another) into one file. Only parts holding
    /// such an hour are rewritten, so history is not rewritten again and
    /// again; a part is only merged once all its hours are finished. The
    /// inputs stay for readers that listed them, until `remove_replaced`.
    pub fn compact(&self, now_ns: i64) -> Result<usize, LogStoreError> {
        let _one = self.maintenance.lock().unwrap_or_else(|p| p.into_inner());
        let current_hour = now_ns.div_euclid(HOUR_NS) * HOUR_NS;
        let finished: Vec<(PathBuf, PartMeta)> = live_parts(&self.dir)?
            .into_iter()
            .filter(|(_, m)| m.files.iter().all(|f| f.max_time < current_hour))
            .collect();
        let mut files_per_hour: BTreeMap<String, usize> = BTreeMap::new();
        for (_, m) in &finished {
            for f in &m.files {
                *files_per_hour.entry(f.file.clone()).or_default() += 1;
            }
        }
        let mut inputs: Vec<(PathBuf, PartMeta)> = finished
            .into_iter()
            .filter(|(_, m)| m.files.iter().any(|f| files_per_hour[&f.file] > 1))
            .collect();
        if inputs.len() < 2 {
            return Ok(0);
        }
        inputs.sort_by_key(|(p, _)| p.clone());
        for (p, m) in &inputs {
            rehydrate(p, m)?;
        }
        let mut by_hour: BTreeMap<String, Vec<(PathBuf, PartFile)>> = BTreeMap::new();
        for (p, m) in &inputs {
            for f in &m.files {
                by_hour
                    .entry(f.file.clone())
                    .or_default()
                    .push((p.join(&f.file), f.clone()));
            }
        }
        let mut hours = Vec::with_capacity(by_hour.len());
        for (file, mut sources) in by_hour {
            sources.sort_by_key(|(_, f)| (f.min_time, f.max_time));
            // Files that follow each other in time are joined row group by
            // row group; overlapping ones (late lines) are merged row by row.
            let in_order = sources
                .windows(2)
                .all(|w| w[0].1.max_time <= w[1].1.min_time);
            if in_order {
                hours.push(HourSource::Files(
                    sources
                        .into_iter()
                        .map(|(p, f)| (p, (f.min_time, f.max_time)))
                        .collect(),
                ));
                continue;
            }
            let mut parts = Vec::new();
            for (p, _) in &sources {
                parts.extend(batches(p)?);
            }
            hours.push(HourSource::Rows(vec![merge_sorted(&parts).map_err(
                |e| LogStoreError::Io {
                    path: self.dir.join(&file),
                    msg: e.to_string(),
                },
            )?]));
        }
        let wal_before = inputs.iter().map(|(_, m)| m.wal_before).max().unwrap_or(0);
        let names = inputs.iter().map(|(p, _)| file_name(p)).collect();
        self.write_part(hours, wal_before, names)?;
        Ok(inputs.len())
    }

    /// Deletes the parts a compaction replaced once its output is `grace`
    /// old: a search or SQL query that listed them before may still be
    /// opening their files (as Thanos delays the deletion of compacted
    /// blocks).
    pub fn remove_replaced(&self, grace: std::time::Duration) -> Result<usize, LogStoreError> {
        let _one = self.maintenance.lock().unwrap_or_else(|p| p.into_inner());
        let listed = listed_parts(&self.dir)?;
        let parts = self.dir.join("parts");
        let mut removed = 0;
        for (path, meta) in listed.iter().filter(|(_, m)| !m.replaces.is_empty()) {
            let age = std::fs::metadata(path.join("meta.json"))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok());
            if age.is_none_or(|a| a < grace) {
                continue;
            }
            for name in &meta.replaces {
                removed += remove_part_after_inputs(&parts, name, &listed)?;
            }
        }
        Ok(removed)
    }

    /// Deletes parts whose newest line is older than `max_age_ns`, then the
    /// oldest parts while all parts exceed `max_bytes` (0: no size limit).
    pub fn apply_retention(
        &self,
        now_ns: i64,
        max_age_ns: i64,
        max_bytes: u64,
    ) -> Result<usize, LogStoreError> {
        let _one = self.maintenance.lock().unwrap_or_else(|p| p.into_inner());
        let listed = listed_parts(&self.dir)?;
        let mut parts = without_replaced(listed.clone());
        parts.sort_by_key(|(_, m)| m.files.iter().map(|f| f.max_time).max().unwrap_or(0));
        let mut total: u64 = parts.iter().map(|(_, m)| m.bytes()).sum();
        let mut removed = 0;
        for (p, m) in &parts {
            let newest = m.files.iter().map(|f| f.max_time).max().unwrap_or(0);
            let too_old = newest < now_ns - max_age_ns;
            let too_big = max_bytes > 0 && total > max_bytes;
            if !too_old && !too_big {
                break;
            }
            remove_part_after_inputs(&self.dir.join("parts"), &file_name(p), &listed)?;
            total -= m.bytes();
            removed += 1;
        }
        Ok(removed)
    }

    /// Uploads parts whose newest line is older than the tier's
    /// `upload_after`. Local copies of uploaded parts are kept for `grace`
    /// after their marker (a search listed them may still open them), then
    /// removed; interrupted deletions of remote parts are finished.
    pub fn upload_parts(
        &self,
        tier: &super::tier::Tier,
        now_ns: i64,
        grace: std::time::Duration,
    ) -> Result<usize, LogStoreError> {
        let _one = self.maintenance.lock().unwrap_or_else(|p| p.into_inner());
        for path in super::tier::hidden_deletions(&self.dir.join("parts")) {
            if let Some(m) = super::tier::RemotePart::read(&path) {
                if let Err(e) = finish_part_deletion(&path, &m) {
                    tracing::warn!(part = %path.display(), error = %e, "deleting a remote log part failed; tried again later");
                }
            }
        }
        let after = i64::try_from(tier.upload_after().as_nanos()).unwrap_or(i64::MAX);
        let cutoff = now_ns.saturating_sub(after);
        let mut uploaded = 0;
        // Replaced parts are not uploaded: they are deleted soon.
        for (part, meta) in live_parts(&self.dir)? {
            let files: Vec<String> = meta.files.iter().map(|f| f.file.clone()).collect();
            if super::tier::RemotePart::read(&part).is_some() {
                let marked = std::fs::metadata(part.join(super::tier::MARKER))
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok());
                if marked.is_some_and(|age| age >= grace) {
                    for f in &files {
                        let local = part.join(f);
                        if local.exists() {
                            std::fs::remove_file(&local).map_err(io(&local))?;
                        }
                    }
                }
                continue;
            }
            if meta.files.iter().any(|f| f.max_time >= cutoff) {
                continue;
            }
            let bytes = tier.upload_part(&part, &files, grace.is_zero())?;
            tracing::info!(part = %part.display(), bytes, to = tier.description(), "log part uploaded to object storage");
            uploaded += 1;
        }
        Ok(uploaded)
    }

    /// Live parts (not replaced by a compaction): (count, rows, bytes).
    pub fn part_stats(&self) -> (usize, usize, u64) {
        live_parts(&self.dir)
            .unwrap_or_default()
            .iter()
            .map(|(_, m)| m)
            .fold((0, 0, 0), |(n, r, b), m| {
                (n + 1, r + m.rows(), b + m.bytes())
            })
    }
}

/// `LogStore::scan` over a directory and a head.
/// What a reader needs for [start_ns, end_ns]: the Parquet files whose
/// manifest time range overlaps it (with their sizes) and the head's lines
/// in range as one batch.
/// Lines being written out by a flush, and the WAL segment their part carries.
#[derive(Debug, Default)]
struct Flushing {
    records: LogHead,
    wal_before: u64,
}

#[derive(Debug, Default)]
pub struct LogView {
    pub files: Vec<(PathBuf, u64)>,
    /// Files in object storage: (key, bytes).
    pub remote: Vec<(String, u64)>,
    pub head: Vec<RecordBatch>,
    /// The parts the files belong to.
    pub parts: PartNames,
}

/// Parts by name, each with the names of the parts it replaces.
pub type PartNames = Vec<(String, Vec<String>)>;

fn view_in(
    dir: &Path,
    listed: Vec<(PathBuf, PartMeta)>,
    head: &LogHead,
    flushing: Option<&Flushing>,
    start_ns: i64,
    end_ns: i64,
    known: &std::collections::HashSet<String>,
) -> Result<LogView, LogStoreError> {
    let mut files = Vec::new();
    let mut remote = Vec::new();
    let mut parts = Vec::new();
    // Until the flush's part is listed, its lines are read from memory.
    let mut flushed = flushing.is_none_or(|f| f.records.is_empty());
    for (part, meta) in listed {
        if flushing.is_some_and(|f| meta.wal_before >= f.wal_before) {
            flushed = true;
        }
        let name = file_name(&part);
        if known.contains(&name) {
            continue;
        }
        parts.push((name, meta.replaces.clone()));
        let marker = super::tier::RemotePart::read(&part);
        for f in meta
            .files
            .iter()
            .filter(|f| f.max_time >= start_ns && f.min_time <= end_ns)
        {
            // Local copies are read while they are kept (see `upload_parts`).
            let local = part.join(&f.file);
            match &marker {
                Some(m) if !local.exists() => {
                    remote.push((format!("{}{}", m.prefix, f.file), f.bytes))
                }
                _ => files.push((local, f.bytes)),
            }
        }
    }
    let in_flight = flushing.filter(|_| !flushed).map(|f| &f.records);
    let mut batches = Vec::new();
    for lines in in_flight.into_iter().chain([head]) {
        let rows = lines.rows_between(start_ns, end_ns);
        for batch in lines.batches(&rows, ROW_GROUP_ROWS) {
            batches.push(batch.map_err(|e| LogStoreError::Io {
                path: dir.to_path_buf(),
                msg: e.to_string(),
            })?);
        }
    }
    let head = batches;
    Ok(LogView {
        files,
        remote,
        head,
        parts,
    })
}

/// The rows of a view's files and head in [start_ns, end_ns]; unreadable
/// files are reported and skipped.
fn read_view(view: LogView, start_ns: i64, end_ns: i64) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for (file, _) in &view.files {
        match batches(file) {
            Ok(bs) => out.extend(
                bs.into_iter()
                    .filter_map(|b| in_range(&b, start_ns, end_ns)),
            ),
            Err(e) => tracing::error!(error = %e, "unreadable log file skipped"),
        }
    }
    for (key, size) in &view.remote {
        match remote_batches(key, *size) {
            Ok(bs) => out.extend(
                bs.into_iter()
                    .filter_map(|b| in_range(&b, start_ns, end_ns)),
            ),
            Err(e) => tracing::error!(error = %e, key, "unreadable remote log file skipped"),
        }
    }
    out.extend(view.head);
    out
}

/// A read-only view of a log store directory (parts plus the WAL replayed
/// privately): safe while a collector writes it. It reads the parts that
/// were flushed before its replay (or a compaction of only those); parts
/// flushed later hold lines it has from the WAL already.
pub struct LogSnapshot {
    dir: PathBuf,
    head: LogHead,
    /// WAL segments from here on are in `head`.
    wal_before: u64,
    /// The parts it read when opened.
    read: std::collections::HashSet<String>,
    pub report: wal::ReplayReport,
}

/// A flush racing the replay makes `LogSnapshot::open` start over; a store
/// flushing faster than it can be replayed this often is an error.
const SNAPSHOT_ATTEMPTS: usize = 10;

impl LogSnapshot {
    pub fn open(dir: &Path) -> Result<LogSnapshot, LogStoreError> {
        let mut attempt = 1;
        loop {
            // Every live part is read: the newest one sets `wal_before`.
            let live = live_parts(dir)?;
            let wal_before = live.iter().map(|(_, m)| m.wal_before).max().unwrap_or(0);
            let mut head = LogHead::default();
            let mut checkpoints = BTreeMap::new();
            let replayed = Wal::replay_from(&dir.join("wal"), wal_before, |b| {
                let _ = replay_entry(b, &mut head, &mut checkpoints);
            });
            // A flush may have deleted segments from `wal_before` on before
            // the replay read them: then the replay starts later.
            let complete = |r: &wal::ReplayReport| {
                r.first_segment
                    .is_none_or(|first| first <= wal_before.max(1))
            };
            match replayed {
                Ok(report) if complete(&report) => {
                    let read = live.iter().map(|(p, _)| file_name(p)).collect();
                    return Ok(LogSnapshot {
                        dir: dir.to_path_buf(),
                        head,
                        wal_before,
                        read,
                        report,
                    });
                }
                Err(e) if attempt >= SNAPSHOT_ATTEMPTS => return Err(e.into()),
                Ok(_) if attempt >= SNAPSHOT_ATTEMPTS => {
                    return Err(LogStoreError::Io {
                        path: dir.to_path_buf(),
                        msg: format!("flushed again during each of {attempt} replays"),
                    })
                }
                _ => attempt += 1,
            }
        }
    }

    /// Parts this snapshot reads: flushed before its replay. None once a
    /// compaction merged one of them with a later part (whose lines are in
    /// the head): the snapshot is stale.
    fn parts(&self) -> Result<Option<Vec<(PathBuf, PartMeta)>>, LogStoreError> {
        let (older, newer): (Vec<_>, Vec<_>) = listed_parts(&self.dir)?
            .into_iter()
            .partition(|(_, m)| m.wal_before <= self.wal_before);
        let newer_merged = newer
            .iter()
            .any(|(_, m)| m.replaces.iter().any(|r| self.read.contains(r)));
        if newer_merged {
            return Ok(None);
        }
        Ok(Some(without_replaced(older)))
    }

    pub fn scan(&self, start_ns: i64, end_ns: i64) -> Result<Vec<RecordBatch>, LogStoreError> {
        Ok(read_view(self.view(start_ns, end_ns)?, start_ns, end_ns))
    }

    /// Reads through a fresh snapshot when this one is stale (until its
    /// owner replaces it).
    pub fn view(&self, start_ns: i64, end_ns: i64) -> Result<LogView, LogStoreError> {
        if let Some(parts) = self.parts()? {
            return self.view_of(parts, start_ns, end_ns);
        }
        let fresh = LogSnapshot::open(&self.dir)?;
        let parts = fresh.parts()?.ok_or_else(|| LogStoreError::Io {
            path: self.dir.clone(),
            msg: "compacted again while a fresh snapshot was read".into(),
        })?;
        fresh.view_of(parts, start_ns, end_ns)
    }

    fn view_of(
        &self,
        parts: Vec<(PathBuf, PartMeta)>,
        start_ns: i64,
        end_ns: i64,
    ) -> Result<LogView, LogStoreError> {
        view_in(
            &self.dir,
            parts,
            &self.head,
            None,
            start_ns,
            end_ns,
            &Default::default(),
        )
    }
}

/// What one hour file of a new part is made from.
enum HourSource<'a> {
    /// Rows sorted by app, host, then time.
    Rows(Vec<RecordBatch>),
    /// Head rows, in file order.
    Head { head: &'a LogHead, rows: &'a [u32] },
    /// Existing files, in time order, each with its (min, max) time.
    Files(Vec<(PathBuf, (i64, i64))>),
}

impl HourSource<'_> {
    fn time_range(&self) -> Option<(i64, i64)> {
        match self {
            HourSource::Head { head, rows } => head.time_range(rows),
            HourSource::Rows(batches) => {
                let times = || {
                    batches
                        .iter()
                        .filter_map(timestamps)
                        .flat_map(|ts| ts.values().iter().copied())
                };
                Some((times().min()?, times().max()?))
            }
            HourSource::Files(files) => Some((
                files.iter().map(|(_, r)| r.0).min()?,
                files.iter().map(|(_, r)| r.1).max()?,
            )),
        }
    }
}

fn timestamps(b: &RecordBatch) -> Option<&TimestampNanosecondArray> {
    b.column_by_name("timestamp")?
        .as_any()
        .downcast_ref::<TimestampNanosecondArray>()
}

/// One batch of the given batches' rows in file order: by app, host, then
/// time (stable: equal keys keep their input order).
fn merge_sorted(parts: &[RecordBatch]) -> Result<RecordBatch, arrow_schema::ArrowError> {
    use arrow_array::cast::AsArray;
    use arrow_array::ArrayAccessor;
    let schema = schema();
    let all = arrow_select::concat::concat_batches(&schema, parts)?;
    let text = |name: &str| {
        all.column_by_name(name)
            .and_then(|c| c.as_dictionary_opt::<Int32Type>())
            .and_then(|d| d.downcast_dict::<StringArray>())
    };
    let (Some(ts), Some(app), Some(host)) = (timestamps(&all), text("app"), text("host")) else {
        return Ok(all);
    };
    let mut order: Vec<u32> = (0..all.num_rows() as u32).collect();
    order.sort_by_key(|i| {
        let i = *i as usize;
        (app.value(i), host.value(i), ts.value(i))
    });
    let order = arrow_array::UInt32Array::from(order);
    arrow_select::take::take_record_batch(&all, &order)
}

/// Applies one WAL record to a head being rebuilt.
fn replay_entry(
    b: &[u8],
    head: &mut LogHead,
    checkpoints: &mut BTreeMap<FileId, Checkpoint>,
) -> Result<(), crate::logs::DecodeError> {
    match WalEntry::decode(b)? {
        WalEntry::Line(r) => head.push(&r),
        WalEntry::Tailed { checkpoint, lines } => {
            head.extend(&lines);
            checkpoints.insert(checkpoint.file, checkpoint);
        }
    }
    Ok(())
}

fn in_range(b: &RecordBatch, start: i64, end: i64) -> Option<RecordBatch> {
    let ts = b
        .column(0)
        .as_any()
        .downcast_ref::<TimestampNanosecondArray>()?;
    let mask: arrow_array::BooleanArray = ts
        .iter()
        .map(|t| Some(t.is_some_and(|t| t >= start && t <= end)))
        .collect();
    let filtered = arrow_select::filter::filter_record_batch(b, &mask).ok()?;
    (filtered.num_rows() > 0).then_some(filtered)
}

/// Back from Arrow (compaction re-sorts whole hours).
pub fn from_batch(b: &RecordBatch) -> Vec<LogRecord> {
    use arrow_array::cast::AsArray;
    use arrow_array::Array;
    let col = |name: &str| b.column_by_name(name);
    let ts = |name: &str| {
        col(name).and_then(|c| {
            c.as_any()
                .downcast_ref::<TimestampNanosecondArray>()
                .cloned()
        })
    };
    let text = |name: &str, i: usize| -> String {
        match col(name) {
            Some(c) => match c.data_type() {
                DataType::Utf8 => c.as_string::<i32>().value(i).to_string(),
                DataType::Dictionary(_, _) => {
                    let d = c.as_dictionary::<Int32Type>();
                    if d.is_null(i) {
                        String::new()
                    } else {
                        let key = d.keys().value(i) as usize;
                        d.values().as_string::<i32>().value(key).to_string()
                    }
                }
                _ => String::new(),
            },
            None => String::new(),
        }
    };
    let num = |name: &str, i: usize| {
        col(name)
            .and_then(|c| c.as_any().downcast_ref::<arrow_array::UInt8Array>())
            .and_then(|a| (!a.is_null(i)).then(|| a.value(i)))
    };
    let (Some(t), Some(rcv)) = (ts("timestamp"), ts("received")) else {
        return Vec::new();
    };
    (0..b.num_rows())
        .map(|i| LogRecord {
            timestamp_ns: t.value(i),
            received_ns: rcv.value(i),
            host: text("host", i),
            app: text("app", i),
            procid: text("procid", i),
            msgid: text("msgid", i),
            facility: num("facility", i),
            severity: num("severity", i),
            message: text("message", i),
            structured_data: text("structured_data", i),
            source: text("source", i),
        })
        .collect()
}

/// All batches of a remote log file, fetched whole through the tier.
fn remote_batches(key: &str, size: u64) -> Result<Vec<RecordBatch>, LogStoreError> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let err = |msg: String| LogStoreError::Io {
        path: PathBuf::from(key),
        msg,
    };
    let tier = super::tier::installed()
        .ok_or_else(|| err("a remote log file and no storage.object_store configured".into()))?;
    let bytes = tier
        .read_key(key, size, 0, size as usize)
        .map_err(|e| err(e.to_string()))?;
    ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|b| b.build())
        .map_err(|e| err(e.to_string()))?
        .map(|b| b.map_err(|e| err(e.to_string())))
        .collect()
}

/// Brings a remote part's hour files back to its directory (compaction
/// rewrites them; the result is uploaded again later).
fn rehydrate(part: &Path, meta: &PartMeta) -> Result<(), LogStoreError> {
    let Some(marker) = super::tier::RemotePart::read(part) else {
        return Ok(());
    };
    let tier = super::tier::installed().ok_or_else(|| LogStoreError::Io {
        path: part.to_path_buf(),
        msg: "a remote log part and no storage.object_store configured".into(),
    })?;
    for f in &meta.files {
        let local = part.join(&f.file);
        if local.exists() {
            continue;
        }
        let key = format!("{}{}", marker.prefix, f.file);
        let bytes = tier
            .read_key(&key, f.bytes, 0, f.bytes as usize)
            .map_err(io(&local))?;
        let tmp = part.join(format!(".{}.tmp", f.file));
        std::fs::write(&tmp, &bytes).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &local).map_err(io(&local))?;
    }
    Ok(())
}

/// Deletes a part; a remote one is hidden first, then its objects go,
/// then the directory (a crash in between is finished by `upload_parts`).
fn remove_part(part: &Path) -> Result<(), LogStoreError> {
    let Some(marker) = super::tier::RemotePart::read(part) else {
        std::fs::remove_dir_all(part).map_err(io(part))?;
        return Ok(());
    };
    let hidden = super::tier::hide_for_deletion(part).map_err(io(part))?;
    finish_part_deletion(&hidden, &marker)
}

fn finish_part_deletion(
    hidden: &Path,
    marker: &super::tier::RemotePart,
) -> Result<(), LogStoreError> {
    let tier = super::tier::installed().ok_or_else(|| LogStoreError::Io {
        path: hidden.to_path_buf(),
        msg: "a remote log part to delete and no storage.object_store configured".into(),
    })?;
    let files: Vec<String> = read_part_meta(hidden)?
        .files
        .into_iter()
        .map(|f| f.file)
        .collect();
    tier.delete_part(marker, &files)?;
    std::fs::remove_dir_all(hidden).map_err(io(hidden))
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn list_parts(dir: &Path) -> Result<Vec<PathBuf>, LogStoreError> {
    let parts = dir.join("parts");
    let Ok(rd) = std::fs::read_dir(&parts) else {
        return Ok(Vec::new());
    };
    let mut out: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| !file_name(p).starts_with('.'))
        .collect();
    out.sort();
    Ok(out)
}

/// Parts with readable manifests.
fn listed_parts(dir: &Path) -> Result<Vec<(PathBuf, PartMeta)>, LogStoreError> {
    Ok(list_parts(dir)?
        .into_iter()
        .filter_map(|p| read_part_meta(&p).ok().map(|m| (p, m)))
        .collect())
}

/// Parts to read, leaving out those a listed compaction replaces (they
/// linger until it deletes them).
fn without_replaced(listed: Vec<(PathBuf, PartMeta)>) -> Vec<(PathBuf, PartMeta)> {
    let replaced: std::collections::HashSet<String> = listed
        .iter()
        .flat_map(|(_, m)| m.replaces.iter().cloned())
        .collect();
    listed
        .into_iter()
        .filter(|(p, _)| !replaced.contains(&file_name(p)))
        .collect()
}

fn live_parts(dir: &Path) -> Result<Vec<(PathBuf, PartMeta)>, LogStoreError> {
    Ok(without_replaced(listed_parts(dir)?))
}

/// Deletes part `name` (if still there) after the parts it replaces,
/// transitively: a crash in between never leaves a replaced part without
/// the part that replaces it, which would make it live again. Gives the
/// number of parts deleted.
fn remove_part_after_inputs(
    parts: &Path,
    name: &str,
    listed: &[(PathBuf, PartMeta)],
) -> Result<usize, LogStoreError> {
    // Names are checked as file names; a damaged manifest naming a cycle
    // visits each part once.
    fn remove(
        parts: &Path,
        name: &str,
        listed: &[(PathBuf, PartMeta)],
        visited: &mut std::collections::HashSet<String>,
    ) -> Result<usize, LogStoreError> {
        let path = parts.join(name);
        if file_name(&path) != name || !visited.insert(name.to_string()) || !path.exists() {
            return Ok(0);
        }
        let inputs = listed
            .iter()
            .find(|(p, _)| file_name(p) == name)
            .map(|(_, m)| m.replaces.as_slice())
            .unwrap_or_default();
        let mut removed = 0;
        for input in inputs {
            removed += remove(parts, input, listed, visited)?;
        }
        remove_part(&path)?;
        Ok(removed + 1)
    }
    remove(parts, name, listed, &mut Default::default())
}

fn read_part_meta(part: &Path) -> Result<PartMeta, LogStoreError> {
    let path = part.join("meta.json");
    let bytes = std::fs::read(&path).map_err(io(&path))?;
    serde_json::from_slice(&bytes).map_err(|e| LogStoreError::Io {
        path,
        msg: e.to_string(),
    })
}

/// A part is whole when its manifest reads and every file's footer matches
/// it (remote files were verified when uploaded).
fn verify_part(part: &Path) -> Result<PartMeta, LogStoreError> {
    let meta = read_part_meta(part)?;
    let remote = super::tier::RemotePart::read(part).is_some();
    for f in &meta.files {
        let path = part.join(&f.file);
        if !remote || path.exists() {
            super::block::check_rows(&path, f.rows)?;
        }
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(ts_s: i64, msg: &str) -> LogRecord {
        LogRecord {
            timestamp_ns: ts_s * 1_000_000_000,
            received_ns: ts_s * 1_000_000_000,
            host: "mta1".into(),
            app: "postfix/smtpd".into(),
            facility: Some(2),
            severity: Some(6),
            message: msg.into(),
            source: "udp://10.0.0.1:514".into(),
            ..LogRecord::default()
        }
    }

    fn all(store: &LogStore) -> Vec<LogRecord> {
        let mut v: Vec<LogRecord> = store
            .scan(i64::MIN, i64::MAX)
            .unwrap()
            .iter()
            .flat_map(from_batch)
            .collect();
        v.sort_by(|a, b| (a.timestamp_ns, &a.message).cmp(&(b.timestamp_ns, &b.message)));
        v
    }

    #[test]
    fn append_flush_reopen_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let lines: Vec<LogRecord> = (0..10).map(|i| line(i * 1000, &format!("m{i}"))).collect();
        {
            let (s, _) = LogStore::open(dir.path()).unwrap();
            s.append(lines[..6].to_vec()).unwrap();
            let meta = s.flush().unwrap().unwrap();
            // 0..5000 s spans two hours: two files in one part.
            assert_eq!(meta.files.len(), 2);
            s.append(lines[6..].to_vec()).unwrap();
            assert_eq!(all(&s), lines);
        }
        let (s, report) = LogStore::open(dir.path()).unwrap();
        assert_eq!(report.wal.records, 4);
        assert_eq!(all(&s), lines);
    }

    #[test]
    fn crash_after_part_before_wal_trim_does_not_duplicate() {
        let dir = tempfile::tempdir().unwrap();
        let lines: Vec<LogRecord> = (0..5).map(|i| line(i, &format!("m{i}"))).collect();
        {
            let (s, _) = LogStore::open(dir.path()).unwrap();
            s.append(lines.clone()).unwrap();
            // What a flush does up to the crash: cut, publish, but no WAL trim.
            let seg = s.wal.cut_segment().unwrap();
            let head = std::mem::take(&mut *s.head.write().unwrap());
            s.publish(&head, seg).unwrap();
        }
        let (s, report) = LogStore::open(dir.path()).unwrap();
        assert_eq!(report.flushed_segments_dropped, 1);
        assert_eq!(all(&s), lines);
    }

    #[test]
    fn a_full_head_holds_appends_until_a_flush_empties_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = LogStore::open(dir.path()).unwrap();
        s.head_cap = 3;
        s.append((0..3).map(|i| line(i, "before")).collect())
            .unwrap();
        // Full, and no flush under way: the appender writes the head out.
        s.append(vec![line(3, "over the cap")]).unwrap();
        assert_eq!((s.head_len(), s.part_stats().1), (1, 3));
        s.append((4..6).map(|i| line(i, "again")).collect())
            .unwrap();
        // Full while a flush runs (it holds the maintenance lock): the
        // appender waits for it to end.
        let s = Arc::new(s);
        let flush = s.maintenance.lock().unwrap();
        let (done, appended) = std::sync::mpsc::channel();
        let appender = {
            let s = s.clone();
            std::thread::spawn(move || {
                s.append(vec![line(6, "after")]).unwrap();
                done.send(()).unwrap();
            })
        };
        let wait = std::time::Duration::from_millis(300);
        assert!(appended.recv_timeout(wait).is_err(), "waits for the flush");
        assert_eq!(s.head_len(), 3);
        // That flush ended without emptying the head: the appender does.
        drop(flush);
        assert!(
            appended.recv_timeout(wait * 100).is_ok(),
            "goes on after it"
        );
        appender.join().unwrap();
        assert_eq!((s.head_len(), s.part_stats().1), (1, 6));
        assert!(s.held_at_cap() >= wait, "{:?}", s.held_at_cap());
    }

    #[test]
    fn a_snapshot_reads_each_line_once_while_the_store_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let lines: Vec<LogRecord> = (0..6).map(|i| line(i, &format!("m{i}"))).collect();
        let (s, _) = LogStore::open(dir.path()).unwrap();
        s.append(lines[..3].to_vec()).unwrap();
        s.flush().unwrap();
        s.append(lines[3..].to_vec()).unwrap();
        let snapshot = LogSnapshot::open(dir.path()).unwrap();
        let read = |snapshot: &LogSnapshot| sorted_messages(snapshot.scan(i64::MIN, i64::MAX));
        let all: Vec<String> = lines.iter().map(|l| l.message.clone()).collect();
        assert_eq!(read(&snapshot), all);
        // The lines it replayed are flushed and their WAL trimmed: the
        // new part is not read again.
        s.flush().unwrap();
        assert_eq!(read(&snapshot), all);
        assert_eq!(read(&LogSnapshot::open(dir.path()).unwrap()), all);
        // A compaction's output and its inputs side by side (before it
        // deletes them): the inputs are left out.
        let parts = list_parts(dir.path()).unwrap();
        let merged = dir.path().join("parts").join("zz-merged");
        std::fs::create_dir(&merged).unwrap();
        let mut meta = read_part_meta(&parts[0]).unwrap();
        for f in &meta.files {
            std::fs::copy(parts[0].join(&f.file), merged.join(&f.file)).unwrap();
        }
        meta.replaces = vec![file_name(&parts[0])];
        std::fs::write(merged.join("meta.json"), serde_json::to_vec(&meta).unwrap()).unwrap();
        assert_eq!(read(&LogSnapshot::open(dir.path()).unwrap()), all);
        assert_eq!(sorted_messages(s.scan(i64::MIN, i64::MAX)), all);
    }

    #[test]
    fn a_snapshot_survives_a_compaction_with_a_later_part() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = LogStore::open(dir.path()).unwrap();
        s.append(vec![line(1, "flushed before")]).unwrap();
        s.flush().unwrap();
        s.append(vec![line(2, "replayed")]).unwrap();
        let snapshot = LogSnapshot::open(dir.path()).unwrap();
        // The replayed line is flushed, then merged with the part the
        // snapshot reads, which is deleted: the snapshot is stale.
        s.flush().unwrap();
        assert_eq!(s.compact(10 * HOUR_NS).unwrap(), 2);
        assert_eq!(s.remove_replaced(std::time::Duration::ZERO).unwrap(), 2);
        let read = snapshot.scan(i64::MIN, i64::MAX);
        assert_eq!(sorted_messages(read), ["flushed before", "replayed"]);
    }

    /// Lines `{prefix}0`.. 10 s apart, each flushed into a part of its own.
    fn flush_parts(s: &LogStore, prefix: &str, n: i64) {
        for i in 0..n {
            s.append(vec![line(i * 10, &format!("{prefix}{i}"))])
                .unwrap();
            s.flush().unwrap();
        }
    }

    #[test]
    fn compacted_parts_stay_for_readers_then_go_inputs_first() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = LogStore::open(dir.path()).unwrap();
        flush_parts(&s, "m", 2);
        // A search listed the parts just before the compaction.
        let listed_before = s.view(i64::MIN, i64::MAX).unwrap();
        assert_eq!(s.compact(10 * HOUR_NS).unwrap(), 2);
        assert_eq!(s.remove_replaced(REPLACED_GRACE).unwrap(), 0);
        let read = read_view(listed_before, i64::MIN, i64::MAX);
        assert_eq!(sorted_messages(Ok(read)), ["m0", "m1"]);
        // New reads and the part count see the output only.
        assert_eq!(s.part_stats().0, 1);
        assert_eq!(s.view(i64::MIN, i64::MAX).unwrap().files.len(), 1);
        // Compacted again with a later flush: a chain of replaced parts.
        s.append(vec![line(20, "m2")]).unwrap();
        s.flush().unwrap();
        assert_eq!(s.compact(10 * HOUR_NS).unwrap(), 2);
        assert_eq!(list_parts(dir.path()).unwrap().len(), 5);
        assert_eq!(
            sorted_messages(s.scan(i64::MIN, i64::MAX)),
            ["m0", "m1", "m2"]
        );
        // Retention of the last output takes the whole chain, inputs first.
        assert_eq!(s.apply_retention(10 * HOUR_NS, HOUR_NS, 0).unwrap(), 1);
        assert!(list_parts(dir.path()).unwrap().is_empty());
        assert!(sorted_messages(s.scan(i64::MIN, i64::MAX)).is_empty());

        // Past the grace, or at the next start, replaced parts go.
        flush_parts(&s, "n", 2);
        assert_eq!(s.compact(10 * HOUR_NS).unwrap(), 2);
        assert_eq!(s.remove_replaced(std::time::Duration::ZERO).unwrap(), 2);
        assert_eq!(list_parts(dir.path()).unwrap().len(), 1);
        s.append(vec![line(30, "n2")]).unwrap();
        s.flush().unwrap();
        assert_eq!(s.compact(10 * HOUR_NS).unwrap(), 2);
        drop(s);
        let (s, report) = LogStore::open(dir.path()).unwrap();
        assert!(report.damaged_parts.is_empty());
        assert_eq!(list_parts(dir.path()).unwrap().len(), 1);
        assert_eq!(
            sorted_messages(s.scan(i64::MIN, i64::MAX)),
            ["n0", "n1", "n2"]
        );
    }

    #[test]
    fn a_part_replaced_is_deleted_before_the_part_replacing_it() {
        let dir = tempfile::tempdir().unwrap();
        let parts = dir.path().join("parts");
        let meta = |replaces: &[&str]| PartMeta {
            files: Vec::new(),
            wal_before: 0,
            replaces: replaces.iter().map(|r| r.to_string()).collect(),
        };
        // c replaces b, b replaces a; a damaged manifest makes a cycle.
        for (name, m) in [
            ("a", meta(&["c"])),
            ("b", meta(&["a"])),
            ("c", meta(&["b"])),
        ] {
            std::fs::create_dir_all(parts.join(name)).unwrap();
            std::fs::write(
                parts.join(name).join("meta.json"),
                serde_json::to_vec(&m).unwrap(),
            )
            .unwrap();
        }
        let listed = listed_parts(dir.path()).unwrap();
        assert_eq!(remove_part_after_inputs(&parts, "c", &listed).unwrap(), 3);
        assert!(list_parts(dir.path()).unwrap().is_empty());
        assert_eq!(
            remove_part_after_inputs(&parts, "../x", &listed).unwrap(),
            0
        );
    }

    /// The messages of a scan's batches, sorted.
    fn sorted_messages(scanned: Result<Vec<RecordBatch>, LogStoreError>) -> Vec<String> {
        let mut v: Vec<String> = scanned
            .unwrap()
            .iter()
            .flat_map(from_batch)
            .map(|r| r.message)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn hour_files_carry_token_filters_through_compaction() {
        use super::super::tokens::{key, of_local};
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = LogStore::open(dir.path()).unwrap();
        let n = ROW_GROUP_ROWS + 100;
        let lines = (0..n).map(|i| line(i as i64 / 100, &format!("queued id{i:x}")));
        s.append(lines.collect()).unwrap();
        s.flush().unwrap();
        s.append(vec![line(3000, "late arrival")]).unwrap();
        s.flush().unwrap();
        assert_eq!(s.compact(10 * HOUR_NS).unwrap(), 2);
        let view = s.view(i64::MIN, i64::MAX).unwrap();
        let [(path, size)] = view.files.as_slice() else {
            panic!("one hour file: {:?}", view.files)
        };
        let filters = of_local(path, *size);
        assert_eq!(filters.len(), 3, "two row groups, then the compacted one");
        assert!(filters[0].may_contain(key("id0")) && filters[0].may_contain(key("queued")));
        assert!(filters[1].may_contain(key(&format!("id{:x}", n - 1))));
        assert!(filters[2].may_contain(key("arrival")));
        let elsewhere = (ROW_GROUP_ROWS..n)
            .filter(|i| filters[0].may_contain(key(&format!("id{i:x}"))))
            .count();
        assert!(elsewhere < 10, "{elsewhere} of 100 false positives");
        // Columns encoded on two threads land in the schema's order, with
        // the Arrow types (dictionaries, UTC timestamps) kept in the file.
        let file = std::fs::File::open(path).unwrap();
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        assert_eq!(reader.schema().fields(), schema().fields());
        let read: Vec<LogRecord> = reader
            .build()
            .unwrap()
            .flat_map(|b| from_batch(&b.unwrap()))
            .collect();
        assert_eq!(read.len(), n + 1);
        assert!(read
            .iter()
            .any(|r| r.message == "late arrival" && r.host == "mta1"));
    }

    #[test]
    fn compaction_retention_and_damaged_parts() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = LogStore::open(dir.path()).unwrap();
        flush_parts(&s, "m", 3);
        assert_eq!(s.part_stats().0, 3);
        assert_eq!(s.compact(10 * HOUR_NS).unwrap(), 3);
        assert_eq!(s.part_stats(), (1, 3, s.part_stats().2));
        assert_eq!(all(&s).len(), 3);
        // A lone hour is left alone; a compacted hour is rewritten only
        // when new lines for it arrive, and stays sorted (one app and host
        // here, so by time).
        s.append(vec![line(2 * 3600, "hour 2")]).unwrap();
        s.flush().unwrap();
        assert_eq!(s.compact(10 * HOUR_NS).unwrap(), 0);
        s.append(vec![line(15, "between")]).unwrap();
        s.flush().unwrap();
        assert_eq!(s.compact(10 * HOUR_NS).unwrap(), 2);
        assert_eq!(
            all(&s)
                .iter()
                .map(|r| r.message.as_str())
                .collect::<Vec<_>>(),
            ["m0", "m1", "between", "m2", "hour 2"]
        );
        assert_eq!(s.part_stats().0, 2);
        let hour0: Vec<i64> = s
            .scan(0, HOUR_NS - 1)
            .unwrap()
            .iter()
            .flat_map(from_batch)
            .map(|r| r.timestamp_ns)
            .collect();
        assert!(hour0.windows(2).all(|w| w[0] <= w[1]), "{hour0:?}");
        s.append(vec![line(5 * 3600, "late")]).unwrap();
        s.flush().unwrap();
        assert_eq!(s.apply_retention(6 * HOUR_NS, 2 * HOUR_NS, 0).unwrap(), 2);
        assert_eq!(
            all(&s)
                .iter()
                .map(|r| r.message.as_str())
                .collect::<Vec<_>>(),
            ["late"]
        );
        drop(s);
        // Tear the remaining part's file.
        let part = list_parts(dir.path()).unwrap().remove(0);
        let meta = read_part_meta(&part).unwrap();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(part.join(&meta.files[0].file))
            .unwrap();
        f.set_len(10).unwrap();
        let (s, report) = LogStore::open(dir.path()).unwrap();
        assert_eq!(report.damaged_parts.len(), 1);
        assert!(all(&s).is_empty());
    }
}
