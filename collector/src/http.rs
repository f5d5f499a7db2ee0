//! The collector's HTTP listener: health and readiness, `POST /-/reload`
//! (behind `--web.enable-lifecycle`, as in Prometheus), its own metrics, and
//! `/api/v1/targets` and `/api/v1/status/config` in Prometheus's JSON shapes,
//! the remote-write receiver `/api/v1/write`, and `/api/v1/fleet/*`, what
//! a stateless query node asks (see `fleet`).

use crate::discovery::format_duration;
use crate::service::Collector;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::Arc;

#[derive(Clone)]
struct App {
    collector: Arc<Collector>,
    lifecycle: bool,
}

/// The collector's routes. `fleet_api`: serve `/api/v1/fleet/*` (stored
/// data) — only behind authentication; otherwise those paths say so.
pub fn router(collector: Arc<Collector>, lifecycle: bool, fleet_api: bool) -> Router {
    let fleet = if fleet_api {
        Router::new()
            .route("/api/v1/fleet/info", get(fleet_info))
            .route("/api/v1/fleet/metadata", get(fleet_metadata))
            .route("/api/v1/fleet/select", post(fleet_select))
            .route("/api/v1/fleet/series", post(fleet_series))
            .route("/api/v1/fleet/logs", post(fleet_logs))
    } else {
        Router::new().route("/api/v1/fleet/{*rest}", axum::routing::any(fleet_disabled))
    };
    Router::new()
        .route(
            "/-/healthy",
            get(|| async { "Carbonio collector is Healthy.\n" }),
        )
        .route(
            "/-/ready",
            get(|| async { "Carbonio collector is Ready.\n" }),
        )
        .route("/-/reload", post(reload).put(reload))
        .route("/metrics", get(metrics))
        .route("/api/v1/targets", get(targets))
        .route("/api/v1/status/config", get(config))
        .route(
            "/api/v1/write",
            post(remote_write).layer(axum::extract::DefaultBodyLimit::max(
                crate::remote_write::MAX_BODY,
            )),
        )
        .merge(fleet)
        .with_state(App {
            collector,
            lifecycle,
        })
}

/// Prometheus remote write: 204 once stored (durable in the WAL); 400 for
/// a body that cannot be used (the sender drops it); 500 when storing
/// failed (the sender retries).
async fn remote_write(
    State(app): State<App>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    // Remote write 2.0 (`io.prometheus.write.v2.Request`) would decode as an
    // empty 1.0 request: refuse it so the sender falls back or says why.
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.contains("io.prometheus.write.v2") {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "only remote write 1.0 (prometheus.WriteRequest) is supported\n",
        )
            .into_response();
    }
    let c = app.collector.clone();
    let stored = tokio::task::spawn_blocking(move || {
        let samples = crate::remote_write::decode(&body)
            .map_err(|e| (StatusCode::BAD_REQUEST, format!("{e}\n")))?;
        c.store().append(&samples).map_err(|e| {
            tracing::error!(error = %e, "storing remote-written samples failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("storing failed: {e}\n"),
            )
        })
    })
    .await;
    match stored {
        Ok(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn reload(State(app): State<App>) -> Response {
    if !app.lifecycle {
        return (StatusCode::FORBIDDEN, "Lifecycle API is not enabled.\n").into_response();
    }
    let c = app.collector.clone();
    match tokio::task::spawn_blocking(move || c.reload("POST /-/reload")).await {
        Ok(Ok(())) => StatusCode::OK.into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {e}\n"),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn metrics(State(app): State<App>) -> Response {
    let c = app.collector.clone();
    match tokio::task::spawn_blocking(move || c.metrics()).await {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[derive(serde::Deserialize)]
struct TargetsQuery {
    state: Option<String>,
}

async fn targets(State(app): State<App>, Query(q): Query<TargetsQuery>) -> Json<Value> {
    let state = q.state.unwrap_or_else(|| "any".into());
    let active: Vec<Value> = if state == "active" || state == "any" {
        let mut list = app.collector.targets();
        list.sort_by(|a, b| (&a.job, &a.labels).cmp(&(&b.job, &b.labels)));
        list.iter().map(active_target).collect()
    } else {
        Vec::new()
    };
    let dropped: Vec<Value> = if state == "dropped" || state == "any" {
        app.collector
            .dropped_targets()
            .into_iter()
            .map(|(job, labels)| json!({"discoveredLabels": labels, "scrapePool": job}))
            .collect()
    } else {
        Vec::new()
    };
    Json(json!({
        "status": "success",
        "data": {"activeTargets": active, "droppedTargets": dropped},
    }))
}

fn active_target(t: &crate::manager::TargetStatus) -> Value {
    let public: crate::relabel::Labels = t
        .labels
        .iter()
        .filter(|(k, _)| !k.starts_with("__"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let (health, last_scrape) = match t.last_scrape_ms {
        None => ("unknown", "0001-01-01T00:00:00Z".to_string()),
        Some(ms) => (
            if t.last_error.is_some() { "down" } else { "up" },
            chrono::DateTime::from_timestamp_millis(ms)
                .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
                .unwrap_or_default(),
        ),
    };
    json!({
        "discoveredLabels": t.discovered,
        "labels": public,
        "scrapePool": t.job,
        "scrapeUrl": t.scrape_url,
        "globalUrl": t.scrape_url,
        "lastError": t.last_error.clone().unwrap_or_default(),
        "lastScrape": last_scrape,
        "lastScrapeDuration": t.last_duration.as_secs_f64(),
        "health": health,
        "scrapeInterval": format_duration(t.interval),
        "scrapeTimeout": format_duration(t.timeout),
    })
}

async fn config(State(app): State<App>) -> Json<Value> {
    let yaml = crate::config::redacted(&app.collector.config_text());
    Json(json!({"status": "success", "data": {"yaml": yaml}}))
}

async fn fleet_disabled() -> Response {
    (
        StatusCode::FORBIDDEN,
        "the fleet API serves stored data: start the collector with --web.config.file holding basic_auth_users\n",
    )
        .into_response()
}

async fn fleet_info(State(app): State<App>) -> Json<crate::fleet::Info> {
    Json(crate::fleet::Info {
        external_labels: app.collector.external_labels(),
    })
}

async fn fleet_metadata(State(app): State<App>) -> Json<crate::fleet::Metadata> {
    use crate::store::MetricRead;
    Json(app.collector.store().metadata())
}

/// Runs `f` on a blocking thread: 200 with an Arrow stream, or the error.
async fn arrow_reply(
    f: impl FnOnce() -> Result<Vec<u8>, (StatusCode, String)> + Send + 'static,
) -> Response {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(body)) => {
            ([(header::CONTENT_TYPE, crate::fleet::ARROW_STREAM)], body).into_response()
        }
        Ok(Err(e)) => e.into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

fn matchers_of(
    req: &crate::fleet::SelectRequest,
) -> Result<Vec<crate::store::head::Matcher>, (StatusCode, String)> {
    req.matchers
        .iter()
        .map(|m| m.to_matcher())
        .collect::<Result<_, _>>()
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("{e}\n")))
}

fn server_error(e: impl std::fmt::Display) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"))
}

/// Samples of the head and of the blocks the query node does not know.
async fn fleet_select(
    State(app): State<App>,
    Json(req): Json<crate::fleet::SelectRequest>,
) -> Response {
    arrow_reply(move || {
        let matchers = matchers_of(&req)?;
        let known = req.known_blocks.iter().cloned().collect();
        let selected = app
            .collector
            .store()
            .select_except(&matchers, req.start, req.end, &known)
            .map_err(server_error)?;
        crate::fleet::encode_selected(&selected).map_err(server_error)
    })
    .await
}

async fn fleet_series(
    State(app): State<App>,
    Json(req): Json<crate::fleet::SelectRequest>,
) -> Response {
    use crate::store::MetricRead;
    let found = tokio::task::spawn_blocking(move || {
        let matchers = matchers_of(&req)?;
        app.collector
            .store()
            .series(&matchers, req.start, req.end)
            .map_err(server_error)
    })
    .await;
    match found {
        Ok(Ok(series)) => Json(series).into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(e) => server_error(e).into_response(),
    }
}

/// Log rows of the head and of the parts the query node does not know.
async fn fleet_logs(
    State(app): State<App>,
    Json(req): Json<crate::fleet::LogsRequest>,
) -> Response {
    arrow_reply(move || {
        let known = req.known_parts.iter().cloned().collect();
        let (batches, parts) = app
            .collector
            .logs()
            .scan_except(req.start_ns, req.end_ns, &known)
            .map_err(server_error)?;
        crate::fleet::encode_logs(&batches, &parts).map_err(server_error)
    })
    .await
}
