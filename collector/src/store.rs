//! The store: a write-ahead log in front of the in-memory head. Samples are
//! acknowledged once their WAL record is on disk; a restart replays the WAL.

pub mod block;
pub mod head;
pub mod record;
pub mod wal;

use crate::relabel::Labels;
use head::Head;
use record::Record;
use std::path::Path;
use std::sync::RwLock;
use wal::{ReplayReport, Wal, WalError};

pub struct Store {
    wal: Wal,
    head: RwLock<Head>,
    /// Serialises series-id allocation with the WAL order of series records.
    append_lock: std::sync::Mutex<()>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct OpenReport {
    pub wal: ReplayReport,
    pub undecodable_records: usize,
    pub orphan_samples: usize,
}

impl Store {
    pub fn open(dir: &Path) -> Result<(Store, OpenReport), WalError> {
        let mut head = Head::default();
        let mut report = OpenReport::default();
        let (wal, wal_report) =
            Wal::open(
                &dir.join("wal"),
                wal::DEFAULT_SEGMENT_SIZE,
                |bytes| match Record::decode(bytes) {
                    Ok(Record::Series { id, labels }) => head.add_series(id, labels),
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
                },
            )?;
        report.wal = wal_report;
        Ok((
            Store {
                wal,
                head: RwLock::new(head),
                append_lock: std::sync::Mutex::new(()),
            },
            report,
        ))
    }

    /// Appends one batch (e.g. one scrape): new series records and the samples
    /// go to the WAL in one fsynced write, then into the head.
    pub fn append(&self, batch: &[(Labels, i64, f64)]) -> Result<(), WalError> {
        let _order = self.append_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut new_series = Vec::new();
        let mut samples = Vec::with_capacity(batch.len());
        {
            let mut head = self.head.write().unwrap_or_else(|p| p.into_inner());
            for (labels, ts, v) in batch {
                let id = match head.id_of(labels).or_else(|| {
                    new_series
                        .iter()
                        .find(|(_, l)| l == labels)
                        .map(|(id, _)| *id)
                }) {
                    Some(id) => id,
                    None => {
                        let id = head.allocate();
                        new_series.push((id, labels.clone()));
                        id
                    }
                };
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

    pub fn with_head<T>(&self, f: impl FnOnce(&Head) -> T) -> T {
        f(&self.head.read().unwrap_or_else(|p| p.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let up: Labels = [("__name__", "up"), ("job", "node")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
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
}
