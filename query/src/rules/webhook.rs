//! Webhook receivers in Alertmanager's payload format (version 4), without
//! an Alertmanager: alerts are grouped by `group_by`, a group is notified
//! when its firing set changes (after `group_wait` for a new group), again
//! every `repeat_interval`, and once resolved. Notifications go into an
//! outbox that is written to disk (with what each group was last told)
//! before any attempt, retried with exponential back-off, and removed
//! only after a 2xx answer: a restart neither loses nor repeats one.
//! An alert no longer sent is resolved when its `endsAt` passes, as in
//! Alertmanager, so a restart does not resolve what is still firing.

use super::alert::Alert;
use super::notify::rfc3339_ms;
use super::Notify;
use carbonio_collector::config::auth_header;
use carbonio_collector::config::WebhookConfig;
use carbonio_collector::relabel::Labels;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Resolved alerts are kept this long for the groups' notifications.
const RESOLVED_KEEP_MS: i64 = 15 * 60_000;
const MAX_BACKOFF_MS: i64 = 5 * 60_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Known {
    labels: Labels,
    annotations: Labels,
    starts_at: i64,
    /// Firing until then unless sent again.
    ends_at: i64,
    resolved: bool,
    generator_url: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct GroupSent {
    /// Fingerprints the group's last notification reported firing.
    firing: BTreeSet<String>,
    last_sent_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    id: u64,
    hook: String,
    payload: serde_json::Value,
    created_ms: i64,
    attempts: u32,
    next_attempt_ms: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// Alerts by fingerprint.
    alerts: BTreeMap<String, Known>,
    /// First time a group (hook, group key) was seen, for group_wait.
    first_seen: BTreeMap<String, i64>,
    sent: BTreeMap<String, GroupSent>,
    outbox: Vec<Pending>,
    next_id: u64,
}

/// A group's alerts: (fingerprint, alert).
type Members<'a> = Vec<(&'a String, &'a Known)>;

struct Hook {
    config: WebhookConfig,
    auth: Option<String>,
}

struct Inner {
    hooks: Vec<Hook>,
    state: Mutex<State>,
    wake: Condvar,
    path: PathBuf,
    external_url: String,
    external_labels: Labels,
}

pub struct Webhooks {
    inner: Arc<Inner>,
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook {0}: {1}")]
    Config(String, String),
    #[error("{0}: {1}")]
    State(PathBuf, String),
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Alertmanager-style fingerprint of a label set (16 hex digits).
pub fn fingerprint(labels: &Labels) -> String {
    let hash = super::labels_hash(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    format!("{hash:016x}")
}

impl Webhooks {
    /// Loads the outbox and group state from `dir` and starts the
    /// dispatcher and sender threads.
    pub fn start(
        configs: &[WebhookConfig],
        dir: &Path,
        external_url: String,
        external_labels: Labels,
    ) -> Result<Webhooks, WebhookError> {
        let mut hooks = Vec::new();
        let mut names = BTreeSet::new();
        for c in configs {
            if !names.insert(c.name.clone()) {
                return Err(WebhookError::Config(
                    c.name.clone(),
                    "name used twice".into(),
                ));
            }
            if !(c.url.starts_with("http://") || c.url.starts_with("https://")) {
                return Err(WebhookError::Config(
                    c.name.clone(),
                    format!("url {:?} is not http(s)", c.url),
                ));
            }
            let auth = auth_header(&c.basic_auth, &c.authorization)
                .map_err(|e| WebhookError::Config(c.name.clone(), e))?;
            hooks.push(Hook {
                config: c.clone(),
                auth,
            });
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| WebhookError::State(dir.to_path_buf(), e.to_string()))?;
        let path = dir.join("webhooks.json");
        let state: State = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| WebhookError::State(path.clone(), e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(WebhookError::State(path.clone(), e.to_string())),
        };
        if !state.outbox.is_empty() {
            tracing::info!(
                pending = state.outbox.len(),
                "webhook notifications waiting from before the restart"
            );
        }
        let inner = Arc::new(Inner {
            hooks,
            state: Mutex::new(state),
            wake: Condvar::new(),
            path,
            external_url,
            external_labels,
        });
        for (name, f) in [
            ("webhook-groups", dispatch_loop as fn(&Inner)),
            ("webhook-send", send_loop),
        ] {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || f(&inner))
                .map_err(|e| WebhookError::Config(name.into(), e.to_string()))?;
        }
        Ok(Webhooks { inner })
    }
}

impl Notify for Webhooks {
    fn send(&self, alerts: &[Alert]) {
        let mut state = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
        for a in alerts {
            let mut labels = a.labels.clone();
            for (k, v) in &self.inner.external_labels {
                labels.entry(k.clone()).or_insert_with(|| v.clone());
            }
            let fp = fingerprint(&labels);
            let resolved = a.resolved_at.is_some();
            let entry = state.alerts.entry(fp).or_insert_with(|| Known {
                labels: labels.clone(),
                annotations: a.annotations.clone(),
                starts_at: a.fired_at.unwrap_or(a.active_at),
                ends_at: 0,
                resolved,
                generator_url: a.generator_url.clone(),
            });
            if entry.resolved && !resolved {
                entry.starts_at = a.fired_at.unwrap_or(a.active_at);
            }
            entry.annotations = a.annotations.clone();
            entry.resolved = resolved;
            entry.ends_at = a.resolved_at.unwrap_or(a.valid_until);
        }
    }
}

impl Inner {
    fn persist(&self, state: &State) {
        let tmp = self.path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&serde_json::to_vec(state).map_err(std::io::Error::other)?)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        if let Err(e) = write() {
            tracing::error!(path = %self.path.display(), error = %e, "saving the webhook outbox failed");
        }
    }
}

/// Every second: which groups need a notification.
fn dispatch_loop(inner: &Inner) {
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let mut state = inner.state.lock().unwrap_or_else(|p| p.into_inner());
        if dispatch(inner, &mut state, now_ms()) {
            inner.persist(&state);
            inner.wake.notify_all();
        }
    }
}

/// Queues the notifications due at `now`; true when the state changed.
fn dispatch(inner: &Inner, state: &mut State, now: i64) -> bool {
    let mut changed = false;
    // Not sent again in time: resolved, as Alertmanager does at endsAt.
    for a in state.alerts.values_mut() {
        if !a.resolved && a.ends_at <= now {
            a.resolved = true;
            changed = true;
        }
    }
    for hook in &inner.hooks {
        let c = &hook.config;
        let mut groups: BTreeMap<String, (Labels, Members)> = BTreeMap::new();
        for (fp, a) in &state.alerts {
            let group_labels: Labels = c
                .group_by
                .iter()
                .filter_map(|k| a.labels.get(k).map(|v| (k.clone(), v.clone())))
                .collect();
            let key = format!("{}\u{0}{}", c.name, group_key(&group_labels));
            groups
                .entry(key)
                .or_insert_with(|| (group_labels, Vec::new()))
                .1
                .push((fp, a));
        }
        let mut keys: BTreeSet<String> = groups.keys().cloned().collect();
        keys.extend(
            state
                .sent
                .keys()
                .filter(|k| k.starts_with(&format!("{}\u{0}", c.name)))
                .cloned(),
        );
        for key in keys {
            let (group_labels, members) = groups.remove(&key).unwrap_or_default();
            let firing: BTreeSet<String> = members
                .iter()
                .filter(|(_, a)| !a.resolved)
                .map(|(fp, _)| (*fp).clone())
                .collect();
            let sent = state.sent.get(&key);
            let told: BTreeSet<String> = sent.map(|s| s.firing.clone()).unwrap_or_default();
            let first = *state.first_seen.entry(key.clone()).or_insert(now);
            if told.is_empty()
                && !firing.is_empty()
                && now - first < c.group_wait.0.as_millis() as i64
            {
                continue;
            }
            let repeat = !firing.is_empty()
                && sent.is_some_and(|s| {
                    now - s.last_sent_ms >= c.repeat_interval.0.as_millis() as i64
                });
            let news = !firing.is_subset(&told);
            let resolved_news = firing != told && c.send_resolved;
            if !(news || repeat || resolved_news) {
                if firing != told {
                    // Quietly forget resolutions the receiver does not want.
                    state.sent.entry(key.clone()).or_default().firing = firing.clone();
                    changed = true;
                }
                if firing.is_empty() && members.is_empty() {
                    state.sent.remove(&key);
                    state.first_seen.remove(&key);
                    changed = true;
                }
                continue;
            }
            let shown: Vec<&(&String, &Known)> = members
                .iter()
                .filter(|(fp, a)| !a.resolved || (c.send_resolved && told.contains(*fp)))
                .collect();
            if shown.is_empty() {
                state.sent.remove(&key);
                continue;
            }
            let payload = payload(inner, c, &group_labels, &shown, !firing.is_empty());
            let id = state.next_id;
            state.next_id += 1;
            state.outbox.push(Pending {
                id,
                hook: c.name.clone(),
                payload,
                created_ms: now,
                attempts: 0,
                next_attempt_ms: now,
            });
            if firing.is_empty() {
                state.sent.remove(&key);
                state.first_seen.remove(&key);
            } else {
                state.sent.insert(
                    key,
                    GroupSent {
                        firing,
                        last_sent_ms: now,
                    },
                );
            }
            changed = true;
        }
    }
    // Resolved alerts every group has been told about are forgotten.
    let before = state.alerts.len();
    state
        .alerts
        .retain(|_, a| !a.resolved || now - a.ends_at < RESOLVED_KEEP_MS);
    changed | (before != state.alerts.len())
}

fn group_key(labels: &Labels) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{}}:{{{}}}", inner.join(", "))
}

fn common(members: &[&(&String, &Known)], pick: fn(&Known) -> &Labels) -> Labels {
    let mut out: Labels = members
        .first()
        .map(|(_, a)| pick(a).clone())
        .unwrap_or_default();
    for (_, a) in members.iter().skip(1) {
        out.retain(|k, v| pick(a).get(k) == Some(v));
    }
    out
}

fn payload(
    inner: &Inner,
    c: &WebhookConfig,
    group_labels: &Labels,
    members: &[&(&String, &Known)],
    firing: bool,
) -> serde_json::Value {
    let alerts: Vec<serde_json::Value> = members
        .iter()
        .map(|(fp, a)| {
            json!({
                "status": if a.resolved { "resolved" } else { "firing" },
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": rfc3339_ms(a.starts_at),
                "endsAt": if a.resolved { rfc3339_ms(a.ends_at) } else { "0001-01-01T00:00:00Z".to_string() },
                "generatorURL": a.generator_url,
                "fingerprint": fp,
            })
        })
        .collect();
    json!({
        "version": "4",
        "groupKey": group_key(group_labels),
        "truncatedAlerts": 0,
        "status": if firing { "firing" } else { "resolved" },
        "receiver": c.name,
        "groupLabels": group_labels,
        "commonLabels": common(members, |a| &a.labels),
        "commonAnnotations": common(members, |a| &a.annotations),
        "externalURL": inner.external_url,
        "alerts": alerts,
    })
}

/// Delivers the outbox, oldest first, retrying with back-off.
fn send_loop(inner: &Inner) {
    let agent = ureq::AgentBuilder::new().build();
    loop {
        let due = {
            let state = inner.state.lock().unwrap_or_else(|p| p.into_inner());
            let now = now_ms();
            let due = state
                .outbox
                .iter()
                .find(|p| p.next_attempt_ms <= now)
                .cloned();
            if due.is_none() {
                let wait = state
                    .outbox
                    .iter()
                    .map(|p| p.next_attempt_ms - now)
                    .min()
                    .unwrap_or(1000)
                    .clamp(10, 1000);
                let _ = inner
                    .wake
                    .wait_timeout(state, Duration::from_millis(wait as u64));
                continue;
            }
            due
        };
        let Some(p) = due else { continue };
        let Some(hook) = inner.hooks.iter().find(|h| h.config.name == p.hook) else {
            // The webhook left the configuration: its notifications go too.
            let mut state = inner.state.lock().unwrap_or_else(|p| p.into_inner());
            state.outbox.retain(|q| q.id != p.id);
            inner.persist(&state);
            continue;
        };
        let mut req = agent
            .post(&hook.config.url)
            .timeout(hook.config.timeout.0)
            .set("User-Agent", "carbonio-monitor");
        if let Some(a) = &hook.auth {
            req = req.set("Authorization", a);
        }
        let result = req
            .set("Content-Type", "application/json")
            .send_string(&p.payload.to_string());
        let mut state = inner.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_ms();
        match result {
            Ok(_) => {
                state.outbox.retain(|q| q.id != p.id);
                tracing::info!(webhook = %p.hook, attempts = p.attempts + 1, "webhook notification delivered");
            }
            Err(e) => {
                let give_up = now - p.created_ms >= hook.config.give_up_after.0.as_millis() as i64;
                if give_up {
                    tracing::error!(webhook = %p.hook, error = %e, attempts = p.attempts + 1, "webhook notification dropped after retries");
                    state.outbox.retain(|q| q.id != p.id);
                } else if let Some(q) = state.outbox.iter_mut().find(|q| q.id == p.id) {
                    q.attempts += 1;
                    let backoff = (1000i64 << q.attempts.min(20)).min(MAX_BACKOFF_MS);
                    q.next_attempt_ms = now + backoff;
                    tracing::warn!(webhook = %p.hook, error = %e, retry_in_ms = backoff, "webhook notification failed");
                }
            }
        }
        inner.persist(&state);
    }
}
