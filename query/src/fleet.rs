//! A stateless query node over several collectors (`fleet:`): each
//! collector's flushed data is read from its prefix in the bucket (through
//! a mirrored catalog, see `mirror`), the rest — its head and what it has
//! not uploaded yet — is asked from the collector over HTTP as Arrow IPC.
//! Series get the collector's external labels; series equal but for the
//! replica labels are merged as Thanos's querier does (`dedup`).

pub mod dedup;
pub mod mirror;

use carbonio_collector::config::FleetConfig;
use carbonio_collector::fleet::{self as wire, Info, LogsRequest, SelectRequest, WireMatcher};
use carbonio_collector::relabel::Labels;
use carbonio_collector::store::head::{Matcher, Selected};
use carbonio_collector::store::logs::{LogSnapshot, LogStoreError, LogView};
use carbonio_collector::store::record::MetricMeta;
use carbonio_collector::store::{tier, MetricRead, Snapshot, StoreError};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Largest reply accepted from a collector; a larger one fails the query.
const MAX_REPLY: u64 = 2 << 30;

/// A collector's part of a log read: its files in the bucket (key, size)
/// and the rows it sent.
struct MemberLogs {
    remote: Vec<(String, u64)>,
    rows: Vec<arrow_array::RecordBatch>,
}

/// One collector as the query node sees it at the last refresh.
struct View {
    metrics: Snapshot,
    logs: LogSnapshot,
    /// None until the collector has told them once (or a mirror kept them):
    /// its series cannot be labelled, so they are not answered.
    external_labels: Option<Labels>,
}

struct Member {
    url: String,
    prefix: String,
    agent: ureq::Agent,
    /// The `Authorization` header value, if the collector wants one.
    auth: Option<String>,
    mirror: PathBuf,
    view: RwLock<Arc<View>>,
}

pub struct Fleet {
    members: Vec<Member>,
    replica_labels: Vec<String>,
    tier: &'static Arc<tier::Tier>,
}

impl Fleet {
    /// Mirrors every collector's catalog under `data/fleet/` now, then
    /// every `refresh_interval` on a thread of its own. The tier must be
    /// installed (`storage.object_store`).
    pub fn start(config: &FleetConfig, data: &Path) -> Result<Arc<Fleet>, StoreError> {
        let tier = tier::installed().ok_or_else(|| {
            StoreError::Remote("fleet: needs storage.object_store (the collectors' bucket)".into())
        })?;
        let mut members = Vec::new();
        for c in &config.collectors {
            let mirror = data.join("fleet").join(mirror_name(&c.url, &c.prefix));
            let bad = |e: String| StoreError::Remote(format!("fleet collector {}: {e}", c.url));
            let mut agent = ureq::AgentBuilder::new()
                .timeout(config.timeout.0)
                .user_agent(concat!("carbonio-monitor/", env!("CARGO_PKG_VERSION")));
            if let Some(t) = &c.tls_config {
                agent = agent
                    .tls_config(carbonio_collector::scrape::tls::client_config(t).map_err(bad)?);
            }
            members.push(Member {
                url: c.url.trim_end_matches('/').to_string(),
                prefix: c.prefix.trim_matches('/').to_string(),
                agent: agent.build(),
                auth: carbonio_collector::config::auth_header(&c.basic_auth, &c.authorization)
                    .map_err(bad)?,
                view: RwLock::new(Arc::new(open_view(&mirror, None)?)),
                mirror,
            });
        }
        let fleet = Arc::new(Fleet {
            members,
            replica_labels: config.replica_labels.clone(),
            tier,
        });
        fleet.refresh();
        let weak = Arc::downgrade(&fleet);
        let every = config.refresh_interval.0;
        let spawned = std::thread::Builder::new()
            .name("fleet-refresh".into())
            .spawn(move || loop {
                std::thread::sleep(every);
                let Some(fleet) = weak.upgrade() else { return };
                fleet.refresh();
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "no fleet refresh thread: the bucket is listed once");
        }
        Ok(fleet)
    }

    /// Lists the bucket for each collector and asks each for its labels.
    /// Reads send each collector the names the mirror holds at that moment,
    /// so a refresh that stops half way loses and doubles nothing.
    pub fn refresh(&self) {
        for m in &self.members {
            if let Err(e) = mirror::refresh(self.tier, &m.prefix, &m.mirror) {
                tracing::warn!(collector = %m.url, error = %e, "listing the collector's objects failed; tried again at the next refresh");
            }
            let labels = self.info(m);
            match open_view(&m.mirror, labels) {
                Ok(v) => *m.view.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(v),
                Err(e) => {
                    tracing::warn!(collector = %m.url, error = %e, "opening the mirrored catalog failed")
                }
            }
        }
    }

    /// The collector's external labels, remembered in the mirror so a
    /// collector that is down still labels its data in the bucket.
    fn info(&self, m: &Member) -> Option<Labels> {
        let saved = m.mirror.join("info.json");
        let asked = m.get_json::<Info>("/api/v1/fleet/info");
        match asked {
            Ok(info) => {
                if let Ok(json) = serde_json::to_vec(&info) {
                    let _ = std::fs::write(&saved, json);
                }
                Some(info.external_labels)
            }
            Err(e) => {
                tracing::warn!(collector = %m.url, error = %e, "collector info unavailable; last known labels used");
                std::fs::read(&saved)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Info>(&b).ok())
                    .map(|i| i.external_labels)
            }
        }
    }
}

impl Member {
    fn external_labels<'a>(&self, view: &'a View) -> Result<&'a Labels, StoreError> {
        view.external_labels.as_ref().ok_or_else(|| {
            StoreError::Remote(format!(
                "collector {}: its external labels are not known yet (GET /api/v1/fleet/info has not answered)",
                self.url
            ))
        })
    }

    fn request(&self, method: &str, url: &str) -> ureq::Request {
        let req = self.agent.request(method, url);
        match &self.auth {
            Some(a) => req.set("Authorization", a),
            None => req,
        }
    }

    fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        let url = format!("{}{path}", self.url);
        let reply = self
            .request("GET", &url)
            .call()
            .map_err(|e| format!("collector {url}: {e}"))?;
        let bytes = read_reply(reply, &url)?;
        serde_json::from_slice(&bytes).map_err(|e| format!("collector {url}: {e}"))
    }

    fn post(&self, path: &str, body: impl serde::Serialize) -> Result<Vec<u8>, String> {
        let url = format!("{}{path}", self.url);
        let body = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
        let reply = self
            .request("POST", &url)
            .set("Content-Type", "application/json")
            .send_bytes(&body)
            .map_err(|e| format!("collector {url}: {e}"))?;
        read_reply(reply, &url)
    }
}

fn read_reply(reply: ureq::Response, url: &str) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    reply
        .into_reader()
        .take(MAX_REPLY + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("collector {url}: {e}"))?;
    if bytes.len() as u64 > MAX_REPLY {
        return Err(format!(
            "collector {url}: reply larger than {MAX_REPLY} bytes (narrow the query)"
        ));
    }
    Ok(bytes)
}

impl Fleet {
    /// One collector's series: from the bucket and from the collector,
    /// with its external labels, filtered by all `matchers`.
    fn member_select(
        &self,
        m: &Member,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Result<Vec<Selected>, StoreError> {
        let view = m.view.read().unwrap_or_else(|p| p.into_inner()).clone();
        let external = m.external_labels(&view)?;
        let own = own_matchers(matchers, external);
        let mut merged: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
        for (l, s) in view.metrics.select(&own, start, end)? {
            merged.entry(l).or_default().extend(s);
        }
        let req = SelectRequest {
            matchers: own.iter().map(WireMatcher::of).collect(),
            start,
            end,
            known_blocks: mirror::block_names(&m.mirror),
        };
        let bytes = m
            .post("/api/v1/fleet/select", req)
            .map_err(StoreError::Remote)?;
        let theirs = wire::decode_selected(&bytes)
            .map_err(|e| StoreError::Remote(format!("collector {}: {e}", m.url)))?;
        for (l, s) in theirs {
            merged.entry(l).or_default().extend(s);
        }
        Ok(merged
            .into_iter()
            .filter_map(|(l, mut s)| {
                let l = with_external(l, external);
                if !matchers.iter().all(|m| m.matches(&l)) {
                    return None;
                }
                s.sort_by_key(|(t, _)| *t);
                s.dedup_by_key(|(t, _)| *t);
                Some((l, s))
            })
            .collect())
    }

    fn member_series(
        &self,
        m: &Member,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Result<Vec<Labels>, StoreError> {
        let view = m.view.read().unwrap_or_else(|p| p.into_inner()).clone();
        let external = m.external_labels(&view)?;
        let own = own_matchers(matchers, external);
        let mut all: BTreeSet<Labels> =
            view.metrics.series(&own, start, end)?.into_iter().collect();
        let req = SelectRequest {
            matchers: own.iter().map(WireMatcher::of).collect(),
            start,
            end,
            known_blocks: Vec::new(),
        };
        let bytes = m
            .post("/api/v1/fleet/series", req)
            .map_err(StoreError::Remote)?;
        let theirs: Vec<Labels> = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::Remote(format!("collector {}: {e}", m.url)))?;
        all.extend(theirs);
        Ok(all
            .into_iter()
            .map(|l| with_external(l, external))
            .filter(|l| matchers.iter().all(|m| m.matches(l)))
            .collect())
    }

    /// One collector's log rows: files from the bucket (less parts the
    /// collector has since replaced) and rows the collector sends.
    fn member_logs(
        &self,
        m: &Member,
        start_ns: i64,
        end_ns: i64,
    ) -> Result<MemberLogs, LogStoreError> {
        let view = m.view.read().unwrap_or_else(|p| p.into_inner()).clone();
        let from_bucket = view.logs.view(start_ns, end_ns)?;
        // Exactly the parts this read lists from the mirror.
        let req = LogsRequest {
            start_ns,
            end_ns,
            known_parts: from_bucket
                .parts
                .iter()
                .map(|(n, _)| mirror::collector_name(n).to_string())
                .collect(),
        };
        let remote_err = |msg: String| LogStoreError::Io {
            path: PathBuf::from(&m.url),
            msg,
        };
        let bytes = m.post("/api/v1/fleet/logs", req).map_err(remote_err)?;
        let reply = wire::decode_logs(&bytes).map_err(|e| remote_err(e.to_string()))?;
        let replaced: std::collections::HashSet<&String> = from_bucket
            .parts
            .iter()
            .chain(&reply.parts)
            .flat_map(|(_, r)| r)
            .collect();
        let remote = from_bucket
            .remote
            .into_iter()
            .filter(|(key, _)| {
                mirror::part_of_key(key).is_none_or(|p| !replaced.contains(&p.to_string()))
            })
            .collect();
        Ok(MemberLogs {
            remote,
            rows: reply.batches,
        })
    }

    /// Runs `f` for every collector at once.
    fn each<T: Send>(&self, f: impl Fn(&Member) -> T + Sync) -> Vec<T> {
        std::thread::scope(|s| {
            let handles: Vec<_> = self.members.iter().map(|m| s.spawn(|| f(m))).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    }

    fn without_replica(&self, mut l: Labels) -> Labels {
        for r in &self.replica_labels {
            l.remove(r);
        }
        l
    }
}

fn open_view(mirror: &Path, external_labels: Option<Labels>) -> Result<View, StoreError> {
    std::fs::create_dir_all(mirror.join("logs"))
        .map_err(|e| StoreError::Remote(format!("{}: {e}", mirror.display())))?;
    Ok(View {
        metrics: Snapshot::open(mirror)?,
        logs: LogSnapshot::open(&mirror.join("logs"))
            .map_err(|e| StoreError::Remote(e.to_string()))?,
        external_labels,
    })
}

/// Matchers the collector's own series answer: one on an external label
/// that the external value satisfies is checked after the labels are
/// added (a series' own label of that name overrides it); one it does not
/// satisfy is sent as it is.
fn own_matchers(matchers: &[Matcher], external: &Labels) -> Vec<Matcher> {
    matchers
        .iter()
        .filter(|m| !(external.contains_key(matcher_name(m)) && m.matches(external)))
        .cloned()
        .collect()
}

/// The mirror's directory name: stable for a collector whatever the order
/// of the list, and new when its address or prefix changes.
fn mirror_name(url: &str, prefix: &str) -> String {
    let hash = twox_hash::XxHash64::oneshot(0, format!("{url}\n{prefix}").as_bytes());
    format!("{hash:016x}")
}

fn matcher_name(m: &Matcher) -> &str {
    match m {
        Matcher::Equal(n, _)
        | Matcher::NotEqual(n, _)
        | Matcher::Re(n, _)
        | Matcher::NotRe(n, _) => n,
    }
}

/// External labels do not override a series' own (as in Prometheus).
fn with_external(mut l: Labels, external: &Labels) -> Labels {
    for (k, v) in external {
        l.entry(k.clone()).or_insert_with(|| v.clone());
    }
    l
}

impl MetricRead for Fleet {
    fn select(
        &self,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Result<Vec<Selected>, StoreError> {
        let mut groups: BTreeMap<Labels, Vec<Vec<(i64, f64)>>> = BTreeMap::new();
        for found in self.each(|m| self.member_select(m, matchers, start, end)) {
            for (l, s) in found? {
                groups.entry(self.without_replica(l)).or_default().push(s);
            }
        }
        Ok(groups
            .into_iter()
            .map(|(l, replicas)| (l, dedup::merge_replicas(replicas)))
            .collect())
    }

    fn series(
        &self,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Result<Vec<Labels>, StoreError> {
        let mut all = BTreeSet::new();
        for found in self.each(|m| self.member_series(m, matchers, start, end)) {
            all.extend(found?.into_iter().map(|l| self.without_replica(l)));
        }
        Ok(all.into_iter().collect())
    }

    fn metadata(&self) -> BTreeMap<String, BTreeSet<MetricMeta>> {
        let mut all: BTreeMap<String, BTreeSet<MetricMeta>> = BTreeMap::new();
        let found = self.each(|m| {
            m.get_json::<wire::Metadata>("/api/v1/fleet/metadata")
                .map_err(|e| tracing::warn!(collector = %m.url, error = %e, "metadata unavailable"))
        });
        for (metric, metas) in found.into_iter().flatten().flatten() {
            all.entry(metric).or_default().extend(metas);
        }
        all
    }
}

#[cfg(feature = "sql")]
impl crate::logs_table::LogSource for Fleet {
    fn view(&self, start_ns: i64, end_ns: i64) -> Result<LogView, LogStoreError> {
        let mut view = LogView::default();
        let mut rows = Vec::new();
        for found in self.each(|m| self.member_logs(m, start_ns, end_ns)) {
            let found = found?;
            view.remote.extend(found.remote);
            rows.extend(found.rows);
        }
        view.head = rows;
        Ok(view)
    }
}
