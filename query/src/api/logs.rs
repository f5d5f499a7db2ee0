//! Log search and SQL endpoints: `/api/v1/logs/{query,histogram,fields,tail}`
//! and `/api/v1/sql`.

// Helpers return the finished error response: it is the handler's answer.
#![allow(clippy::result_large_err)]

use super::{bad_request, error_response, success, Params};
use crate::logs::search::{columns, rows_json, LogSearch, SearchError};
use crate::promql::{parse_duration_param, parse_time_param};
use crate::sql::{Sql, SqlError};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::StreamExt;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

pub struct LogApi {
    pub search: LogSearch,
    pub sql: Sql,
}

type Api = State<Arc<LogApi>>;

const DEFAULT_WINDOW_NS: i64 = 3_600_000_000_000;
const MAX_PAGE: usize = 5000;
const TAIL_POLL: Duration = Duration::from_millis(500);

pub fn routes(api: Arc<LogApi>) -> Router {
    Router::new()
        .route("/api/v1/logs/query", get(query).post(query))
        .route("/api/v1/logs/histogram", get(histogram).post(histogram))
        .route("/api/v1/logs/fields", get(fields).post(fields))
        .route("/api/v1/logs/tail", get(tail))
        .route("/api/v1/sql", get(sql).post(sql))
        .with_state(api)
}

macro_rules! try_resp {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(resp) => return resp,
        }
    };
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// `start`/`end` (RFC 3339 or Unix seconds); the last hour by default.
fn window(p: &Params) -> Result<(i64, i64), Response> {
    let parse = |name: &str| -> Result<Option<i64>, Response> {
        p.get(name)
            .map(|s| {
                parse_time_param(s)
                    .map(|ms| ms.saturating_mul(1_000_000))
                    .map_err(|e| bad_request(&format!("invalid parameter \"{name}\": {e}")))
            })
            .transpose()
    };
    let end = parse("end")?.unwrap_or_else(now_ns);
    let start = parse("start")?.unwrap_or(end - DEFAULT_WINDOW_NS);
    if end < start {
        return Err(bad_request(
            "invalid parameter \"end\": end must not be before start",
        ));
    }
    Ok((start, end))
}

fn search_error(e: SearchError) -> Response {
    match e {
        SearchError::Syntax(e) => {
            error_response(StatusCode::BAD_REQUEST, "bad_data", &e.to_string())
        }
        SearchError::BadParam(m) => bad_request(&m),
        SearchError::Timeout(_) => {
            error_response(StatusCode::SERVICE_UNAVAILABLE, "timeout", &e.to_string())
        }
        SearchError::Engine(m) => error_response(StatusCode::UNPROCESSABLE_ENTITY, "execution", &m),
    }
}

async fn query(State(api): Api, req: Request) -> Response {
    let p = try_resp!(Params::from_request(req).await);
    let q = p.get("query").unwrap_or("").to_string();
    let (start, end) = try_resp!(window(&p));
    match p.get("format").unwrap_or("json") {
        "json" => {}
        format @ ("ndjson" | "csv") => return export(&api, &q, start, end, format == "csv").await,
        other => {
            return bad_request(&format!(
                "invalid parameter \"format\": {other:?} (json, ndjson or csv)"
            ))
        }
    }
    let limit = match p.get("limit").map(str::parse::<usize>) {
        None => 100,
        Some(Ok(n)) if (1..=MAX_PAGE).contains(&n) => n,
        Some(_) => return bad_request(&format!("invalid parameter \"limit\": 1 to {MAX_PAGE}")),
    };
    match api
        .search
        .page(&q, start, end, limit, p.get("cursor"))
        .await
    {
        Ok(page) => success(json!({"lines": page.lines, "next_cursor": page.next_cursor})),
        Err(e) => search_error(e),
    }
}

/// Every match, newest first, streamed as NDJSON or CSV.
async fn export(api: &LogApi, q: &str, start: i64, end: i64, csv: bool) -> Response {
    let stream = match api.search.stream(q, start, end).await {
        Ok(s) => s,
        Err(e) => return search_error(e),
    };
    let header_line = csv.then(|| {
        let mut h = columns().join(",");
        h.push('\n');
        Bytes::from(h)
    });
    let body = futures::stream::iter(header_line.map(Ok::<_, std::io::Error>)).chain(stream.map(
        move |batch| {
            let batch = batch.map_err(std::io::Error::other)?;
            let rows = rows_json(&[batch]).map_err(std::io::Error::other)?;
            let mut out = String::new();
            for (_, _, row) in rows {
                if csv {
                    let cells: Vec<String> = columns().iter().map(|c| csv_cell(&row[*c])).collect();
                    out.push_str(&cells.join(","));
                } else {
                    out.push_str(&row.to_string());
                }
                out.push('\n');
            }
            Ok(Bytes::from(out))
        },
    ));
    let content_type = if csv {
        "text/csv; charset=utf-8"
    } else {
        "application/x-ndjson"
    };
    (
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(body),
    )
        .into_response()
}

fn csv_cell(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

async fn histogram(State(api): Api, req: Request) -> Response {
    let p = try_resp!(Params::from_request(req).await);
    let q = p.get("query").unwrap_or("");
    let (start, end) = try_resp!(window(&p));
    let step = match p.get("step") {
        Some(s) => match parse_duration_param(s) {
            Ok(ms) if ms > 0 => ms * 1_000_000,
            _ => return bad_request("invalid parameter \"step\": a positive duration"),
        },
        // About 100 bars, whole seconds.
        None => ((end - start) / 100).max(1_000_000_000) / 1_000_000_000 * 1_000_000_000,
    };
    if (end - start) / step > 11_000 {
        return bad_request("invalid parameter \"step\": more than 11,000 buckets");
    }
    match api.search.histogram(q, start, end, step).await {
        Ok(buckets) => {
            let list: Vec<Value> = buckets
                .into_iter()
                .map(|(t, n)| json!([t as f64 / 1e9, n]))
                .collect();
            success(json!({"step": step as f64 / 1e9, "buckets": list}))
        }
        Err(e) => search_error(e),
    }
}

async fn fields(State(api): Api, req: Request) -> Response {
    let p = try_resp!(Params::from_request(req).await);
    let q = p.get("query").unwrap_or("");
    let (start, end) = try_resp!(window(&p));
    let Some(field) = p.get("field") else {
        return bad_request("invalid parameter \"field\": required");
    };
    let limit = p
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(10usize)
        .min(1000);
    match api.search.fields(q, start, end, field, limit).await {
        Ok(values) => {
            let list: Vec<Value> = values
                .into_iter()
                .map(|(v, n)| json!({"value": v, "count": n}))
                .collect();
            success(json!({"field": field, "values": list}))
        }
        Err(e) => search_error(e),
    }
}

/// Server-sent events: each new matching line as `data: {json}`.
async fn tail(State(api): Api, req: Request) -> Response {
    let p = try_resp!(Params::from_request(req).await);
    let q = p.get("query").unwrap_or("").to_string();
    // Reject bad syntax now, not as an event after the stream opened.
    if let Err(e) = crate::logs::syntax::parse(&q) {
        return search_error(e.into());
    }
    // From `start` (the end of the page the client already shows), so
    // lines that arrive while the stream connects are not missed; at most
    // an hour back.
    let since = match p.get("start").map(parse_time_param) {
        None => now_ns(),
        Some(Ok(ms)) => ms
            .saturating_mul(1_000_000)
            .clamp(now_ns() - 3_600_000_000_000, now_ns()),
        Some(Err(e)) => return bad_request(&format!("invalid parameter \"start\": {e}")),
    };
    let events =
        futures::stream::unfold((api, q, since, true), |(api, q, since, first)| async move {
            if !first {
                tokio::time::sleep(TAIL_POLL).await;
            }
            let (chunk, next) = match api.search.since(&q, since, 1000).await {
                Ok(lines) => {
                    let next = lines.last().map(|(r, _)| *r).unwrap_or(since);
                    let mut out = String::new();
                    for (_, line) in lines {
                        out.push_str(&format!("data: {line}\n\n"));
                    }
                    if out.is_empty() {
                        // A comment keeps proxies from closing an idle stream.
                        out.push_str(": waiting\n\n");
                    }
                    (out, next)
                }
                Err(e) => (
                    format!("event: error\ndata: {}\n\n", json!(e.to_string())),
                    since,
                ),
            };
            Some((
                Ok::<_, std::io::Error>(Bytes::from(chunk)),
                (api, q, next, false),
            ))
        });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(events),
    )
        .into_response()
}

async fn sql(State(api): Api, req: Request) -> Response {
    let p = try_resp!(Params::from_request(req).await);
    let Some(q) = p.get("query") else {
        return bad_request("invalid parameter \"query\": SQL text required");
    };
    let arrow = match p.get("format").unwrap_or("json") {
        "json" => false,
        "arrow" => true,
        other => {
            return bad_request(&format!(
                "invalid parameter \"format\": {other:?} (json or arrow)"
            ))
        }
    };
    let (schema, batches) = match api.sql.run(q).await {
        Ok(r) => r,
        Err(e @ SqlError::Refused(_)) => {
            return error_response(StatusCode::BAD_REQUEST, "bad_data", &e.to_string())
        }
        Err(e @ SqlError::Timeout(_)) => {
            return error_response(StatusCode::SERVICE_UNAVAILABLE, "timeout", &e.to_string())
        }
        Err(e @ SqlError::Failed(_)) => {
            return error_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                "execution",
                &e.to_string(),
            )
        }
    };
    if arrow {
        let mut buf = Vec::new();
        let written = (|| {
            let mut w = datafusion::arrow::ipc::writer::StreamWriter::try_new(&mut buf, &schema)?;
            for b in &batches {
                w.write(b)?;
            }
            w.finish()
        })();
        if let Err(e) = written {
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                &e.to_string(),
            );
        }
        return (
            [(header::CONTENT_TYPE, "application/vnd.apache.arrow.stream")],
            buf,
        )
            .into_response();
    }
    let mut writer = datafusion::arrow::json::ArrayWriter::new(Vec::new());
    let refs: Vec<&datafusion::arrow::array::RecordBatch> = batches.iter().collect();
    if let Err(e) = writer.write_batches(&refs).and_then(|_| writer.finish()) {
        return error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &e.to_string(),
        );
    }
    let rows: Value = serde_json::from_slice(&writer.into_inner()).unwrap_or(json!([]));
    let names: Vec<&String> = schema.fields().iter().map(|f| f.name()).collect();
    success(json!({"columns": names, "rows": rows}))
}
