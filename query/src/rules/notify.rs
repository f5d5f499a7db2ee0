//! Alerts to Alertmanager over its API v2 (`POST /api/v2/alerts`), as
//! Prometheus's notifier sends them: external labels added, `startsAt`
//! the firing time, `endsAt` the resolution time or a validity horizon
//! that resends extend. Sends run on their own thread, so a slow
//! Alertmanager never delays rule evaluation; a failed send is retried by
//! the next resend.

use super::alert::Alert;
use super::Notify;
use carbonio_collector::config::{auth_header, AlertmanagerConfig};
use carbonio_collector::relabel::Labels;
use serde_json::json;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("alertmanager {0}: {1}")]
    Config(String, String),
}

/// One Alertmanager endpoint.
#[derive(Debug, Clone)]
struct Endpoint {
    url: String,
    auth: Option<String>,
    timeout: std::time::Duration,
    /// With the Alertmanager config's `tls_config`.
    agent: ureq::Agent,
}

pub struct Alertmanagers {
    tx: SyncSender<Vec<serde_json::Value>>,
    external_labels: Labels,
}

impl Alertmanagers {
    pub fn start(
        configs: &[AlertmanagerConfig],
        external_labels: Labels,
    ) -> Result<Alertmanagers, NotifyError> {
        let mut endpoints = Vec::new();
        for c in configs {
            let name = c
                .static_configs
                .iter()
                .flat_map(|s| s.targets.iter())
                .next()
                .cloned()
                .unwrap_or_default();
            if c.api_version != "v2" {
                return Err(NotifyError::Config(
                    name,
                    format!("api_version {:?}: only v2 exists", c.api_version),
                ));
            }
            let mut builder = ureq::AgentBuilder::new();
            if let Some(t) = &c.tls_config {
                let tls = carbonio_collector::scrape::tls::client_config(t)
                    .map_err(|e| NotifyError::Config(name.clone(), e))?;
                builder = builder.tls_config(tls);
            }
            let agent = builder.build();
            let auth = auth_header(&c.basic_auth, &c.authorization)
                .map_err(|e| NotifyError::Config(name.clone(), e))?;
            let scheme = match c.scheme {
                carbonio_collector::config::Scheme::Http => "http",
                carbonio_collector::config::Scheme::Https => "https",
            };
            let prefix = c.path_prefix.trim_end_matches('/');
            for target in c.static_configs.iter().flat_map(|s| s.targets.iter()) {
                endpoints.push(Endpoint {
                    url: format!("{scheme}://{target}{prefix}/api/v2/alerts"),
                    auth: auth.clone(),
                    timeout: c.timeout.0,
                    agent: agent.clone(),
                });
            }
        }
        // Prometheus queues 10,000 alerts; batches here are one evaluation's.
        let (tx, rx) = sync_channel::<Vec<serde_json::Value>>(1024);
        std::thread::Builder::new()
            .name("alertmanager".into())
            .spawn(move || {
                for batch in rx {
                    for chunk in batch.chunks(64) {
                        for e in &endpoints {
                            let mut req = e.agent.post(&e.url).timeout(e.timeout);
                            if let Some(a) = &e.auth {
                                req = req.set("Authorization", a);
                            }
                            let body = serde_json::Value::Array(chunk.to_vec()).to_string();
                            match req.set("Content-Type", "application/json").send_string(&body) {
                                Ok(_) => tracing::debug!(url = %e.url, alerts = chunk.len(), "alerts sent"),
                                Err(err) => tracing::warn!(url = %e.url, error = %err, "sending alerts to Alertmanager failed"),
                            }
                        }
                    }
                }
            })
            .map_err(|e| NotifyError::Config("sender".into(), e.to_string()))?;
        Ok(Alertmanagers {
            tx,
            external_labels,
        })
    }
}

impl Notify for Alertmanagers {
    fn send(&self, alerts: &[Alert]) {
        let batch: Vec<serde_json::Value> = alerts
            .iter()
            .map(|a| payload(a, &self.external_labels))
            .collect();
        match self.tx.try_send(batch) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                tracing::warn!("Alertmanager queue full, alerts dropped until the next resend")
            }
            Err(TrySendError::Disconnected(_)) => tracing::error!("Alertmanager sender stopped"),
        }
    }
}

pub fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// One alert as API v2 takes it.
pub fn payload(a: &Alert, external_labels: &Labels) -> serde_json::Value {
    let mut labels = a.labels.clone();
    for (k, v) in external_labels {
        labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let ends = a.resolved_at.unwrap_or(a.valid_until);
    json!({
        "labels": labels,
        "annotations": a.annotations,
        "startsAt": rfc3339_ms(a.fired_at.unwrap_or(a.active_at)),
        "endsAt": rfc3339_ms(ends),
        "generatorURL": a.generator_url,
    })
}

/// Prometheus's link from an alert to its expression.
pub fn generator_url(external_url: &str, expr: &str) -> String {
    let expr: String = form_urlencoded::byte_serialize(expr.as_bytes()).collect();
    format!(
        "{}/graph?g0.expr={expr}&g0.tab=1",
        external_url.trim_end_matches('/')
    )
}
