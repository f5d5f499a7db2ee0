//! What the read path keeps of a block between queries: its series table
//! (parsed once, indexed by metric name), the rows each series occupies in
//! the samples file (sorted by series id, then time), and that file's footer
//! with the page index of its timestamps. A read then decodes only the
//! timestamp and value pages of the wanted series whose time range meets
//! the query's; the series-id column is never read again.

use super::block::{bad_columns, read_series, BlockError};
use super::head::Matcher;
use super::tier::{Remote, Tier};
use crate::relabel::Labels;
use arrow_array::{Float64Array, Int64Array, UInt64Array};
use bytes::Bytes;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder, RowSelection,
};
use parquet::arrow::ProjectionMask;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::reader::{ChunkReader, Length};
use parquet::file::statistics::Statistics;
use std::collections::HashMap;
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Column positions in `samples.parquet`.
const ID_COL: usize = 0;
const TS_COL: usize = 1;
const VALUE_COL: usize = 2;
/// Rows per decoded batch: small enough that its buffers come from the
/// heap rather than fresh (page-faulting) mappings.
const BATCH_ROWS: usize = 8 * 1024;
/// Bytes read at once, and how many such windows are kept, by `Windowed`.
const WINDOW_BYTES: usize = 32 << 10;
const WINDOWS: usize = 8;

/// Which file an index was built from: a block rewritten under the same
/// name (or a file replaced in place) gets a new inode or mtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl FileIdentity {
    /// A remote samples file: named by its key, never changed in place.
    fn remote(r: &Remote) -> Self {
        FileIdentity {
            dev: 0,
            ino: crc32fast::hash(r.key.as_bytes()) as u64,
            len: r.bytes,
            mtime_ns: 0,
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn of(meta: &std::fs::Metadata) -> Self {
        FileIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
        }
    }
}

/// Rows [from, to) of the samples file (counted across row groups) whose
/// timestamps lie in [min, max].
#[derive(Debug, Clone, Copy)]
struct TsPage {
    from: usize,
    to: usize,
    min: i64,
    max: i64,
}

pub struct BlockIndex {
    /// (id, labels), sorted by id.
    pub series: Vec<(u64, Labels)>,
    /// Rows of each series in the samples file, in `series` order.
    rows: Vec<Range<usize>>,
    /// Metric name → positions in `series`, ascending.
    by_name: HashMap<String, Vec<usize>>,
    /// Timestamp pages in row order.
    ts_pages: Vec<TsPage>,
    /// First row of each row group.
    group_starts: Vec<usize>,
    samples: ArrowReaderMetadata,
    pub identity: FileIdentity,
}

/// Samples of one series read from a block: its position in the index's
/// `series` and its points in time order.
pub type SeriesSamples = (usize, Vec<(i64, f64)>);

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> BlockError + '_ {
    move |source| BlockError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A block's samples file: in the data directory, or in object storage
/// (a `remote.json` marker in its place).
pub(crate) enum SamplesFile {
    Local(std::fs::File),
    Remote(Remote, &'static Arc<Tier>),
}

impl SamplesFile {
    /// Opens the samples file of the block in `dir`; gives its path (for
    /// messages) and identity too.
    pub(crate) fn open(dir: &Path) -> Result<(SamplesFile, FileIdentity, PathBuf), BlockError> {
        let path = dir.join("samples.parquet");
        match std::fs::File::open(&path) {
            Ok(file) => {
                let identity = FileIdentity::of(&file.metadata().map_err(io_err(&path))?);
                Ok((SamplesFile::Local(file), identity, path))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let remote = Remote::read(dir).ok_or_else(|| io_err(&path)(e))?;
                let tier = super::tier::installed().ok_or_else(|| BlockError::Io {
                    path: path.clone(),
                    source: std::io::Error::other(
                        "the block's samples are in object storage and no storage.object_store is configured",
                    ),
                })?;
                let identity = FileIdentity::remote(&remote);
                Ok((SamplesFile::Remote(remote, tier), identity, path))
            }
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// The identity `open` would give, without opening anything remote.
    pub(crate) fn identity(dir: &Path) -> Result<FileIdentity, BlockError> {
        let path = dir.join("samples.parquet");
        match std::fs::metadata(&path) {
            Ok(m) => Ok(FileIdentity::of(&m)),
            Err(e) => match Remote::read(dir) {
                Some(r) if e.kind() == std::io::ErrorKind::NotFound => Ok(FileIdentity::remote(&r)),
                _ => Err(io_err(&path)(e)),
            },
        }
    }

    fn pread(&self, start: u64, len: usize) -> std::io::Result<Bytes> {
        match self {
            SamplesFile::Local(file) => {
                let mut buf = vec![0; len];
                file.read_exact_at(&mut buf, start)?;
                Ok(buf.into())
            }
            SamplesFile::Remote(remote, tier) => tier.read(remote, start, len),
        }
    }

    /// A Parquet reader's view of the file.
    pub(crate) fn reader(self, len: u64) -> impl ChunkReader + 'static {
        Windowed {
            file: self,
            len,
            windows: Mutex::new(Vec::new()),
        }
    }
}

fn pq_err(path: &Path) -> impl Fn(parquet::errors::ParquetError) -> BlockError + '_ {
    move |source| BlockError::Parquet {
        path: path.to_path_buf(),
        source,
    }
}

fn arrow_err(path: &Path) -> impl Fn(arrow_schema::ArrowError) -> BlockError + '_ {
    move |source| BlockError::Arrow {
        path: path.to_path_buf(),
        source,
    }
}

impl BlockIndex {
    /// Parses the series table and the samples footer, and reads the
    /// series-id column once to find each series' rows.
    pub fn load(dir: &Path) -> Result<BlockIndex, BlockError> {
        let (file, identity, path) = SamplesFile::open(dir)?;
        let file = Windowed {
            file,
            len: identity.len,
            windows: Mutex::new(Vec::new()),
        };
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
        let samples = ArrowReaderMetadata::load(&file, options).map_err(pq_err(&path))?;
        let mut series = read_series(dir)?;
        series.sort_by_key(|(id, _)| *id);
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, (_, labels)) in series.iter().enumerate() {
            let name = labels.get("__name__").cloned().unwrap_or_default();
            by_name.entry(name).or_default().push(i);
        }
        let meta = samples.metadata().clone();
        let mut group_starts = Vec::with_capacity(meta.num_row_groups());
        let mut total = 0usize;
        for rg in meta.row_groups() {
            group_starts.push(total);
            total += rg.num_rows().max(0) as usize;
        }
        let ids = ProjectionMask::leaves(samples.parquet_schema(), [ID_COL]);
        let reader = open(&path, file, &samples, ids, None)?;
        let rows = series_rows(&path, reader, &series)?;
        Ok(BlockIndex {
            ts_pages: ts_pages(&meta, &group_starts),
            series,
            rows,
            by_name,
            group_starts,
            samples,
            identity,
        })
    }

    /// Rough heap size, for the cache's budget.
    pub fn approx_bytes(&self) -> usize {
        let labels: usize = self
            .series
            .iter()
            .map(|(_, l)| 80 + l.iter().map(|(k, v)| 64 + k.len() + v.len()).sum::<usize>())
            .sum();
        labels
            + self.ts_pages.len() * std::mem::size_of::<TsPage>()
            + self.samples.metadata().memory_size()
    }

    /// Positions of the series matching every matcher, ascending (so their
    /// ids and rows ascend too). A metric-name equality narrows the scan.
    pub fn matching(&self, matchers: &[Matcher]) -> Vec<usize> {
        let by_name = matchers.iter().find_map(|m| match m {
            Matcher::Equal(n, v) if n == "__name__" => Some(v),
            _ => None,
        });
        let keep = |i: &usize| matchers.iter().all(|m| m.matches(&self.series[*i].1));
        match by_name {
            Some(name) => self
                .by_name
                .get(name)
                .map(|c| c.iter().copied().filter(keep).collect())
                .unwrap_or_default(),
            None => (0..self.series.len()).filter(keep).collect(),
        }
    }

    /// Samples in [start, end] of the series at `wanted` (ascending
    /// positions); series without samples there are left out. Fails with
    /// `BlockError::Changed` when the file is no longer the indexed one.
    pub fn read(
        &self,
        dir: &Path,
        wanted: &[usize],
        start: i64,
        end: i64,
    ) -> Result<Vec<SeriesSamples>, BlockError> {
        let pieces = self.pieces(wanted, start, end);
        if pieces.is_empty() {
            return Ok(Vec::new());
        }
        let (file, identity, path) = SamplesFile::open(dir)?;
        if identity != self.identity {
            return Err(BlockError::Changed { path });
        }
        let file = Windowed {
            file,
            len: identity.len,
            windows: Mutex::new(Vec::new()),
        };
        let columns = ProjectionMask::leaves(self.samples.parquet_schema(), [TS_COL, VALUE_COL]);
        let selection = self.selection(&pieces);
        let reader = open(&path, file, &self.samples, columns, Some(selection))?;
        let mut out: Vec<SeriesSamples> = Vec::new();
        // The batches hold the pieces' rows back to back, in order.
        let mut pieces = pieces.into_iter();
        let (mut pos, mut left) = (0usize, 0usize);
        for batch in reader {
            let batch = batch.map_err(arrow_err(&path))?;
            let (Some(bts), Some(bvs)) = (
                batch.column(0).as_any().downcast_ref::<Int64Array>(),
                batch.column(1).as_any().downcast_ref::<Float64Array>(),
            ) else {
                return Err(bad_columns(&path));
            };
            let (bts, bvs) = (bts.values(), bvs.values());
            let mut i = 0;
            while i < bts.len() {
                if left == 0 {
                    let Some((p, rows)) = pieces.next() else {
                        return Err(bad_columns(&path));
                    };
                    (pos, left) = (p, rows.len());
                }
                let n = left.min(bts.len() - i);
                let ts = &bts[i..i + n];
                let a = ts.partition_point(|t| *t < start);
                let b = ts.partition_point(|t| *t <= end);
                if a < b {
                    if out.last().is_none_or(|(p, _)| *p != pos) {
                        out.push((pos, Vec::new()));
                    }
                    if let Some((_, pts)) = out.last_mut() {
                        let vs = &bvs[i + a..i + b];
                        pts.extend(ts[a..b].iter().copied().zip(vs.iter().copied()));
                    }
                }
                i += n;
                left -= n;
            }
        }
        Ok(out)
    }

    /// (series position, rows) to decode, in row order: each wanted
    /// series' rows on timestamp pages that meet [start, end].
    fn pieces(&self, wanted: &[usize], start: i64, end: i64) -> Vec<(usize, Range<usize>)> {
        let mut out: Vec<(usize, Range<usize>)> = Vec::new();
        for &pos in wanted {
            let Some(rows) = self.rows.get(pos).filter(|r| !r.is_empty()) else {
                continue;
            };
            let first = self.ts_pages.partition_point(|p| p.to <= rows.start);
            for page in self.ts_pages[first..]
                .iter()
                .take_while(|p| p.from < rows.end)
            {
                if page.max < start || page.min > end {
                    continue;
                }
                let (lo, hi) = (page.from.max(rows.start), page.to.min(rows.end));
                match out.last_mut() {
                    Some((p, last)) if *p == pos && last.end == lo => last.end = hi,
                    _ => out.push((pos, lo..hi)),
                }
            }
        }
        out
    }

    /// The row groups holding `pieces` and a selection of their rows.
    fn selection(&self, pieces: &[(usize, Range<usize>)]) -> (Vec<usize>, RowSelection) {
        let group_of = |row: usize| self.group_starts.partition_point(|s| *s <= row) - 1;
        let mut groups: Vec<usize> = Vec::new();
        for (_, rows) in pieces {
            for g in group_of(rows.start)..=group_of(rows.end - 1) {
                if groups.last() != Some(&g) {
                    groups.push(g);
                }
            }
        }
        // Rows of the skipped groups before each selected one.
        let mut skipped = HashMap::new();
        let (mut gone, mut prev_end) = (0, 0);
        let mut selected = 0;
        for &g in &groups {
            let g_start = self.group_starts[g];
            let g_end = self.group_starts.get(g + 1).copied().unwrap_or_else(|| {
                g_start + self.samples.metadata().row_group(g).num_rows().max(0) as usize
            });
            gone += g_start - prev_end;
            prev_end = g_end;
            skipped.insert(g, gone);
            selected += g_end - g_start;
        }
        let ranges = pieces.iter().map(|(_, rows)| {
            let shift = skipped.get(&group_of(rows.start)).copied().unwrap_or(0);
            rows.start - shift..rows.end - shift
        });
        let selection = RowSelection::from_consecutive_ranges(ranges, selected);
        (groups, selection)
    }
}

/// A reader of `columns` over the samples file, optionally limited to some
/// row groups and rows.
fn open(
    path: &Path,
    file: Windowed,
    meta: &ArrowReaderMetadata,
    columns: ProjectionMask,
    selection: Option<(Vec<usize>, RowSelection)>,
) -> Result<ParquetRecordBatchReader, BlockError> {
    let mut builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta.clone())
        .with_projection(columns)
        .with_batch_size(BATCH_ROWS);
    if let Some((groups, rows)) = selection {
        builder = builder.with_row_groups(groups).with_row_selection(rows);
    }
    builder.build().map_err(pq_err(path))
}

/// The rows of each series (in `series` order) from the series-id column,
/// which must ascend.
fn series_rows(
    path: &Path,
    reader: ParquetRecordBatchReader,
    series: &[(u64, Labels)],
) -> Result<Vec<Range<usize>>, BlockError> {
    let mut rows = vec![0..0; series.len()];
    // (id, first row) of the run being read; the next series to place.
    let mut run: Option<(u64, usize)> = None;
    let mut next = 0usize;
    let mut row = 0usize;
    let mut close = |id: u64, from: usize, to: usize, next: &mut usize| {
        while *next < series.len() && series[*next].0 < id {
            *next += 1;
        }
        if series.get(*next).is_some_and(|(sid, _)| *sid == id) {
            rows[*next] = from..to;
        }
    };
    for batch in reader {
        let batch = batch.map_err(arrow_err(path))?;
        let Some(ids) = batch.column(0).as_any().downcast_ref::<UInt64Array>() else {
            return Err(bad_columns(path));
        };
        for &id in ids.values() {
            match run {
                Some((cur, _)) if cur == id => {}
                Some((cur, from)) if cur < id => {
                    close(cur, from, row, &mut next);
                    run = Some((id, row));
                }
                None => run = Some((id, row)),
                Some(_) => {
                    return Err(BlockError::Io {
                        path: path.to_path_buf(),
                        source: std::io::Error::other("samples not sorted by series id"),
                    })
                }
            }
            row += 1;
        }
    }
    if let Some((cur, from)) = run {
        close(cur, from, row, &mut next);
    }
    Ok(rows)
}

/// Timestamp pages from the page index, or whole row groups (with their
/// statistics, if any) where it is missing.
fn ts_pages(meta: &ParquetMetaData, group_starts: &[usize]) -> Vec<TsPage> {
    let mut out = Vec::new();
    for (g, rg) in meta.row_groups().iter().enumerate() {
        let base = group_starts[g];
        let rows = rg.num_rows().max(0) as usize;
        let index = meta
            .column_index()
            .and_then(|c| c.get(g)?.get(TS_COL))
            .zip(meta.offset_index().and_then(|o| o.get(g)?.get(TS_COL)));
        if let Some((ColumnIndexMetaData::INT64(ci), oi)) = index {
            let pages = oi.page_locations();
            for (k, page) in pages.iter().enumerate() {
                let from = page.first_row_index.max(0) as usize;
                let to = pages
                    .get(k + 1)
                    .map_or(rows, |p| p.first_row_index.max(0) as usize);
                out.push(TsPage {
                    from: base + from,
                    to: base + to,
                    min: ci.min_value(k).copied().unwrap_or(i64::MIN),
                    max: ci.max_value(k).copied().unwrap_or(i64::MAX),
                });
            }
            continue;
        }
        let (min, max) = match rg.column(TS_COL).statistics() {
            Some(Statistics::Int64(s)) => (
                s.min_opt().copied().unwrap_or(i64::MIN),
                s.max_opt().copied().unwrap_or(i64::MAX),
            ),
            _ => (i64::MIN, i64::MAX),
        };
        out.push(TsPage {
            from: base,
            to: base + rows,
            min,
            max,
        });
    }
    out
}

/// A file read with `pread` through a few recently read windows: the page
/// reader asks for one small page at a time, which with `File` costs a
/// dup, a seek, a read and a close each.
struct Windowed {
    file: SamplesFile,
    len: u64,
    /// (offset, bytes), most recently read last.
    windows: Mutex<Vec<(u64, Bytes)>>,
}

impl Windowed {
    fn pread(&self, start: u64, len: usize) -> std::io::Result<Bytes> {
        self.file.pread(start, len)
    }
}

impl Length for Windowed {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for Windowed {
    type T = std::io::Cursor<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        let rest = self.len.saturating_sub(start) as usize;
        Ok(std::io::Cursor::new(self.get_bytes(start, rest)?))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        if length >= WINDOW_BYTES / 2 {
            return Ok(self.pread(start, length)?);
        }
        let end = start + length as u64;
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        for (at, bytes) in windows.iter() {
            if *at <= start && end <= at + bytes.len() as u64 {
                let from = (start - at) as usize;
                return Ok(bytes.slice(from..from + length));
            }
        }
        let window = self.pread(
            start,
            WINDOW_BYTES
                .min(self.len.saturating_sub(start) as usize)
                .max(length),
        )?;
        let page = window.slice(..length);
        if windows.len() == WINDOWS {
            windows.remove(0);
        }
        windows.push((start, window));
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::block::{write_block, write_parquet, Encodings};
    use arrow_array::ArrayRef;
    use arrow_schema::{DataType, Field, Schema};
    use parquet::file::properties::WriterProperties;
    use std::sync::Arc;

    /// Rewrites a block's samples with small row groups and pages, so
    /// reads cross both.
    fn rewrite_small(dir: &Path, samples: &[(u64, i64, f64)]) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("series_id", DataType::UInt64, false),
            Field::new("timestamp", DataType::Int64, false),
            Field::new("value", DataType::Float64, false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from_iter_values(samples.iter().map(|s| s.0))),
            Arc::new(Int64Array::from_iter_values(samples.iter().map(|s| s.1))),
            Arc::new(Float64Array::from_iter_values(samples.iter().map(|s| s.2))),
        ];
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(7_001))
            .set_data_page_row_count_limit(500)
            .set_write_batch_size(100)
            .build();
        write_parquet(&dir.join("samples.parquet"), schema, columns, props).unwrap();
    }

    /// Selective reads agree with filtering every sample, for many series,
    /// windows, row-group and page layouts.
    #[test]
    fn selective_read_matches_full_read() {
        let dir = tempfile::tempdir().unwrap();
        // Series 41 has no samples; samples of id 45 have no series.
        let series: Vec<(u64, Labels)> = (1..=41)
            .map(|i| {
                let l: Labels = [
                    ("__name__".to_string(), format!("m{}", i % 3)),
                    ("i".to_string(), i.to_string()),
                ]
                .into_iter()
                .collect();
                (i, l)
            })
            .collect();
        let mut samples: Vec<(u64, i64, f64)> = Vec::new();
        for id in (1..=40u64).chain([45]) {
            // Series 7 has a gap; series 13 only late samples.
            for t in 0..3000i64 {
                if (id == 7 && (1000..2000).contains(&t)) || (id == 13 && t < 2500) {
                    continue;
                }
                samples.push((id, t * 1000, (id * 10_000) as f64 + t as f64));
            }
        }
        let all = samples.clone();
        write_block(dir.path(), &series, &mut samples, Encodings::default()).unwrap();
        for small in [false, true] {
            if small {
                rewrite_small(dir.path(), &all);
            }
            let index = BlockIndex::load(dir.path()).unwrap();
            let m1 = [Matcher::Equal("__name__".into(), "m1".into())];
            for (start, end) in [
                (0, i64::MAX),
                (500_000, 600_000),
                (1_200_000, 1_900_000),
                (2_999_000, 2_999_000),
                (-10, -1),
                (3_000_000, 4_000_000),
            ] {
                for wanted in [
                    index.matching(&m1),
                    index.matching(&[]),
                    vec![6, 12],
                    vec![39, 40],
                ] {
                    let got = index.read(dir.path(), &wanted, start, end).unwrap();
                    let mut expected: Vec<SeriesSamples> = Vec::new();
                    for &p in &wanted {
                        let id = index.series[p].0;
                        let pts: Vec<(i64, f64)> = all
                            .iter()
                            .filter(|s| s.0 == id && s.1 >= start && s.1 <= end)
                            .map(|s| (s.1, s.2))
                            .collect();
                        if !pts.is_empty() {
                            expected.push((p, pts));
                        }
                    }
                    assert_eq!(got, expected, "{small} {start}..{end} {wanted:?}");
                }
            }
        }
    }

    #[test]
    fn unsorted_samples_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let series: Vec<(u64, Labels)> = vec![(1, Labels::new()), (2, Labels::new())];
        write_block(
            dir.path(),
            &series,
            &mut [(1, 0, 0.0)],
            Encodings::default(),
        )
        .unwrap();
        rewrite_small(dir.path(), &[(2, 0, 0.0), (1, 0, 0.0)]);
        assert!(BlockIndex::load(dir.path()).is_err());
    }
}
