use super::*;
use carbonio_collector::relabel::Labels;
use carbonio_collector::store::head::{Matcher, Selected};
use carbonio_collector::store::record::MetricMeta;
use carbonio_collector::store::StoreError;
use std::collections::{BTreeMap, BTreeSet};

/// A store holding fixed series, for evaluating queries without disk.
struct Fixed(Vec<Selected>);

impl MetricRead for Fixed {
    fn select(&self, m: &[Matcher], start: i64, end: i64) -> Result<Vec<Selected>, StoreError> {
        Ok(self
            .0
            .iter()
            .filter(|(l, _)| m.iter().all(|m| m.matches(l)))
            .map(|(l, s)| {
                let s = s.iter().copied().filter(|(t, _)| *t >= start && *t <= end);
                (l.clone(), s.collect())
            })
            .filter(|(_, s): &Selected| !s.is_empty())
            .collect())
    }
    fn series(&self, m: &[Matcher], start: i64, end: i64) -> Result<Vec<Labels>, StoreError> {
        Ok(self
            .select(m, start, end)?
            .into_iter()
            .map(|(l, _)| l)
            .collect())
    }
    fn metadata(&self) -> BTreeMap<String, BTreeSet<MetricMeta>> {
        BTreeMap::new()
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// http_requests_total for two instances, +1/s and +2/s every 15 s for 10
/// minutes, the second with a counter reset at 300 s; a gauge `temp`.
fn store() -> Fixed {
    let mut series = Vec::new();
    for (inst, rate) in [("a", 1.0), ("b", 2.0)] {
        let mut pts = Vec::new();
        let mut v = 0.0;
        for i in 0..=40 {
            let t = i * 15_000;
            if inst == "b" && t == 300_000 {
                v = 0.0;
            }
            pts.push((t, v));
            v += rate * 15.0;
        }
        series.push((
            labels(&[
                ("__name__", "http_requests_total"),
                ("instance", inst),
                ("job", "web"),
            ]),
            pts,
        ));
    }
    series.push((
        labels(&[("__name__", "temp"), ("instance", "a")]),
        vec![(0, 20.0), (60_000, 21.0)],
    ));
    Fixed(series)
}

fn instant(q: &str, t: i64) -> Result<Value, QueryError> {
    Engine::default().instant(&store(), q, t).map(|(v, _)| v)
}

fn vector(q: &str, t: i64) -> Vec<(Labels, f64)> {
    match instant(q, t) {
        Ok(Value::Vector(v)) => {
            let mut out: Vec<_> = v
                .into_iter()
                .map(|s| (Labels::clone(&s.labels), s.v))
                .collect();
            out.sort_by(|a, b| a.0.cmp(&b.0));
            out
        }
        other => panic!("{q}: {other:?}"),
    }
}

#[test]
fn selectors_honour_lookback() {
    assert_eq!(vector("temp", 60_000 + 299_000)[0].1, 21.0);
    assert!(vector("temp", 60_000 + 300_001).is_empty());
    assert_eq!(vector("temp offset 1m", 60_000)[0].1, 20.0);
    assert_eq!(vector("temp @ 0", 600_000)[0].1, 20.0);
}

#[test]
fn rate_sum_and_matching() {
    let r = vector("sum by (job) (rate(http_requests_total[5m]))", 600_000);
    assert_eq!(r.len(), 1);
    assert!((r[0].1 - 3.0).abs() < 1e-9, "{r:?}");
    let r = vector(
        "http_requests_total / on(instance) group_left(job) http_requests_total",
        600_000,
    );
    assert_eq!(r.len(), 2);
    assert!(r
        .iter()
        .all(|(l, v)| *v == 1.0 && !l.contains_key("__name__")));
    assert_eq!(vector("http_requests_total > 700", 600_000).len(), 0);
    let r = vector("http_requests_total > bool 700", 600_000);
    assert!(r.len() == 2 && r.iter().all(|(_, v)| *v == 0.0));
}

#[test]
fn subqueries_and_aggregations() {
    let r = vector(
        "max_over_time(rate(http_requests_total[1m])[5m:1m])",
        600_000,
    );
    assert_eq!(r.len(), 2);
    let r = vector("topk(1, http_requests_total)", 600_000);
    assert_eq!(r[0].0.get("instance").map(String::as_str), Some("a"));
    let r = vector("count_values(\"v\", temp)", 60_000);
    assert_eq!(r[0].0.get("v").map(String::as_str), Some("21"));
}

#[test]
fn errors_have_prometheus_types() {
    assert_eq!(instant("rate(", 0).unwrap_err().error_type(), "bad_data");
    assert_eq!(
        instant("http_requests_total + on() http_requests_total", 600_000)
            .unwrap_err()
            .error_type(),
        "execution"
    );
    let deep = format!("{}1{}", "(".repeat(500), ")".repeat(500));
    assert!(matches!(instant(&deep, 0), Err(QueryError::BadData(_))));
    let long = vec!["1"; 5000].join("+");
    assert!(matches!(instant(&long, 0), Err(QueryError::BadData(_))));
}

#[test]
fn range_query_steps() {
    let m = Engine::default()
        .range(&store(), "temp", 0, 120_000, 60_000)
        .map(|(m, _)| m)
        .unwrap_or_default();
    assert_eq!(m.len(), 1);
    assert_eq!(
        m[0].points,
        vec![(0, 20.0), (60_000, 21.0), (120_000, 21.0)]
    );
}

#[test]
fn raw_strings_have_no_escapes() {
    assert_eq!(
        raw_strings_quoted(r#"label_replace(x, "a", `\d "q"`, "b", "c")"#),
        r#"label_replace(x, "a", "\\d \"q\"", "b", "c")"#
    );
    assert!(matches!(instant(r"`raw \ string`", 0), Ok(Value::String(s)) if s == r"raw \ string"));
}
