//! The web UI on the query port: static assets embedded in the binary (no
//! CDN at run time), the login that turns a local or LDAP password into a
//! session cookie, and the dashboards it renders (the same Grafana JSON
//! `dashboards export` writes).

use crate::api::{error_response, success};
use crate::auth::session::COOKIE;
use crate::auth::{Auth, Principal};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use std::sync::Arc;

/// Paths served without credentials: the page, its assets, the login.
pub fn is_public(path: &str) -> bool {
    path == "/" || path == "/login" || path == "/favicon.ico" || path.starts_with("/ui/")
}

const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../ui/app.css"),
    ),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../../ui/uPlot.min.css"),
    ),
];
const INDEX: &[u8] = include_bytes!("../../ui/index.html");

pub struct Ui {
    pub auth: Arc<Auth>,
    /// Dashboards as Grafana JSON.
    pub dashboards: Vec<Value>,
    /// The UI is served over TLS: cookies get `Secure`.
    pub secure_cookies: bool,
}

type St = State<Arc<Ui>>;

pub fn routes(ui: Arc<Ui>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/ui/{file}", get(asset))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/api/v1/session", get(session))
        .route("/api/v1/dashboards", get(dashboards))
        .route("/api/v1/dashboards/{uid}", get(dashboard))
        .with_state(ui)
}

/// Headers every UI response carries: no framing by other sites, no
/// sniffing, scripts only from here.
fn page_headers(content_type: &'static str) -> [(header::HeaderName, &'static str); 5] {
    [
        (header::CONTENT_TYPE, content_type),
        (header::CACHE_CONTROL, "no-cache"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
        ),
    ]
}

async fn index() -> Response {
    (page_headers("text/html; charset=utf-8"), INDEX).into_response()
}

/// The assets gzipped once, on first use.
fn gzipped(index: usize) -> &'static [u8] {
    static GZ: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    let all = GZ.get_or_init(|| {
        ASSETS
            .iter()
            .map(|(_, _, bytes)| {
                use std::io::Write;
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                // Writing to a Vec cannot fail.
                let _ = gz.write_all(bytes);
                gz.finish().unwrap_or_default()
            })
            .collect()
    });
    all.get(index).map(Vec::as_slice).unwrap_or_default()
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    let Some(index) = ASSETS.iter().position(|(name, _, _)| *name == file) else {
        return error_response(StatusCode::NOT_FOUND, "not_found", "no such file");
    };
    let (_, kind, bytes) = ASSETS[index];
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let mut resp = if gzip {
        let mut r = (page_headers(kind), gzipped(index)).into_response();
        r.headers_mut().insert(
            header::CONTENT_ENCODING,
            header::HeaderValue::from_static("gzip"),
        );
        r
    } else {
        (page_headers(kind), bytes).into_response()
    };
    resp.headers_mut().insert(
        header::VARY,
        header::HeaderValue::from_static("Accept-Encoding"),
    );
    resp
}

#[derive(serde::Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

/// JSON `{username, password}` or a form post.
fn credentials(headers: &HeaderMap, body: &[u8]) -> Option<Credentials> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json {
        return serde_json::from_slice(body).ok();
    }
    let mut user = None;
    let mut pass = None;
    for (k, v) in form_urlencoded::parse(body) {
        match k.as_ref() {
            "username" => user = Some(v.into_owned()),
            "password" => pass = Some(v.into_owned()),
            _ => {}
        }
    }
    Some(Credentials {
        username: user?,
        password: pass?,
    })
}

async fn login(State(ui): St, headers: HeaderMap, body: Bytes) -> Response {
    let Some(c) = credentials(&headers, &body) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "bad_data",
            "username and password required",
        );
    };
    if !ui.auth.sessions.login_allowed(&c.username) {
        let mut resp = error_response(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "too many failed logins: wait a few minutes",
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("300"));
        return resp;
    }
    let auth = ui.auth.clone();
    let user = c.username.clone();
    // Password hashes and LDAP binds are slow: off the async workers.
    let checked = tokio::task::spawn_blocking(move || verify(&auth, &c)).await;
    let principal = match checked {
        Ok(Ok(p)) => p,
        Ok(Err(message)) => {
            tracing::warn!(%message, "LDAP login unavailable");
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the directory cannot be reached; try a local user",
            );
        }
        Err(_) => None,
    };
    let Some(principal) = principal else {
        ui.auth.sessions.login_failed(&user);
        tracing::info!(user = %user, "failed web login");
        return error_response(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "wrong user name or password",
        );
    };
    let (id, session) = match ui.auth.sessions.create(principal) {
        Ok(s) => s,
        Err(e) => {
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                &e.to_string(),
            )
        }
    };
    let max_age = ui.auth.sessions.idle_timeout().as_secs();
    let secure = if ui.secure_cookies { "; Secure" } else { "" };
    let cookie =
        format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
    let mut resp = success(session_json(&session.principal, &session.csrf));
    if let Ok(v) = header::HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// A local user first, then the directory.
fn verify(auth: &Auth, c: &Credentials) -> Result<Option<Principal>, String> {
    if let Some(p) = auth.check_password(&c.username, &c.password) {
        return Ok(Some(p));
    }
    match &auth.ldap {
        Some(ldap) => ldap
            .login(&c.username, &c.password)
            .map_err(|e| e.to_string()),
        None => Ok(None),
    }
}

fn session_json(p: &Principal, csrf: &str) -> Value {
    json!({"user": p.name, "role": p.role, "csrf": csrf})
}

/// Behind the auth layer: only a live session (or credentials) gets here.
async fn session(State(ui): St, headers: HeaderMap) -> Response {
    match crate::auth::session::id_in(&headers).and_then(|id| ui.auth.sessions.get(id)) {
        Some(s) => success(session_json(&s.principal, &s.csrf)),
        None => error_response(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "no web session (API clients authenticate on each request)",
        ),
    }
}

async fn logout(State(ui): St, headers: HeaderMap) -> Response {
    if let Some(id) = crate::auth::session::id_in(&headers) {
        ui.auth.sessions.end(id);
    }
    let mut resp = success(json!({}));
    resp.headers_mut().insert(
        header::SET_COOKIE,
        header::HeaderValue::from_static(
            "cm_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    resp
}

async fn dashboards(State(ui): St) -> Response {
    let list: Vec<Value> = ui
        .dashboards
        .iter()
        .map(|d| {
            json!({
                "uid": d["uid"],
                "title": d["title"],
                "description": d["description"],
                "panels": d["panels"].as_array().map_or(0, |p| p.iter().filter(|p| p["type"] != "row").count()),
            })
        })
        .collect();
    success(Value::Array(list))
}

async fn dashboard(State(ui): St, Path(uid): Path<String>) -> Response {
    match ui.dashboards.iter().find(|d| d["uid"] == uid.as_str()) {
        Some(d) => success(d.clone()),
        None => error_response(StatusCode::NOT_FOUND, "not_found", "no such dashboard"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_small_and_gzip_round_trips() {
        use std::io::Read;
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(gzipped(0))
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, ASSETS[0].2);
        // The page weight, before and after compression.
        let raw: usize = ASSETS.iter().map(|(_, _, b)| b.len()).sum();
        let sent: usize = (0..ASSETS.len()).map(|i| gzipped(i).len()).sum();
        assert!(INDEX.len() + sent < (INDEX.len() + raw) / 2);
    }
}
