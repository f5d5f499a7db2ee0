//! Backfill: an OpenMetrics text file with timestamps (what `promtool tsdb
//! create-blocks-from openmetrics` takes) loaded into blocks, two hours per
//! block as Prometheus cuts them. Nothing is written unless the whole file parses.

use crate::relabel::Labels;
use crate::scrape::parse::{Event, Format, Parser};
use crate::store::block::BlockMeta;
use crate::store::{Store, StoreError};
use std::collections::HashMap;

pub const BLOCK_WINDOW_MS: i64 = 2 * 3600 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    Parse(#[from] crate::scrape::parse::ParseError),
    #[error("line {line}: sample {name} has no timestamp; backfill needs one on every sample")]
    MissingTimestamp { line: usize, name: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct ImportReport {
    pub series: usize,
    pub samples: usize,
    pub blocks: Vec<BlockMeta>,
}

/// Parses `text` completely, then writes its blocks. `progress` gets the
/// number of bytes parsed so far.
pub fn import_openmetrics(
    store: &Store,
    text: &str,
    mut progress: impl FnMut(usize),
) -> Result<ImportReport, ImportError> {
    let mut ids: HashMap<Labels, u64> = HashMap::new();
    let mut series: Vec<(u64, Labels)> = Vec::new();
    let mut samples: Vec<(u64, i64, f64)> = Vec::new();
    let mut consumed = 0usize;
    let mut line = 0usize;
    let mut lines = text.split_inclusive('\n');
    for event in Parser::new(text, Format::OpenMetrics) {
        let event = event?;
        // Events come one per non-empty line: advance the progress to match.
        for l in lines.by_ref() {
            consumed += l.len();
            line += 1;
            if yields_event(l) {
                break;
            }
        }
        if line % 4096 == 0 {
            progress(consumed);
        }
        let Event::Sample(s) = event else { continue };
        let ts = s
            .timestamp_ms
            .ok_or_else(|| ImportError::MissingTimestamp {
                line,
                name: s.name.to_string(),
            })?;
        let value = s.value;
        let labels = s.into_labels();
        let next = ids.len() as u64 + 1;
        let id = *ids.entry(labels.clone()).or_insert_with(|| {
            series.push((next, labels));
            next
        });
        samples.push((id, ts, value));
    }
    progress(text.len());
    let count = samples.len();
    let blocks = store.write_blocks(&series, samples, BLOCK_WINDOW_MS)?;
    Ok(ImportReport {
        series: series.len(),
        samples: count,
        blocks,
    })
}

/// Whether the parser emits an event for this line (plain comments and
/// blank lines yield none).
fn yields_event(line: &str) -> bool {
    let line = line.trim();
    if line.is_empty() {
        return false;
    }
    !line.starts_with('#')
        || ["# HELP", "# TYPE", "# UNIT", "# EOF"]
            .iter()
            .any(|p| line.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::head::Matcher;
    use crate::store::MetricRead;

    #[test]
    fn backfill_into_two_hour_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        let mut text = String::from("# TYPE mta_queue gauge\n");
        for i in 0..600 {
            // 600 samples, 30 s apart: 5 hours, so three 2 h windows.
            text.push_str(&format!(
                "mta_queue{{queue=\"deferred\"}} {i} {}\n",
                1_700_000_000 + i * 30
            ));
        }
        text.push_str("# EOF\n");
        let mut last = 0;
        let report = import_openmetrics(&store, &text, |n| last = n).unwrap();
        assert_eq!(last, text.len());
        assert_eq!(
            (report.series, report.samples, report.blocks.len()),
            (1, 600, 3)
        );
        let all = [Matcher::Equal("__name__".into(), "mta_queue".into())];
        let got = store.select(&all, 0, i64::MAX).unwrap();
        assert_eq!(got[0].1.len(), 600);
        assert_eq!(got[0].1[0], (1_700_000_000_000, 0.0));
    }

    #[test]
    fn missing_timestamp_or_bad_line_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        let err = import_openmetrics(&store, "a 1 1700000000\nb 2\n# EOF\n", |_| {}).unwrap_err();
        assert!(
            matches!(err, ImportError::MissingTimestamp { line: 2, .. }),
            "{err}"
        );
        let err =
            import_openmetrics(&store, "a 1 1700000000\nb{ 2 1\n# EOF\n", |_| {}).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(!dir.path().join("blocks").exists());
    }
}
