//! Write-ahead log: records appended to numbered segment files, each record
//! framed as `[len: u32 LE][crc32: u32 LE][payload]`. An append returns only
//! once its bytes are fsynced; concurrent appenders share fsyncs (group
//! commit). Replay reads every segment in order, stops a segment at the first
//! torn or corrupt record, reports it, and cuts a torn tail off the last
//! segment so new records follow valid ones.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

pub(crate) const HEADER: usize = 8;
/// Larger records are refused on append and treated as corruption on replay.
pub const MAX_RECORD: usize = 64 << 20;
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("WAL {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("WAL record of {0} bytes is larger than the {MAX_RECORD} byte limit")]
    TooLarge(usize),
}

/// What replay found; problems are reported, never fatal.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ReplayReport {
    pub segments: usize,
    /// The lowest segment read.
    pub first_segment: Option<u64>,
    pub records: usize,
    /// (segment, byte offset, what was wrong) for each segment cut short.
    pub damaged: Vec<(PathBuf, u64, String)>,
}

struct Writer {
    file: File,
    segment: u64,
    segment_len: u64,
    /// Bytes written to this WAL since open (across segments); what fsyncs cover.
    written: u64,
}

struct SyncState {
    synced: u64,
    syncing: bool,
}

/// Records framed for the WAL, encoded in place: a batch of lines costs
/// one buffer, not one per line.
#[derive(Debug, Default)]
pub struct RecordBuf(Vec<u8>);

impl RecordBuf {
    pub fn with_capacity(bytes: usize) -> RecordBuf {
        RecordBuf(Vec::with_capacity(bytes))
    }

    /// Adds one record, written by `encode`.
    pub fn push(&mut self, encode: impl FnOnce(&mut Vec<u8>)) -> Result<(), WalError> {
        let at = self.0.len();
        self.0.extend_from_slice(&[0; HEADER]);
        encode(&mut self.0);
        let len = self.0.len() - at - HEADER;
        if len > MAX_RECORD {
            self.0.truncate(at);
            return Err(WalError::TooLarge(len));
        }
        let crc = crc32fast::hash(&self.0[at + HEADER..]);
        self.0[at..at + 4].copy_from_slice(&(len as u32).to_le_bytes());
        self.0[at + 4..at + HEADER].copy_from_slice(&crc.to_le_bytes());
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

pub struct Wal {
    dir: PathBuf,
    segment_size: u64,
    /// Whether synced pages leave the page cache (`uncached`).
    uncached: bool,
    writer: Mutex<Writer>,
    sync: Mutex<SyncState>,
    synced_cv: Condvar,
}

pub(crate) fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:08}"))
}

pub(crate) fn io_err(path: &Path) -> impl Fn(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Segment numbers present in `dir`, ascending.
pub(crate) fn segments(dir: &Path) -> Result<Vec<u64>, WalError> {
    let mut out: Vec<u64> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// Deletes the segments numbered below `segment` in a WAL directory that is
/// not open (their records are known to be stored elsewhere).
pub fn drop_segments_before(dir: &Path, segment: u64) -> Result<usize, WalError> {
    if !dir.exists() {
        return Ok(0);
    }
    let mut n = 0;
    for s in segments(dir)?.into_iter().filter(|s| *s < segment) {
        let path = segment_path(dir, s);
        std::fs::remove_file(&path).map_err(io_err(&path))?;
        n += 1;
    }
    Ok(n)
}

impl Wal {
    /// Reads every valid record without changing anything on disk (for
    /// inspecting a WAL that another process may be writing).
    pub fn replay(dir: &Path, apply: impl FnMut(&[u8])) -> Result<ReplayReport, WalError> {
        Self::replay_from(dir, 0, apply)
    }

    /// `replay` of the segments numbered `first` and above.
    pub fn replay_from(
        dir: &Path,
        first: u64,
        mut apply: impl FnMut(&[u8]),
    ) -> Result<ReplayReport, WalError> {
        let mut report = ReplayReport::default();
        if !dir.exists() {
            return Ok(report);
        }
        for n in segments(dir)?.into_iter().filter(|n| *n >= first) {
            let path = segment_path(dir, n);
            let (valid_len, damage) = replay_segment(&path, &mut apply, &mut report.records)?;
            report.segments += 1;
            report.first_segment = report.first_segment.or(Some(n));
            if let Some(what) = damage {
                report.damaged.push((path, valid_len, what));
            }
        }
        Ok(report)
    }

    /// Opens (creating) the WAL in `dir`, calling `apply` for every valid
    /// record in order before returning, so the caller rebuilds its state.
    pub fn open(
        dir: &Path,
        segment_size: u64,
        mut apply: impl FnMut(&[u8]),
    ) -> Result<(Wal, ReplayReport), WalError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut report = ReplayReport::default();
        let segs = segments(dir)?;
        let mut last_valid_len = 0;
        for (i, &n) in segs.iter().enumerate() {
            let path = segment_path(dir, n);
            let (valid_len, damage) = replay_segment(&path, &mut apply, &mut report.records)?;
            report.segments += 1;
            report.first_segment = report.first_segment.or(Some(n));
            if let Some(what) = damage {
                tracing::warn!(segment = %path.display(), offset = valid_len, "WAL segment damaged: {what}; a copy is kept in quarantine/");
                quarantine(dir, &path)?;
                report.damaged.push((path.clone(), valid_len, what));
            }
            if i + 1 == segs.len() {
                last_valid_len = valid_len;
            }
        }
        let segment = segs.last().copied().unwrap_or(1);
        let path = segment_path(dir, segment);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        // New records go right after the last valid one; a torn tail is cut off.
        file.set_len(last_valid_len).map_err(io_err(&path))?;
        file.seek(SeekFrom::End(0)).map_err(io_err(&path))?;
        file.sync_all().map_err(io_err(&path))?;
        sync_dir(dir)?;
        let wal = Wal {
            dir: dir.to_path_buf(),
            segment_size,
            uncached: false,
            writer: Mutex::new(Writer {
                file,
                segment,
                segment_len: last_valid_len,
                written: 0,
            }),
            sync: Mutex::new(SyncState {
                synced: 0,
                syncing: false,
            }),
            synced_cv: Condvar::new(),
        };
        Ok((wal, report))
    }

    /// Drops each segment's pages from the page cache once synced, for a WAL
    /// read only after a crash (not one a follower tails): the pages freed
    /// are the ones the next writes get. Writing into fresh page-cache pages
    /// took a quarter of the log store's CPU in a profile of 10 M lines over
    /// TCP (on a VM, first touches of guest memory are slow); 7 % with this.
    pub fn uncached(mut self) -> Wal {
        self.uncached = true;
        self
    }

    /// Drops the cached pages of a segment's first `len` bytes (synced).
    /// A partial last page stays: the next append fills it in memory
    /// rather than reading it back from disk.
    fn drop_cached(&self, file: &File, len: u64) {
        if self.uncached && len > 0 {
            use std::os::fd::AsRawFd;
            let len = libc::off_t::try_from(len).unwrap_or(libc::off_t::MAX);
            // Advice only: if it fails, the pages just stay cached.
            // SAFETY: a plain call on a file descriptor this `File` owns.
            unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, len, libc::POSIX_FADV_DONTNEED) };
        }
    }

    /// Appends the records and returns once they are on disk.
    pub fn append(&self, records: &[&[u8]]) -> Result<(), WalError> {
        let mut buf = RecordBuf::with_capacity(records.iter().map(|r| r.len() + HEADER).sum());
        for r in records {
            buf.push(|out| out.extend_from_slice(r))?;
        }
        self.append_buf(&buf)
    }

    /// Appends the records framed in `buf` and returns once they are on disk.
    pub fn append_buf(&self, buf: &RecordBuf) -> Result<(), WalError> {
        let buf = &buf.0;
        let end = {
            let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            if w.segment_len > 0 && w.segment_len + buf.len() as u64 > self.segment_size {
                self.rotate(&mut w)?;
            }
            let path = segment_path(&self.dir, w.segment);
            w.file.write_all(buf).map_err(io_err(&path))?;
            w.segment_len += buf.len() as u64;
            w.written += buf.len() as u64;
            w.written
        };
        self.sync_to(end)
    }

    /// Group commit: one fsync covers every append written before it started.
    fn sync_to(&self, end: u64) -> Result<(), WalError> {
        let mut s = self.sync.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if s.synced >= end {
                return Ok(());
            }
            if !s.syncing {
                break;
            }
            s = self.synced_cv.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        s.syncing = true;
        drop(s);
        let (result, covered) = {
            let w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            let covered = w.written;
            let segment_len = w.segment_len;
            let file = w.file.try_clone();
            let path = segment_path(&self.dir, w.segment);
            drop(w);
            let synced = file.and_then(|f| {
                f.sync_data()?;
                self.drop_cached(&f, segment_len);
                Ok(())
            });
            (synced.map_err(io_err(&path)), covered)
        };
        let mut s = self.sync.lock().unwrap_or_else(|p| p.into_inner());
        s.syncing = false;
        if result.is_ok() {
            s.synced = s.synced.max(covered);
        }
        self.synced_cv.notify_all();
        result
    }

    fn rotate(&self, w: &mut Writer) -> Result<(), WalError> {
        let old = segment_path(&self.dir, w.segment);
        w.file.sync_data().map_err(io_err(&old))?;
        // The segment is complete: its last page goes as well.
        self.drop_cached(&w.file, u64::MAX);
        let next = w.segment + 1;
        let path = segment_path(&self.dir, next);
        w.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        w.segment = next;
        w.segment_len = 0;
        sync_dir(&self.dir)
    }

    /// Deletes segments numbered below `segment` (their data is in blocks now).
    pub fn remove_before(&self, segment: u64) -> Result<usize, WalError> {
        let current = self
            .writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .segment;
        let mut removed = 0;
        for n in segments(&self.dir)?
            .into_iter()
            .filter(|n| *n < segment.min(current))
        {
            let path = segment_path(&self.dir, n);
            std::fs::remove_file(&path).map_err(io_err(&path))?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Starts a new segment now and returns its number; everything appended
    /// before is in lower-numbered segments.
    pub fn cut_segment(&self) -> Result<u64, WalError> {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if w.segment_len > 0 {
            self.rotate(&mut w)?;
        }
        Ok(w.segment)
    }

    /// Where the next record will go: (segment, byte offset in it).
    pub fn end(&self) -> (u64, u64) {
        let w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        (w.segment, w.segment_len)
    }

    pub fn current_segment(&self) -> u64 {
        self.writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .segment
    }
}

/// Keeps a copy of a damaged segment before its bad tail is cut off.
fn quarantine(dir: &Path, segment: &Path) -> Result<(), WalError> {
    let q = dir.join("quarantine");
    std::fs::create_dir_all(&q).map_err(io_err(&q))?;
    let name = segment
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("segment");
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let target = q.join(format!("{name}.{stamp}"));
    std::fs::copy(segment, &target).map_err(io_err(&target))?;
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Replays one segment; returns the length of its valid prefix and what
/// stopped it early, if anything did.
fn replay_segment(
    path: &Path,
    apply: &mut impl FnMut(&[u8]),
    count: &mut usize,
) -> Result<(u64, Option<String>), WalError> {
    let file = File::open(path).map_err(io_err(path))?;
    let len = file.metadata().map_err(io_err(path))?.len();
    let mut r = BufReader::new(file);
    let mut offset = 0u64;
    let mut payload = Vec::new();
    while offset < len {
        let mut header = [0u8; HEADER];
        if len - offset < HEADER as u64 {
            return Ok((
                offset,
                Some(format!(
                    "torn record header ({} trailing bytes)",
                    len - offset
                )),
            ));
        }
        r.read_exact(&mut header).map_err(io_err(path))?;
        let size = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if size > MAX_RECORD {
            return Ok((
                offset,
                Some(format!(
                    "record length {size} is impossible (corrupt header)"
                )),
            ));
        }
        if len - offset - (HEADER as u64) < size as u64 {
            return Ok((
                offset,
                Some(format!(
                    "torn record: {size} bytes announced, {} present",
                    len - offset - HEADER as u64
                )),
            ));
        }
        payload.resize(size, 0);
        r.read_exact(&mut payload).map_err(io_err(path))?;
        if crc32fast::hash(&payload) != crc {
            return Ok((offset, Some("checksum mismatch (corrupt record)".into())));
        }
        apply(&payload);
        *count += 1;
        offset += (HEADER + size) as u64;
    }
    Ok((offset, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path, seg: u64) -> (Wal, Vec<Vec<u8>>, ReplayReport) {
        let mut got = Vec::new();
        let (wal, report) = Wal::open(dir, seg, |r| got.push(r.to_vec())).unwrap();
        (wal, got, report)
    }

    #[test]
    fn records_survive_reopen_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, got, _) = open(dir.path(), 100);
        assert!(got.is_empty());
        for i in 0..50u32 {
            wal.append(&[format!("record {i}").as_bytes(), b"second"])
                .unwrap();
        }
        assert!(wal.current_segment() > 1, "rotated");
        drop(wal);
        let (_, got, report) = open(dir.path(), 100);
        assert_eq!(got.len(), 100);
        assert_eq!(got[98], b"record 49");
        assert!(report.damaged.is_empty());
    }

    #[test]
    fn torn_tail_is_cut_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _, _) = open(dir.path(), DEFAULT_SEGMENT_SIZE);
        wal.append(&[b"one", b"two"]).unwrap();
        drop(wal);
        let seg = segment_path(dir.path(), 1);
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[9, 0, 0, 0, 1, 2]).unwrap(); // half a header
        drop(f);
        let (wal, got, report) = open(dir.path(), DEFAULT_SEGMENT_SIZE);
        assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(report.damaged.len(), 1);
        wal.append(&[b"three"]).unwrap();
        drop(wal);
        let (_, got, report) = open(dir.path(), DEFAULT_SEGMENT_SIZE);
        assert_eq!(got.len(), 3);
        assert!(report.damaged.is_empty(), "{report:?}");
    }

    #[test]
    fn bit_flip_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _, _) = open(dir.path(), DEFAULT_SEGMENT_SIZE);
        wal.append(&[b"alpha", b"bravo", b"charlie"]).unwrap();
        drop(wal);
        let seg = segment_path(dir.path(), 1);
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes[HEADER + 5 + HEADER + 2] ^= 0x10; // inside "bravo"
        std::fs::write(&seg, bytes).unwrap();
        let (_, got, report) = open(dir.path(), DEFAULT_SEGMENT_SIZE);
        assert_eq!(got, vec![b"alpha".to_vec()]);
        assert!(report.damaged[0].2.contains("checksum"));
        assert_eq!(
            std::fs::read_dir(dir.path().join("quarantine"))
                .unwrap()
                .count(),
            1
        );
    }

    #[test]
    fn concurrent_appenders_share_fsyncs() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _, _) = open(dir.path(), DEFAULT_SEGMENT_SIZE);
        std::thread::scope(|s| {
            for t in 0..4 {
                let wal = &wal;
                s.spawn(move || {
                    for i in 0..100 {
                        wal.append(&[format!("{t}-{i}").as_bytes()]).unwrap();
                    }
                });
            }
        });
        drop(wal);
        let (_, got, _) = open(dir.path(), DEFAULT_SEGMENT_SIZE);
        assert_eq!(got.len(), 400);
    }

    #[test]
    fn old_segments_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _, _) = open(dir.path(), 64);
        for _ in 0..20 {
            wal.append(&[&[7u8; 40]]).unwrap();
        }
        let cur = wal.current_segment();
        assert!(wal.remove_before(cur).unwrap() > 0);
        assert_eq!(segments(dir.path()).unwrap(), vec![cur]);
    }
}
