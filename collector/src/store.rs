//! The store: a write-ahead log in front of the in-memory head. Samples are
//! acknowledged once their WAL record is on disk; a restart replays the WAL.

pub mod block;
mod blockindex;
mod cache;
mod chunk;
mod concat;
pub mod head;
pub mod loghead;
pub mod logs;
pub mod rangecache;
pub mod record;
pub mod tier;
pub mod tokens;
pub mod wal;
pub mod walfollow;

use crate::relabel::Labels;
use block::{BlockError, BlockMeta};
use head::{Head, Matcher};
use record::{MetricMeta, Record};
use std::path::Path;
use std::sync::RwLock;
use wal::{ReplayReport, Wal, WalError};

/// Listings of the blocks one read may take when blocks vanish under it.
const READ_ATTEMPTS: usize = 5;

/// Series matching `matchers` with samples in [start, end], from the blocks
/// overlapping the range (by their time manifest; within a block only the
/// wanted series' rows on timestamp pages meeting the range are decoded,
/// see `blockindex`) and the head, merged in time order with duplicate
/// timestamps removed.
fn select_in(
    dir: &Path,
    head: &Head,
    matchers: &[Matcher],
    start: i64,
    end: i64,
    skip: &std::collections::HashSet<String>,
) -> Result<Vec<head::Selected>, StoreError> {
    let mut merged: std::collections::BTreeMap<Labels, Vec<(i64, f64)>> = Default::default();
    read_overlapping(dir, start, end, |block| {
        if block
            .file_name()
            .is_some_and(|n| skip.contains(n.to_string_lossy().as_ref()))
        {
            return Ok(());
        }
        let index = cache::get(block)?;
        let samples = index.read(block, &index.matching(matchers), start, end)?;
        for (pos, points) in samples {
            let Some((_, labels)) = index.series.get(pos) else {
                continue;
            };
            match merged.get_mut(labels) {
                Some(all) => all.extend(points),
                None => {
                    merged.insert(labels.clone(), points);
                }
            }
        }
        Ok(())
    })?;
    for (labels, samples) in head.select(matchers, start, end) {
        merged.entry(labels).or_default().extend(samples);
    }
    Ok(merged
        .into_iter()
        .map(|(l, mut s)| {
            // Sorted already unless blocks (or blocks and head) overlap.
            if !s.is_sorted_by_key(|(t, _)| *t) {
                s.sort_by_key(|(t, _)| *t);
            }
            s.dedup_by_key(|(t, _)| *t);
            (l, s)
        })
        .filter(|(_, s)| !s.is_empty())
        .collect())
}

/// Label sets of the series matching `matchers` with data in [start, end]:
/// from the series tables of blocks overlapping the range, and the head.
fn series_in(
    dir: &Path,
    head: &Head,
    matchers: &[Matcher],
    start: i64,
    end: i64,
) -> Result<Vec<Labels>, StoreError> {
    let mut out: std::collections::BTreeSet<Labels> = head
        .series_in_range(matchers, start, end)
        .into_iter()
        .collect();
    read_overlapping(dir, start, end, |block| {
        let index = cache::get(block)?;
        out.extend(
            index
                .matching(matchers)
                .into_iter()
                .filter_map(|p| index.series.get(p).map(|(_, l)| l.clone())),
        );
        Ok(())
    })?;
    Ok(out.into_iter().collect())
}

/// Calls `read` once on every block overlapping [start, end]. A block that
/// vanishes or changes under the read (compaction or retention replaced it
/// between listing and reading) sends it back to the listing, whose blocks
/// not read yet are read then: compaction publishes its output before it
/// deletes the inputs, so their data is in a block of the new listing (and
/// samples read twice are de-duplicated). Damaged blocks are reported and
/// skipped, never fatal to the read.
fn read_overlapping(
    dir: &Path,
    start: i64,
    end: i64,
    mut read: impl FnMut(&Path) -> Result<(), BlockError>,
) -> Result<(), StoreError> {
    let mut done = std::collections::HashSet::new();
    for attempt in 1..=READ_ATTEMPTS {
        let last = attempt == READ_ATTEMPTS;
        let (blocks, unreadable) = overlapping_blocks(dir, start, end, last)?;
        let mut again = unreadable && !last;
        for block in blocks {
            if done.contains(&block) {
                continue;
            }
            if let Err(e) = read(&block) {
                cache::forget(&block);
                if vanished_under(&e, &block) && !last {
                    again = true;
                    continue;
                }
                tracing::error!(error = %e, "unreadable block skipped");
            }
            done.insert(block);
        }
        if !again {
            break;
        }
    }
    Ok(())
}

/// Blocks whose manifest overlaps [start, end], oldest first, and whether
/// a listed block had no readable manifest: usually one being deleted
/// (compaction, retention), so the caller lists again unless this is its
/// `last` attempt, where such blocks are reported and skipped. Cached
/// indexes of blocks no longer listed are dropped.
fn overlapping_blocks(
    dir: &Path,
    start: i64,
    end: i64,
    last: bool,
) -> Result<(Vec<std::path::PathBuf>, bool), StoreError> {
    let blocks = list_blocks(dir)?;
    cache::retain_listed(&dir.join("blocks"), &blocks);
    let mut unreadable = false;
    let overlapping = blocks
        .into_iter()
        .filter(|b| match read_meta(b) {
            Some(meta) => meta.max_time >= start && meta.min_time <= end,
            None => {
                unreadable = true;
                if last && b.exists() {
                    tracing::warn!(block = %b.display(), "block without a readable meta.json skipped");
                }
                false
            }
        })
        .collect();
    Ok((overlapping, unreadable))
}

/// Whether a block read failed because the block was removed or replaced
/// meanwhile (compaction, retention), rather than being damaged.
fn vanished_under(e: &BlockError, block: &Path) -> bool {
    match e {
        BlockError::Changed { .. } => true,
        BlockError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => true,
        _ => !block.exists(),
    }
}

/// What `Store::append` takes as a series: its labels, and possibly a place
/// to remember the series id so the next append skips the label lookup.
pub trait AsSeries {
    fn labels(&self) -> &Labels;
    fn id_hint(&self) -> Option<u64> {
        None
    }
    fn remember_id(&self, _id: u64) {}
}

impl AsSeries for Labels {
    fn labels(&self) -> &Labels {
        self
    }
}

/// A label set that remembers its series id in the store (the scrape cache
/// holds these, so a known series costs no label hashing on append).
#[derive(Debug, Default)]
pub struct SeriesLabels {
    labels: Labels,
    /// 0 until the store assigned one (ids start at 1).
    id: std::sync::atomic::AtomicU64,
}

impl SeriesLabels {
    pub fn new(labels: Labels) -> Self {
        SeriesLabels {
            labels,
            id: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl std::ops::Deref for SeriesLabels {
    type Target = Labels;
    fn deref(&self) -> &Labels {
        &self.labels
    }
}

impl PartialEq for SeriesLabels {
    fn eq(&self, other: &Self) -> bool {
        self.labels == other.labels
    }
}

impl AsSeries for std::sync::Arc<SeriesLabels> {
    fn labels(&self) -> &Labels {
        &self.labels
    }
    fn id_hint(&self) -> Option<u64> {
        Some(self.id.load(std::sync::atomic::Ordering::Relaxed)).filter(|id| *id != 0)
    }
    fn remember_id(&self, id: u64) {
        self.id.store(id, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The read API shared by the live store and read-only snapshots.
pub trait MetricRead {
    /// Series matching `matchers` with their samples in [start, end], from
    /// blocks and head merged in time order, duplicate timestamps removed.
    fn select(
        &self,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Result<Vec<head::Selected>, StoreError>;

    /// Label sets of the series matching `matchers` with data in [start, end].
    fn series(&self, matchers: &[Matcher], start: i64, end: i64)
        -> Result<Vec<Labels>, StoreError>;

    /// Metadata of every metric family seen by a scrape.
    fn metadata(
        &self,
    ) -> std::collections::BTreeMap<String, std::collections::BTreeSet<MetricMeta>>;

    /// Label names present on the matching series, sorted.
    fn label_names(
        &self,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Result<Vec<String>, StoreError> {
        let names: std::collections::BTreeSet<String> = self
            .series(matchers, start, end)?
            .into_iter()
            .flat_map(|l| l.into_keys())
            .collect();
        Ok(names.into_iter().collect())
    }

    /// Values of label `name` on the matching series, sorted.
    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Result<Vec<String>, StoreError> {
        let values: std::collections::BTreeSet<String> = self
            .series(matchers, start, end)?
            .into_iter()
            .filter_map(|mut l| l.remove(name))
            .collect();
        Ok(values.into_iter().collect())
    }
}

/// Moves blocks that fail verification to `DIR/damaged/`, so they are kept
/// for inspection but never read; returns where they went.
fn set_aside_damaged_blocks(dir: &Path) -> Result<Vec<std::path::PathBuf>, StoreError> {
    let mut moved = Vec::new();
    for block_dir in list_blocks(dir)? {
        let Err(e) = block::verify(&block_dir) else {
            continue;
        };
        let target = block::set_aside(dir, &block_dir)?;
        tracing::error!(error = %e, moved_to = %target.display(), "damaged block set aside");
        moved.push(target);
    }
    Ok(moved)
}

/// Deletes a block: a remote one is first set aside under a hidden name
/// (no longer listed), then its objects go, then the directory.
fn remove_block(dir: &Path) -> Result<(), StoreError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BlockError::Io { path, source }
    };
    let Some(remote) = tier::Remote::read(dir) else {
        std::fs::remove_dir_all(dir).map_err(io(dir))?;
        return Ok(());
    };
    let hidden = tier::hide_for_deletion(dir).map_err(io(dir))?;
    finish_deletion(&hidden, &remote)
}

fn finish_deletion(hidden: &Path, remote: &tier::Remote) -> Result<(), StoreError> {
    let t = tier::installed().ok_or_else(|| {
        tier::TierError::Config(format!(
            "{}: a remote block to delete and no storage.object_store configured",
            hidden.display()
        ))
    })?;
    t.delete_block(remote)?;
    std::fs::remove_dir_all(hidden).map_err(|source| BlockError::Io {
        path: hidden.to_path_buf(),
        source,
    })?;
    Ok(())
}

/// Deletions of remote blocks a crash (or the server) interrupted.
fn finish_deletions(dir: &Path) {
    for path in tier::hidden_deletions(&dir.join("blocks")) {
        if let Some(remote) = tier::Remote::read(&path) {
            if let Err(e) = finish_deletion(&path, &remote) {
                tracing::warn!(block = %path.display(), error = %e, "deleting a remote block failed; tried again later");
            }
        }
    }
}

/// Block directories under `DIR/blocks`, oldest first; unfinished `.tmp` ones left out.
fn list_blocks(dir: &Path) -> Result<Vec<std::path::PathBuf>, StoreError> {
    let dir = dir.join("blocks");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut out: Vec<_> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with('.'))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Totals over the blocks under `dir`, from their manifests.
fn block_stats_in(dir: &Path) -> Result<BlockStats, StoreError> {
    let mut stats = BlockStats::default();
    for meta in list_blocks(dir)?.iter().filter_map(|d| read_meta(d)) {
        stats.blocks += 1;
        stats.bytes += meta.bytes;
        stats.samples += meta.samples as u64;
    }
    Ok(stats)
}

fn read_meta(dir: &Path) -> Option<BlockMeta> {
    std::fs::read(dir.join("meta.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// A read-only view of a data directory: its blocks and its WAL replayed into
/// a private head. Safe while a collector is writing the same directory.
pub struct Snapshot {
    dir: std::path::PathBuf,
    head: Head,
    pub report: OpenReport,
}

impl Snapshot {
    pub fn open(dir: &Path) -> Result<Snapshot, StoreError> {
        let mut head = Head::default();
        let mut report = OpenReport::default();
        report.wal = Wal::replay(&dir.join("wal"), |bytes| {
            apply_record(&mut head, &mut report, bytes)
        })?;
        Ok(Snapshot {
            dir: dir.to_path_buf(),
            head,
            report,
        })
    }

    /// Samples stored in blocks and the head before reads merge them: equal to
    /// the merged count unless something was stored twice.
    pub fn raw_sample_count(&self) -> Result<u64, StoreError> {
        Ok(block_stats_in(&self.dir)?.samples + self.head.sample_count() as u64)
    }
}

impl MetricRead for Snapshot {
    fn select(
        &self,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Result<Vec<head::Selected>, StoreError> {
        select_in(
            &self.dir,
            &self.head,
            matchers,
            start,
            end,
            &Default::default(),
        )
    }

    fn series(
        &self,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Result<Vec<Labels>, StoreError> {
        series_in(&self.dir, &self.head, matchers, start, end)
    }

    fn metadata(
        &self,
    ) -> std::collections::BTreeMap<String, std::collections::BTreeSet<MetricMeta>> {
        self.head.metadata().clone()
    }
}

fn apply_record(head: &mut Head, report: &mut OpenReport, bytes: &[u8]) {
    match Record::decode(bytes) {
        Ok(Record::Series { id, labels }) => head.add_series(id, labels),
        Ok(Record::Metadata { metric, meta }) => {
            head.add_metadata(&metric, &meta);
        }
        Ok(Record::Samples(samples)) => {
            for (id, ts, v) in samples {
                if !head.append(id, ts, v) {
                    report.orphan_samples += 1;
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "skipping undecodable WAL record");
            report.undecodable_records += 1;
        }
    }
}

/// Holds `DIR/LOCK` exclusively so two writers never share a data directory.
fn lock_dir(dir: &Path) -> Result<std::fs::File, StoreError> {
    use std::os::fd::AsRawFd;
    std::fs::create_dir_all(dir).map_err(|source| StoreError::Lock {
        path: dir.to_path_buf(),
        msg: source.to_string(),
    })?;
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::Lock {
            path: path.clone(),
            msg: e.to_string(),
        })?;
    // SAFETY: flock on a file descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(StoreError::Lock {
            path,
            msg: "the data directory is in use by another process".into(),
        });
    }
    Ok(file)
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error(transparent)]
    Tier(#[from] tier::TierError),
    #[error(transparent)]
    Block(#[from] BlockError),
    /// A collector a query node asked (`fleet:`) did not answer.
    #[error("{0}")]
    Remote(String),
    #[error("{path}: {msg}")]
    Lock {
        path: std::path::PathBuf,
        msg: String,
    },
}

pub struct Store {
    dir: std::path::PathBuf,
    wal: Wal,
    head: RwLock<Head>,
    /// Serialises series-id allocation with the WAL order of series records.
    append_lock: std::sync::Mutex<()>,
    /// WAL readers (remote-write senders) by name, with the first segment
    /// each still needs; flushes keep those segments.
    wal_pins: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    /// Segments that begin with every live series declared (flush cuts, and
    /// the oldest segment at open): a pinned reader needs everything from
    /// the last of them at or before its pin.
    wal_cuts: std::sync::Mutex<Vec<u64>>,
    _lock: std::fs::File,
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct BlockStats {
    pub blocks: usize,
    pub bytes: u64,
    pub samples: u64,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct OpenReport {
    pub wal: ReplayReport,
    /// Blocks that failed verification, moved to `DIR/damaged/`.
    pub damaged_blocks: Vec<std::path::PathBuf>,
    pub undecodable_records: usize,
    pub orphan_samples: usize,
}

impl Store {
    /// Opens the data directory for writing: takes its lock, replays the WAL.
    pub fn open(dir: &Path) -> Result<(Store, OpenReport), StoreError> {
        let lock = lock_dir(dir)?;
        let mut head = Head::default();
        let mut report = OpenReport {
            damaged_blocks: set_aside_damaged_blocks(dir)?,
            ..OpenReport::default()
        };
        let (wal, wal_report) = Wal::open(&dir.join("wal"), wal::DEFAULT_SEGMENT_SIZE, |bytes| {
            apply_record(&mut head, &mut report, bytes)
        })?;
        report.wal = wal_report;
        let first_segment = wal::segments(&dir.join("wal"))?
            .first()
            .copied()
            .unwrap_or_else(|| wal.current_segment());
        let store = Store {
            dir: dir.to_path_buf(),
            wal,
            head: RwLock::new(head),
            append_lock: std::sync::Mutex::new(()),
            wal_pins: std::sync::Mutex::new(std::collections::BTreeMap::new()),
            wal_cuts: std::sync::Mutex::new(vec![first_segment]),
            _lock: lock,
        };
        Ok((store, report))
    }

    /// Appends one batch (e.g. one scrape): new series records and the samples
    /// go to the WAL in one fsynced write, then into the head.
    pub fn append<L: AsSeries>(&self, batch: &[(L, i64, f64)]) -> Result<(), WalError> {
        let _order = self.append_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut new_series: Vec<(u64, Labels)> = Vec::new();
        let mut new_ids: std::collections::HashMap<&Labels, u64> = std::collections::HashMap::new();
        let mut samples = Vec::with_capacity(batch.len());
        {
            let mut head = self.head.write().unwrap_or_else(|p| p.into_inner());
            for (key, ts, v) in batch {
                let known = key.id_hint().filter(|id| head.contains(*id));
                let labels = key.labels();
                let id = match known
                    .or_else(|| head.id_of(labels))
                    .or_else(|| new_ids.get(labels).copied())
                {
                    Some(id) => id,
                    None => {
                        let id = head.allocate();
                        new_ids.insert(labels, id);
                        new_series.push((id, labels.clone()));
                        id
                    }
                };
                if known.is_none() {
                    key.remember_id(id);
                }
                samples.push((id, *ts, *v));
            }
        }
        let mut bufs: Vec<Vec<u8>> = new_series
            .iter()
            .map(|(id, labels)| {
                let mut b = Vec::new();
                Record::Series {
                    id: *id,
                    labels: labels.clone(),
                }
                .encode(&mut b);
                b
            })
            .collect();
        let mut b = Vec::with_capacity(5 + samples.len() * 24);
        Record::Samples(samples.clone()).encode(&mut b);
        bufs.push(b);
        let refs: Vec<&[u8]> = bufs.iter().map(Vec::as_slice).collect();
        self.wal.append(&refs)?;
        let mut head = self.head.write().unwrap_or_else(|p| p.into_inner());
        for (id, labels) in new_series {
            head.add_series(id, labels);
        }
        for (id, ts, v) in samples {
            head.append(id, ts, v);
        }
        Ok(())
    }

    /// Moves the head's samples into a new immutable block, then drops the
    /// WAL segments they came from. Crash-safe at every step: until the block
    /// is renamed into place the WAL still holds the samples; after it, a
    /// replayed duplicate is removed by the read path's de-duplication.
    pub fn flush(&self) -> Result<Option<BlockMeta>, StoreError> {
        let (series, mut samples, first_kept_segment) = {
            let _order = self.append_lock.lock().unwrap_or_else(|p| p.into_inner());
            let segment = self.wal.cut_segment()?;
            let mut head = self.head.write().unwrap_or_else(|p| p.into_inner());
            // Re-declare every series at the start of the new segment, so the
            // older segments can go once the block is durable.
            let mut declared: Vec<Vec<u8>> = head
                .series_ids()
                .into_iter()
                .map(|(id, labels)| {
                    let mut b = Vec::new();
                    Record::Series { id, labels }.encode(&mut b);
                    b
                })
                .collect();
            for (metric, metas) in head.metadata() {
                declared.extend(metas.iter().map(|meta| metadata_record(metric, meta)));
            }
            let refs: Vec<&[u8]> = declared.iter().map(Vec::as_slice).collect();
            if !refs.is_empty() {
                self.wal.append(&refs)?;
            }
            let (series, samples) = head.drain_samples();
            (series, samples, segment)
        };
        if samples.is_empty() {
            return Ok(None);
        }
        let (meta, _) = self.publish_block(&series, &mut samples, "")?;
        let pinned = self
            .wal_pins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .copied()
            .min();
        let keep_from = {
            let mut cuts = self.wal_cuts.lock().unwrap_or_else(|p| p.into_inner());
            cuts.push(first_kept_segment);
            match pinned {
                None => first_kept_segment,
                // The series a pinned reader needs are declared from the
                // last cut at or before its pin.
                Some(p) => cuts
                    .iter()
                    .copied()
                    .filter(|c| *c <= p)
                    .max()
                    .unwrap_or(0)
                    .min(first_kept_segment),
            }
        };
        self.wal.remove_before(keep_from)?;
        self.wal_cuts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|c| *c >= keep_from);
        Ok(Some(meta))
    }

    pub fn wal_dir(&self) -> std::path::PathBuf {
        self.dir.join("wal")
    }

    /// Where the next WAL record will be written.
    pub fn wal_end(&self) -> walfollow::Position {
        let (segment, offset) = self.wal.end();
        walfollow::Position { segment, offset }
    }

    /// Keeps WAL segments from `segment` on for the reader `name`.
    pub fn pin_wal(&self, name: &str, segment: u64) {
        self.wal_pins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), segment);
    }

    pub fn unpin_wal(&self, name: &str) {
        self.wal_pins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    /// Bytes in WAL segments from `segment` on.
    pub fn wal_bytes_from(&self, segment: u64) -> u64 {
        let dir = self.wal_dir();
        wal::segments(&dir)
            .unwrap_or_default()
            .into_iter()
            .filter(|s| *s >= segment)
            .filter_map(|s| std::fs::metadata(wal::segment_path(&dir, s)).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Records what a scrape said about its metric families; only metadata
    /// not known yet is written to the WAL.
    pub fn record_metadata(&self, entries: &[(String, MetricMeta)]) -> Result<(), WalError> {
        let _order = self.append_lock.lock().unwrap_or_else(|p| p.into_inner());
        let fresh: Vec<&(String, MetricMeta)> = {
            let head = self.head.read().unwrap_or_else(|p| p.into_inner());
            entries
                .iter()
                .filter(|(metric, meta)| {
                    !head
                        .metadata()
                        .get(metric)
                        .is_some_and(|known| known.contains(meta))
                })
                .collect()
        };
        if fresh.is_empty() {
            return Ok(());
        }
        let bufs: Vec<Vec<u8>> = fresh
            .iter()
            .map(|(metric, meta)| metadata_record(metric, meta))
            .collect();
        let refs: Vec<&[u8]> = bufs.iter().map(Vec::as_slice).collect();
        self.wal.append(&refs)?;
        let mut head = self.head.write().unwrap_or_else(|p| p.into_inner());
        for (metric, meta) in fresh {
            head.add_metadata(metric, meta);
        }
        Ok(())
    }

    /// Writes samples that never went through the WAL (a backfill) straight
    /// into blocks, one per `window_ms` of time.
    pub fn write_blocks(
        &self,
        series: &[(u64, Labels)],
        samples: Vec<(u64, i64, f64)>,
        window_ms: i64,
    ) -> Result<Vec<BlockMeta>, StoreError> {
        let mut windows: std::collections::BTreeMap<i64, Vec<(u64, i64, f64)>> =
            std::collections::BTreeMap::new();
        for s in samples {
            windows
                .entry(s.1.div_euclid(window_ms.max(1)))
                .or_default()
                .push(s);
        }
        let by_id: std::collections::HashMap<u64, &Labels> =
            series.iter().map(|(id, l)| (*id, l)).collect();
        let mut metas = Vec::new();
        for (_, mut window) in windows {
            let ids: std::collections::BTreeSet<u64> = window.iter().map(|s| s.0).collect();
            let present: Vec<(u64, Labels)> = ids
                .into_iter()
                .filter_map(|id| by_id.get(&id).map(|l| (id, (*l).clone())))
                .collect();
            let (meta, _) = self.publish_block(&present, &mut window, "i")?;
            metas.push(meta);
        }
        Ok(metas)
    }

    /// Writes a block under a temporary name, then renames it into place and
    /// syncs the directory: a block is either complete or absent.
    fn publish_block(
        &self,
        series: &[(u64, Labels)],
        samples: &mut [(u64, i64, f64)],
        suffix: &str,
    ) -> Result<(BlockMeta, std::path::PathBuf), StoreError> {
        let blocks = self.dir.join("blocks");
        let tmp = blocks.join(format!(".tmp{suffix}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let meta = block::write_block(&tmp, series, samples, block::Encodings::default())?;
        // Two backfills can cover the same span: the later one gets a number.
        let name = format!("{:020}-{:020}{suffix}", meta.min_time, meta.max_time);
        let mut final_dir = blocks.join(&name);
        let mut n = 1;
        while final_dir.exists() {
            final_dir = blocks.join(format!("{name}{n}"));
            n += 1;
        }
        let io = |source| BlockError::Io {
            path: final_dir.clone(),
            source,
        };
        std::fs::rename(&tmp, &final_dir).map_err(io)?;
        std::fs::File::open(&blocks)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok((meta, final_dir))
    }

    /// Merges runs of adjacent small blocks whose combined span stays within
    /// `max_span_ms` into one block each. The merged block is renamed into
    /// place before the inputs are deleted; a crash in between leaves
    /// duplicates that `select` removes.
    pub fn compact(&self, max_span_ms: i64) -> Result<usize, StoreError> {
        let mut metas: Vec<(std::path::PathBuf, BlockMeta)> = Vec::new();
        for dir in self.blocks()? {
            if let Some(m) = read_meta(&dir) {
                metas.push((dir, m));
            }
        }
        metas.sort_by_key(|(_, m)| m.min_time);
        let mut merged_count = 0;
        let mut i = 0;
        while i < metas.len() {
            let mut j = i + 1;
            while j < metas.len() && metas[j].1.max_time - metas[i].1.min_time <= max_span_ms {
                j += 1;
            }
            if j - i >= 2 {
                self.merge_blocks(&metas[i..j])?;
                merged_count += j - i;
            }
            i = j;
        }
        Ok(merged_count)
    }

    fn merge_blocks(&self, inputs: &[(std::path::PathBuf, BlockMeta)]) -> Result<(), StoreError> {
        let mut ids: std::collections::HashMap<Labels, u64> = std::collections::HashMap::new();
        let mut series: Vec<(u64, Labels)> = Vec::new();
        let mut samples: Vec<(u64, i64, f64)> = Vec::new();
        for (dir, _) in inputs {
            let local: std::collections::HashMap<u64, u64> = block::read_series(dir)?
                .into_iter()
                .map(|(id, labels)| {
                    let next = ids.len() as u64 + 1;
                    let new = *ids.entry(labels.clone()).or_insert_with(|| {
                        series.push((next, labels));
                        next
                    });
                    (id, new)
                })
                .collect();
            for (id, ts, v) in block::read_samples(dir)? {
                if let Some(new) = local.get(&id) {
                    samples.push((*new, ts, v));
                }
            }
        }
        samples.sort_by_key(|s| (s.0, s.1));
        samples.dedup_by_key(|s| (s.0, s.1));
        let (meta, final_dir) = self.publish_block(&series, &mut samples, "c")?;
        for (dir, _) in inputs {
            if *dir != final_dir {
                remove_block(dir)?;
            }
        }
        tracing::info!(
            inputs = inputs.len(),
            samples = meta.samples,
            bytes_per_sample = meta.bytes_per_sample(),
            "blocks compacted"
        );
        Ok(())
    }

    /// Deletes blocks entirely older than `now_ms - max_age_ms`, then the
    /// oldest blocks while all blocks together exceed `max_bytes` (0: no limit).
    pub fn apply_retention(
        &self,
        now_ms: i64,
        max_age_ms: i64,
        max_bytes: u64,
    ) -> Result<usize, StoreError> {
        let mut metas: Vec<(std::path::PathBuf, BlockMeta)> = self
            .blocks()?
            .into_iter()
            .filter_map(|d| read_meta(&d).map(|m| (d, m)))
            .collect();
        metas.sort_by_key(|(_, m)| m.max_time);
        let mut total: u64 = metas.iter().map(|(_, m)| m.bytes).sum();
        let mut removed = 0;
        for (dir, meta) in &metas {
            let too_old = meta.max_time < now_ms - max_age_ms;
            let too_big = max_bytes > 0 && total > max_bytes;
            if !(too_old || too_big) {
                continue;
            }
            remove_block(dir)?;
            total -= meta.bytes;
            removed += 1;
            tracing::info!(block = %dir.display(), too_old, too_big, "block removed by retention");
        }
        Ok(removed)
    }

    fn blocks(&self) -> Result<Vec<std::path::PathBuf>, StoreError> {
        list_blocks(&self.dir)
    }

    /// Uploads blocks whose newest sample is older than the tier's
    /// `upload_after`; finishes uploads a crash interrupted after marking.
    /// Returns how many blocks went up.
    pub fn upload_blocks(&self, tier: &tier::Tier, now_ms: i64) -> Result<usize, StoreError> {
        finish_deletions(&self.dir);
        let cutoff = now_ms - tier.upload_after().as_millis() as i64;
        let mut uploaded = 0;
        for dir in self.blocks()? {
            let local = dir.join("samples.parquet");
            if tier::Remote::read(&dir).is_some() {
                if local.exists() {
                    std::fs::remove_file(&local).map_err(|source| BlockError::Io {
                        path: local.clone(),
                        source,
                    })?;
                }
                continue;
            }
            if read_meta(&dir).is_none_or(|m| m.max_time >= cutoff) {
                continue;
            }
            let bytes = tier.upload_block(&dir)?;
            tracing::info!(block = %dir.display(), bytes, to = tier.description(), "block uploaded to object storage");
            uploaded += 1;
        }
        Ok(uploaded)
    }

    /// Totals over the blocks on disk, from their manifests.
    pub fn block_stats(&self) -> BlockStats {
        block_stats_in(&self.dir).unwrap_or_default()
    }

    /// Bytes of the WAL segments on disk.
    pub fn wal_bytes(&self) -> u64 {
        std::fs::read_dir(self.dir.join("wal"))
            .map(|rd| {
                rd.filter_map(|e| e.ok()?.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }

    /// `select` leaving out the blocks named in `known` (a query node reads
    /// those from object storage itself).
    pub fn select_except(
        &self,
        matchers: &[Matcher],
        start: i64,
        end: i64,
        known: &std::collections::HashSet<String>,
    ) -> Result<Vec<head::Selected>, StoreError> {
        let head = self.head.read().unwrap_or_else(|p| p.into_inner());
        select_in(&self.dir, &head, matchers, start, end, known)
    }

    pub fn with_head<T>(&self, f: impl FnOnce(&Head) -> T) -> T {
        f(&self.head.read().unwrap_or_else(|p| p.into_inner()))
    }
}

impl MetricRead for Store {
    fn select(
        &self,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Result<Vec<head::Selected>, StoreError> {
        let head = self.head.read().unwrap_or_else(|p| p.into_inner());
        select_in(&self.dir, &head, matchers, start, end, &Default::default())
    }

    fn series(
        &self,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Result<Vec<Labels>, StoreError> {
        let head = self.head.read().unwrap_or_else(|p| p.into_inner());
        series_in(&self.dir, &head, matchers, start, end)
    }

    fn metadata(
        &self,
    ) -> std::collections::BTreeMap<String, std::collections::BTreeSet<MetricMeta>> {
        self.with_head(|h| h.metadata().clone())
    }
}

fn metadata_record(metric: &str, meta: &MetricMeta) -> Vec<u8> {
    let mut b = Vec::new();
    Record::Metadata {
        metric: metric.to_string(),
        meta: meta.clone(),
    }
    .encode(&mut b);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::relabel::labels_of as l;

    #[test]
    fn metadata_survives_reopen_and_flush() {
        let dir = tempfile::tempdir().unwrap();
        let meta = MetricMeta {
            kind: "gauge".into(),
            help: "Queue size.".into(),
            unit: String::new(),
        };
        {
            let (store, _) = Store::open(dir.path()).unwrap();
            store
                .append(&[(l(&[("__name__", "q")]), 1000, 1.0)])
                .unwrap();
            store
                .record_metadata(&[("q".into(), meta.clone())])
                .unwrap();
            // Recorded again: nothing new goes to the WAL.
            let before = store.wal_bytes();
            store
                .record_metadata(&[("q".into(), meta.clone())])
                .unwrap();
            assert_eq!(store.wal_bytes(), before);
            // The flush drops the old segments; metadata is re-declared in the new one.
            store.flush().unwrap().unwrap();
        }
        let (store, _) = Store::open(dir.path()).unwrap();
        assert_eq!(store.metadata()["q"].iter().collect::<Vec<_>>(), [&meta]);
    }

    #[test]
    fn labels_from_blocks_and_head_within_the_range() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        let a = l(&[("__name__", "up"), ("job", "node"), ("instance", "mta1")]);
        let b = l(&[("__name__", "up"), ("job", "ldap"), ("role", "directory")]);
        store.append(&[(a.clone(), 1000, 1.0)]).unwrap();
        store.flush().unwrap().unwrap();
        store.append(&[(b.clone(), 50_000, 1.0)]).unwrap();
        let all = [Matcher::Equal("__name__".into(), "up".into())];
        assert_eq!(
            store.series(&all, 0, 60_000).unwrap(),
            vec![a.clone(), b.clone()]
        );
        assert_eq!(
            store.label_names(&all, 0, 60_000).unwrap(),
            ["__name__", "instance", "job", "role"]
        );
        assert_eq!(
            store.label_values("job", &all, 0, 60_000).unwrap(),
            ["ldap", "node"]
        );
        // Only the head series has data after 10 s; the block ends at 1 s.
        assert_eq!(
            store.label_values("job", &all, 10_000, 60_000).unwrap(),
            ["ldap"]
        );
        let ldap = [Matcher::Equal("job".into(), "ldap".into())];
        assert_eq!(
            store.label_names(&ldap, 0, 60_000).unwrap(),
            ["__name__", "job", "role"]
        );
    }

    #[test]
    fn damaged_block_is_set_aside_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let block = {
            let (store, _) = Store::open(dir.path()).unwrap();
            store
                .append(&[(l(&[("__name__", "up")]), 1000, 1.0)])
                .unwrap();
            store.flush().unwrap().unwrap();
            list_blocks(dir.path()).unwrap().remove(0)
        };
        // A torn samples file (a disk fault, a copy cut short).
        let samples = block.join("samples.parquet");
        let len = std::fs::metadata(&samples).unwrap().len();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&samples)
            .unwrap();
        f.set_len(len / 2).unwrap();
        let (store, report) = Store::open(dir.path()).unwrap();
        assert_eq!(report.damaged_blocks.len(), 1);
        assert!(report.damaged_blocks[0].starts_with(dir.path().join("damaged")));
        assert!(report.damaged_blocks[0].join("samples.parquet").exists());
        assert!(list_blocks(dir.path()).unwrap().is_empty());
        let all = [Matcher::NotEqual("__name__".into(), String::new())];
        assert!(store.select(&all, 0, 10_000).unwrap().is_empty());
    }

    #[test]
    fn appends_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let up = l(&[("__name__", "up"), ("job", "node")]);
        {
            let (store, _) = Store::open(dir.path()).unwrap();
            store.append(&[(up.clone(), 1000, 1.0)]).unwrap();
            store.append(&[(up.clone(), 2000, 0.0)]).unwrap();
        }
        let (store, report) = Store::open(dir.path()).unwrap();
        assert_eq!(report.orphan_samples, 0);
        let got = store.with_head(|h| {
            h.select(
                &[head::Matcher::Equal("job".into(), "node".into())],
                0,
                5000,
            )
        });
        assert_eq!(got, vec![(up, vec![(1000, 1.0), (2000, 0.0)])]);
    }

    #[test]
    fn flush_moves_samples_to_a_block_and_trims_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let up = l(&[("__name__", "up"), ("job", "node")]);
        let sel = [head::Matcher::Equal("__name__".into(), "up".into())];
        {
            let (store, _) = Store::open(dir.path()).unwrap();
            for t in 0..10 {
                store.append(&[(up.clone(), t * 1000, t as f64)]).unwrap();
            }
            let meta = store.flush().unwrap().unwrap();
            assert_eq!((meta.samples, meta.min_time, meta.max_time), (10, 0, 9000));
            store.append(&[(up.clone(), 10_000, 10.0)]).unwrap();
            let got = store.select(&sel, 0, 20_000).unwrap();
            assert_eq!(got[0].1.len(), 11);
            assert_eq!(store.with_head(|h| h.sample_count()), 1);
            assert_eq!(
                std::fs::read_dir(dir.path().join("wal"))
                    .unwrap()
                    .filter(|e| e.as_ref().unwrap().path().is_file())
                    .count(),
                1
            );
        }
        // Restart: the block plus the trimmed WAL give every sample exactly once.
        let (store, report) = Store::open(dir.path()).unwrap();
        assert_eq!(report.orphan_samples, 0);
        let got = store.select(&sel, 0, 20_000).unwrap();
        assert_eq!(
            got[0].1,
            (0..=10).map(|t| (t * 1000, t as f64)).collect::<Vec<_>>()
        );
        // Time pruning: a range before the block reads nothing.
        assert!(store.select(&sel, -5000, -1).unwrap().is_empty());
    }

    #[test]
    fn compaction_and_retention() {
        let dir = tempfile::tempdir().unwrap();
        let up = l(&[("__name__", "up"), ("job", "node")]);
        let sel = [head::Matcher::Equal("__name__".into(), "up".into())];
        let (store, _) = Store::open(dir.path()).unwrap();
        for t in 0..6 {
            store.append(&[(up.clone(), t * 1000, t as f64)]).unwrap();
            store.flush().unwrap();
        }
        assert_eq!(store.blocks().unwrap().len(), 6);
        assert_eq!(store.compact(3_000).unwrap(), 6);
        assert_eq!(store.blocks().unwrap().len(), 2);
        let got = store.select(&sel, 0, 10_000).unwrap();
        assert_eq!(
            got[0].1,
            (0..6).map(|t| (t * 1000, t as f64)).collect::<Vec<_>>()
        );
        // Age: the block ending at 3000 is older than now (10000) - 6500.
        assert_eq!(store.apply_retention(10_000, 6_500, 0).unwrap(), 1);
        assert_eq!(store.select(&sel, 0, 10_000).unwrap()[0].1.len(), 2);
        // Size: a 1-byte budget removes everything.
        assert_eq!(store.apply_retention(10_000, i64::MAX / 2, 1).unwrap(), 1);
        assert!(store.select(&sel, 0, 10_000).unwrap().is_empty());
    }

    #[test]
    fn one_writer_per_directory_and_read_only_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let up: Labels = [("__name__", "up")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (store, _) = Store::open(dir.path()).unwrap();
        store.append(&[(up.clone(), 1, 1.0)]).unwrap();
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::Lock { .. })
        ));
        let snap = Snapshot::open(dir.path()).unwrap();
        let all = [head::Matcher::NotEqual("__name__".into(), String::new())];
        assert_eq!(snap.select(&all, 0, 10).unwrap().len(), 1);
        // The writer is unharmed: it appends after the snapshot read.
        store.append(&[(up, 2, 2.0)]).unwrap();
        drop(store);
        let (store, report) = Store::open(dir.path()).unwrap();
        assert!(report.wal.damaged.is_empty());
        assert_eq!(store.select(&all, 0, 10).unwrap()[0].1.len(), 2);
    }

    /// A read-only snapshot (the query role) reading while the collector
    /// flushes and compacts sees every sample exactly once: a block removed
    /// between listing and reading sends the read back to the listing.
    #[test]
    fn snapshot_reads_stay_whole_during_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        let snapshot = Snapshot::open(dir.path()).unwrap();
        let up = l(&[("__name__", "up")]);
        let sel = [Matcher::Equal("__name__".into(), "up".into())];
        let all: Vec<(i64, f64)> = (0..90).map(|t| (t * 1000, t as f64)).collect();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let mut reads = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let got = snapshot.select(&sel, 0, 1_000_000).unwrap();
                    let points = got.first().map(|(_, p)| p.as_slice()).unwrap_or(&[]);
                    // While flushes run, a prefix (the head is not in the
                    // snapshot); never a gap or a duplicate.
                    assert_eq!(points, &all[..points.len()]);
                    reads += 1;
                }
                reads
            });
            for chunk in all.chunks(3) {
                let batch: Vec<_> = chunk.iter().map(|(t, v)| (up.clone(), *t, *v)).collect();
                store.append(&batch).unwrap();
                store.flush().unwrap();
            }
            for span in [6_000, 20_000, 1_000_000] {
                store.compact(span).unwrap();
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            assert!(reader.join().unwrap() > 0);
        });
        assert_eq!(store.blocks().unwrap().len(), 1);
        assert_eq!(snapshot.select(&sel, 0, 1_000_000).unwrap()[0].1, all);
    }

    #[test]
    fn a_corrupt_block_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let l = |n: &str| -> Labels {
            [("__name__".to_string(), n.to_string())]
                .into_iter()
                .collect()
        };
        let (store, _) = Store::open(dir.path()).unwrap();
        store.append(&[(l("a"), 1, 1.0)]).unwrap();
        store.flush().unwrap();
        store.append(&[(l("b"), 5, 1.0)]).unwrap();
        store.flush().unwrap();
        let first = store.blocks().unwrap()[0].clone();
        std::fs::write(first.join("samples.parquet"), b"not parquet").unwrap();
        let all = [head::Matcher::NotEqual("__name__".into(), String::new())];
        let got = store.select(&all, 0, 10).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0["__name__"], "b");
    }
}
