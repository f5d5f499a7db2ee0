//! One file being followed: reads what was appended since the last poll,
//! cuts it into lines and records, and says up to where the file is
//! consumed (the checkpoint). It notices a copytruncate rotation (the file
//! shrank, or its first line changed) and starts over from the top.

use super::multiline::{Grouper, Record};
use crate::logs::FileId;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The first line (up to this many bytes) identifies a file's content.
const FINGERPRINT_BYTES: usize = 256;
const READ_CHUNK: usize = 256 << 10;
/// Read at most this much per poll, so one busy file cannot starve the others.
const READ_BUDGET: usize = 8 << 20;

/// Checksum of the first line (or first 256 bytes); None while the file has
/// neither a complete first line nor 256 bytes.
pub fn fingerprint(file: &File) -> std::io::Result<Option<u32>> {
    let mut head = [0u8; FINGERPRINT_BYTES];
    let mut n = 0;
    while n < head.len() {
        match file.read_at(&mut head[n..], n as u64)? {
            0 => break,
            got => n += got,
        }
    }
    let head = &head[..n];
    Ok(match head.iter().position(|b| *b == b'\n') {
        Some(nl) => Some(crc32fast::hash(&head[..=nl])),
        None if n == FINGERPRINT_BYTES => Some(crc32fast::hash(head)),
        None => None,
    })
}

/// Device and inode of an open file or a path.
pub fn dev_ino(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

/// What a poll produced.
#[derive(Debug, Default)]
pub struct Progress {
    pub records: Vec<Record>,
    /// The offset every byte before which is in `records` or earlier ones.
    pub checkpoint: u64,
    pub bytes_read: u64,
    /// The file was truncated in place (copytruncate) and is read from the
    /// top: its identity before, and the offset up to which that content
    /// is stored (the rest, if copied, is read from the copy).
    pub truncated: Option<(FileId, u64)>,
    /// Lines longer than the limit, cut.
    pub long_lines: u64,
}

pub struct Follower {
    pub path: PathBuf,
    file: File,
    dev: u64,
    ino: u64,
    fingerprint: Option<u32>,
    /// Everything before this offset is stored.
    committed: u64,
    /// File offset of `buf[0]`; `buf` holds read bytes not yet in a line.
    buf_start: u64,
    buf: Vec<u8>,
    /// An over-long line: its first `max_line` bytes and where it began;
    /// the rest is skipped up to its newline.
    long: Option<(String, u64)>,
    max_line: usize,
    grouper: Grouper,
    new_grouper: Box<dyn Fn() -> Grouper + Send>,
    pub last_data: Instant,
    /// Set once the path no longer leads to this file (rotated or deleted).
    pub retired: Option<Instant>,
}

impl Follower {
    /// Follows the open `file` from `offset` (a checkpoint, 0, or its end).
    pub fn new(
        path: PathBuf,
        file: File,
        offset: u64,
        max_line: usize,
        new_grouper: Box<dyn Fn() -> Grouper + Send>,
    ) -> std::io::Result<Follower> {
        let (dev, ino) = dev_ino(&file.metadata()?);
        let fingerprint = fingerprint(&file)?;
        Ok(Follower {
            path,
            file,
            dev,
            ino,
            fingerprint,
            committed: offset,
            buf_start: offset,
            buf: Vec::new(),
            long: None,
            max_line: max_line.max(1),
            grouper: new_grouper(),
            new_grouper,
            last_data: Instant::now(),
            retired: None,
        })
    }

    pub fn dev_ino(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }

    /// The identity checkpoints are kept under; None until the file has a
    /// first line.
    pub fn id(&self) -> Option<FileId> {
        self.fingerprint.map(|fingerprint| FileId {
            dev: self.dev,
            ino: self.ino,
            fingerprint,
        })
    }

    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// The records up to `offset` are stored.
    pub fn commit(&mut self, offset: u64) {
        self.committed = offset;
    }

    /// Storing failed: forget what was read since the last commit, so the
    /// next poll reads it again.
    pub fn rewind(&mut self) {
        self.buf_start = self.committed;
        self.buf.clear();
        self.long = None;
        self.grouper = (self.new_grouper)();
    }

    /// Reads what was appended. `idle_flush` closes a multiline record that
    /// got no line for that long; `finish` (the file is rotated away and
    /// drained) also closes a last line that has no newline.
    pub fn poll(&mut self, idle_flush: Duration, finish: bool) -> std::io::Result<Progress> {
        let mut progress = Progress::default();
        let size = self.file.metadata()?.len();
        let read_pos = self.buf_start + self.buf.len() as u64;
        let rewritten = match (self.fingerprint, fingerprint(&self.file)?) {
            (Some(old), Some(now)) => old != now,
            (Some(_), None) => true,
            (None, now) => {
                self.fingerprint = now;
                false
            }
        };
        if size < read_pos || rewritten {
            // copytruncate: what we hold is incomplete (its end went to the
            // copy), so it is dropped and the copy read from the commit.
            progress.truncated = self.id().map(|id| (id, self.committed));
            self.committed = 0;
            self.rewind();
            self.fingerprint = fingerprint(&self.file)?;
        }
        while (progress.bytes_read as usize) < READ_BUDGET {
            // Read straight into the tail of `buf`: no buffer per poll, no copy.
            let held = self.buf.len();
            self.buf.resize(held + READ_CHUNK, 0);
            let read = self
                .file
                .read_at(&mut self.buf[held..], self.buf_start + held as u64);
            // Drop the unread zeros before anything else, error included.
            self.buf.truncate(held + *read.as_ref().unwrap_or(&0));
            let n = read?;
            if n == 0 {
                break;
            }
            progress.bytes_read += n as u64;
            self.split_lines(&mut progress);
        }
        if self.fingerprint.is_none() && progress.bytes_read > 0 {
            // The first line may have arrived between the check above and
            // the read: records need an identity to be checkpointed under.
            self.fingerprint = fingerprint(&self.file)?;
        }
        if progress.bytes_read > 0 {
            self.last_data = Instant::now();
        } else if finish {
            self.close_all(&mut progress);
        } else if self.last_data.elapsed() >= idle_flush {
            progress.records.extend(self.grouper.take_open());
        }
        progress.checkpoint = [
            Some(self.buf_start),
            self.long.as_ref().map(|(_, begin)| *begin),
            self.grouper.open_begin(),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(self.buf_start);
        Ok(progress)
    }

    /// Turns every complete line in `buf` into grouper input.
    fn split_lines(&mut self, progress: &mut Progress) {
        let mut from = 0;
        while let Some(nl) = self.buf[from..].iter().position(|b| *b == b'\n') {
            let line_end = from + nl;
            let begin = self.buf_start + from as u64;
            let end = self.buf_start + line_end as u64 + 1;
            let bytes = &self.buf[from..line_end];
            let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
            let (text, begin, truncated) = match self.long.take() {
                Some((kept, long_begin)) => (kept, long_begin, true),
                None if bytes.len() > self.max_line => {
                    progress.long_lines += 1;
                    (lossy_prefix(bytes, self.max_line), begin, true)
                }
                None => (String::from_utf8_lossy(bytes).into_owned(), begin, false),
            };
            progress
                .records
                .extend(self.grouper.push(&text, begin, end, truncated));
            from = line_end + 1;
        }
        self.buf.drain(..from);
        self.buf_start += from as u64;
        // A line longer than the limit: keep its head, skip the rest.
        if self.buf.len() > self.max_line {
            if self.long.is_none() {
                progress.long_lines += 1;
                self.long = Some((lossy_prefix(&self.buf, self.max_line), self.buf_start));
            }
            self.buf_start += self.buf.len() as u64;
            self.buf.clear();
        }
    }

    /// Closes everything held: the open record, an over-long line, and a
    /// last line without a newline.
    fn close_all(&mut self, progress: &mut Progress) {
        let end = self.buf_start + self.buf.len() as u64;
        if let Some((text, begin)) = self.long.take() {
            progress
                .records
                .extend(self.grouper.push(&text, begin, end, true));
        } else if !self.buf.is_empty() {
            let text = String::from_utf8_lossy(&self.buf).into_owned();
            progress
                .records
                .extend(self.grouper.push(&text, self.buf_start, end, false));
        }
        progress.records.extend(self.grouper.take_open());
        self.buf_start = end;
        self.buf.clear();
    }

    /// Whether `path` still leads to this file.
    pub fn path_is_current(&self) -> bool {
        std::fs::metadata(&self.path).is_ok_and(|m| dev_ino(&m) == (self.dev, self.ino))
    }
}

fn lossy_prefix(bytes: &[u8], max: usize) -> String {
    let mut s = String::from_utf8_lossy(&bytes[..max.min(bytes.len())]).into_owned();
    // A multi-byte character cut in half becomes U+FFFD; drop it.
    if s.ends_with('\u{FFFD}') && std::str::from_utf8(&bytes[..max.min(bytes.len())]).is_err() {
        s.pop();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn plain() -> Box<dyn Fn() -> Grouper + Send> {
        Box::new(|| Grouper::new(None, 1, 1 << 20))
    }

    fn texts(p: &Progress) -> Vec<&str> {
        p.records.iter().map(|r| r.text.as_str()).collect()
    }

    #[test]
    fn reads_lines_as_they_come_and_holds_a_partial_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let mut w = std::fs::File::create(&path).unwrap();
        w.write_all(b"one\ntwo\r\nthr").unwrap();
        let mut f =
            Follower::new(path.clone(), File::open(&path).unwrap(), 0, 100, plain()).unwrap();
        let p = f.poll(Duration::from_secs(1), false).unwrap();
        assert_eq!(texts(&p), ["one", "two"]);
        assert_eq!(p.checkpoint, 9);
        w.write_all(b"ee\n").unwrap();
        let p = f.poll(Duration::from_secs(1), false).unwrap();
        assert_eq!(texts(&p), ["three"]);
        assert_eq!(p.checkpoint, 15);
        // A last line without a newline is kept only when the file is finished.
        w.write_all(b"four").unwrap();
        assert!(f.poll(Duration::ZERO, false).unwrap().records.is_empty());
        let p = f.poll(Duration::ZERO, true).unwrap();
        assert_eq!(texts(&p), ["four"]);
        assert_eq!(p.checkpoint, 19);
    }

    #[test]
    fn copytruncate_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, "first line\nsecond\nthi").unwrap();
        let mut f =
            Follower::new(path.clone(), File::open(&path).unwrap(), 0, 100, plain()).unwrap();
        assert_eq!(f.poll(Duration::ZERO, false).unwrap().records.len(), 2);
        f.commit(18);
        let before = f.id().unwrap();
        // Truncated and rewritten beyond the old size before we looked again.
        let mut w = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        w.write_all(b"new content that is longer\nx\n").unwrap();
        let p = f.poll(Duration::ZERO, false).unwrap();
        // The held "thi" is not a line: its end is in the copy.
        assert_eq!(p.truncated, Some((before, 18)));
        assert_eq!(texts(&p), ["new content that is longer", "x"]);
        assert_ne!(f.id().unwrap(), before);
        assert_eq!(p.checkpoint, 29);
    }

    #[test]
    fn long_lines_are_cut_and_skipped_to_their_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let mut w = std::fs::File::create(&path).unwrap();
        let mut f = Follower::new(path.clone(), File::open(&path).unwrap(), 0, 8, plain()).unwrap();
        w.write_all(b"0123456789abc").unwrap();
        let p = f.poll(Duration::ZERO, false).unwrap();
        assert!(p.records.is_empty());
        assert_eq!(p.checkpoint, 0, "the long line is not stored yet");
        w.write_all(b"def\nok\n").unwrap();
        let p = f.poll(Duration::ZERO, false).unwrap();
        assert_eq!(texts(&p), ["01234567", "ok"]);
        assert!(p.records[0].truncated);
        assert_eq!(p.records[0].end, 17);
        assert_eq!(p.checkpoint, 20);
    }

    #[test]
    fn rewind_reads_again_from_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, "a\nb\n").unwrap();
        let mut f =
            Follower::new(path.clone(), File::open(&path).unwrap(), 2, 100, plain()).unwrap();
        let p = f.poll(Duration::ZERO, false).unwrap();
        assert_eq!(texts(&p), ["b"]);
        f.rewind();
        assert_eq!(texts(&f.poll(Duration::ZERO, false).unwrap()), ["b"]);
    }
}
