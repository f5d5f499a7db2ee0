//! `consul_sd_configs`: service instances from a Consul catalog (Carbonio
//! Mesh), with Prometheus's `__meta_consul_*` labels. Services come from
//! `/v1/catalog/services`, their instances and health from
//! `/v1/health/service/<name>`, as Prometheus asks for them.

use super::{DiscoveryError, TargetGroup};
use crate::config::{ConsulSdConfig, Scheme};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);

/// One target group per service instance.
pub fn discover(c: &ConsulSdConfig) -> Result<Vec<TargetGroup>, DiscoveryError> {
    let err = |msg: String| DiscoveryError::Consul {
        server: c.server.clone(),
        msg,
    };
    let token = match (&c.token, &c.token_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(f)) => Some(
            std::fs::read_to_string(f)
                .map_err(|e| err(format!("token_file {}: {e}", f.display())))?
                .trim()
                .to_string(),
        ),
        (None, None) => None,
    };
    let base = format!(
        "{}://{}",
        match c.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        },
        c.server
    );
    let mut builder = ureq::AgentBuilder::new().timeout(TIMEOUT);
    if let Some(t) = &c.tls_config {
        builder = builder.tls_config(crate::scrape::tls::client_config(t).map_err(err)?);
    }
    let agent = builder.build();
    let get = |path: &str, query: &[(&str, &str)]| -> Result<Value, DiscoveryError> {
        let mut req = agent.get(&format!("{base}{path}"));
        if c.allow_stale {
            req = req.query("stale", "");
        }
        if let Some(dc) = &c.datacenter {
            req = req.query("dc", dc);
        }
        for (k, v) in &c.node_meta {
            req = req.query("node-meta", &format!("{k}:{v}"));
        }
        for (k, v) in query {
            req = req.query(k, v);
        }
        if let Some(t) = &token {
            req = req.set("X-Consul-Token", t);
        }
        let body = req
            .call()
            .map_err(|e| match e {
                ureq::Error::Status(code, r) => err(format!(
                    "GET {path}: HTTP {code}: {}",
                    r.into_string().unwrap_or_default().trim()
                )),
                other => err(format!("GET {path}: {other}")),
            })?
            .into_string()
            .map_err(|e| err(format!("GET {path}: {e}")))?;
        serde_json::from_str(&body).map_err(|e| err(format!("GET {path}: not JSON: {e}")))
    };

    let services = get("/v1/catalog/services", &[])?;
    let services = services
        .as_object()
        .ok_or_else(|| err("/v1/catalog/services: not an object".into()))?;
    let mut groups = Vec::new();
    for (name, tags) in services {
        let tags: Vec<&str> = tags
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let wanted = (c.services.is_empty() || c.services.contains(name))
            && c.tags.iter().all(|t| tags.contains(&t.as_str()));
        if !wanted {
            continue;
        }
        let query: Vec<(&str, &str)> = c.tags.iter().map(|t| ("tag", t.as_str())).collect();
        let entries = get(&format!("/v1/health/service/{}", escape(name)), &query)?;
        for e in entries.as_array().into_iter().flatten() {
            if let Some(g) = target(c, name, e) {
                groups.push(g);
            }
        }
    }
    Ok(groups)
}

/// One health entry (node, service, checks) as a target with its labels.
fn target(c: &ConsulSdConfig, service: &str, e: &Value) -> Option<TargetGroup> {
    let node = &e["Node"];
    let svc = &e["Service"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let port = svc["Port"].as_u64()?;
    let service_address = text(&svc["Address"]);
    let host = if service_address.is_empty() {
        text(&node["Address"])
    } else {
        service_address.clone()
    };
    let tags: Vec<String> = svc["Tags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    let mut labels = BTreeMap::from([
        ("__meta_consul_service".to_string(), service.to_string()),
        ("__meta_consul_node".into(), text(&node["Node"])),
        ("__meta_consul_address".into(), text(&node["Address"])),
        (
            "__meta_consul_dc".into(),
            c.datacenter
                .clone()
                .unwrap_or_else(|| text(&node["Datacenter"])),
        ),
        ("__meta_consul_service_id".into(), text(&svc["ID"])),
        ("__meta_consul_service_address".into(), service_address),
        ("__meta_consul_service_port".into(), port.to_string()),
        (
            "__meta_consul_tags".into(),
            format!(
                "{sep}{}{sep}",
                tags.join(&c.tag_separator),
                sep = c.tag_separator
            ),
        ),
        ("__meta_consul_health".into(), health(&e["Checks"]).into()),
    ]);
    for (prefix, map) in [
        ("__meta_consul_metadata_", &node["Meta"]),
        ("__meta_consul_tagged_address_", &node["TaggedAddresses"]),
        ("__meta_consul_service_metadata_", &svc["Meta"]),
    ] {
        for (k, v) in map.as_object().into_iter().flatten() {
            if let Some(v) = v.as_str() {
                labels.insert(format!("{prefix}{}", sanitize(k)), v.to_string());
            }
        }
    }
    let address = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Some(TargetGroup {
        targets: vec![address],
        labels,
    })
}

/// Consul's aggregated status of an instance's checks.
fn health(checks: &Value) -> &'static str {
    let checks: Vec<&Value> = checks.as_array().into_iter().flatten().collect();
    let id = |c: &Value| c["CheckID"].as_str().unwrap_or_default().to_string();
    let status = |c: &Value| c["Status"].as_str().unwrap_or_default().to_string();
    if checks.iter().any(|c| {
        let id = id(c);
        id == "_node_maintenance" || id.starts_with("_service_maintenance:")
    }) {
        "maintenance"
    } else if checks.iter().any(|c| status(c) == "critical") {
        "critical"
    } else if checks.iter().any(|c| status(c) == "warning") {
        "warning"
    } else {
        "passing"
    }
}

/// Characters a label name cannot hold become `_` (Prometheus's SanitizeLabelName).
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn escape(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ConsulSdConfig {
        serde_yaml_ng::from_str("server: 'localhost:8500'").unwrap()
    }

    #[test]
    fn labels_of_an_instance() {
        let e: Value = serde_json::from_str(
            r#"{"Node": {"Node": "server-mbox1-example-com", "Address": "10.0.0.5", "Datacenter": "dc1",
                          "TaggedAddresses": {"lan": "10.0.0.5", "wan-ipv4": "192.0.2.5"}, "Meta": {"consul-network-segment": ""}},
                "Service": {"ID": "carbonio-node-exporter", "Service": "carbonio-node-exporter", "Tags": ["prometheus-exporter", "node"],
                            "Address": "", "Port": 9100, "Meta": {"role.name": "mailstore"}},
                "Checks": [{"CheckID": "serfHealth", "Status": "passing"}, {"CheckID": "service:x", "Status": "warning"}]}"#,
        )
        .unwrap();
        let g = target(&config(), "carbonio-node-exporter", &e).unwrap();
        assert_eq!(g.targets, ["10.0.0.5:9100"]);
        let l = &g.labels;
        assert_eq!(l["__meta_consul_tags"], ",prometheus-exporter,node,");
        assert_eq!(l["__meta_consul_health"], "warning");
        assert_eq!(l["__meta_consul_dc"], "dc1");
        assert_eq!(l["__meta_consul_service_address"], "");
        assert_eq!(l["__meta_consul_tagged_address_wan_ipv4"], "192.0.2.5");
        assert_eq!(l["__meta_consul_service_metadata_role_name"], "mailstore");
        assert_eq!(l["__meta_consul_metadata_consul_network_segment"], "");
        assert_eq!(l["__meta_consul_node"], "server-mbox1-example-com");
    }

    #[test]
    fn maintenance_wins_and_critical_beats_warning() {
        let checks = |v: &str| serde_json::from_str::<Value>(v).unwrap();
        assert_eq!(
            health(&checks(
                r#"[{"CheckID":"_node_maintenance","Status":"critical"}]"#
            )),
            "maintenance"
        );
        assert_eq!(
            health(&checks(r#"[{"Status":"warning"},{"Status":"critical"}]"#)),
            "critical"
        );
        assert_eq!(health(&checks("[]")), "passing");
        assert_eq!(escape("a b/c"), "a%20b%2Fc");
    }
}
