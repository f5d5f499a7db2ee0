//! The query role's view of a data directory another process writes: a
//! read-only snapshot (blocks plus the replayed WAL), reopened periodically
//! so new blocks and samples appear.

use carbonio_collector::relabel::Labels;
use carbonio_collector::store::head::{Matcher, Selected};
use carbonio_collector::store::record::MetricMeta;
use carbonio_collector::store::{MetricRead, Snapshot, StoreError};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub struct RefreshingSnapshot {
    current: RwLock<Arc<Snapshot>>,
}

impl RefreshingSnapshot {
    /// Opens `dir` now and reopens it every `every` on a background thread.
    pub fn open(dir: PathBuf, every: Duration) -> Result<Arc<Self>, StoreError> {
        let this = Arc::new(RefreshingSnapshot {
            current: RwLock::new(Arc::new(Snapshot::open(&dir)?)),
        });
        let weak = Arc::downgrade(&this);
        std::thread::Builder::new()
            .name("snapshot-refresh".into())
            .spawn(move || loop {
                std::thread::sleep(every);
                let Some(me) = weak.upgrade() else { return };
                match Snapshot::open(&dir) {
                    Ok(s) => {
                        if let Ok(mut cur) = me.current.write() {
                            *cur = Arc::new(s);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "reopening the data directory failed"),
                }
            })
            .map_err(|e| StoreError::Lock {
                path: PathBuf::new(),
                msg: e.to_string(),
            })?;
        Ok(this)
    }

    fn get(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl MetricRead for RefreshingSnapshot {
    fn select(&self, m: &[Matcher], start: i64, end: i64) -> Result<Vec<Selected>, StoreError> {
        self.get().select(m, start, end)
    }

    fn series(&self, m: &[Matcher], start: i64, end: i64) -> Result<Vec<Labels>, StoreError> {
        self.get().series(m, start, end)
    }

    fn metadata(&self) -> BTreeMap<String, BTreeSet<MetricMeta>> {
        self.get().metadata()
    }
}
