//! How a zmstat header's columns become metrics. Names are
//! `zmstat_<file>_<column>` with the column lower-cased and `%` → `pct_`,
//! `/s` → `_per_s`, other punctuation → `_`; what repeats per entity
//! (CPU, device, JVM collector and pool, process group, thread prefix)
//! becomes a label, so a header that grows a CPU or a disk adds series,
//! not metric names. Columns holding an entity's name in every row
//! (`path`, `disk`, `process`, `command`) become labels of the row.
//!
//! Types follow the Zimbra Logger's own column table (LoggerSchema):
//! `mailboxd.csv` `gc_*` and `mysql.csv` `Slow_queries`/`Opened_tables`
//! are counters, everything else a gauge. Per-interval counts (SOAP
//! `exec_count`, `slapd` `*_ops`, `allprocs` times) are gauges holding the
//! interval's count: sum them with `sum_over_time`.

use super::split_cells;
use crate::store::record::MetricMeta;
use std::collections::HashSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub kind: Kind,
    /// The column as the header names it.
    pub column: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    Timestamp,
    /// Holds the row's entity name: a label of every sample of the row.
    Label(String),
    Value(Metric),
    /// A literal name repeated in every row (`proc.csv`'s `mailbox`), a
    /// column that repeats an earlier one, or old sysstat's bogus `Device:`.
    Ignored,
}

/// Perl collectors write `", "`, the mailbox JVM `","`: a header replaces
/// only the header of its own writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    Perl,
    Java,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// Tells headers apart (a hash of the file and the line).
    pub id: u64,
    /// The file the metrics are named after (`slapd` for zmstat-ldap's
    /// layout whether the file is `slapd.csv` or Zimbra's `ldap.csv`).
    pub file: String,
    pub writer: Writer,
    pub columns: Vec<Column>,
    /// Positions of bogus `<dev>:Device:` columns in the header as written:
    /// rows of that width carry a cell there that is dropped.
    bogus: Vec<usize>,
}

const ENTITY_COLUMNS: [&str; 4] = ["path", "disk", "process", "command"];

impl Header {
    /// Reads a header line of the file `file_stem` (`cpu`, `io-x`, ...).
    pub fn parse(file_stem: &str, line: &str) -> Header {
        let writer = if line.contains(", ") {
            Writer::Perl
        } else {
            Writer::Java
        };
        let names = split_cells(line);
        let file = if names.contains(&"abandon_ops") && names.contains(&"bind_ops") {
            "slapd".to_string()
        } else {
            sanitize(file_stem)
        };
        let bogus: Vec<usize> = names
            .iter()
            .enumerate()
            .filter(|(_, n)| n.ends_with("Device:"))
            .map(|(i, _)| i)
            .collect();
        let kept: Vec<&str> = names
            .iter()
            .enumerate()
            .filter(|(i, _)| !bogus.contains(i))
            .map(|(_, n)| *n)
            .collect();
        let proc_groups = proc_groups(&file, &kept);
        let mut group: Option<&str> = None;
        let mut seen = HashSet::new();
        let mut columns = Vec::with_capacity(kept.len());
        for (i, name) in kept.iter().enumerate() {
            if i == 0 {
                columns.push(Column::Timestamp);
                continue;
            }
            if ENTITY_COLUMNS.contains(name) {
                columns.push(Column::Label((*name).to_string()));
                continue;
            }
            if proc_groups.contains(name) {
                group = Some(name);
                columns.push(Column::Ignored);
                continue;
            }
            let metric = metric_of(&file, name, group);
            let key = (metric.name.clone(), metric.labels.clone());
            if metric.name == format!("zmstat_{file}_") || !seen.insert(key) {
                columns.push(Column::Ignored);
            } else {
                columns.push(Column::Value(metric));
            }
        }
        let id = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (file_stem, line).hash(&mut h);
            h.finish()
        };
        Header {
            id,
            file,
            writer,
            columns,
            bogus,
        }
    }

    /// Whether a row of `cells` cells is read with this header.
    pub fn accepts(&self, cells: usize) -> bool {
        cells == self.columns.len()
            || (!self.bogus.is_empty() && cells == self.columns.len() + self.bogus.len())
    }

    /// The row's cells lined up with `columns`.
    pub fn align<'a>(&self, cells: Vec<&'a str>) -> Vec<&'a str> {
        if cells.len() == self.columns.len() {
            return cells;
        }
        cells
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !self.bogus.contains(i))
            .map(|(_, c)| c)
            .collect()
    }

    /// TYPE and HELP of the metrics this header makes.
    pub fn metadata(&self) -> Vec<(String, MetricMeta)> {
        let mut out: Vec<(String, MetricMeta)> = Vec::new();
        for column in &self.columns {
            let Column::Value(m) = column else { continue };
            if out.iter().any(|(name, _)| *name == m.name) {
                continue;
            }
            let help = if m.labels.is_empty() {
                format!("zmstat {}.csv column {}", self.file, m.column)
            } else {
                format!("zmstat {}.csv columns like {}", self.file, m.column)
            };
            let kind = match m.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            };
            out.push((
                m.name.clone(),
                MetricMeta {
                    kind: kind.into(),
                    help,
                    unit: String::new(),
                },
            ));
        }
        out
    }
}

/// `proc.csv` columns that hold a process group's literal name: `system`,
/// and every `<p>` followed by `<p>-...` columns.
fn proc_groups<'a>(file: &str, names: &[&'a str]) -> Vec<&'a str> {
    if file != "proc" {
        return Vec::new();
    }
    names
        .iter()
        .enumerate()
        .filter(|(i, n)| {
            **n == "system"
                || names
                    .get(i + 1)
                    .is_some_and(|next| next.starts_with(&format!("{n}-")))
        })
        .map(|(_, n)| *n)
        .collect()
}

fn metric_of(file: &str, column: &str, proc_group: Option<&str>) -> Metric {
    let plain = |suffix: &str, labels: Vec<(&str, &str)>, kind: Kind| Metric {
        name: format!("zmstat_{file}_{}", sanitize(suffix)),
        labels: labels
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        kind,
        column: column.to_string(),
    };
    match file {
        "cpu" => {
            if let Some((cpu, col)) = column.split_once(':') {
                if let Some(n) = cpu.strip_prefix("cpu") {
                    let which = if n.is_empty() { "all" } else { n };
                    return plain(col, vec![("cpu", which)], Kind::Gauge);
                }
            }
        }
        "io" | "io_x" => {
            if let Some((device, col)) = column.rsplit_once(':') {
                return plain(col, vec![("device", device)], Kind::Gauge);
            }
        }
        "proc" => {
            if let Some(group) = proc_group {
                if let Some(col) = column.strip_prefix(&format!("{group}-")) {
                    return plain(col, vec![("process", group)], Kind::Gauge);
                }
                if group == "system" {
                    return plain(column, vec![("process", "system")], Kind::Gauge);
                }
            }
        }
        "mailboxd" => {
            if let Some(rest) = column.strip_prefix("gc_") {
                for stat in ["count", "ms"] {
                    if let Some(collector) = rest.strip_suffix(&format!("_{stat}")) {
                        return plain(
                            &format!("gc_{stat}"),
                            vec![("collector", collector)],
                            Kind::Counter,
                        );
                    }
                }
            }
            if let Some(rest) = column.strip_prefix("mpool_") {
                for stat in ["used", "free"] {
                    if let Some(pool) = rest.strip_suffix(&format!("_{stat}")) {
                        return plain(&format!("mpool_{stat}"), vec![("pool", pool)], Kind::Gauge);
                    }
                }
            }
        }
        "mysql" if column == "Slow_queries" || column == "Opened_tables" => {
            return plain(column, vec![], Kind::Counter);
        }
        "threads" => {
            return match column {
                "total" => Metric {
                    name: "zmstat_threads_all".into(),
                    labels: vec![],
                    kind: Kind::Gauge,
                    column: column.into(),
                },
                prefix => Metric {
                    name: "zmstat_threads".into(),
                    labels: vec![("prefix".into(), prefix.into())],
                    kind: Kind::Gauge,
                    column: column.into(),
                },
            };
        }
        _ => {}
    }
    plain(column, vec![], Kind::Gauge)
}

/// A column or file name as a metric name part.
pub fn sanitize(s: &str) -> String {
    let s = s
        .to_lowercase()
        .replace('%', "pct_")
        .replace("/s", "_per_s");
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '_' };
        if c == '_' && (out.is_empty() || out.ends_with('_')) {
            continue;
        }
        out.push(c);
    }
    out.trim_end_matches('_').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(h: &Header) -> Vec<(String, Vec<(String, String)>)> {
        h.columns
            .iter()
            .filter_map(|c| match c {
                Column::Value(m) => Some((m.name.clone(), m.labels.clone())),
                _ => None,
            })
            .collect()
    }

    fn l(k: &str, v: &str) -> Vec<(String, String)> {
        vec![(k.to_string(), v.to_string())]
    }

    #[test]
    fn names() {
        assert_eq!(sanitize("kB_read/s"), "kb_read_per_s");
        assert_eq!(sanitize("%util"), "pct_util");
        assert_eq!(sanitize("Active(anon)"), "active_anon");
        assert_eq!(sanitize("io-x"), "io_x");
    }

    #[test]
    fn cpu_and_io_entities_become_labels() {
        let h = Header::parse("cpu", "timestamp, cpu:user, cpu0:user, cpu1:idle");
        assert_eq!(h.writer, Writer::Perl);
        assert_eq!(
            values(&h),
            vec![
                ("zmstat_cpu_user".into(), l("cpu", "all")),
                ("zmstat_cpu_user".into(), l("cpu", "0")),
                ("zmstat_cpu_idle".into(), l("cpu", "1")),
            ]
        );
        let h = Header::parse("io-x", "timestamp, sda:r/s, sda:%util, dm-0:aqu-sz");
        assert_eq!(
            values(&h),
            vec![
                ("zmstat_io_x_r_per_s".into(), l("device", "sda")),
                ("zmstat_io_x_pct_util".into(), l("device", "sda")),
                ("zmstat_io_x_aqu_sz".into(), l("device", "dm-0")),
            ]
        );
    }

    #[test]
    fn old_sysstat_device_column_is_dropped() {
        let h = Header::parse("io", "timestamp, sda:Device:, sda:tps, sda:kB_read/s");
        assert_eq!(h.columns.len(), 3);
        assert!(h.accepts(3) && h.accepts(4) && !h.accepts(5));
        assert_eq!(h.align(vec!["t", "x", "1", "2"]), vec!["t", "1", "2"]);
    }

    #[test]
    fn proc_groups_hold_literal_names() {
        let h = Header::parse(
            "proc",
            "timestamp, system, user, sys, mailbox, mailbox-total-cpu, mailbox-rssMB",
        );
        assert_eq!(h.columns[1], Column::Ignored);
        assert_eq!(
            values(&h),
            vec![
                ("zmstat_proc_user".into(), l("process", "system")),
                ("zmstat_proc_sys".into(), l("process", "system")),
                ("zmstat_proc_total_cpu".into(), l("process", "mailbox")),
                ("zmstat_proc_rssmb".into(), l("process", "mailbox")),
            ]
        );
    }

    #[test]
    fn jvm_columns_and_types() {
        let h = Header::parse(
            "mailboxd",
            "timestamp,soap_count,gc_parnew_count,gc_minor_ms,mpool_g1_eden_space_used,heap_used",
        );
        assert_eq!(h.writer, Writer::Java);
        let kinds: Vec<Kind> = h
            .columns
            .iter()
            .filter_map(|c| match c {
                Column::Value(m) => Some(m.kind),
                _ => None,
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                Kind::Gauge,
                Kind::Counter,
                Kind::Counter,
                Kind::Gauge,
                Kind::Gauge
            ]
        );
        assert_eq!(
            values(&h)[3],
            (
                "zmstat_mailboxd_mpool_used".into(),
                l("pool", "g1_eden_space")
            )
        );
        let meta = h.metadata();
        assert_eq!(meta[1].0, "zmstat_mailboxd_gc_count");
        assert_eq!(meta[1].1.kind, "counter");
    }

    #[test]
    fn zimbra_ldap_csv_of_zmstat_ldap_is_slapd() {
        let h = Header::parse("ldap", "timestamp, abandon_ops, add_ops, bind_ops");
        assert_eq!(h.file, "slapd");
        let h = Header::parse("ldap", "timestamp,command,exec_count,exec_ms_avg");
        assert_eq!(h.file, "ldap");
        assert_eq!(h.columns[1], Column::Label("command".into()));
    }
}
