//! Reads a WAL while it is being written, record by record, from a position
//! (segment, byte offset) kept by the reader (the remote-write sender).
//! A record not yet complete at the end of the newest segment is "pending",
//! not damage: the writer may be in the middle of it.

use super::wal::{io_err, segment_path, segments, WalError, HEADER, MAX_RECORD};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

#[derive(Debug, PartialEq)]
pub enum Next {
    /// A record and the position just after it.
    Record(Vec<u8>, Position),
    /// Nothing more has been written yet.
    Pending,
    /// The reader jumped to `to`: the segments before it were removed, or
    /// the rest of `from`'s segment was damaged.
    Skipped {
        from: Position,
        to: Position,
        why: String,
    },
}

pub struct Follower {
    dir: PathBuf,
    at: Position,
    open: Option<(u64, File)>,
}

impl Follower {
    pub fn new(dir: &Path, at: Position) -> Self {
        Follower {
            dir: dir.to_path_buf(),
            at,
            open: None,
        }
    }

    pub fn position(&self) -> Position {
        self.at
    }

    fn later_segment(&self) -> Result<Option<u64>, WalError> {
        Ok(segments(&self.dir)?
            .into_iter()
            .find(|s| *s > self.at.segment))
    }

    fn skip_to(&mut self, segment: u64, why: String) -> Next {
        let from = self.at;
        self.at = Position { segment, offset: 0 };
        self.open = None;
        Next::Skipped {
            from,
            to: self.at,
            why,
        }
    }

    pub fn read_next(&mut self) -> Result<Next, WalError> {
        if self
            .open
            .as_ref()
            .is_none_or(|(s, _)| *s != self.at.segment)
        {
            let path = segment_path(&self.dir, self.at.segment);
            match File::open(&path) {
                Ok(f) => self.open = Some((self.at.segment, f)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Ok(match self.later_segment()? {
                        Some(s) => self.skip_to(s, "segment removed before it was read".into()),
                        None => Next::Pending,
                    });
                }
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
        let path = segment_path(&self.dir, self.at.segment);
        let Some((_, file)) = self.open.as_ref() else {
            return Ok(Next::Pending);
        };
        // Whether a later segment exists is known before the length is
        // read: a record still being written is then never taken for damage.
        let later = self.later_segment()?;
        let len = file.metadata().map_err(io_err(&path))?.len();
        let offset = self.at.offset;
        let problem = if len < offset + HEADER as u64 {
            if len == offset {
                None
            } else {
                Some("torn record header".to_string())
            }
        } else {
            let mut header = [0u8; HEADER];
            file.read_exact_at(&mut header, offset)
                .map_err(io_err(&path))?;
            let size = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
            let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
            let end = offset + (HEADER + size) as u64;
            if size > MAX_RECORD {
                Some(format!("record length {size} is impossible"))
            } else if len < end {
                Some("torn record".to_string())
            } else {
                let mut payload = vec![0u8; size];
                file.read_exact_at(&mut payload, offset + HEADER as u64)
                    .map_err(io_err(&path))?;
                if crc32fast::hash(&payload) == crc {
                    self.at.offset = end;
                    return Ok(Next::Record(payload, self.at));
                }
                Some("checksum mismatch".to_string())
            }
        };
        // The segment ends here. Once a later one exists this one is final,
        // so an incomplete record is damage; before, it may be mid-write.
        Ok(match (later, problem) {
            (Some(s), None) => {
                self.at = Position {
                    segment: s,
                    offset: 0,
                };
                self.open = None;
                self.read_next()?
            }
            (Some(s), Some(why)) => self.skip_to(s, format!("{}: {why}", path.display())),
            (None, _) => Next::Pending,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::wal::Wal;

    fn drain(f: &mut Follower) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            match f.read_next().unwrap() {
                Next::Record(r, _) => out.push(r),
                Next::Pending => return out,
                Next::Skipped { .. } => {}
            }
        }
    }

    #[test]
    fn follows_appends_across_segments_and_resumes_from_a_position() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), 100, |_| {}).unwrap();
        let mut f = Follower::new(
            dir.path(),
            Position {
                segment: 1,
                offset: 0,
            },
        );
        assert!(drain(&mut f).is_empty());
        for i in 0..30u32 {
            wal.append(&[format!("record {i}").as_bytes()]).unwrap();
        }
        let first = drain(&mut f);
        assert_eq!(first.len(), 30);
        assert_eq!(first[29], b"record 29");
        assert!(f.position().segment > 1, "rotated segments are followed");
        let resume = f.position();
        wal.append(&[b"later"]).unwrap();
        let mut again = Follower::new(dir.path(), resume);
        assert_eq!(drain(&mut again), vec![b"later".to_vec()]);
    }

    #[test]
    fn a_partial_record_waits_and_removed_segments_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), 1 << 20, |_| {}).unwrap();
        wal.append(&[b"one"]).unwrap();
        let (segment, offset) = wal.end();
        // Half a record, as a reader may see a write in progress.
        let path = segment_path(dir.path(), segment);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&5u32.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let mut f = Follower::new(dir.path(), Position { segment, offset: 0 });
        assert!(matches!(f.read_next().unwrap(), Next::Record(r, _) if r == b"one"));
        assert_eq!(f.read_next().unwrap(), Next::Pending);
        assert_eq!(f.position(), Position { segment, offset });
        // A later segment makes the torn record damage, skipped.
        std::fs::write(segment_path(dir.path(), segment + 1), b"").unwrap();
        assert!(
            matches!(f.read_next().unwrap(), Next::Skipped { to, .. } if to.segment == segment + 1)
        );
        // A position in a segment that no longer exists moves on.
        let mut gone = Follower::new(
            dir.path(),
            Position {
                segment: 0,
                offset: 9,
            },
        );
        assert!(
            matches!(gone.read_next().unwrap(), Next::Skipped { to, .. } if to.segment == segment)
        );
    }
}
