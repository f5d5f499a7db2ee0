//! `bench log-layouts`: how the log Parquet layout choices trade size for
//! what log search needs. The corpus lines are parsed as the collector does,
//! split into hour files, and written with each layout; reported are bytes
//! per line, write time, and the share of row groups a search must read
//! (min/max statistics of the row groups) for a 5-minute window, for
//! `app = 'sshd'` and for `host = 'ldap1'`.

use anyhow::{Context, Result};
use carbonio_collector::logs::LogRecord;
use carbonio_collector::store::loghead::LogHead;
use carbonio_collector::store::logs::{schema, HOUR_NS};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::statistics::Statistics;
use std::path::Path;
use std::time::Instant;

struct Layout {
    name: &'static str,
    /// Sort key inside an hour file.
    sort: fn(&LogRecord, &LogRecord) -> std::cmp::Ordering,
    row_group: usize,
    zstd: i32,
    message_dictionary: bool,
    bloom: bool,
    /// Data page size limit in bytes (zstd compresses each page on its own).
    page: usize,
}

fn by_time(a: &LogRecord, b: &LogRecord) -> std::cmp::Ordering {
    a.timestamp_ns.cmp(&b.timestamp_ns)
}

fn by_app_time(a: &LogRecord, b: &LogRecord) -> std::cmp::Ordering {
    (&a.app, a.timestamp_ns).cmp(&(&b.app, b.timestamp_ns))
}

fn by_app_host_time(a: &LogRecord, b: &LogRecord) -> std::cmp::Ordering {
    (&a.app, &a.host, a.timestamp_ns).cmp(&(&b.app, &b.host, b.timestamp_ns))
}

fn by_host_app_time(a: &LogRecord, b: &LogRecord) -> std::cmp::Ordering {
    (&a.host, &a.app, a.timestamp_ns).cmp(&(&b.host, &b.app, b.timestamp_ns))
}

const LAYOUTS: &[Layout] = &[
    Layout {
        name: "time, 64k rows, zstd 3",
        sort: by_time,
        row_group: 65_536,
        zstd: 3,
        message_dictionary: true,
        bloom: false,
        page: 1 << 20,
    },
    Layout {
        name: "time, 8k rows, zstd 3",
        sort: by_time,
        row_group: 8_192,
        zstd: 3,
        message_dictionary: true,
        bloom: false,
        page: 1 << 20,
    },
    Layout {
        name: "time, 1M rows, zstd 3",
        sort: by_time,
        row_group: 1 << 20,
        zstd: 3,
        message_dictionary: true,
        bloom: false,
        page: 1 << 20,
    },
    Layout {
        name: "time, 64k rows, zstd 1",
        sort: by_time,
        row_group: 65_536,
        zstd: 1,
        message_dictionary: true,
        bloom: false,
        page: 1 << 20,
    },
    Layout {
        name: "time, 64k rows, zstd 9",
        sort: by_time,
        row_group: 65_536,
        zstd: 9,
        message_dictionary: true,
        bloom: false,
        page: 1 << 20,
    },
    Layout {
        name: "time, 64k, no message dict",
        sort: by_time,
        row_group: 65_536,
        zstd: 3,
        message_dictionary: false,
        bloom: false,
        page: 1 << 20,
    },
    Layout {
        name: "time, 64k, bloom host/app",
        sort: by_time,
        row_group: 65_536,
        zstd: 3,
        message_dictionary: true,
        bloom: true,
        page: 1 << 20,
    },
    Layout {
        name: "app+time, 64k rows, zstd 3",
        sort: by_app_time,
        row_group: 65_536,
        zstd: 3,
        message_dictionary: true,
        bloom: false,
        page: 1 << 20,
    },
    Layout {
        name: "host+app+time, 64k, zstd 3",
        sort: by_host_app_time,
        row_group: 65_536,
        zstd: 3,
        message_dictionary: true,
        bloom: false,
        page: 1 << 20,
    },
    Layout {
        name: "app+host+time, 64k, zstd 3 (current)",
        sort: by_app_host_time,
        row_group: 65_536,
        zstd: 3,
        message_dictionary: true,
        bloom: false,
        page: 1 << 20,
    },
    Layout {
        name: "app+host+time, zstd 9",
        sort: by_app_host_time,
        row_group: 65_536,
        zstd: 9,
        message_dictionary: false,
        bloom: false,
        page: 1048576,
    },
    Layout {
        name: "time, zstd 3, 8 MB pages",
        sort: by_time,
        row_group: 65_536,
        zstd: 3,
        message_dictionary: false,
        bloom: false,
        page: 8388608,
    },
    Layout {
        name: "time, zstd 9, 8 MB pages",
        sort: by_time,
        row_group: 65_536,
        zstd: 9,
        message_dictionary: false,
        bloom: false,
        page: 8388608,
    },
    Layout {
        name: "app+host+time, zstd 3, 8 MB pages",
        sort: by_app_host_time,
        row_group: 65_536,
        zstd: 3,
        message_dictionary: false,
        bloom: false,
        page: 8388608,
    },
    Layout {
        name: "app+host+time, zstd 6, 8 MB pages",
        sort: by_app_host_time,
        row_group: 65_536,
        zstd: 6,
        message_dictionary: false,
        bloom: false,
        page: 8388608,
    },
    Layout {
        name: "app+host+time, zstd 9, 8 MB pages",
        sort: by_app_host_time,
        row_group: 65_536,
        zstd: 9,
        message_dictionary: false,
        bloom: false,
        page: 8388608,
    },
];

pub fn run(corpus: &Path, max_lines: usize) -> Result<()> {
    let text = std::fs::read(corpus).with_context(|| format!("reading {}", corpus.display()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as i64;
    let records: Vec<LogRecord> = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .take(max_lines)
        .map(|l| {
            carbonio_collector::syslog::parse::parse(l, "tcp://10.0.0.1:514", now, chrono_tz::UTC).0
        })
        .collect();
    let raw: usize = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .take(max_lines)
        .map(|l| l.len() + 1)
        .sum();
    let mut hours: std::collections::BTreeMap<i64, Vec<&LogRecord>> = Default::default();
    for r in &records {
        hours
            .entry(r.timestamp_ns.div_euclid(HOUR_NS))
            .or_default()
            .push(r);
    }
    // A 5-minute window in the middle of the busiest hour.
    let (&busiest, _) = hours
        .iter()
        .max_by_key(|(_, v)| v.len())
        .context("no lines")?;
    let window = (
        busiest * HOUR_NS + HOUR_NS / 2,
        busiest * HOUR_NS + HOUR_NS / 2 + 300_000_000_000,
    );
    eprintln!(
        "{} lines in {} hour files, {:.1} B/line raw",
        records.len(),
        hours.len(),
        raw as f64 / records.len() as f64
    );
    println!(
        "{:<38} {:>8} {:>9} {:>11} {:>12} {:>13}",
        "layout", "B/line", "write s", "5 min RGs", "app=sshd RGs", "host=ldap1 RGs"
    );
    let dir = tempfile::tempdir()?;
    for layout in LAYOUTS {
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(layout.zstd)?))
            .set_max_row_group_row_count(Some(layout.row_group))
            .set_column_dictionary_enabled("message".into(), layout.message_dictionary)
            .set_column_bloom_filter_enabled("host".into(), layout.bloom)
            .set_column_bloom_filter_enabled("app".into(), layout.bloom)
            .set_data_page_size_limit(layout.page)
            .build();
        let started = Instant::now();
        let mut bytes = 0u64;
        let mut row_groups = (0usize, 0usize, 0usize, 0usize); // total, window, app, host
        for (hour, rows) in &hours {
            let mut rows = rows.clone();
            rows.sort_by(|a, b| (layout.sort)(a, b));
            let mut head = LogHead::default();
            head.extend(rows.iter().copied());
            let order: Vec<u32> = (0..rows.len() as u32).collect();
            let path = dir.path().join(format!("{hour}.parquet"));
            let file = std::fs::File::create(&path)?;
            let mut w = ArrowWriter::try_new(file, schema(), Some(props.clone()))?;
            for batch in head.batches(&order, usize::MAX) {
                w.write(&batch?)?;
            }
            w.close()?;
            bytes += std::fs::metadata(&path)?.len();
            let reader = SerializedFileReader::new(std::fs::File::open(&path)?)?;
            let schema = schema();
            let col = |name: &str| schema.index_of(name);
            let (ts, app, host) = (col("timestamp")?, col("app")?, col("host")?);
            for rg in reader.metadata().row_groups() {
                row_groups.0 += 1;
                if let Some(Statistics::Int64(s)) = rg.column(ts).statistics() {
                    if s.min_opt()
                        .zip(s.max_opt())
                        .is_some_and(|(lo, hi)| *hi >= window.0 && *lo <= window.1)
                    {
                        row_groups.1 += 1;
                    }
                }
                let may_hold = |i: usize, v: &[u8]| match rg.column(i).statistics() {
                    Some(Statistics::ByteArray(s)) => s
                        .min_opt()
                        .zip(s.max_opt())
                        .is_none_or(|(lo, hi)| lo.data() <= v && v <= hi.data()),
                    _ => true,
                };
                row_groups.2 += usize::from(may_hold(app, b"sshd"));
                row_groups.3 += usize::from(may_hold(host, b"ldap1"));
            }
        }
        let pct = |n: usize| n as f64 * 100.0 / row_groups.0.max(1) as f64;
        println!(
            "{:<38} {:>8.1} {:>9.2} {:>10.1}% {:>11.1}% {:>12.1}%",
            layout.name,
            bytes as f64 / records.len() as f64,
            started.elapsed().as_secs_f64(),
            pct(row_groups.1),
            pct(row_groups.2),
            pct(row_groups.3)
        );
    }
    Ok(())
}
