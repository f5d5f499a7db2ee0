//! The mesh exporter (port 9107): Carbonio Mesh is HashiCorp Consul; this
//! reads the same Consul HTTP API endpoints as consul_exporter, concurrently,
//! and exposes its `consul_*` families.

use crate::exposition::Family;
use crate::{selfmetrics, Exporter};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error(transparent)]
    CaFile(#[from] crate::tls::CaFileError),
}

pub struct MeshOptions {
    pub server: String,
    pub token: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
    pub health_summary: bool,
    pub allow_stale: bool,
}

pub struct MeshExporter {
    opts: MeshOptions,
    agent: ureq::Agent,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Member {
    name: String,
    status: i64,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HealthCheck {
    node: String,
    #[serde(rename = "CheckID")]
    check_id: String,
    #[serde(default)]
    name: String,
    status: String,
    #[serde(rename = "ServiceID", default)]
    service_id: String,
    #[serde(default)]
    service_name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceEntry {
    node: NodeRef,
    service: ServiceRef,
    #[serde(default)]
    checks: Vec<CheckStatus>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NodeRef {
    node: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceRef {
    #[serde(rename = "ID")]
    id: String,
    service: String,
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CheckStatus {
    status: String,
}

const CHECK_STATES: [&str; 4] = ["passing", "warning", "critical", "maintenance"];

impl MeshExporter {
    pub fn new(opts: MeshOptions) -> Result<Self, MeshError> {
        let mut builder = ureq::AgentBuilder::new()
            .timeout(opts.timeout)
            .user_agent(concat!("carbonio-monitor/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &opts.ca_file {
            builder = builder.tls_config(crate::tls::client_config(ca)?);
        }
        Ok(MeshExporter {
            agent: builder.build(),
            opts,
        })
    }

    fn get<T: DeserializeOwned>(&self, path: &str, stale: bool) -> Result<T, String> {
        let mut url = format!("{}{}", self.opts.server.trim_end_matches('/'), path);
        if stale && self.opts.allow_stale {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str("stale=");
        }
        let mut req = self.agent.get(&url);
        if let Some(token) = &self.opts.token {
            req = req.set("X-Consul-Token", token);
        }
        // The URL never carries the token, so errors can name it safely.
        let resp = req.call().map_err(|e| format!("GET {url}: {e}"))?;
        let body = resp.into_string().map_err(|e| format!("GET {url}: {e}"))?;
        serde_json::from_str(&body).map_err(|e| format!("GET {url}: invalid JSON: {e}"))
    }
}

/// Results of one scrape's API calls; `None` where a call failed.
#[derive(Default)]
struct Snapshot {
    services: Option<BTreeMap<String, Vec<String>>>,
    peers: Option<Vec<String>>,
    leader: Option<String>,
    nodes: Option<Vec<serde_json::Value>>,
    lan: Option<Vec<Member>>,
    wan: Option<Vec<Member>>,
    checks: Option<Vec<HealthCheck>>,
    service_health: Vec<Option<Vec<ServiceEntry>>>,
}

impl Exporter for MeshExporter {
    fn build_info_name(&self) -> &'static str {
        "consul_exporter"
    }
    fn title(&self) -> &'static str {
        "Carbonio Monitoring mesh (Consul) exporter"
    }
    fn build_info(&self) -> Family {
        let mut f = selfmetrics::build_info("consul_exporter");
        for s in &mut f.samples {
            s.labels.push(("tags".into(), String::new()));
        }
        f
    }

    fn gather(&self) -> Vec<Family> {
        let mut errors: Vec<String> = Vec::new();
        let mut snap = Snapshot::default();
        std::thread::scope(|s| {
            let services =
                s.spawn(|| self.get::<BTreeMap<String, Vec<String>>>("/v1/catalog/services", true));
            let peers = s.spawn(|| self.get::<Vec<String>>("/v1/status/peers", false));
            let leader = s.spawn(|| self.get::<String>("/v1/status/leader", false));
            let nodes = s.spawn(|| self.get::<Vec<serde_json::Value>>("/v1/catalog/nodes", true));
            let lan = s.spawn(|| self.get::<Vec<Member>>("/v1/agent/members", false));
            let wan = s.spawn(|| self.get::<Vec<Member>>("/v1/agent/members?wan=1", false));
            let checks = s.spawn(|| self.get::<Vec<HealthCheck>>("/v1/health/state/any", true));
            snap.services = joined(services, &mut errors);
            snap.peers = joined(peers, &mut errors);
            snap.leader = joined(leader, &mut errors);
            snap.nodes = joined(nodes, &mut errors);
            snap.lan = joined(lan, &mut errors);
            snap.wan = joined(wan, &mut errors);
            snap.checks = joined(checks, &mut errors);
        });
        if self.opts.health_summary {
            let names: Vec<&String> = snap
                .services
                .iter()
                .flat_map(|m| m.keys())
                .filter(|n| !n.starts_with('/'))
                .collect();
            // At most 8 calls in flight, so a large catalog does not open hundreds of connections.
            for chunk in names.chunks(8) {
                let results: Vec<Result<Vec<ServiceEntry>, String>> = std::thread::scope(|s| {
                    let handles: Vec<_> = chunk
                        .iter()
                        .map(|name| {
                            s.spawn(move || {
                                self.get::<Vec<ServiceEntry>>(
                                    &format!("/v1/health/service/{}", url_escape(name)),
                                    true,
                                )
                            })
                        })
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| {
                            h.join()
                                .unwrap_or_else(|_| Err("Consul API call panicked".into()))
                        })
                        .collect()
                });
                for r in results {
                    match r {
                        Ok(v) => snap.service_health.push(Some(v)),
                        Err(e) => {
                            errors.push(e);
                            snap.service_health.push(None);
                        }
                    }
                }
            }
        }
        for e in &errors {
            tracing::error!(error = %e, "Consul query failed");
        }
        let mut out = render(&snap);
        out.push(
            Family::gauge("consul_up", "Was the last query of Consul successful.")
                .with(&[], if errors.is_empty() { 1.0 } else { 0.0 }),
        );
        out
    }
}

/// The value of a finished API call, or None with its error recorded.
fn joined<T>(
    handle: std::thread::ScopedJoinHandle<'_, Result<T, String>>,
    errors: &mut Vec<String>,
) -> Option<T> {
    match handle.join() {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            errors.push(e);
            None
        }
        Err(_) => {
            errors.push("Consul API call panicked".into());
            None
        }
    }
}

fn render(snap: &Snapshot) -> Vec<Family> {
    let mut out = Vec::new();
    let g = |name: &str, help: &str| Family::gauge(name, help);
    if let Some(peers) = &snap.peers {
        out.push(
            g(
                "consul_raft_peers",
                "How many peers (servers) are in the Raft cluster.",
            )
            .with(&[], peers.len() as f64),
        );
    }
    if let Some(leader) = &snap.leader {
        out.push(
            g(
                "consul_raft_leader",
                "Does Raft cluster have a leader (according to this node).",
            )
            .with(&[], if leader.is_empty() { 0.0 } else { 1.0 }),
        );
    }
    if let Some(nodes) = &snap.nodes {
        out.push(
            g(
                "consul_serf_lan_members",
                "How many members are in the cluster.",
            )
            .with(&[], nodes.len() as f64),
        );
    }
    if let Some(lan) = &snap.lan {
        let mut info = g(
            "consul_serf_lan_member_info",
            "Information of member in the cluster.",
        );
        let mut status = g(
            "consul_serf_lan_member_status",
            "Status of member in the cluster. 1=Alive, 2=Leaving, 3=Left, 4=Failed.",
        );
        for m in lan {
            let tag = |k: &str| m.tags.get(k).map(String::as_str).unwrap_or("");
            let version = tag("build").split(':').next().unwrap_or("");
            info.add(
                &[
                    ("member", &m.name),
                    ("role", tag("role")),
                    ("version", version),
                ],
                m.status as f64,
            );
            status.add(&[("member", &m.name)], m.status as f64);
        }
        out.extend([info, status]);
    }
    if let Some(wan) = &snap.wan {
        let mut info = g(
            "consul_serf_wan_member_info",
            "Information of member in the wan cluster.",
        );
        let mut status = g(
            "consul_serf_wan_member_status",
            "Status of member in the wan cluster. 1=Alive, 2=Leaving, 3=Left, 4=Failed.",
        );
        for m in wan {
            let tag = |k: &str| m.tags.get(k).map(String::as_str).unwrap_or("");
            let version = tag("build").split(':').next().unwrap_or("");
            info.add(
                &[
                    ("member", &m.name),
                    ("dc", tag("dc")),
                    ("role", tag("role")),
                    ("version", version),
                ],
                m.status as f64,
            );
            status.add(&[("member", &m.name), ("dc", tag("dc"))], m.status as f64);
        }
        out.extend([info, status]);
    }
    if let Some(services) = &snap.services {
        out.push(
            g(
                "consul_catalog_services",
                "How many services are in the cluster.",
            )
            .with(&[], services.len() as f64),
        );
    }
    if let Some(checks) = &snap.checks {
        let mut node_status = g(
            "consul_health_node_status",
            "Status of health checks associated with a node.",
        );
        let mut service_status = g(
            "consul_health_service_status",
            "Status of health checks associated with a service.",
        );
        let mut service_checks = g(
            "consul_service_checks",
            "Link the service id and check name if available.",
        );
        for c in checks {
            for state in CHECK_STATES {
                let v = if c.status == state { 1.0 } else { 0.0 };
                if c.service_id.is_empty() {
                    node_status.add(
                        &[("check", &c.check_id), ("node", &c.node), ("status", state)],
                        v,
                    );
                } else {
                    service_status.add(
                        &[
                            ("check", &c.check_id),
                            ("node", &c.node),
                            ("service_id", &c.service_id),
                            ("service_name", &c.service_name),
                            ("status", state),
                        ],
                        v,
                    );
                }
            }
            if !c.service_id.is_empty() {
                service_checks.add(
                    &[
                        ("service_id", &c.service_id),
                        ("service_name", &c.service_name),
                        ("check_id", &c.check_id),
                        ("check_name", &c.name),
                        ("node", &c.node),
                    ],
                    1.0,
                );
            }
        }
        out.extend([node_status, service_status, service_checks]);
    }
    let mut healthy = g(
        "consul_catalog_service_node_healthy",
        "Is this service healthy on this node?",
    );
    let mut tags = g("consul_service_tag", "Tags of a service.");
    for entry in snap.service_health.iter().flatten().flatten() {
        let all_passing = entry.checks.iter().all(|c| c.status == "passing");
        healthy.add(
            &[
                ("service_id", &entry.service.id),
                ("node", &entry.node.node),
                ("service_name", &entry.service.service),
            ],
            if all_passing { 1.0 } else { 0.0 },
        );
        let distinct: BTreeSet<&String> = entry.service.tags.iter().flatten().collect();
        for tag in distinct {
            tags.add(
                &[
                    ("service_id", &entry.service.id),
                    ("node", &entry.node.node),
                    ("tag", tag),
                ],
                1.0,
            );
        }
    }
    out.extend([healthy, tags]);
    out
}

/// Escapes a service name for a URL path segment.
fn url_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_service_names() {
        assert_eq!(url_escape("carbonio-mailbox"), "carbonio-mailbox");
        assert_eq!(url_escape("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn renders_one_hot_check_states() {
        let checks: Vec<HealthCheck> = serde_json::from_str(
            r#"[{"Node":"n1","CheckID":"serfHealth","Name":"Serf Health Status","Status":"passing","ServiceID":"","ServiceName":""},
                {"Node":"n1","CheckID":"service:web","Name":"web check","Status":"critical","ServiceID":"web","ServiceName":"web"}]"#,
        )
        .unwrap();
        let fams = render(&Snapshot {
            checks: Some(checks),
            ..Default::default()
        });
        let node = fams
            .iter()
            .find(|f| f.name == "consul_health_node_status")
            .unwrap();
        assert_eq!(node.samples.iter().filter(|s| s.value == 1.0).count(), 1);
        let svc = fams
            .iter()
            .find(|f| f.name == "consul_health_service_status")
            .unwrap();
        assert_eq!(svc.samples.len(), 4);
        let critical = svc.samples.iter().find(|s| s.value == 1.0).unwrap();
        assert!(critical
            .labels
            .contains(&("status".to_string(), "critical".to_string())));
    }

    #[test]
    fn garbage_json_is_an_error_not_a_panic() {
        assert!(serde_json::from_str::<Vec<Member>>("{not json").is_err());
        assert!(serde_json::from_str::<Vec<Member>>(r#"[{"Name": 3}]"#).is_err());
    }
}
