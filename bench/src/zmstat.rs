//! `bench zmstat-import`: the import rate of a year of zmstat files, and,
//! on the first days of it, our import next to Prometheus's backfill of
//! the same samples (`promtool tsdb create-blocks-from openmetrics`; the
//! Logger's own zmlogger/RRD path no longer exists to compare with).
//!
//! The generator writes what a mailstore node's zmstat leaves behind: the
//! Perl collectors every 30 s (cpu with 4 CPUs, vm, io, io-x with 3 devices,
//! fd, proc, mtaqueue, allprocs with 8 processes; df with 5 filesystems
//! every 600 s) and the mailbox JVM every 60 s (mailboxd, threads, soap and
//! imap with a row per command), gzipped per day, the last day as today's
//! plain `.csv`, with a restart header at noon every 30th day.

use anyhow::{bail, Context, Result};
use carbonio_collector::zmstat::{read_rows, series_labels, Event};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const PROMTOOL: &str = "/usr/bin/promtool";

pub struct Options {
    pub days: usize,
    pub compare_days: usize,
    pub work: PathBuf,
}

/// Deterministic values: xorshift.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % 10_000) as f64 / 10.0
    }
}

struct FileSpec {
    name: &'static str,
    /// Seconds between rows.
    every: u32,
    header: String,
    /// Entity names: a row each per interval (none: one row).
    entities: Vec<String>,
    perl: bool,
}

fn specs() -> Vec<FileSpec> {
    let cols = |names: &[String], perl: bool| {
        let sep = if perl { ", " } else { "," };
        format!("timestamp{sep}{}", names.join(sep))
    };
    let mut cpu = Vec::new();
    for c in ["cpu", "cpu0", "cpu1", "cpu2", "cpu3"] {
        for m in ["user", "nice", "sys", "idle", "iowait", "irq", "softirq"] {
            cpu.push(format!("{c}:{m}"));
        }
    }
    let vmstat = "r b swpd free buff cache si so bi bo in cs us sy id wa st";
    let meminfo = "MemTotal MemFree MemAvailable Buffers Cached SwapCached Active Inactive Active(anon) Inactive(anon) Active(file) Inactive(file) Unevictable Mlocked SwapTotal SwapFree Dirty Writeback AnonPages Mapped Shmem Slab SReclaimable SUnreclaim KernelStack PageTables NFS_Unstable Bounce WritebackTmp CommitLimit Committed_AS VmallocTotal VmallocUsed VmallocChunk Percpu HardwareCorrupted AnonHugePages CmaTotal CmaFree HugePages_Total HugePages_Free HugePages_Rsvd HugePages_Surp Hugepagesize DirectMap4k DirectMap2M DirectMap1G loadavg";
    let vm: Vec<String> = vmstat
        .split(' ')
        .chain(meminfo.split(' '))
        .map(str::to_string)
        .collect();
    let per_dev = |cols: &[&str]| -> Vec<String> {
        ["sda", "sdb", "dm-0"]
            .iter()
            .flat_map(|d| cols.iter().map(move |c| format!("{d}:{c}")))
            .collect()
    };
    let io = per_dev(&[
        "tps",
        "kB_read/s",
        "kB_wrtn/s",
        "kB_dscd/s",
        "kB_read",
        "kB_wrtn",
        "kB_dscd",
    ]);
    let iox = per_dev(&[
        "r/s", "w/s", "rkB/s", "wkB/s", "rrqm/s", "wrqm/s", "%rrqm", "%wrqm", "r_await", "w_await",
        "aqu-sz", "rareq-sz", "wareq-sz", "svctm", "%util",
    ]);
    let mut proc = vec!["system", "user", "sys", "idle", "iowait"]
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
    for p in [
        "mailbox", "mysql", "ldap", "postfix", "amavis", "clam", "zmstat",
    ] {
        proc.push(p.to_string());
        for c in [
            "total-cpu",
            "utime",
            "stime",
            "totalMB",
            "rssMB",
            "sharedMB",
            "process-count",
        ] {
            proc.push(format!("{p}-{c}"));
        }
    }
    let procs = [
        "java-mailboxd",
        "slapd",
        "nginx",
        "master",
        "amavisd",
        "clamd",
        "mysqld",
        "perl-zmstat",
    ];
    let mut mailboxd: Vec<String> = "lmtp_rcvd_msgs lmtp_rcvd_bytes lmtp_rcvd_rcpt lmtp_dlvd_msgs lmtp_dlvd_bytes db_conn_count db_conn_ms_avg ldap_dc_count ldap_dc_ms_avg mbox_add_msg_count mbox_add_msg_ms_avg mbox_get_count mbox_get_ms_avg mbox_cache mbox_msg_cache mbox_item_cache soap_count soap_ms_avg imap_count imap_ms_avg pop_count pop_ms_avg idx_wrt_avg idx_wrt_opened idx_wrt_opened_cache_hit calcache_hit calcache_mem_hit calcache_lru_size idx_bytes_written idx_bytes_written_avg idx_bytes_read idx_bytes_read_avg bis_read bis_seek_rate db_pool_size innodb_bp_hit_rate lmtp_conn lmtp_threads pop_conn pop_threads pop_ssl_conn pop_ssl_threads imap_conn imap_threads imap_ssl_conn imap_ssl_threads http_idle_threads http_threads soap_sessions mbox_cache_size msg_cache_size fd_cache_size fd_cache_hit_rate acl_cache_hit_rate account_cache_size account_cache_hit_rate cos_cache_size cos_cache_hit_rate domain_cache_size domain_cache_hit_rate server_cache_size server_cache_hit_rate ucservice_cache_size ucservice_cache_hit_rate zimlet_cache_size zimlet_cache_hit_rate group_cache_size group_cache_hit_rate xmpp_cache_size xmpp_cache_hit_rate"
        .split(' ')
        .map(str::to_string)
        .collect();
    for gc in ["g1_young_generation", "g1_old_generation", "minor", "major"] {
        mailboxd.push(format!("gc_{gc}_count"));
        mailboxd.push(format!("gc_{gc}_ms"));
    }
    for pool in [
        "codeheap_'non-nmethods'",
        "metaspace",
        "g1_eden_space",
        "g1_old_gen",
        "g1_survivor_space",
    ] {
        mailboxd.push(format!("mpool_{pool}_used"));
        mailboxd.push(format!("mpool_{pool}_free"));
    }
    mailboxd.push("heap_used".into());
    mailboxd.push("heap_free".into());
    let threads: Vec<String> = "AnonymousIoService CloudRoutingReaderThread GC ImapSSLServer ImapServer LmtpServer Pop3SSLServer Pop3Server ScheduledTask SocketAcceptor Thread Timer btpool pool qtp other total"
        .split(' ')
        .map(str::to_string)
        .collect();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let command = s(&["command", "exec_count", "exec_ms_avg"]);
    vec![
        FileSpec {
            name: "cpu",
            every: 30,
            header: cols(&cpu, true),
            entities: vec![],
            perl: true,
        },
        FileSpec {
            name: "vm",
            every: 30,
            header: cols(&vm, true),
            entities: vec![],
            perl: true,
        },
        FileSpec {
            name: "io",
            every: 30,
            header: cols(&io, true),
            entities: vec![],
            perl: true,
        },
        FileSpec {
            name: "io-x",
            every: 30,
            header: cols(&iox, true),
            entities: vec![],
            perl: true,
        },
        FileSpec {
            name: "fd",
            every: 30,
            header: cols(&s(&["fd_count", "mailboxd_fd_count"]), true),
            entities: vec![],
            perl: true,
        },
        FileSpec {
            name: "proc",
            every: 30,
            header: cols(&proc, true),
            entities: vec![],
            perl: true,
        },
        FileSpec {
            name: "mtaqueue",
            every: 30,
            header: cols(&s(&["KBytes", "requests"]), true),
            entities: vec![],
            perl: true,
        },
        FileSpec {
            name: "allprocs",
            every: 30,
            header: cols(
                &s(&[
                    "process",
                    "utime",
                    "stime",
                    "cputime",
                    "rchar",
                    "wchar",
                    "read_bytes",
                    "write_bytes",
                    "rss",
                    "processes",
                    "threads",
                ]),
                true,
            ),
            entities: s(&procs),
            perl: true,
        },
        FileSpec {
            name: "df",
            every: 600,
            header: cols(
                &s(&["path", "disk", "disk_use", "disk_space", "disk_pct_used"]),
                true,
            ),
            entities: s(&[
                "/, /dev/sda1",
                "/boot, /dev/sda2",
                "/opt, /dev/sdb1",
                "/var, /dev/mapper/vg-var",
                "/opt/zextras/backup, /dev/sdc1",
            ]),
            perl: true,
        },
        FileSpec {
            name: "mailboxd",
            every: 60,
            header: cols(&mailboxd, false),
            entities: vec![],
            perl: false,
        },
        FileSpec {
            name: "threads",
            every: 60,
            header: cols(&threads, false),
            entities: vec![],
            perl: false,
        },
        FileSpec {
            name: "soap",
            every: 60,
            header: cols(&command, false),
            entities: s(&[
                "AuthRequest",
                "SearchRequest",
                "GetMsgRequest",
                "MsgActionRequest.move",
                "NoOpRequest",
            ]),
            perl: false,
        },
        FileSpec {
            name: "imap",
            every: 60,
            header: cols(&command, false),
            entities: s(&["SELECT", "FETCH", "IDLE"]),
            perl: false,
        },
    ]
}

/// Writes `days` days from 1 January 2025; returns the rows written.
fn generate(dir: &Path, days: usize) -> Result<u64> {
    let specs = specs();
    let start = chrono::NaiveDate::from_ymd_opt(2025, 1, 1).context("date")?;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut rows = 0u64;
    for d in 0..days {
        let date = start + chrono::Days::new(d as u64);
        let today = d + 1 == days;
        let day_dir = dir.join(date.format("%Y-%m-%d").to_string());
        if !today {
            std::fs::create_dir_all(&day_dir)?;
        }
        for spec in &specs {
            let sep = if spec.perl { ", " } else { "," };
            let width = spec.header.matches(sep).count();
            // An entity can fill two columns (df's path and disk).
            let entity_cols = spec
                .entities
                .first()
                .map_or(0, |e| e.matches(sep).count() + 1);
            let value_cols = width - entity_cols;
            let mut text = String::with_capacity(2 << 20);
            text.push_str(&spec.header);
            text.push('\n');
            let mut second = 0u32;
            while second < 86_400 {
                if d % 30 == 0 && second == 43_200 && spec.perl {
                    text.push_str(&spec.header);
                    text.push('\n');
                }
                let ts = format!(
                    "{} {:02}:{:02}:{:02}",
                    date.format("%m/%d/%Y"),
                    second / 3600,
                    second / 60 % 60,
                    second % 60
                );
                let entities: Vec<Option<&String>> = if spec.entities.is_empty() {
                    vec![None]
                } else {
                    spec.entities.iter().map(Some).collect()
                };
                for entity in entities {
                    text.push_str(&ts);
                    if let Some(e) = entity {
                        let _ = write!(text, "{sep}{e}");
                    }
                    let literal = spec.name == "proc";
                    let names: Vec<&str> = spec.header.split(sep).skip(1).collect();
                    for k in 0..value_cols {
                        text.push_str(sep);
                        // proc.csv repeats its group names in the rows.
                        let name = names.get(k + entity_cols).copied().unwrap_or("");
                        if literal
                            && !name.contains('-')
                            && !matches!(name, "user" | "sys" | "idle" | "iowait")
                        {
                            text.push_str(name);
                        } else {
                            let _ = write!(text, "{:.1}", rng.next());
                        }
                    }
                    text.push('\n');
                    rows += 1;
                }
                second += spec.every;
            }
            if today {
                std::fs::write(dir.join(format!("{}.csv", spec.name)), &text)?;
            } else {
                let file = std::fs::File::create(day_dir.join(format!("{}.csv.gz", spec.name)))?;
                let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
                gz.write_all(text.as_bytes())?;
                gz.finish()?;
            }
        }
    }
    Ok(rows)
}

/// The same samples as OpenMetrics for promtool, read with our own row
/// reader so names and labels are identical; families kept together.
fn to_openmetrics(dir: &Path, out: &Path) -> Result<u64> {
    let sources = carbonio_collector::zmstat::import::sources(dir)?;
    let base = BTreeMap::from([
        ("host".to_string(), "bench".to_string()),
        ("job".to_string(), "zmstat".to_string()),
    ]);
    let mut families: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut samples = 0u64;
    for source in sources {
        let mut text = String::new();
        let file = std::fs::File::open(&source.path)?;
        if source.path.extension().is_some_and(|e| e == "gz") {
            flate2::read::MultiGzDecoder::new(file).read_to_string(&mut text)?;
        } else {
            std::io::BufReader::new(file).read_to_string(&mut text)?;
        }
        read_rows(&source.stem, &text, chrono_tz::UTC, |event| {
            match event {
                Event::Header(header) => {
                    for (name, meta) in header.metadata() {
                        families
                            .entry(name)
                            .or_insert_with(|| (meta.kind, String::new()));
                    }
                }
                Event::Row(header, ts, row) => {
                    for (col, value) in &row.values {
                        let labels = series_labels(header, *col, &row.entity, &base);
                        let name = labels.get("__name__").cloned().unwrap_or_default();
                        let set: Vec<String> = labels
                            .iter()
                            .filter(|(k, _)| *k != "__name__")
                            .map(|(k, v)| {
                                format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
                            })
                            .collect();
                        let body = &mut families.entry(name.clone()).or_default().1;
                        let _ = writeln!(
                            body,
                            "{name}{{{}}} {value} {}.{:03}",
                            set.join(","),
                            ts / 1000,
                            ts % 1000
                        );
                        samples += 1;
                    }
                }
                Event::Skip(_) => {}
            }
            Ok::<(), anyhow::Error>(())
        })?;
    }
    let mut f = std::io::BufWriter::new(std::fs::File::create(out)?);
    for (name, (kind, body)) in &families {
        // promtool's backfill takes counters without `_total` as unknown.
        let kind = if kind == "counter" {
            "unknown"
        } else {
            kind.as_str()
        };
        writeln!(f, "# TYPE {name} {kind}")?;
        f.write_all(body.as_bytes())?;
    }
    writeln!(f, "# EOF")?;
    f.flush()?;
    Ok(samples)
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.filter_map(|e| e.ok())
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Runs `cmd`, returning wall seconds; fails with its stderr.
fn timed(cmd: &mut Command, what: &str) -> Result<(f64, String)> {
    let started = Instant::now();
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    let secs = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok((secs, String::from_utf8_lossy(&out.stdout).into_owned()))
}

fn import(binary: &Path, dir: &Path, data: &Path) -> Result<(f64, String)> {
    timed(
        Command::new(binary)
            .args(["import", "zmstat"])
            .arg(dir)
            .arg("--data")
            .arg(data)
            .args(["--host", "bench", "--timezone", "UTC"]),
        "carbonio-monitor import zmstat",
    )
}

pub fn run(binary: &Path, o: &Options) -> Result<()> {
    if o.compare_days == 0 || o.compare_days >= o.days {
        bail!("--compare-days must be between 1 and --days - 1");
    }
    let year = o.work.join(format!("zmstat-{}d", o.days));
    let marker = year.join(".complete");
    if !marker.exists() {
        let _ = std::fs::remove_dir_all(&year);
        std::fs::create_dir_all(&year)?;
        let started = Instant::now();
        let rows = generate(&year, o.days)?;
        std::fs::write(&marker, rows.to_string())?;
        println!(
            "generated {} days ({rows} rows, {:.0} MB) in {:.0} s",
            o.days,
            dir_bytes(&year) as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
    }
    let rows: u64 = std::fs::read_to_string(&marker)?.trim().parse()?;
    println!(
        "dataset: {} days, {rows} rows, {:.0} MB gzipped ({})",
        o.days,
        dir_bytes(&year) as f64 / 1e6,
        year.display()
    );

    let data = o.work.join("ours-year");
    let _ = std::fs::remove_dir_all(&data);
    let (secs, out) = import(binary, &year, &data)?;
    print!("{out}");
    let (_, again) = import(binary, &year, &data)?;
    println!(
        "ours, {} days: {secs:.1} s, {:.0} rows/s, store {:.0} MB; re-run: {}",
        o.days,
        rows as f64 / secs,
        dir_bytes(&data) as f64 / 1e6,
        again.lines().next().unwrap_or("")
    );

    // The first days, also through promtool.
    let subset = o.work.join(format!("zmstat-first-{}d", o.compare_days));
    let _ = std::fs::remove_dir_all(&subset);
    std::fs::create_dir_all(&subset)?;
    let mut days: Vec<PathBuf> = std::fs::read_dir(&year)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    days.sort();
    for day in days.iter().take(o.compare_days) {
        let name = day.file_name().context("day name")?;
        std::os::unix::fs::symlink(day, subset.join(name))?;
    }
    let om = o.work.join("first-days.om");
    let samples = to_openmetrics(&subset, &om)?;
    let data = o.work.join("ours-first-days");
    let _ = std::fs::remove_dir_all(&data);
    let (ours, out) = import(binary, &subset, &data)?;
    print!("{out}");
    let prom = o.work.join("promtool-first-days");
    let _ = std::fs::remove_dir_all(&prom);
    let (theirs, _) = timed(
        Command::new(PROMTOOL)
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&om)
            .arg(&prom),
        "promtool tsdb create-blocks-from openmetrics",
    )?;
    println!(
        "first {} days, {samples} samples: ours {ours:.1} s from the CSV files ({:.0} samples/s, {:.0} MB), \
         promtool {theirs:.1} s from OpenMetrics ({:.0} samples/s, {:.0} MB); ours/promtool time {:.2}",
        o.compare_days,
        samples as f64 / ours,
        dir_bytes(&data) as f64 / 1e6,
        samples as f64 / theirs,
        dir_bytes(&prom) as f64 / 1e6,
        ours / theirs
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_days_import_with_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let rows = generate(dir.path(), 2).unwrap();
        let om = dir.path().join("x.om");
        let samples = to_openmetrics(dir.path(), &om).unwrap();
        assert!(rows > 100_000 && samples > rows, "{rows} {samples}");
        // Every row is read: none skipped for its width.
        let data = dir.path().join("data");
        let (store, _) = carbonio_collector::store::Store::open(&data).unwrap();
        let mut imp = carbonio_collector::zmstat::import::Importer::new(
            &store,
            &data,
            "bench",
            chrono_tz::UTC,
            carbonio_collector::zmstat::import::Target::Blocks,
        )
        .unwrap();
        carbonio_collector::zmstat::import::import_dir(&mut imp, dir.path(), |_, _| {}).unwrap();
        assert_eq!(imp.report().rows as u64, rows);
        assert_eq!(imp.report().skipped_rows(), 0);
        let text = std::fs::read_to_string(&om).unwrap();
        assert!(
            text.contains("zmstat_proc_rssmb{host=\"bench\",job=\"zmstat\",process=\"mailbox\"}")
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
