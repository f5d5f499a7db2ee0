//! The exporter-toolkit `web-config.yml`: TLS and basic auth for /metrics.
//! Unknown keys are rejected so a typo never silently disables security.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("reading web config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("web config {path}: {source}")]
    Yaml {
        path: PathBuf,
        source: serde_yaml_ng::Error,
    },
    #[error("web config {path}: {msg}")]
    Invalid { path: PathBuf, msg: String },
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    #[serde(default)]
    pub tls_server_config: Option<TlsServerConfig>,
    #[serde(default)]
    pub http_server_config: Option<HttpServerConfig>,
    /// user name → bcrypt hash.
    #[serde(default)]
    pub basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsServerConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    #[serde(default)]
    pub client_auth_type: ClientAuth,
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    #[serde(default)]
    pub min_version: Option<TlsVersion>,
    #[serde(default)]
    pub max_version: Option<TlsVersion>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum ClientAuth {
    #[default]
    NoClientCert,
    RequireAndVerifyClientCert,
    VerifyClientCertIfGiven,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum TlsVersion {
    TLS12,
    TLS13,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpServerConfig {
    /// Accepted for compatibility; we serve HTTP/1.1.
    #[serde(default)]
    pub http2: Option<bool>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

impl WebConfig {
    pub fn load(path: &Path) -> Result<Self, WebConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, WebConfigError> {
        let cfg: WebConfig = if text.trim().is_empty() {
            WebConfig::default()
        } else {
            serde_yaml_ng::from_str(text).map_err(|source| WebConfigError::Yaml {
                path: path.to_path_buf(),
                source,
            })?
        };
        let invalid = |msg: String| WebConfigError::Invalid {
            path: path.to_path_buf(),
            msg,
        };
        for (user, hash) in &cfg.basic_auth_users {
            if !(hash.starts_with("$2") && hash.len() == 60) {
                return Err(invalid(format!(
                    "basic_auth_users.{user}: not a bcrypt hash"
                )));
            }
        }
        if let Some(tls) = &cfg.tls_server_config {
            if tls.client_auth_type != ClientAuth::NoClientCert && tls.client_ca_file.is_none() {
                return Err(invalid("client_auth_type needs client_ca_file".into()));
            }
            if let (Some(min), Some(max)) = (tls.min_version, tls.max_version) {
                if min > max {
                    return Err(invalid("min_version is above max_version".into()));
                }
            }
        }
        for name in cfg.http_server_config.iter().flat_map(|h| h.headers.keys()) {
            if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(invalid(format!("invalid header name {name:?}")));
            }
        }
        Ok(cfg)
    }

    /// Builds the rustls server config; errors name the file at fault.
    pub fn rustls_config(
        &self,
        path: &Path,
    ) -> Result<Option<Arc<rustls::ServerConfig>>, WebConfigError> {
        let Some(tls) = &self.tls_server_config else {
            return Ok(None);
        };
        let invalid = |msg: String| WebConfigError::Invalid {
            path: path.to_path_buf(),
            msg,
        };
        let certs = crate::tls::read_certs(&tls.cert_file).map_err(&invalid)?;
        let key = crate::tls::read_key(&tls.key_file).map_err(&invalid)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
            (TlsVersion::TLS12, &rustls::version::TLS12),
            (TlsVersion::TLS13, &rustls::version::TLS13),
        ]
        .into_iter()
        .filter(|(v, _)| {
            tls.min_version.is_none_or(|m| *v >= m) && tls.max_version.is_none_or(|m| *v <= m)
        })
        .map(|(_, p)| p)
        .collect();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| invalid(format!("TLS versions: {e}")))?;
        let builder = match (tls.client_auth_type, &tls.client_ca_file) {
            (ClientAuth::NoClientCert, _) | (_, None) => builder.with_no_client_auth(),
            (mode, Some(ca)) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in crate::tls::read_certs(ca).map_err(&invalid)? {
                    roots
                        .add(c)
                        .map_err(|e| invalid(format!("{}: {e}", ca.display())))?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    roots.into(),
                    provider,
                );
                let verifier = if mode == ClientAuth::VerifyClientCertIfGiven {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| invalid(format!("client CA: {e}")))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut cfg = builder
            .with_single_cert(certs, key)
            .map_err(|e| invalid(format!("certificate/key: {e}")))?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Some(Arc::new(cfg)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<WebConfig, WebConfigError> {
        WebConfig::parse(Path::new("web.yml"), s)
    }

    #[test]
    fn accepts_toolkit_shape() {
        let cfg = parse(
            "basic_auth_users:\n  alice: $2y$10$X3HdM4E1Cq3sE0fCeXN8Ee0nA1OjGmHn1Z4Q1Kkq0VY6oQm5k0H3i\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n",
        )
        .unwrap();
        assert_eq!(cfg.basic_auth_users.len(), 1);
        assert!(parse("").unwrap().basic_auth_users.is_empty());
    }

    #[test]
    fn rejects_typos_and_nonsense() {
        assert!(matches!(
            parse("basic_auth_user:\n  a: b\n"),
            Err(WebConfigError::Yaml { .. })
        ));
        assert!(matches!(
            parse("basic_auth_users:\n  a: plaintext\n"),
            Err(WebConfigError::Invalid { .. })
        ));
        assert!(parse("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n").is_err());
        assert!(parse("[[[").is_err());
        assert!(parse("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS13\n  max_version: TLS12\n").is_err());
    }

    #[test]
    fn shipped_example_parses() {
        let cfg = parse(include_str!("../../deploy/examples/web-config.yml")).unwrap();
        assert!(cfg.tls_server_config.is_some());
        assert_eq!(cfg.basic_auth_users.len(), 1);
    }

    #[test]
    fn missing_cert_file_is_named() {
        let cfg = parse(
            "tls_server_config:\n  cert_file: /nonexistent/c.pem\n  key_file: /nonexistent/k.pem\n",
        )
        .unwrap();
        let err = cfg
            .rustls_config(Path::new("web.yml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/c.pem"), "{err}");
    }
}
