//! Local copies of the parts of remote files that reads asked for, in
//! aligned chunks, at most `max_bytes` in all (least recently used chunks
//! go first). Remote files are immutable (a block's name never gets other
//! contents), so a chunk never goes stale.

use bytes::Bytes;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Bytes fetched per request and kept per file: one range request serves
/// the many small page reads of a query.
pub const CHUNK: u64 = 1 << 20;

pub struct RangeCache {
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Chunk file name → (bytes, last use).
    chunks: HashMap<String, (u64, u64)>,
    total: u64,
    clock: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct CacheStats {
    pub bytes: u64,
    pub chunks: usize,
}

fn chunk_name(key: &str, n: u64) -> String {
    // Two hashes keep names short and collisions out of reach.
    let h = crc32fast::hash(key.as_bytes());
    let mut rev = key.as_bytes().to_vec();
    rev.reverse();
    format!("{h:08x}{:08x}-{n}", crc32fast::hash(&rev))
}

impl RangeCache {
    /// Opens `dir`, counting what earlier runs left there (oldest first).
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<RangeCache> {
        std::fs::create_dir_all(dir)?;
        let mut found: Vec<(std::time::SystemTime, String, u64)> = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with('.') {
                let _ = std::fs::remove_file(e.path());
                continue;
            }
            let meta = e.metadata()?;
            found.push((meta.modified()?, name, meta.len()));
        }
        found.sort();
        let mut state = State::default();
        for (_, name, len) in found {
            state.clock += 1;
            state.total += len;
            state.chunks.insert(name, (len, state.clock));
        }
        let cache = RangeCache {
            dir: dir.to_path_buf(),
            max_bytes,
            state: Mutex::new(state),
        };
        cache.evict();
        Ok(cache)
    }

    pub fn stats(&self) -> CacheStats {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        CacheStats {
            bytes: s.total,
            chunks: s.chunks.len(),
        }
    }

    /// Bytes [start, start + len) of the file `key` of `size` bytes; chunks
    /// not held are fetched with `fetch(range)`.
    pub fn read(
        &self,
        key: &str,
        size: u64,
        start: u64,
        len: usize,
        fetch: &dyn Fn(std::ops::Range<u64>) -> io::Result<Bytes>,
    ) -> io::Result<Bytes> {
        let end = start + len as u64;
        if end > size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{key}: bytes {start}..{end} of a {size} byte file"),
            ));
        }
        if len == 0 {
            return Ok(Bytes::new());
        }
        let first = start / CHUNK;
        let last = (end - 1) / CHUNK;
        let mut parts: Vec<Bytes> = Vec::new();
        for n in first..=last {
            let chunk_len = ((n + 1) * CHUNK).min(size) - n * CHUNK;
            let from = if n == first { start - n * CHUNK } else { 0 };
            let to = if n == last {
                end - n * CHUNK
            } else {
                chunk_len
            };
            parts.push(self.chunk(key, size, n, from..to, fetch)?);
        }
        if parts.len() == 1 {
            return Ok(parts.remove(0));
        }
        Ok(Bytes::from(parts.concat()))
    }

    /// Bytes `part` (offsets within the chunk) of chunk `n`; a held chunk
    /// is read in place, a missing one fetched whole and kept.
    fn chunk(
        &self,
        key: &str,
        size: u64,
        n: u64,
        part: std::ops::Range<u64>,
        fetch: &dyn Fn(std::ops::Range<u64>) -> io::Result<Bytes>,
    ) -> io::Result<Bytes> {
        let name = chunk_name(key, n);
        let path = self.dir.join(&name);
        let held = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.clock += 1;
            let now = s.clock;
            match s.chunks.get_mut(&name) {
                Some(e) => {
                    e.1 = now;
                    true
                }
                None => false,
            }
        };
        if held {
            use std::os::unix::fs::FileExt;
            match std::fs::File::open(&path) {
                Ok(f) => {
                    let mut buf = vec![0u8; (part.end - part.start) as usize];
                    match f.read_exact_at(&mut buf, part.start) {
                        Ok(()) => return Ok(Bytes::from(buf)),
                        // Cut short (a crash while it was written): fetch again.
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => self.forget(&name),
                        Err(e) => return Err(e),
                    }
                }
                // Evicted meanwhile: fetch it again.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let range = n * CHUNK..((n + 1) * CHUNK).min(size);
        let bytes = fetch(range.clone())?;
        if bytes.len() as u64 != range.end - range.start {
            return Err(io::Error::other(format!(
                "{key}: asked for {} bytes, got {}",
                range.end - range.start,
                bytes.len()
            )));
        }
        // A failed write only costs a later fetch.
        let tmp = self
            .dir
            .join(format!(".{name}.{:?}", std::thread::current().id()));
        if std::fs::write(&tmp, &bytes).is_ok() && std::fs::rename(&tmp, &path).is_ok() {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.clock += 1;
            let now = s.clock;
            let len = bytes.len() as u64;
            if let Some(old) = s.chunks.insert(name, (len, now)) {
                s.total -= old.0;
            }
            s.total += len;
            drop(s);
            self.evict();
        }
        Ok(bytes.slice(part.start as usize..part.end as usize))
    }

    fn forget(&self, name: &str) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((len, _)) = s.chunks.remove(name) {
            s.total -= len;
        }
    }

    fn evict(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while s.total > self.max_bytes && !s.chunks.is_empty() {
            let Some(oldest) = s
                .chunks
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(n, _)| n.clone())
            else {
                break;
            };
            if let Some((len, _)) = s.chunks.remove(&oldest) {
                s.total -= len;
                let _ = std::fs::remove_file(self.dir.join(&oldest));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn reads_across_chunks_fetch_once_and_stay_within_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let file: Vec<u8> = (0..(3 * CHUNK + 100)).map(|i| (i % 251) as u8).collect();
        let size = file.len() as u64;
        let fetches = AtomicUsize::new(0);
        let fetch = |r: std::ops::Range<u64>| -> io::Result<Bytes> {
            fetches.fetch_add(1, Ordering::Relaxed);
            Ok(Bytes::copy_from_slice(
                &file[r.start as usize..r.end as usize],
            ))
        };
        let cache = RangeCache::open(dir.path(), 2 * CHUNK).unwrap();
        let start = CHUNK - 10;
        let got = cache.read("k", size, start, 20, &fetch).unwrap();
        assert_eq!(&got[..], &file[start as usize..start as usize + 20]);
        assert_eq!(fetches.load(Ordering::Relaxed), 2);
        cache.read("k", size, CHUNK + 5, 7, &fetch).unwrap();
        assert_eq!(fetches.load(Ordering::Relaxed), 2, "served from the cache");
        let tail = cache.read("k", size, size - 50, 50, &fetch).unwrap();
        assert_eq!(&tail[..], &file[file.len() - 50..]);
        assert!(cache.stats().bytes <= 2 * CHUNK, "{:?}", cache.stats());
        assert!(cache.read("k", size, size - 1, 2, &fetch).is_err());
        // A reopened cache knows what is on disk.
        let again = RangeCache::open(dir.path(), 2 * CHUNK).unwrap();
        assert_eq!(again.stats(), cache.stats());
    }
}
