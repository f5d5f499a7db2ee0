//! The HTTP API on :9090: Prometheus's query endpoints (`prometheus`) and
//! the authentication every route but health passes through.

#[cfg(feature = "sql")]
pub mod logs;
mod prometheus;
pub mod rules;

use crate::auth::Auth;
use crate::promql::{Engine, QueryError};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use carbonio_collector::store::MetricRead;
use serde_json::{json, Value};
use std::sync::Arc;

/// Routes that answer without credentials (load balancers and our own
/// scrape of `/metrics` need them).
const PUBLIC: &[&str] = &["/-/healthy", "/-/ready", "/metrics"];

/// Largest form body accepted by POST endpoints.
const MAX_FORM_BYTES: usize = 4 << 20;

pub struct QueryService {
    pub metrics: Arc<dyn MetricRead + Send + Sync>,
    pub engine: Engine,
    /// Queries evaluated at once; more wait for a slot.
    pub slots: tokio::sync::Semaphore,
    /// The configuration text for `/api/v1/status/config`.
    pub config_yaml: String,
}

impl QueryService {
    pub fn new(
        metrics: Arc<dyn MetricRead + Send + Sync>,
        engine: Engine,
        max_concurrent: usize,
        config_yaml: String,
    ) -> Arc<Self> {
        Arc::new(QueryService {
            metrics,
            engine,
            slots: tokio::sync::Semaphore::new(max_concurrent.max(1)),
            config_yaml: carbonio_collector::config::redacted(&config_yaml),
        })
    }
}

/// The query API routes (health and the collector's routes are added by
/// whoever assembles the server).
pub fn router(svc: Arc<QueryService>) -> Router {
    prometheus::routes().with_state(svc)
}

/// `/-/healthy` and `/-/ready` for a server without a collector.
pub fn health_routes() -> Router {
    use axum::routing::get;
    Router::new()
        .route(
            "/-/healthy",
            get(|| async { "Carbonio Monitoring is Healthy.\n" }),
        )
        .route(
            "/-/ready",
            get(|| async { "Carbonio Monitoring is Ready.\n" }),
        )
}

/// Routes a query server without a collector answers itself: health,
/// its configuration, and an empty target list.
pub fn standalone_routes(svc: Arc<QueryService>) -> Router {
    use axum::routing::get;
    Router::new()
        .route(
            "/api/v1/status/config",
            get(|State(svc): State<Arc<QueryService>>| async move {
                success(json!({"yaml": svc.config_yaml}))
            }),
        )
        .route(
            "/api/v1/targets",
            get(|| async { success(json!({"activeTargets": [], "droppedTargets": []})) }),
        )
        .with_state(svc)
}

/// Requires credentials on every route except the public ones.
pub fn protect(router: Router, auth: Arc<Auth>) -> Router {
    router.layer(axum::middleware::from_fn_with_state(auth, require_auth))
}

/// Routes only admins may use (viewers read).
const ADMIN_ONLY: &[&str] = &["/-/reload", "/-/quit"];

async fn require_auth(State(auth): State<Arc<Auth>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if PUBLIC.contains(&path) || crate::ui::is_public(path) {
        return next.run(req).await;
    }
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    let principal = match header {
        // bcrypt is deliberately slow: keep it off the async workers.
        Some(h) => {
            let auth = auth.clone();
            tokio::task::spawn_blocking(move || auth.check(&h))
                .await
                .ok()
                .flatten()
        }
        None => match web_session(&auth, &req) {
            WebSession::Valid(p) => Some(p),
            WebSession::Absent => None,
            WebSession::NoCsrfToken => {
                return error_response(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "CSRF token missing or wrong (send the session's token in X-CSRF-Token)",
                )
            }
        },
    };
    match principal {
        Some(p) if ADMIN_ONLY.contains(&path) && p.role != crate::auth::Role::Admin => {
            error_response(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this needs the admin role",
            )
        }
        Some(p) => {
            let mut req = req;
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        None => {
            let mut resp = error_response(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "authentication required",
            );
            // Not to the web UI: a browser answers this header with its
            // own password dialog instead of letting the page log in.
            let from_ui = req.headers().contains_key("x-requested-with")
                || req.headers().contains_key(header::COOKIE);
            if !from_ui {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"Carbonio Monitoring\""),
                );
            }
            resp
        }
    }
}

enum WebSession {
    Absent,
    Valid(crate::auth::Principal),
    /// A live session, but a state-changing request without its token.
    NoCsrfToken,
}

/// The web UI's session cookie: requests that change something must also
/// carry the session's CSRF token (another site can make the browser send
/// the cookie, not read the token).
fn web_session(auth: &Auth, req: &Request) -> WebSession {
    let Some(id) = crate::auth::session::id_in(req.headers()) else {
        return WebSession::Absent;
    };
    let Some(session) = auth.sessions.get(id) else {
        return WebSession::Absent;
    };
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let token = req
        .headers()
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok());
    if !safe && token != Some(session.csrf.as_str()) {
        return WebSession::NoCsrfToken;
    }
    WebSession::Valid(session.principal)
}

/// Form parameters from the query string and, for POST, the
/// `application/x-www-form-urlencoded` body, in order (repeats kept).
pub struct Params(pub Vec<(String, String)>);

impl Params {
    pub async fn from_request(req: Request) -> Result<Params, Response> {
        let mut out: Vec<(String, String)> = req
            .uri()
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if req.method() == Method::POST && is_form {
            let body = axum::body::to_bytes(req.into_body(), MAX_FORM_BYTES)
                .await
                .map_err(|e| bad_request(&format!("error parsing form body: {e}")))?;
            out.extend(form_urlencoded::parse(&body).into_owned());
        }
        Ok(Params(out))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

pub fn success(data: Value) -> Response {
    json_response(StatusCode::OK, &json!({"status": "success", "data": data}))
}

pub fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

pub fn error_response(status: StatusCode, error_type: &str, msg: &str) -> Response {
    json_response(
        status,
        &json!({"status": "error", "errorType": error_type, "error": msg}),
    )
}

pub fn bad_request(msg: &str) -> Response {
    error_response(StatusCode::BAD_REQUEST, "bad_data", msg)
}

/// Status codes as Prometheus's API returns them per error type.
pub fn query_error(e: &QueryError) -> Response {
    let status = match e {
        QueryError::BadData(_) => StatusCode::BAD_REQUEST,
        QueryError::Execution(_) => StatusCode::UNPROCESSABLE_ENTITY,
        QueryError::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    error_response(status, e.error_type(), &e.to_string())
}
