//! Shared HTTP serving for all exporters: `/metrics` with format negotiation
//! and gzip, a landing page, basic auth (bcrypt) and optional TLS.

use crate::exposition::{self, Family, Format};
use crate::webconfig::WebConfig;
use crate::{selfmetrics, Exporter};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    WebConfig(#[from] crate::webconfig::WebConfigError),
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen_address: String,
    pub telemetry_path: String,
    pub web_config_file: Option<PathBuf>,
}

struct AppState {
    exporter: Arc<dyn Exporter>,
    telemetry_path: String,
}

/// The web config's basic auth users and response headers.
struct Guard {
    users: std::collections::BTreeMap<String, String>,
    /// SHA-256 of "user:password:hash" already verified, so bcrypt runs once per credential.
    verified: Mutex<HashSet<[u8; 32]>>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

/// Builds the router; exposed so tests can drive it in-process.
pub fn router(exporter: Arc<dyn Exporter>, telemetry_path: &str, web: &WebConfig) -> Router {
    let state = Arc::new(AppState {
        exporter,
        telemetry_path: telemetry_path.to_string(),
    });
    let app = Router::new()
        .route(telemetry_path, get(metrics))
        .route("/", get(landing))
        .with_state(state);
    protect(app, web)
}

/// `app` behind the web config's basic auth users (when it has any), with
/// its response headers added.
pub fn protect(app: Router, web: &WebConfig) -> Router {
    let headers = web
        .http_server_config
        .iter()
        .flat_map(|h| h.headers.iter())
        .filter_map(|(k, v)| {
            Some((
                HeaderName::from_bytes(k.as_bytes()).ok()?,
                HeaderValue::from_str(v).ok()?,
            ))
        })
        .collect();
    let guard = Arc::new(Guard {
        users: web.basic_auth_users.clone(),
        verified: Mutex::new(HashSet::new()),
        headers,
    });
    app.layer(middleware::from_fn_with_state(guard, auth_and_headers))
}

/// Serves until the process is stopped.
pub async fn serve(exporter: Arc<dyn Exporter>, opts: ServeOptions) -> Result<(), ServeError> {
    let (web, tls) = match &opts.web_config_file {
        Some(path) => {
            let web = WebConfig::load(path)?;
            let tls = web.rustls_config(path)?;
            (web, tls)
        }
        None => (WebConfig::default(), None),
    };
    let app = router(exporter, &opts.telemetry_path, &web);
    let listener = TcpListener::bind(&opts.listen_address)
        .await
        .map_err(|source| ServeError::Bind {
            addr: opts.listen_address.clone(),
            source,
        })?;
    tracing::info!(address = %opts.listen_address, tls = tls.is_some(), "listening");
    match tls {
        None => axum::serve(listener, app).await?,
        Some(cfg) => serve_tls(listener, app, cfg).await,
    }
    Ok(())
}

/// Serves `app` over TLS (HTTP/1.1) on `listener` until the process stops.
pub async fn serve_tls(listener: TcpListener, app: Router, cfg: Arc<rustls::ServerConfig>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(stream).await {
                Ok(tls) => tls,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let io = hyper_util::rt::TokioIo::new(tls);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection error");
            }
        });
    }
}

async fn auth_and_headers(
    State(state): State<Arc<Guard>>,
    req: Request<Body>,
    next: Next,
) -> Response {
    if !state.users.is_empty() && !authorized(&state, req.headers()) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic")],
            "Unauthorized\n",
        )
            .into_response();
    }
    let mut resp = next.run(req).await;
    for (k, v) in &state.headers {
        resp.headers_mut().insert(k.clone(), v.clone());
    }
    resp
}

fn authorized(state: &Guard, headers: &HeaderMap) -> bool {
    let Some((user, pass)) = basic_credentials(headers) else {
        return false;
    };
    let Some(hash) = state.users.get(&user) else {
        // Burn comparable time so unknown users are not distinguishable.
        let _ = bcrypt::verify(
            &pass,
            "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi",
        );
        return false;
    };
    let key: [u8; 32] = Sha256::digest(format!("{user}:{pass}:{hash}").as_bytes()).into();
    if let Ok(cache) = state.verified.lock() {
        if cache.contains(&key) {
            return true;
        }
    }
    let ok = bcrypt::verify(&pass, hash).unwrap_or(false);
    if ok {
        if let Ok(mut cache) = state.verified.lock() {
            cache.insert(key);
        }
    }
    ok
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (u, p) = decoded.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

async fn landing(State(state): State<Arc<AppState>>) -> Html<String> {
    Html(format!(
        "<!DOCTYPE html>\n<html><head><title>{title}</title></head><body>\n<h1>{title}</h1>\n<p>Carbonio Monitoring {version}</p>\n<p><a href=\"{path}\">Metrics</a></p>\n</body></html>\n",
        title = state.exporter.title(),
        version = selfmetrics::VERSION,
        path = state.telemetry_path,
    ))
}

async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let format = Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(accepts_gzip);
    let exporter = state.exporter.clone();
    let gathered = tokio::task::spawn_blocking(move || {
        let mut families = exporter.gather();
        families.extend(selfmetrics::process_families());
        families.push(exporter.build_info());
        exposition::encode(&exposition::normalize(families), format)
    })
    .await;
    let body = match gathered {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(error = %e, "scrape failed");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("scrape failed: {e}\n"),
            )
                .into_response();
        }
    };
    let mut resp_headers = vec![(header::CONTENT_TYPE, format.content_type())];
    let body = if gzip {
        let mut enc = flate2::write::GzEncoder::new(
            Vec::with_capacity(body.len() / 4),
            flate2::Compression::fast(),
        );
        match enc.write_all(body.as_bytes()).and_then(|_| enc.finish()) {
            Ok(bytes) => {
                resp_headers.push((header::CONTENT_ENCODING, "gzip"));
                Body::from(bytes)
            }
            Err(_) => Body::from(body),
        }
    } else {
        Body::from(body)
    };
    let mut resp = Response::new(body);
    for (k, v) in resp_headers {
        resp.headers_mut().insert(k, HeaderValue::from_static(v));
    }
    resp.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    resp
}

fn accepts_gzip(value: &str) -> bool {
    value.split(',').any(|part| {
        let mut it = part.split(';').map(str::trim);
        let coding = it.next().unwrap_or("");
        let q_zero =
            it.any(|p| p.strip_prefix("q=").and_then(|q| q.parse::<f32>().ok()) == Some(0.0));
        (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !q_zero
    })
}

/// Convenience for collectors: time one collector and record its success.
pub fn scrape_bookkeeping(prefix: &str, results: &[(&str, bool, f64)]) -> Vec<Family> {
    let mut dur = Family::gauge(
        format!("{prefix}_scrape_collector_duration_seconds"),
        format!("{prefix}: Duration of a collector scrape."),
    );
    let mut ok = Family::gauge(
        format!("{prefix}_scrape_collector_success"),
        format!("{prefix}: Whether a collector succeeded."),
    );
    for (name, success, seconds) in results {
        dur.add(&[("collector", name)], *seconds);
        ok.add(&[("collector", name)], if *success { 1.0 } else { 0.0 });
    }
    vec![dur, ok]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_negotiation() {
        assert!(accepts_gzip("gzip"));
        assert!(accepts_gzip("deflate, gzip;q=1.0, *;q=0.5"));
        assert!(!accepts_gzip("gzip;q=0"));
        assert!(!accepts_gzip("identity"));
    }

    #[test]
    fn basic_header_parsing() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic YWxpY2U6czNjcmV0"),
        );
        assert_eq!(
            basic_credentials(&h),
            Some(("alice".into(), "s3cret".into()))
        );
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert_eq!(basic_credentials(&h), None);
    }
}
