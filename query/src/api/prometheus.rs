//! Prometheus HTTP API v1 endpoints, same paths, parameters and JSON shapes,
//! GET and POST forms alike.

// Helpers return the finished error response: it is the handler's answer.
#![allow(clippy::result_large_err)]

use super::{bad_request, query_error, success, Params, QueryService};
use crate::promql::value::{format_float, Series, Value as PromValue};
use crate::promql::{parse_duration_param, parse_time_param, QueryError, QueryStats};
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use carbonio_collector::relabel::Labels;
use carbonio_collector::store::head::Matcher;
use promql_parser::label::MatchOp;
use promql_parser::parser::Expr;
use serde_json::{json, Map, Value};
use std::sync::Arc;

type Svc = State<Arc<QueryService>>;

/// Prometheus refuses range queries with more points per series than this.
const MAX_POINTS: i64 = 11_000;
/// Prometheus's "no bound" times for series and label queries.
const MIN_TIME: i64 = i64::MIN / 2;
const MAX_TIME: i64 = i64::MAX / 2;

pub fn routes() -> Router<Arc<QueryService>> {
    Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/metadata", get(metadata))
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .route("/api/v1/format_query", get(format_query).post(format_query))
        .route("/federate", get(federate))
}

macro_rules! try_resp {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(resp) => return resp,
        }
    };
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn time_param(p: &Params, name: &str, default: i64) -> Result<i64, Response> {
    match p.get(name) {
        None => Ok(default),
        Some(s) => parse_time_param(s).map_err(|_| {
            bad_request(&format!(
                "invalid parameter \"{name}\": cannot parse \"{s}\" to a valid timestamp"
            ))
        }),
    }
}

/// A query timeout shorter than the engine's, when the client asks for one.
fn engine_for(svc: &QueryService, p: &Params) -> Result<crate::promql::Engine, Response> {
    let mut engine = svc.engine.clone();
    if let Some(t) = p.get("timeout") {
        let ms = parse_duration_param(t)
            .map_err(|e| bad_request(&format!("invalid parameter \"timeout\": {e}")))?;
        if ms > 0 {
            engine.options.timeout = engine
                .options
                .timeout
                .min(std::time::Duration::from_millis(ms as u64));
        }
    }
    Ok(engine)
}

/// Runs blocking evaluation in a concurrency slot.
async fn evaluate<T: Send + 'static>(
    svc: &Arc<QueryService>,
    f: impl FnOnce(&QueryService) -> Result<T, QueryError> + Send + 'static,
) -> Result<T, Response> {
    let Ok(_slot) = svc.slots.acquire().await else {
        return Err(query_error(&QueryError::Execution(
            "query service is shutting down".into(),
        )));
    };
    let svc = svc.clone();
    match tokio::task::spawn_blocking(move || f(&svc)).await {
        Ok(r) => r.map_err(|e| query_error(&e)),
        Err(e) => Err(query_error(&QueryError::Execution(e.to_string()))),
    }
}

async fn query(State(svc): Svc, req: Request) -> Response {
    let p = try_resp!(Params::from_request(req).await);
    let Some(q) = p.get("query").map(str::to_string) else {
        return bad_request("invalid parameter \"query\": query must not be empty");
    };
    let t = try_resp!(time_param(&p, "time", now_ms()));
    let engine = try_resp!(engine_for(&svc, &p));
    let (value, stats) =
        try_resp!(evaluate(&svc, move |s| engine.instant(s.metrics.as_ref(), &q, t)).await);
    let mut out = Vec::new();
    let kind = match value {
        PromValue::Scalar(v) => {
            write_point(&mut out, t, v);
            "scalar"
        }
        PromValue::String(s) => {
            out.push(b'[');
            write_ts(&mut out, t);
            out.push(b',');
            let _ = serde_json::to_writer(&mut out, &s);
            out.push(b']');
            "string"
        }
        PromValue::Vector(v) => {
            out.push(b'[');
            for (i, s) in v.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"metric\":");
                let _ = serde_json::to_writer(&mut out, s.labels.as_ref());
                out.extend_from_slice(b",\"value\":");
                write_point(&mut out, t, s.v);
                out.push(b'}');
            }
            out.push(b']');
            "vector"
        }
        PromValue::Matrix(m) => {
            write_matrix(&mut out, &m);
            "matrix"
        }
    };
    respond(kind, &out, &p, stats)
}

async fn query_range(State(svc): Svc, req: Request) -> Response {
    let p = try_resp!(Params::from_request(req).await);
    let Some(q) = p.get("query").map(str::to_string) else {
        return bad_request("invalid parameter \"query\": query must not be empty");
    };
    let (Some(_), Some(_)) = (p.get("start"), p.get("end")) else {
        return bad_request("invalid parameter \"start\": start and end are required");
    };
    let start = try_resp!(time_param(&p, "start", 0));
    let end = try_resp!(time_param(&p, "end", 0));
    if end < start {
        return bad_request(
            "invalid parameter \"end\": end timestamp must not be before start time",
        );
    }
    let Some(step) = p.get("step") else {
        return bad_request("invalid parameter \"step\": cannot parse \"\" to a valid duration");
    };
    let step = match parse_duration_param(step) {
        Ok(s) if s > 0 => s,
        Ok(_) => {
            return bad_request("invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer")
        }
        Err(e) => return bad_request(&format!("invalid parameter \"step\": {e}")),
    };
    if (end - start) / step > MAX_POINTS {
        return bad_request("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)");
    }
    let engine = try_resp!(engine_for(&svc, &p));
    let (matrix, stats) = try_resp!(
        evaluate(&svc, move |s| engine.range(
            s.metrics.as_ref(),
            &q,
            start,
            end,
            step
        ))
        .await
    );
    let mut out = Vec::with_capacity(64 * matrix.iter().map(|s| s.points.len() + 4).sum::<usize>());
    write_matrix(&mut out, &matrix);
    respond("matrix", &out, &p, stats)
}

/// The success envelope around an already encoded result: results are
/// written straight to bytes (building `serde_json::Value`s cost more than
/// evaluating a typical dashboard query).
fn respond(kind: &str, result: &[u8], p: &Params, stats: QueryStats) -> Response {
    let mut body = Vec::with_capacity(result.len() + 96);
    body.extend_from_slice(b"{\"status\":\"success\",\"data\":{\"resultType\":\"");
    body.extend_from_slice(kind.as_bytes());
    body.extend_from_slice(b"\",\"result\":");
    body.extend_from_slice(result);
    if p.get("stats").is_some() {
        body.extend_from_slice(b",\"stats\":");
        let stats = json!({
            "timings": {
                "evalTotalTime": stats.eval_seconds,
                "resultSortTime": 0,
                "queryPreparationTime": 0,
                "innerEvalTime": stats.eval_seconds,
                "execQueueTime": 0,
                "execTotalTime": stats.eval_seconds,
            },
            "samples": {
                "totalQueryableSamples": stats.samples_loaded,
                "peakSamples": stats.samples_loaded,
            }
        });
        let _ = serde_json::to_writer(&mut body, &stats);
    }
    body.extend_from_slice(b"}}");
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Unix seconds as Prometheus writes them: an integer when whole.
fn write_ts(out: &mut Vec<u8>, ms: i64) {
    use std::io::Write;
    let _ = if ms % 1000 == 0 {
        write!(out, "{}", ms / 1000)
    } else {
        write!(out, "{}", ms as f64 / 1000.0)
    };
}

/// `[t,"v"]`
fn write_point(out: &mut Vec<u8>, t: i64, v: f64) {
    out.push(b'[');
    write_ts(out, t);
    out.extend_from_slice(b",\"");
    out.extend_from_slice(format_float(v).as_bytes());
    out.extend_from_slice(b"\"]");
}

fn write_matrix(out: &mut Vec<u8>, m: &[Series]) {
    out.push(b'[');
    for (i, s) in m.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"metric\":");
        let _ = serde_json::to_writer(&mut *out, s.labels.as_ref());
        out.extend_from_slice(b",\"values\":[");
        for (j, (t, v)) in s.points.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            write_point(out, *t, *v);
        }
        out.extend_from_slice(b"]}");
    }
    out.push(b']');
}

fn labels_json(l: &Labels) -> Value {
    Value::Object(
        l.iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect::<Map<_, _>>(),
    )
}

/// `match[]` selectors as store matchers (each must be a plain selector).
fn match_params(p: &Params) -> Result<Vec<Vec<Matcher>>, Response> {
    let mut out = Vec::new();
    for m in p.all("match[]") {
        let expr = crate::promql::parse(m)
            .map_err(|e| bad_request(&format!("invalid parameter \"match[]\": {e}")))?;
        let Expr::VectorSelector(vs) = expr else {
            return Err(bad_request(&format!(
                "invalid parameter \"match[]\": {m:?} is not a series selector"
            )));
        };
        let mut ms: Vec<Matcher> = vs
            .name
            .iter()
            .map(|n| Matcher::Equal("__name__".into(), n.clone()))
            .collect();
        for m in vs.matchers.matchers {
            ms.push(match m.op {
                MatchOp::Equal => Matcher::Equal(m.name, m.value),
                MatchOp::NotEqual => Matcher::NotEqual(m.name, m.value),
                MatchOp::Re(re) => Matcher::Re(m.name, re),
                MatchOp::NotRe(re) => Matcher::NotRe(m.name, re),
            });
        }
        out.push(ms);
    }
    Ok(out)
}

/// Label sets of the series any selector matches (all series when none given
/// and `all_if_none`).
async fn matching_series(
    svc: &Arc<QueryService>,
    p: &Params,
    all_if_none: bool,
) -> Result<Vec<Labels>, Response> {
    let mut selectors = match_params(p)?;
    if selectors.is_empty() {
        if !all_if_none {
            return Err(bad_request("no match[] parameter provided"));
        }
        selectors.push(vec![Matcher::Re(
            "__name__".into(),
            regex::Regex::new("^(?:.+)$").map_err(|e| bad_request(&e.to_string()))?,
        )]);
    }
    let start = time_param(p, "start", MIN_TIME)?;
    let end = time_param(p, "end", MAX_TIME)?;
    evaluate(svc, move |s| {
        let mut all = std::collections::BTreeSet::new();
        for m in &selectors {
            let found = s
                .metrics
                .series(m, start, end)
                .map_err(|e| QueryError::Execution(e.to_string()))?;
            all.extend(found);
        }
        Ok(all.into_iter().collect())
    })
    .await
}

async fn series(State(svc): Svc, req: Request) -> Response {
    let p = try_resp!(Params::from_request(req).await);
    let found = try_resp!(matching_series(&svc, &p, false).await);
    success(Value::Array(found.iter().map(labels_json).collect()))
}

async fn labels(State(svc): Svc, req: Request) -> Response {
    let p = try_resp!(Params::from_request(req).await);
    let found = try_resp!(matching_series(&svc, &p, true).await);
    let names: std::collections::BTreeSet<&String> = found.iter().flat_map(|l| l.keys()).collect();
    success(json!(names))
}

async fn label_values(State(svc): Svc, Path(name): Path<String>, req: Request) -> Response {
    let p = try_resp!(Params::from_request(req).await);
    if !crate::promql::valid_label_name(&name) {
        return bad_request(&format!("invalid label name: {name:?}"));
    }
    let found = try_resp!(matching_series(&svc, &p, true).await);
    let values: std::collections::BTreeSet<&String> =
        found.iter().filter_map(|l| l.get(&name)).collect();
    success(json!(values))
}

async fn metadata(State(svc): Svc, req: Request) -> Response {
    let p = try_resp!(Params::from_request(req).await);
    let limit: usize = p
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(usize::MAX);
    let metric = p.get("metric");
    let mut out = Map::new();
    for (name, metas) in svc.metrics.metadata() {
        if out.len() >= limit {
            break;
        }
        if metric.is_some_and(|m| m != name) {
            continue;
        }
        let list: Vec<Value> = metas
            .iter()
            .map(|m| json!({"type": m.kind, "help": m.help, "unit": m.unit}))
            .collect();
        out.insert(name, Value::Array(list));
    }
    success(Value::Object(out))
}

async fn buildinfo() -> Response {
    success(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "revision": "",
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
        "application": "carbonio-monitor",
    }))
}

async fn format_query(req: Request) -> Response {
    let p = try_resp!(Params::from_request(req).await);
    let Some(q) = p.get("query") else {
        return bad_request("invalid parameter \"query\": query must not be empty");
    };
    match crate::promql::parse(q) {
        Ok(expr) => success(json!(expr.prettify())),
        Err(e) => query_error(&e),
    }
}

/// The newest sample of every matching series, in the text format.
async fn federate(State(svc): Svc, req: Request) -> Response {
    let p = try_resp!(Params::from_request(req).await);
    let selectors = try_resp!(match_params(&p));
    let now = now_ms();
    let lookback = svc.engine.options.lookback_delta_ms;
    let latest = try_resp!(
        evaluate(&svc, move |s| {
            let mut latest = std::collections::BTreeMap::new();
            for m in &selectors {
                for (labels, points) in s
                    .metrics
                    .select(m, now - lookback, now)
                    .map_err(|e| QueryError::Execution(e.to_string()))?
                {
                    if let Some(&(t, v)) = points.last() {
                        if v.to_bits() != carbonio_collector::scrape::target::STALE_NAN_BITS {
                            latest.insert(labels, (t, v));
                        }
                    }
                }
            }
            Ok(latest)
        })
        .await
    );
    let mut body = String::new();
    let mut last_name = String::new();
    for (labels, (t, v)) in &latest {
        let name = labels.get("__name__").cloned().unwrap_or_default();
        if name != last_name {
            body.push_str(&format!("# TYPE {name} untyped\n"));
            last_name = name.clone();
        }
        let rest: Vec<String> = labels
            .iter()
            .filter(|(k, _)| k.as_str() != "__name__")
            .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
            .collect();
        body.push_str(&format!(
            "{name}{{{}}} {} {t}\n",
            rest.join(","),
            format_float(*v)
        ));
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('"', "\\\"")
}
