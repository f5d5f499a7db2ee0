//! The query role's view of a data directory another process writes:
//! read-only snapshots (metrics: blocks plus the replayed WAL; logs: parts
//! plus their WAL), reopened periodically so new data appears.

use carbonio_collector::relabel::Labels;
use carbonio_collector::store::head::{Matcher, Selected};
use carbonio_collector::store::logs::LogSnapshot;
use carbonio_collector::store::record::MetricMeta;
use carbonio_collector::store::{MetricRead, Snapshot, StoreError};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// A snapshot of type `T`, replaced by a fresh one every interval.
pub struct Refreshing<T> {
    current: RwLock<Arc<T>>,
}

pub type RefreshingSnapshot = Refreshing<Snapshot>;
pub type RefreshingLogs = Refreshing<LogSnapshot>;

impl<T: Send + Sync + 'static> Refreshing<T> {
    fn start<E: std::fmt::Display + 'static>(
        dir: PathBuf,
        every: Duration,
        open: fn(&Path) -> Result<T, E>,
    ) -> Result<Arc<Self>, E> {
        let this = Arc::new(Refreshing {
            current: RwLock::new(Arc::new(open(&dir)?)),
        });
        let weak = Arc::downgrade(&this);
        let spawned = std::thread::Builder::new()
            .name("snapshot-refresh".into())
            .spawn(move || loop {
                std::thread::sleep(every);
                let Some(me) = weak.upgrade() else { return };
                match open(&dir) {
                    Ok(s) => {
                        if let Ok(mut cur) = me.current.write() {
                            *cur = Arc::new(s);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, dir = %dir.display(), "reopening failed"),
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "no refresh thread: the view stays as opened");
        }
        Ok(this)
    }

    fn get(&self) -> Arc<T> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Refreshing<Snapshot> {
    /// Opens the metrics of data directory `dir` now and every `every`.
    pub fn open(dir: PathBuf, every: Duration) -> Result<Arc<Self>, StoreError> {
        Self::start(dir, every, Snapshot::open)
    }
}

impl Refreshing<LogSnapshot> {
    /// Opens the log store `dir` (DATA/logs) now and every `every`.
    pub fn open(
        dir: PathBuf,
        every: Duration,
    ) -> Result<Arc<Self>, carbonio_collector::store::logs::LogStoreError> {
        Self::start(dir, every, LogSnapshot::open)
    }
}

impl MetricRead for Refreshing<Snapshot> {
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

#[cfg(feature = "sql")]
impl crate::logs_table::LogSource for Refreshing<LogSnapshot> {
    fn view(
        &self,
        start_ns: i64,
        end_ns: i64,
    ) -> Result<
        carbonio_collector::store::logs::LogView,
        carbonio_collector::store::logs::LogStoreError,
    > {
        self.get().view(start_ns, end_ns)
    }
}
