//! `/api/v1/rules` and `/api/v1/alerts` in Prometheus's shapes.

use super::{success, Params};
use crate::rules::alert::Alert;
use crate::rules::{Manager, RuleKind};
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn routes(manager: Arc<Manager>) -> Router {
    Router::new()
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/alerts", get(alerts))
        .with_state(manager)
}

fn rfc3339(ms: i64) -> String {
    if ms == 0 {
        return "0001-01-01T00:00:00Z".into();
    }
    crate::rules::notify::rfc3339_ms(ms)
}

fn alert_json(a: &Alert) -> Value {
    json!({
        "labels": a.labels,
        "annotations": a.annotations,
        "state": a.state.as_str(),
        "activeAt": rfc3339(a.active_at),
        "value": crate::rules::template::go_exp(a.value, 10),
    })
}

async fn rules(State(m): State<Arc<Manager>>, req: Request) -> Response {
    let params = match Params::from_request(req).await {
        Ok(p) => p,
        Err(e) => return e,
    };
    let only = params.get("type").map(str::to_string);
    let mut groups = Vec::new();
    for g in m.groups() {
        let g = g.lock().unwrap_or_else(|p| p.into_inner());
        let mut rules = Vec::new();
        for r in &g.rules {
            let common = |v: &mut Value| {
                v["health"] = json!(r.health.as_str());
                v["evaluationTime"] = json!(r.evaluation_seconds);
                v["lastEvaluation"] = json!(rfc3339(r.last_evaluation));
                if !r.last_error.is_empty() {
                    v["lastError"] = json!(r.last_error);
                }
            };
            match &r.kind {
                RuleKind::Recording { name, expr, labels } if only.as_deref() != Some("alert") => {
                    let mut v =
                        json!({"name": name, "query": expr, "labels": labels, "type": "recording"});
                    common(&mut v);
                    rules.push(v);
                }
                RuleKind::Alerting(a) if only.as_deref() != Some("record") => {
                    let active: Vec<Value> = a.pending_or_firing().map(alert_json).collect();
                    let mut v = json!({
                        "state": a.state().as_str(),
                        "name": a.spec.name,
                        "query": a.spec_query(),
                        "duration": a.spec.hold.as_secs_f64(),
                        "keepFiringFor": a.spec.keep_firing_for.as_secs_f64(),
                        "labels": a.spec.labels,
                        "annotations": a.spec.annotations,
                        "alerts": active,
                        "type": "alerting",
                    });
                    common(&mut v);
                    rules.push(v);
                }
                _ => {}
            }
        }
        groups.push(json!({
            "name": g.name,
            "file": g.file,
            "rules": rules,
            "interval": g.interval.as_secs_f64(),
            "limit": g.limit,
            "evaluationTime": g.evaluation_seconds,
            "lastEvaluation": rfc3339(g.last_evaluation),
        }));
    }
    success(json!({ "groups": groups }))
}

async fn alerts(State(m): State<Arc<Manager>>) -> Response {
    let alerts: Vec<Value> = m.alerts().iter().map(alert_json).collect();
    success(json!({ "alerts": alerts }))
}
