//! Process-wide cache of block indexes. Blocks are immutable, so an index
//! stays valid while its samples file is the same one (checked by identity
//! on every lookup); blocks gone after compaction or retention are dropped
//! when their directory is listed without them. Process-wide because the
//! query role reopens its snapshot every few seconds.

use super::block::BlockError;
use super::blockindex::{BlockIndex, SamplesFile};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};

/// Budget for cached indexes (mostly series labels); least recently used
/// ones go first when it is exceeded.
const MAX_BYTES: usize = 256 << 20;

struct Entry {
    index: Arc<BlockIndex>,
    bytes: usize,
    last_used: u64,
}

#[derive(Default)]
struct Cache {
    entries: HashMap<PathBuf, Entry>,
    bytes: usize,
    clock: u64,
}

static CACHE: LazyLock<Mutex<Cache>> = LazyLock::new(Mutex::default);

fn lock() -> std::sync::MutexGuard<'static, Cache> {
    CACHE.lock().unwrap_or_else(|p| p.into_inner())
}

/// The index of the block in `dir`, loaded unless a current one is cached.
pub fn get(dir: &Path) -> Result<Arc<BlockIndex>, BlockError> {
    let identity = SamplesFile::identity(dir)?;
    {
        let mut cache = lock();
        cache.clock += 1;
        let now = cache.clock;
        if let Some(e) = cache.entries.get_mut(dir) {
            if e.index.identity == identity {
                e.last_used = now;
                return Ok(e.index.clone());
            }
        }
    }
    // Loaded outside the lock: other blocks stay readable meanwhile.
    let index = Arc::new(BlockIndex::load(dir)?);
    let bytes = index.approx_bytes();
    let mut cache = lock();
    cache.clock += 1;
    let entry = Entry {
        index: index.clone(),
        bytes,
        last_used: cache.clock,
    };
    if let Some(old) = cache.entries.insert(dir.to_path_buf(), entry) {
        cache.bytes -= old.bytes;
    }
    cache.bytes += bytes;
    while cache.bytes > MAX_BYTES && cache.entries.len() > 1 {
        let Some(oldest) = cache
            .entries
            .iter()
            .filter(|(p, _)| p.as_path() != dir)
            .min_by_key(|(_, e)| e.last_used)
            .map(|(p, _)| p.clone())
        else {
            break;
        };
        if let Some(e) = cache.entries.remove(&oldest) {
            cache.bytes -= e.bytes;
        }
    }
    Ok(index)
}

/// Drops the entries of blocks under `blocks_dir` not in `present` (a
/// fresh listing of it).
pub fn retain_listed(blocks_dir: &Path, present: &[PathBuf]) {
    let mut cache = lock();
    let gone: Vec<PathBuf> = cache
        .entries
        .keys()
        .filter(|p| p.parent() == Some(blocks_dir) && !present.contains(p))
        .cloned()
        .collect();
    for p in gone {
        if let Some(e) = cache.entries.remove(&p) {
            cache.bytes -= e.bytes;
        }
    }
}

/// Forgets one block (its file changed under a cached index).
pub fn forget(dir: &Path) {
    let mut cache = lock();
    if let Some(e) = cache.entries.remove(dir) {
        cache.bytes -= e.bytes;
    }
}
