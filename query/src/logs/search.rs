//! Running searches over the `logs` table: newest-first pages with a
//! cursor, a volume histogram, top field values, export streams and the
//! lines that arrived since a point (live tail). Every search runs in its
//! own DataFusion session with a memory limit and under a time limit.

use super::{compile, syntax};
use crate::logs_table::{LogSource, LogsTable};
use carbonio_collector::store::logs::HOUR_NS;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type, UInt8Type};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::logical_expr::{col, lit, Expr, SortExpr};
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use datafusion::scalar::ScalarValue;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("{0}")]
    Syntax(#[from] syntax::SyntaxError),
    #[error("invalid parameter: {0}")]
    BadParam(String),
    #[error("search failed: {0}")]
    Engine(String),
    #[error("search timed out after {0:?}")]
    Timeout(Duration),
}

impl From<datafusion::arrow::error::ArrowError> for SearchError {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        SearchError::Engine(e.to_string())
    }
}

impl From<datafusion::error::DataFusionError> for SearchError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        SearchError::Engine(e.to_string())
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: Duration,
    pub memory_bytes: usize,
}

/// The log columns an answer carries, in order.
const COLUMNS: [&str; 11] = [
    "timestamp",
    "received",
    "host",
    "app",
    "procid",
    "msgid",
    "facility",
    "severity",
    "message",
    "structured_data",
    "source",
];

pub struct LogSearch {
    source: Arc<dyn LogSource>,
    pub limits: Limits,
}

pub struct Page {
    pub lines: Vec<Value>,
    /// Pass back as `cursor` for the next (older) page; None at the end.
    pub next_cursor: Option<String>,
}

impl LogSearch {
    pub fn new(source: Arc<dyn LogSource>, limits: Limits) -> Self {
        LogSearch { source, limits }
    }

    /// A session whose queries share a memory pool of the configured size.
    pub fn session(&self) -> Result<SessionContext, SearchError> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(self.limits.memory_bytes, 1.0)
            .build_arc()?;
        let config = SessionConfig::new().with_target_partitions(2);
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        ctx.register_table("logs", Arc::new(LogsTable::new(self.source.clone())))?;
        Ok(ctx)
    }

    async fn frame(
        &self,
        query: &str,
        start_ns: i64,
        end_ns: i64,
    ) -> Result<DataFrame, SearchError> {
        let search = syntax::parse(query)?;
        let ctx = self.session()?;
        let df = ctx
            .table("logs")
            .await?
            .filter(time_range(start_ns, end_ns))?
            .filter(compile::filter(&search))?;
        Ok(df)
    }

    async fn collect(&self, df: DataFrame) -> Result<Vec<RecordBatch>, SearchError> {
        tokio::time::timeout(self.limits.timeout, df.collect())
            .await
            .map_err(|_| SearchError::Timeout(self.limits.timeout))?
            .map_err(SearchError::from)
    }

    /// Up to `limit` matching lines, newest first, older than `cursor`.
    /// Searches the newest hour first, then windows doubling back in time,
    /// and stops once the page is full: a common term never reads a month.
    pub async fn page(
        &self,
        query: &str,
        start_ns: i64,
        end_ns: i64,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, SearchError> {
        let mut skip = 0usize;
        let mut at = None;
        let mut newest = end_ns;
        if let Some(c) = cursor {
            let (t, r, n) = parse_cursor(c)?;
            skip = n;
            at = Some((t, r));
            newest = newest.min(t);
        }
        let wanted = skip.saturating_add(limit).saturating_add(1);
        let mut rows = Vec::new();
        let mut window = HOUR_NS;
        let mut hi = newest;
        while hi >= start_ns && rows.len() < wanted {
            // Hour-aligned, so each window opens whole hour files; the first
            // one also takes in lines stamped in the future (clock skew).
            let lo = (hi.min(now_ns()).div_euclid(HOUR_NS) * HOUR_NS)
                .saturating_sub(window - HOUR_NS)
                .max(start_ns);
            let mut df = self.frame(query, lo, hi).await?;
            if let Some((t, r)) = at {
                let (tl, rl) = (ts_lit(t), ts_lit(r));
                df = df.filter(
                    col("timestamp")
                        .lt(tl.clone())
                        .or(col("timestamp").eq(tl).and(col("received").lt_eq(rl))),
                )?;
            }
            let df = df
                .sort(newest_first())?
                .limit(0, Some(wanted - rows.len()))?;
            rows.extend(rows_json(&self.collect(df).await?)?);
            if lo <= start_ns {
                break;
            }
            hi = lo - 1;
            window = window.saturating_mul(2);
        }
        // Rows tied with the cursor position were returned already.
        let (mut ties, mut rows) = (0usize, rows.into_iter().peekable());
        while ties < skip {
            match rows.peek() {
                Some((t, r, _)) if Some((*t, *r)) == at => {
                    rows.next();
                    ties += 1;
                }
                _ => break,
            }
        }
        let mut page: Vec<(i64, i64, Value)> = rows.collect();
        let more = page.len() > limit;
        page.truncate(limit);
        let next_cursor = match (more, page.last()) {
            (true, Some((t, r, _))) => {
                let same = page.iter().filter(|(pt, pr, _)| (pt, pr) == (t, r)).count();
                let carried = if Some((*t, *r)) == at { skip } else { 0 };
                Some(format!("{t}:{r}:{}", same + carried))
            }
            _ => None,
        };
        Ok(Page {
            lines: page.into_iter().map(|(_, _, v)| v).collect(),
            next_cursor,
        })
    }

    /// How many lines match in [start_ns, end_ns].
    pub async fn count(&self, query: &str, start_ns: i64, end_ns: i64) -> Result<u64, SearchError> {
        let df = self
            .frame(query, start_ns, end_ns)
            .await?
            .aggregate(vec![], vec![count(lit(1)).alias("n")])?;
        let mut total = 0;
        for b in self.collect(df).await? {
            let n = cast(b.column(0), &DataType::Int64)?;
            total += n.as_primitive::<Int64Type>().iter().flatten().sum::<i64>();
        }
        Ok(total.max(0) as u64)
    }

    /// Matching lines per `step_ns` bucket from `start_ns`: (bucket start, count).
    pub async fn histogram(
        &self,
        query: &str,
        start_ns: i64,
        end_ns: i64,
        step_ns: i64,
    ) -> Result<Vec<(i64, u64)>, SearchError> {
        if step_ns <= 0 {
            return Err(SearchError::BadParam("step must be positive".into()));
        }
        let bucket = (datafusion::logical_expr::cast(col("timestamp"), DataType::Int64)
            - lit(start_ns))
            / lit(step_ns);
        let df = self
            .frame(query, start_ns, end_ns)
            .await?
            .aggregate(vec![bucket.alias("bucket")], vec![count(lit(1)).alias("n")])?
            .sort(vec![col("bucket").sort(true, false)])?;
        let mut out = Vec::new();
        for b in self.collect(df).await? {
            let buckets = cast(b.column(0), &DataType::Int64)?;
            let counts = cast(b.column(1), &DataType::Int64)?;
            let (buckets, counts) = (
                buckets.as_primitive::<Int64Type>(),
                counts.as_primitive::<Int64Type>(),
            );
            for i in 0..b.num_rows() {
                out.push((
                    start_ns + buckets.value(i) * step_ns,
                    counts.value(i) as u64,
                ));
            }
        }
        Ok(out)
    }

    /// Matching lines counted per value of `fields` and of the named
    /// captures of `extract` over the message (lines it does not match
    /// are not counted): what log alert rules compare to their threshold.
    pub async fn group_counts(
        &self,
        query: &str,
        start_ns: i64,
        end_ns: i64,
        fields: &[String],
        extract: Option<&regex::Regex>,
    ) -> Result<Vec<(BTreeMap<String, String>, u64)>, SearchError> {
        let as_text = |f: &String| {
            datafusion::logical_expr::cast(col(f.as_str()), DataType::Utf8).alias(f.as_str())
        };
        let df = self.frame(query, start_ns, end_ns).await?;
        let mut groups: BTreeMap<BTreeMap<String, String>, u64> = BTreeMap::new();
        let Some(re) = extract else {
            let df = df.aggregate(
                fields.iter().map(as_text).collect(),
                vec![count(lit(1)).alias("n")],
            )?;
            for b in self.collect(df).await? {
                let counts = cast(b.column(fields.len()), &DataType::Int64)?;
                let counts = counts.as_primitive::<Int64Type>();
                for row in 0..b.num_rows() {
                    let key = text_row(&b, fields, row);
                    *groups.entry(key).or_default() += counts.value(row).max(0) as u64;
                }
            }
            return Ok(groups.into_iter().collect());
        };
        let mut exprs: Vec<Expr> = fields.iter().map(as_text).collect();
        exprs.push(col("message"));
        exprs.push(col("structured_data"));
        let df = df.select(exprs)?;
        let names: Vec<&str> = re.capture_names().flatten().collect();
        for b in self.collect(df).await? {
            let messages = cast(b.column(fields.len()), &DataType::Utf8)?;
            let messages = messages.as_string::<i32>();
            let sd = cast(b.column(fields.len() + 1), &DataType::Utf8)?;
            let sd = sd.as_string::<i32>();
            for row in 0..b.num_rows() {
                // The message first; then structured data, where parsed
                // formats keep their context (audit.log's `oip`); then both,
                // for captures from each (an address and an account).
                let message = messages.value(row);
                let data = sd.value(row);
                let both;
                let caps = match re.captures(message).or_else(|| re.captures(data)) {
                    Some(c) => c,
                    None if data.is_empty() => continue,
                    None => {
                        both = format!("{data} {message}");
                        match re.captures(&both) {
                            Some(c) => c,
                            None => continue,
                        }
                    }
                };
                let mut key = text_row(&b, fields, row);
                for name in &names {
                    if let Some(m) = caps.name(name) {
                        key.insert(name.to_string(), m.as_str().to_string());
                    }
                }
                *groups.entry(key).or_default() += 1;
            }
        }
        Ok(groups.into_iter().collect())
    }

    /// The most frequent values of `field` among matching lines.
    pub async fn fields(
        &self,
        query: &str,
        start_ns: i64,
        end_ns: i64,
        field: &str,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, SearchError> {
        if !matches!(
            field,
            "host" | "app" | "procid" | "msgid" | "source" | "severity" | "facility"
        ) {
            return Err(SearchError::BadParam(format!(
                "field {field:?}: facets exist for host, app, procid, msgid, source, severity, facility"
            )));
        }
        let df = self
            .frame(query, start_ns, end_ns)
            .await?
            .aggregate(vec![col(field)], vec![count(lit(1)).alias("n")])?
            .sort(vec![
                col("n").sort(false, false),
                col(field).sort(true, false),
            ])?
            .limit(0, Some(limit))?;
        let mut out = Vec::new();
        for b in self.collect(df).await? {
            let values = cast(b.column(0), &DataType::Utf8)?;
            let counts = cast(b.column(1), &DataType::Int64)?;
            let (values, counts) = (
                values.as_string::<i32>(),
                counts.as_primitive::<Int64Type>(),
            );
            for i in 0..b.num_rows() {
                let v = if values.is_null(i) {
                    ""
                } else {
                    values.value(i)
                };
                out.push((v.to_string(), counts.value(i) as u64));
            }
        }
        Ok(out)
    }

    /// Every matching line, newest first, as a stream (export).
    pub async fn stream(
        &self,
        query: &str,
        start_ns: i64,
        end_ns: i64,
    ) -> Result<SendableRecordBatchStream, SearchError> {
        let df = self
            .frame(query, start_ns, end_ns)
            .await?
            .sort(newest_first())?;
        Ok(df.execute_stream().await?)
    }

    /// Matching lines received after `received_ns` (oldest first), for tail.
    pub async fn since(
        &self,
        query: &str,
        received_ns: i64,
        limit: usize,
    ) -> Result<Vec<(i64, Value)>, SearchError> {
        // Lines arriving now carry timestamps near now; an hour of slack
        // keeps late senders while still pruning old files.
        let df = self
            .frame(
                query,
                received_ns.min(now_ns()) - 3_600_000_000_000,
                i64::MAX,
            )
            .await?
            .filter(col("received").gt(ts_lit(received_ns)))?
            .sort(vec![col("received").sort(true, false)])?
            .limit(0, Some(limit))?;
        Ok(rows_json(&self.collect(df).await?)?
            .into_iter()
            .map(|(_, r, v)| (r, v))
            .collect())
    }
}

/// The first `fields.len()` columns of a row as text labels.
fn text_row(b: &RecordBatch, fields: &[String], row: usize) -> BTreeMap<String, String> {
    let mut key = BTreeMap::new();
    for (i, f) in fields.iter().enumerate() {
        let column = b.column(i);
        if let Some(values) = column.as_string_opt::<i32>() {
            if !values.is_null(row) && !values.value(row).is_empty() {
                key.insert(f.clone(), values.value(row).to_string());
            }
        }
    }
    key
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

fn newest_first() -> Vec<SortExpr> {
    vec![
        col("timestamp").sort(false, false),
        col("received").sort(false, false),
        col("host").sort(true, false),
        col("app").sort(true, false),
        col("message").sort(true, false),
    ]
}

fn ts_lit(ns: i64) -> Expr {
    lit(ScalarValue::TimestampNanosecond(
        Some(ns),
        Some("UTC".into()),
    ))
}

fn time_range(start_ns: i64, end_ns: i64) -> Expr {
    col("timestamp")
        .gt_eq(ts_lit(start_ns))
        .and(col("timestamp").lt_eq(ts_lit(end_ns)))
}

fn parse_cursor(c: &str) -> Result<(i64, i64, usize), SearchError> {
    let bad = || SearchError::BadParam(format!("cursor {c:?} is not one this server returned"));
    let mut parts = c.split(':');
    let t = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let r = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let n = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok((t, r, n))
}

/// RFC 3339 with nanoseconds, UTC.
pub fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Each row as (timestamp ns, received ns, JSON object).
pub fn rows_json(batches: &[RecordBatch]) -> Result<Vec<(i64, i64, Value)>, SearchError> {
    let mut out = Vec::new();
    for b in batches {
        let column = |name: &str| -> Result<ArrayRef, SearchError> {
            b.column_by_name(name)
                .cloned()
                .ok_or_else(|| SearchError::Engine(format!("result lacks column {name}")))
        };
        let text = |name: &str| -> Result<ArrayRef, SearchError> {
            Ok(cast(&column(name)?, &DataType::Utf8)?)
        };
        let ts = cast(&column("timestamp")?, &DataType::Int64)?;
        let rc = cast(&column("received")?, &DataType::Int64)?;
        let (ts, rc) = (
            ts.as_primitive::<Int64Type>(),
            rc.as_primitive::<Int64Type>(),
        );
        let texts: Vec<ArrayRef> = [
            "host",
            "app",
            "procid",
            "msgid",
            "message",
            "structured_data",
            "source",
        ]
        .iter()
        .map(|n| text(n))
        .collect::<Result<_, _>>()?;
        let fac = column("facility")?;
        let sev = column("severity")?;
        let (fac, sev) = (
            fac.as_primitive::<UInt8Type>(),
            sev.as_primitive::<UInt8Type>(),
        );
        for i in 0..b.num_rows() {
            let s = |k: usize| texts[k].as_string::<i32>().value(i).to_string();
            let num = |a: &datafusion::arrow::array::PrimitiveArray<UInt8Type>| {
                if a.is_null(i) {
                    Value::Null
                } else {
                    json!(a.value(i))
                }
            };
            let severity = num(sev);
            let facility = num(fac);
            let sev_name = severity.as_u64().and_then(|n| {
                carbonio_collector::logs::SEVERITY_NAMES
                    .get(n as usize)
                    .copied()
            });
            let fac_name = facility.as_u64().and_then(|n| {
                carbonio_collector::logs::FACILITY_NAMES
                    .get(n as usize)
                    .copied()
            });
            out.push((
                ts.value(i),
                rc.value(i),
                json!({
                    "timestamp": rfc3339(ts.value(i)),
                    "received": rfc3339(rc.value(i)),
                    "host": s(0),
                    "app": s(1),
                    "procid": s(2),
                    "msgid": s(3),
                    "facility": facility,
                    "facility_name": fac_name,
                    "severity": severity,
                    "severity_name": sev_name,
                    "message": s(4),
                    "structured_data": s(5),
                    "source": s(6),
                }),
            ));
        }
    }
    Ok(out)
}

/// The export columns, for CSV headers.
pub fn columns() -> &'static [&'static str] {
    &COLUMNS
}
