//! The `logs` table over a real log store: SQL answers equal a brute-force
//! reading of the same lines, whether they sit in Parquet parts or the head,
//! and a time filter opens only the files whose hour it overlaps.

use super::{time_bounds, LogsTable};
use carbonio_collector::logs::LogRecord;
use carbonio_collector::store::logs::LogStore;
use datafusion::arrow::array::{Array, Int64Array};
use datafusion::prelude::SessionContext;
use std::sync::Arc;

const HOUR: i64 = 3_600_000_000_000;
const T0: i64 = 1_790_000_000_000_000_000 / HOUR * HOUR;

fn line(ts: i64, host: &str, severity: u8, msg: &str) -> LogRecord {
    LogRecord {
        timestamp_ns: ts,
        received_ns: ts,
        host: host.into(),
        app: "postfix/smtpd".into(),
        severity: Some(severity),
        facility: Some(2),
        message: msg.into(),
        source: "tcp://10.0.0.1:1".into(),
        ..LogRecord::default()
    }
}

/// A word only the lines of one hour have.
const WORDS: [&str; 4] = ["alpha", "bravo", "charlie", "delta"];

/// 3 hours flushed into parts (one file per hour after compaction), a 4th
/// hour in the head.
fn store(dir: &std::path::Path) -> (Arc<LogStore>, Vec<LogRecord>) {
    let (store, _) = LogStore::open(dir).unwrap();
    let mut all = Vec::new();
    for hour in 0..4 {
        let lines: Vec<LogRecord> = (0..500)
            .map(|i| {
                line(
                    T0 + hour * HOUR + i * 7_000_000_000,
                    if i % 3 == 0 { "mta1" } else { "mta2" },
                    (i % 8) as u8,
                    &format!(
                        "status=sent line {i} of hour {hour} {}",
                        WORDS[hour as usize]
                    ),
                )
            })
            .collect();
        all.extend(lines.clone());
        if hour == 0 {
            // Hour 0 in two flushes: compaction joins its two files.
            let (a, b) = lines.split_at(250);
            store.append(a.to_vec()).unwrap();
            store.flush().unwrap().unwrap();
            store.append(b.to_vec()).unwrap();
        } else {
            store.append(lines).unwrap();
        }
        if hour == 2 {
            store.flush().unwrap().unwrap();
            assert_eq!(store.compact(T0 + 3 * HOUR).unwrap(), 2);
        }
    }
    (Arc::new(store), all)
}

fn context(store: &Arc<LogStore>) -> SessionContext {
    let ctx = SessionContext::new();
    ctx.register_table("logs", Arc::new(LogsTable::new(store.clone())))
        .unwrap();
    ctx
}

/// The physical plan, as EXPLAIN prints it.
async fn plan_text(df: datafusion::prelude::DataFrame) -> String {
    let plan = df.explain(false, false).unwrap().collect().await.unwrap();
    datafusion::arrow::util::pretty::pretty_format_batches(&plan)
        .unwrap()
        .to_string()
}

async fn count(ctx: &SessionContext, sql: &str) -> i64 {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let col = batches[0].column(0);
    col.as_any().downcast_ref::<Int64Array>().unwrap().value(0)
}

#[tokio::test]
async fn sql_over_parts_and_head_matches_brute_force() {
    let dir = tempfile::tempdir().unwrap();
    let (store, all) = store(dir.path());
    let ctx = context(&store);

    assert_eq!(
        count(&ctx, "select count(*) from logs").await,
        all.len() as i64
    );
    let errs = all
        .iter()
        .filter(|l| l.severity <= Some(3) && l.host == "mta1")
        .count();
    assert_eq!(
        count(
            &ctx,
            "select count(*) from logs where severity <= 3 and host = 'mta1'"
        )
        .await,
        errs as i64
    );
    // Hour 1 (a part) and the first half of hour 3 (the head).
    let (a, b) = (T0 + HOUR, T0 + 3 * HOUR + HOUR / 2);
    let in_range = all
        .iter()
        .filter(|l| l.timestamp_ns >= a && l.timestamp_ns < b && l.message.contains("line 4"))
        .count();
    let sql = format!(
        "select count(*) from logs where timestamp >= to_timestamp_nanos({a}) and timestamp < to_timestamp_nanos({b}) and message like '%line 4%'"
    );
    assert_eq!(count(&ctx, &sql).await, in_range as i64);
    let names = ctx
        .sql("select distinct severity_name from logs where severity = 3")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(names[0].num_rows(), 1);
    // Newest first with a limit, as log search pages.
    let top = ctx
        .sql("select message from logs order by timestamp desc limit 2")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&top)
        .unwrap()
        .to_string();
    assert!(text.contains("line 499 of hour 3"), "{text}");
}

#[tokio::test]
async fn time_filters_prune_files() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store(dir.path());
    let ctx = context(&store);
    let (a, b) = (T0 + HOUR + 1, T0 + HOUR + 2 * 60_000_000_000);
    let sql = format!(
        "select count(*) from logs where timestamp between to_timestamp_nanos({a}) and to_timestamp_nanos({b})"
    );
    let text = plan_text(ctx.sql(&sql).await.unwrap()).await;
    // Only the hour-1 file is opened, and the head (hour 3) is not scanned.
    let hour1 = format!("{:020}.parquet", T0 + HOUR);
    assert!(text.contains(&hour1), "{text}");
    for other in [T0, T0 + 2 * HOUR] {
        assert!(!text.contains(&format!("{other:020}.parquet")), "{text}");
    }
    assert!(!text.contains("MemorySourceConfig"), "{text}");
    let view = store.view(a, b).unwrap();
    assert_eq!(view.files.len(), 1);
    assert!(view.head.is_empty());
}

/// Files a search's plan opens, and how many lines it finds.
async fn search(ctx: &SessionContext, filter: datafusion::prelude::Expr) -> (Vec<i64>, usize) {
    let df = ctx.table("logs").await.unwrap().filter(filter).unwrap();
    let text = plan_text(df.clone()).await;
    let files = (0..3)
        .filter(|h| text.contains(&format!("{:020}.parquet", T0 + h * HOUR)))
        .collect();
    (files, df.count().await.unwrap())
}

#[tokio::test]
async fn token_filters_skip_files_without_the_words() {
    use crate::logs::words::word_match;
    use datafusion::prelude::col;
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store(dir.path());
    let ctx = context(&store);
    let m = |w: &str| word_match(col("message"), w, false);
    assert_eq!(search(&ctx, m("bravo")).await, (vec![1], 500));
    assert_eq!(search(&ctx, m("BRAVO")).await, (vec![1], 500));
    assert_eq!(search(&ctx, m("of hour 2 charlie")).await, (vec![2], 500));
    assert_eq!(
        search(&ctx, m("charlie").or(m("alpha"))).await,
        (vec![0, 2], 1000)
    );
    assert_eq!(
        search(&ctx, m("sent").and(m("bravo"))).await,
        (vec![1], 500)
    );
    // In the head only: no file is opened.
    assert_eq!(search(&ctx, m("delta")).await, (vec![], 500));
    assert_eq!(search(&ctx, m("nowhere")).await, (vec![], 0));
    // What the filters cannot tell reads every file.
    assert_eq!(search(&ctx, m("line 4")).await, (vec![0, 1, 2], 4));
    assert_eq!(search(&ctx, !m("bravo")).await, (vec![0, 1, 2], 1500));
    assert_eq!(
        search(
            &ctx,
            m("bravo").or(col("host").eq(datafusion::prelude::lit("mta1")))
        )
        .await
        .0,
        vec![0, 1, 2]
    );
    // Whole words: a part of one does not match.
    assert_eq!(search(&ctx, m("brav")).await.1, 0);
    assert_eq!(
        search(&ctx, word_match(col("message"), "Bravo", true))
            .await
            .1,
        0
    );
}

#[test]
fn bounds_from_filters() {
    use datafusion::prelude::{col, lit};
    use datafusion::scalar::ScalarValue;
    let ts = |n: i64| {
        lit(ScalarValue::TimestampNanosecond(
            Some(n),
            Some("UTC".into()),
        ))
    };
    let f = [
        col("timestamp").gt_eq(ts(10)).and(col("host").eq(lit("a"))),
        ts(20).gt(col("timestamp")),
    ];
    assert_eq!(time_bounds(&f), (10, 19));
    assert_eq!(
        time_bounds(&[col("timestamp").between(ts(5), ts(6))]),
        (5, 6)
    );
    assert_eq!(
        time_bounds(&[col("timestamp").gt(ts(5)).or(col("timestamp").lt(ts(1)))]),
        (i64::MIN, i64::MAX)
    );
    let ms = lit(ScalarValue::TimestampMillisecond(Some(3), None));
    assert_eq!(
        time_bounds(&[col("timestamp").lt_eq(ms)]),
        (i64::MIN, 3_000_000)
    );
}
