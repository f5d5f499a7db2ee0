//! The deprecated Logger's data: zmstat CSV rows (files under
//! `/opt/zextras/zmstat`, or the same rows sent over syslog `local1` by
//! `zimbramon`) turned into metrics named `zmstat_<file>_<column>`.
//!
//! A header line decides how every later row of its writer is read
//! (`layout`); `import` walks a zmstat directory, `stream` reassembles the
//! syslog form.

pub mod import;
pub mod layout;
pub mod stream;

use crate::relabel::Labels;
use chrono::TimeZone;
use layout::{Column, Header};

/// Why a row gave no samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Skip {
    /// No header line came before it.
    NoHeader,
    /// Its cell count matches no header of the file.
    CellCount,
    /// The first cell is not `MM/DD/YYYY HH:MM:SS`.
    BadTimestamp,
    /// A local time skipped by a daylight-saving change.
    NonexistentLocalTime,
    /// Imported by an earlier run.
    AlreadyImported,
}

impl Skip {
    pub fn reason(self) -> &'static str {
        match self {
            Skip::NoHeader => "no header line before the row",
            Skip::CellCount => "cell count matches no header",
            Skip::BadTimestamp => "timestamp not MM/DD/YYYY HH:MM:SS",
            Skip::NonexistentLocalTime => "local time skipped by a DST change",
            Skip::AlreadyImported => "already imported",
        }
    }
}

/// One data row read with its header.
#[derive(Debug, Clone, PartialEq)]
pub struct Row<'a> {
    /// The row's entity (label name and value, such as a df path or a SOAP
    /// command): rows with the same timestamp differ by it.
    pub entity: Vec<(&'a str, &'a str)>,
    /// Values by column position in the header.
    pub values: Vec<(usize, f64)>,
    /// Cells left empty (legal: first deltas, null realtime stats).
    pub empty_cells: usize,
    /// Cells that were not numbers where a number belongs.
    pub bad_cells: usize,
}

impl Row<'_> {
    /// The entity as one string (its label values joined).
    pub fn entity_key(&self) -> String {
        self.entity
            .iter()
            .map(|(_, v)| *v)
            .collect::<Vec<_>>()
            .join("\u{1f}")
    }
}

/// Splits a CSV line written by zmstat: `", "` (Perl) or `","` (Java),
/// cells unquoted (`""` and `''` are empty).
pub fn split_cells(line: &str) -> Vec<&str> {
    line.trim_end_matches(['\r', '\n'])
        .split(',')
        .map(|c| {
            let c = c.trim();
            let quoted = c.len() >= 2
                && ((c.starts_with('"') && c.ends_with('"'))
                    || (c.starts_with('\'') && c.ends_with('\'')));
            if quoted {
                &c[1..c.len() - 1]
            } else {
                c
            }
        })
        .collect()
}

/// A row's `MM/DD/YYYY HH:MM:SS`, zone-less as zmstat writes it.
pub fn local_time(cell: &str) -> Option<chrono::NaiveDateTime> {
    chrono::NaiveDateTime::parse_from_str(cell.trim(), "%m/%d/%Y %H:%M:%S").ok()
}

/// Local time of a row to UTC milliseconds. At the repeated hour of a DST
/// end the earlier instant is taken unless that would go back before
/// `previous` (the row before it), which means the clock was set back.
pub fn row_time(cell: &str, tz: chrono_tz::Tz, previous: Option<i64>) -> Result<i64, Skip> {
    let naive = local_time(cell).ok_or(Skip::BadTimestamp)?;
    match tz.from_local_datetime(&naive) {
        chrono::LocalResult::Single(t) => Ok(t.timestamp_millis()),
        chrono::LocalResult::Ambiguous(early, late) => {
            let early = early.timestamp_millis();
            Ok(match previous {
                Some(p) if early < p => late.timestamp_millis(),
                _ => early,
            })
        }
        chrono::LocalResult::None => Err(Skip::NonexistentLocalTime),
    }
}

/// Reads the cells of a data row (aligned with `header.columns`).
pub fn read_row<'a>(header: &'a Header, cells: &[&'a str]) -> Row<'a> {
    let mut row = Row {
        entity: Vec::new(),
        values: Vec::new(),
        empty_cells: 0,
        bad_cells: 0,
    };
    for (i, (column, cell)) in header.columns.iter().zip(cells).enumerate() {
        match column {
            Column::Label(name) => row.entity.push((name, cell)),
            Column::Value(_) if cell.is_empty() => row.empty_cells += 1,
            Column::Value(_) => match cell.parse::<f64>() {
                Ok(v) => row.values.push((i, v)),
                Err(_) => row.bad_cells += 1,
            },
            Column::Timestamp | Column::Ignored => {}
        }
    }
    row
}

/// The labels of column `column` for a row's `entity`; `base` holds the
/// labels every sample gets (`host`, `job`).
pub fn series_labels(
    header: &Header,
    column: usize,
    entity: &[(&str, &str)],
    base: &Labels,
) -> Labels {
    let mut labels = base.clone();
    if let Some(Column::Value(metric)) = header.columns.get(column) {
        labels.insert("__name__".into(), metric.name.clone());
        for (k, v) in &metric.labels {
            labels.insert(k.clone(), v.clone());
        }
    }
    for (k, v) in entity {
        if !v.is_empty() {
            labels.insert((*k).to_string(), (*v).to_string());
        }
    }
    labels
}

/// The headers a file has shown so far, one per writer: a new header
/// replaces the one of the same writer (a Perl collector restarting prints
/// its header again, maybe with new columns), while `ldap.csv` on a Zimbra
/// single server holds two writers' layouts at once.
#[derive(Debug, Default)]
pub struct Headers {
    active: Vec<Header>,
}

impl Headers {
    pub fn learn(&mut self, header: Header) {
        self.active.retain(|h| h.writer != header.writer);
        self.active.push(header);
    }

    /// The header a data row belongs to: the one whose width matches (the
    /// newest first), else the only one.
    pub fn for_row(&self, cells: usize) -> Result<&Header, Skip> {
        if let Some(h) = self.active.iter().rev().find(|h| h.accepts(cells)) {
            return Ok(h);
        }
        match self.active.as_slice() {
            [] => Err(Skip::NoHeader),
            _ => Err(Skip::CellCount),
        }
    }
}

/// What reading a file's text yields, line by line.
pub enum Event<'a> {
    Header(&'a Header),
    /// A data row, its header and its time (UTC milliseconds).
    Row(&'a Header, i64, Row<'a>),
    Skip(Skip),
}

/// Reads a zmstat file's text (`stem` as in `cpu` for `cpu.csv`): headers
/// switch the layout of their writer's later rows; zone-less times are
/// read in `tz`. Stops at the first error `visit` returns.
pub fn read_rows<E>(
    stem: &str,
    text: &str,
    tz: chrono_tz::Tz,
    mut visit: impl FnMut(Event) -> Result<(), E>,
) -> Result<(), E> {
    let mut headers = Headers::default();
    let mut previous: Option<i64> = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if is_header(line) {
            let header = Header::parse(stem, line);
            visit(Event::Header(&header))?;
            headers.learn(header);
            continue;
        }
        let cells = split_cells(line);
        let header = match headers.for_row(cells.len()) {
            Ok(h) => h,
            Err(skip) => {
                visit(Event::Skip(skip))?;
                continue;
            }
        };
        let cells = header.align(cells);
        match row_time(cells[0], tz, previous) {
            Ok(ts) => {
                previous = Some(ts);
                visit(Event::Row(header, ts, read_row(header, &cells)))?;
            }
            Err(skip) => visit(Event::Skip(skip))?,
        }
    }
    Ok(())
}

/// Whether a CSV line is a header (every zmstat header starts with it).
pub fn is_header(line: &str) -> bool {
    line.trim_start().starts_with("timestamp")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_of_both_writers() {
        assert_eq!(split_cells("a, b,c\r\n"), vec!["a", "b", "c"]);
        assert_eq!(split_cells("1,\"\",''"), vec!["1", "", ""]);
    }

    proptest::proptest! {
        /// Any text, read as a zmstat file or as its syslog form, gives
        /// rows or skips, never a panic.
        #[test]
        fn any_text_is_read_without_panicking(
            stem in "[a-z-]{0,8}",
            lines in proptest::collection::vec(
                "(timestamp|[0-9/: ]{0,20})?[ -~]{0,40}(, |,|::|:::)?[ -~]{0,20}",
                0..12,
            ),
        ) {
            let text = lines.join("\n");
            let base = Labels::new();
            let _ = read_rows(&stem, &text, chrono_tz::Europe::Rome, |event| {
                if let Event::Row(h, _, row) = event {
                    let _ = row.entity_key();
                    for (col, _) in &row.values {
                        let _ = series_labels(h, *col, &row.entity, &base);
                    }
                }
                Ok::<(), ()>(())
            });
            for line in &lines {
                let _ = stream::split_stat(line);
            }
        }
    }

    #[test]
    fn local_time_and_dst() {
        let rome = chrono_tz::Europe::Rome;
        // 01:30 local in winter is 00:30 UTC.
        assert_eq!(
            row_time("01/15/2024 01:30:00", rome, None),
            Ok(1_705_278_600_000)
        );
        // 27 Oct 2024: 02:30 happens twice in Rome.
        let first = row_time("10/27/2024 02:30:00", rome, None).unwrap();
        let after = row_time("10/27/2024 02:59:30", rome, Some(first)).unwrap();
        let again = row_time("10/27/2024 02:00:00", rome, Some(after)).unwrap();
        assert_eq!(again - first, 30 * 60 * 1000);
        // 31 Mar 2024: 02:30 does not exist.
        assert_eq!(
            row_time("03/31/2024 02:30:00", rome, None),
            Err(Skip::NonexistentLocalTime)
        );
        assert_eq!(row_time("2024-01-01", rome, None), Err(Skip::BadTimestamp));
    }
}
