//! `bench log-search`: log search over the mail-system corpus (10 M lines
//! from `bench/corpus/gen_mail_corpus.py`) by our search (in process, as
//! the API runs it), by ripgrep over the raw text file, and by DuckDB over
//! the very Parquet files our store wrote.
//!
//! Searches are what the log explorer asks: the newest 100 matching lines.
//! Our words and phrases match whole words, so ripgrep's equivalent is
//! `rg -w PATTERN FILE | tail -n 100` (its output is read and the last 100
//! lines kept), DuckDB's LIKE plus a `\b…\b` regex check, `ORDER BY
//! timestamp DESC LIMIT 100`. The histogram counts matches per minute over the whole
//! corpus (ripgrep prints each match's minute with `-o -r`, counted here).
//! Every answer is cross-checked before timing: match counts of all three
//! agree, and the histograms are equal. Median of `reps`, tools alternating.

use anyhow::{bail, Context, Result};
use carbonio_collector::store::logs::LogStore;
use carbonio_query::logs::search::{Limits, LogSearch};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Options {
    pub corpus: PathBuf,
    /// Where our store is built (reused when complete).
    pub store: PathBuf,
    pub reps: usize,
    pub python: PathBuf,
}

/// Lines parsed as if received at this instant, so RFC 3164's missing year
/// is inferred the same way on every run.
const RECEIVED: &str = "2026-11-23T10:00:00Z";
const PAGE: usize = 100;
const MINUTE_NS: i64 = 60_000_000_000;

pub(crate) enum Kind {
    /// Newest 100 matching lines.
    Page,
    /// Matches per minute over the range.
    Histogram,
}

pub(crate) struct Query {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    /// Ours, in the log search syntax.
    pub(crate) search: String,
    pub(crate) range: (i64, i64),
    /// ripgrep's arguments before the file.
    rg: Vec<String>,
    /// DuckDB's WHERE clause (the range is added).
    duck_where: String,
}

pub fn run(o: &Options) -> Result<()> {
    if o.reps == 0 {
        bail!("--reps must be at least 1");
    }
    let rg = which("rg").context("ripgrep is missing: apt-get install ripgrep")?;
    let (store, first, last) = open_or_build(&o.corpus, &o.store)?;
    let files: Vec<String> = store
        .view(i64::MIN, i64::MAX)?
        .files
        .iter()
        .map(|(p, _)| p.display().to_string())
        .collect();
    let stored: u64 = files.iter().map(|f| file_size(f)).sum();
    eprintln!(
        "store: {} Parquet files, {:.1} MB; corpus {:.1} MB",
        files.len(),
        stored as f64 / 1e6,
        file_size(&o.corpus.display().to_string()) as f64 / 1e6
    );
    let queries = queries(first, last);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let search = LogSearch::new(
        store.clone(),
        Limits {
            timeout: Duration::from_secs(600),
            memory_bytes: 2 << 30,
        },
    );
    let mut duck = Duck::start(&o.python, &files)?;

    for q in &queries {
        check(q, &runtime, &search, &rg, &o.corpus, &mut duck)?;
    }
    eprintln!("answers agree; timing {} rounds", o.reps);
    let mut times: BTreeMap<&str, [Vec<f64>; 3]> = BTreeMap::new();
    for _ in 0..o.reps {
        for q in &queries {
            let t = times.entry(q.name).or_default();
            t[0].push(time(|| ours(q, &runtime, &search).map(drop))?);
            t[1].push(time(|| ripgrep(q, &rg, &o.corpus).map(drop))?);
            t[2].push(duck.query(&duck_sql(q))?.0);
        }
    }
    println!(
        "{:<44} {:>10} {:>10} {:>10} {:>9} {:>9}",
        "query (10 M lines)", "ours ms", "rg ms", "duckdb ms", "ours/rg", "ours/duck"
    );
    for q in &queries {
        let [a, b, c] = &times[q.name];
        let (a, b, c) = (median(a), median(b), median(c));
        println!(
            "{:<44} {:>10.1} {:>10.1} {:>10.1} {:>9.3} {:>9.3}",
            q.name,
            a * 1e3,
            b * 1e3,
            c * 1e3,
            a / b,
            a / c
        );
    }
    Ok(())
}

pub(crate) fn queries(first: i64, last: i64) -> Vec<Query> {
    let all = (first, last);
    // The last full hour of the corpus, for the windowed query.
    let hour_end = last.div_euclid(3_600_000_000_000) * 3_600_000_000_000 - 1;
    let hour = (hour_end + 1 - 3_600_000_000_000, hour_end);
    let hour_prefix = chrono::DateTime::from_timestamp_nanos(hour.0)
        .format("%b %e %H")
        .to_string();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect();
    vec![
        Query {
            name: "rare token (6 lines)",
            kind: Kind::Page,
            search: "8478BEA8D4".into(),
            range: all,
            rg: s(&["-w", "-F", "8478BEA8D4"]),
            duck_where: words("8478BEA8D4", true),
        },
        Query {
            name: "common phrase \"connect from\" (1.8 M)",
            kind: Kind::Page,
            search: "\"connect from\"".into(),
            range: all,
            rg: s(&["-w", "-F", "connect from"]),
            duck_where: words("connect from", true),
        },
        Query {
            name: "case-insensitive \"authentication failed\"",
            kind: Kind::Page,
            search: "\"authentication failed\"".into(),
            range: all,
            rg: s(&["-w", "-i", "-F", "authentication failed"]),
            duck_where: words("authentication failed", false),
        },
        Query {
            name: "host+app+phrase, last full hour",
            kind: Kind::Page,
            search: "host:mta1 app:postfix/smtpd \"connect from\"".into(),
            range: hour,
            rg: vec![format!(
                r"^<\d+>{hour_prefix}:\d\d:\d\d mta1 postfix/smtpd\[\d+\]: .*\bconnect from\b"
            )],
            duck_where: format!(
                "host = 'mta1' AND app = 'postfix/smtpd' AND {}",
                words("connect from", true)
            ),
        },
        Query {
            name: "per-minute histogram \"Failed password\"",
            kind: Kind::Histogram,
            search: "\"Failed password\"".into(),
            range: all,
            rg: s(&[
                "-o",
                "-r",
                "$1",
                r"^<\d+>(\w{3} [ \d]\d \d\d:\d\d):\d\d .*\bFailed password\b",
            ]),
            duck_where: words("Failed password", true),
        },
    ]
}

/// DuckDB's form of a whole-word search (what ours and `rg -w` do): LIKE
/// finds candidates fast, RE2's `\b` checks the word boundaries.
fn words(text: &str, case_sensitive: bool) -> String {
    let (like, flags) = if case_sensitive {
        ("LIKE", "")
    } else {
        ("ILIKE", "(?i)")
    };
    format!("message {like} '%{text}%' AND regexp_matches(message, '{flags}\\b{text}\\b')")
}

/// What each tool answered, reduced to something comparable: the number
/// of matches (pages) or the per-minute counts (histogram).
fn check(
    q: &Query,
    runtime: &tokio::runtime::Runtime,
    search: &LogSearch,
    rg: &Path,
    corpus: &Path,
    duck: &mut Duck,
) -> Result<()> {
    let ours_answer = ours(q, runtime, search)?;
    let rg_answer = ripgrep(q, rg, corpus)?;
    let (_, duck_rows) = duck.query(&duck_sql(q))?;
    match q.kind {
        Kind::Page => {
            let total = runtime.block_on(search.count(&q.search, q.range.0, q.range.1))?;
            let (_, counted) = duck.query(&format!(
                "SELECT count(*) FROM logs WHERE {} AND {}",
                q.duck_where,
                duck_time_range(q.range)
            ))?;
            let duck_total: u64 = counted
                .first()
                .and_then(|r| r.first())
                .and_then(|c| c.parse().ok())
                .context("DuckDB count")?;
            let page = PAGE.min(total as usize);
            if total != rg_answer.matches || total != duck_total {
                bail!(
                    "{}: matches differ: ours {total}, rg {}, duckdb {duck_total}",
                    q.name,
                    rg_answer.matches
                );
            }
            if ours_answer.len() != page || duck_rows.len() != page || rg_answer.last.len() != page
            {
                bail!("{}: page sizes differ", q.name);
            }
            eprintln!("{}: {total} matches", q.name);
        }
        Kind::Histogram => {
            let duck_hist: Vec<u64> = duck_rows
                .iter()
                .map(|r| r.get(1).and_then(|c| c.parse().ok()).unwrap_or(0))
                .collect();
            let rg_hist: Vec<u64> = rg_answer.minutes.values().copied().collect();
            if ours_answer != duck_hist || ours_answer != rg_hist {
                bail!(
                    "{}: histograms differ ({} / {} / {} buckets)",
                    q.name,
                    ours_answer.len(),
                    rg_hist.len(),
                    duck_hist.len()
                );
            }
            eprintln!(
                "{}: {} minutes, {} matches",
                q.name,
                ours_answer.len(),
                ours_answer.iter().sum::<u64>()
            );
        }
    }
    Ok(())
}

/// Ours: the page's lines (as their count) or the histogram's non-empty buckets.
fn ours(q: &Query, runtime: &tokio::runtime::Runtime, search: &LogSearch) -> Result<Vec<u64>> {
    let (start, end) = q.range;
    runtime.block_on(async {
        Ok(match q.kind {
            Kind::Page => {
                let page = search.page(&q.search, start, end, PAGE, None).await?;
                vec![1; page.lines.len()]
            }
            Kind::Histogram => search
                .histogram(
                    &q.search,
                    start.div_euclid(MINUTE_NS) * MINUTE_NS,
                    end,
                    MINUTE_NS,
                )
                .await?
                .into_iter()
                .map(|(_, n)| n)
                .filter(|n| *n > 0)
                .collect(),
        })
    })
}

#[derive(Default)]
struct RgAnswer {
    matches: u64,
    last: std::collections::VecDeque<String>,
    minutes: BTreeMap<String, u64>,
}

fn ripgrep(q: &Query, rg: &Path, corpus: &Path) -> Result<RgAnswer> {
    let mut child = Command::new(rg)
        .args(&q.rg)
        .arg(corpus)
        .stdout(Stdio::piped())
        .spawn()
        .context("starting rg")?;
    let out = child.stdout.take().context("rg stdout")?;
    let mut answer = RgAnswer::default();
    for line in BufReader::with_capacity(1 << 20, out).lines() {
        let line = line?;
        answer.matches += 1;
        match q.kind {
            Kind::Page => {
                if answer.last.len() == PAGE {
                    answer.last.pop_front();
                }
                answer.last.push_back(line);
            }
            // The corpus is in time order, so minutes come sorted as text
            // within a day; the key keeps them apart across days.
            Kind::Histogram => *answer.minutes.entry(minute_key(&line)).or_default() += 1,
        }
    }
    child.wait()?;
    Ok(answer)
}

/// "Nov 22 14:03" sorts as text within a month; the day comes first.
fn minute_key(s: &str) -> String {
    let day: u32 = s.get(4..6).and_then(|d| d.trim().parse().ok()).unwrap_or(0);
    format!("{day:02} {}", s.get(7..).unwrap_or(""))
}

fn duck_sql(q: &Query) -> String {
    let range = duck_time_range(q.range);
    match q.kind {
        Kind::Page => format!(
            "SELECT * FROM logs WHERE {} AND {range} ORDER BY timestamp DESC LIMIT {PAGE}",
            q.duck_where
        ),
        Kind::Histogram => format!(
            "SELECT date_trunc('minute', CAST(timestamp AS TIMESTAMPTZ)) AS m, count(*) FROM logs WHERE {} AND {range} GROUP BY m ORDER BY m",
            q.duck_where
        ),
    }
}

/// The range as timestamp literals, so DuckDB can prune row groups by
/// their statistics (`epoch_ns(...)` would hide the column from it).
fn duck_time_range((start, end): (i64, i64)) -> String {
    let t = |ns: i64| {
        chrono::DateTime::from_timestamp_nanos(ns)
            .format("%Y-%m-%d %H:%M:%S%.9f+00")
            .to_string()
    };
    format!(
        "timestamp >= CAST('{}' AS TIMESTAMPTZ_NS) AND timestamp <= CAST('{}' AS TIMESTAMPTZ_NS)",
        t(start),
        t(end)
    )
}

struct Duck {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Duck {
    fn start(python: &Path, files: &[String]) -> Result<Duck> {
        let script = std::env::temp_dir().join("carbonio-bench-duckdb_search.py");
        std::fs::write(&script, include_str!("duckdb_search.py"))?;
        let mut child = Command::new(python)
            .arg(&script)
            .arg(serde_json::to_string(files)?)
            .arg("2")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", python.display()))?;
        let stdin = child.stdin.take().context("python stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("python stdout")?);
        let mut duck = Duck {
            child,
            stdin,
            stdout,
        };
        let ready = duck.read()?;
        if ready.get("ready").is_none() {
            bail!(
                "DuckDB did not start (pip install duckdb pytz into {}): {ready}",
                python.display()
            );
        }
        Ok(duck)
    }

    fn read(&mut self) -> Result<serde_json::Value> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("the DuckDB helper exited (is the duckdb module installed?)");
        }
        Ok(serde_json::from_str(&line)?)
    }

    /// Seconds inside DuckDB and the rows as text.
    fn query(&mut self, sql: &str) -> Result<(f64, Vec<Vec<String>>)> {
        writeln!(self.stdin, "{}", serde_json::json!({ "sql": sql }))?;
        self.stdin.flush()?;
        let answer = self.read()?;
        if let Some(e) = answer.get("error") {
            bail!("DuckDB: {e} in {sql}");
        }
        let seconds = answer["seconds"].as_f64().context("DuckDB seconds")?;
        let rows = serde_json::from_value(answer["rows"].clone())?;
        Ok((seconds, rows))
    }
}

impl Drop for Duck {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Our store of the corpus: built once, as the collector would (parsed
/// lines appended in batches, flushed every million lines, compacted).
pub(crate) fn open_or_build(corpus: &Path, dir: &Path) -> Result<(Arc<LogStore>, i64, i64)> {
    let done = dir.join("complete");
    let received = chrono::DateTime::parse_from_rfc3339(RECEIVED)?
        .timestamp_nanos_opt()
        .context("received time")?;
    if !done.exists() {
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        let (store, _) = LogStore::open(dir)?;
        let file = std::fs::File::open(corpus).with_context(|| {
            format!(
                "reading {} (make it with bench/corpus/gen_mail_corpus.py)",
                corpus.display()
            )
        })?;
        let started = Instant::now();
        let mut batch = Vec::with_capacity(100_000);
        let mut lines = 0u64;
        let (mut first, mut last) = (i64::MAX, i64::MIN);
        for line in BufReader::with_capacity(1 << 20, file).split(b'\n') {
            let line = line?;
            if line.is_empty() {
                continue;
            }
            let (record, _) = carbonio_collector::syslog::parse::parse(
                &line,
                "tcp://10.0.0.1:514",
                received,
                chrono_tz::UTC,
            );
            first = first.min(record.timestamp_ns);
            last = last.max(record.timestamp_ns);
            batch.push(record);
            lines += 1;
            if batch.len() == 100_000 {
                store.append(std::mem::take(&mut batch))?;
            }
            if lines % 1_000_000 == 0 {
                store.flush()?;
                eprintln!("stored {lines} lines");
            }
        }
        store.append(batch)?;
        store.flush()?;
        store.compact(i64::MAX)?;
        // Lines, then the first and last timestamps: the summary a rerun reads.
        std::fs::write(&done, format!("{lines} {first} {last}\n"))?;
        eprintln!(
            "built the store from {lines} lines in {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    let summary = std::fs::read_to_string(&done)?;
    let numbers: Vec<i64> = summary
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    let [_, first, last] = numbers[..] else {
        bail!(
            "{} is not a store summary; delete {}",
            done.display(),
            dir.display()
        );
    };
    let (store, _) = LogStore::open(dir)?;
    Ok((Arc::new(store), first, last))
}

fn time(f: impl FnOnce() -> Result<()>) -> Result<f64> {
    let started = Instant::now();
    f()?;
    Ok(started.elapsed().as_secs_f64())
}

pub(crate) fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn file_size(path: &str) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}
