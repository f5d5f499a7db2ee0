//! The OpenLDAP exporter (port 9330): reads `cn=Monitor` on every scrape and
//! exposes tomcz/openldap_exporter's families, plus clearer Carbonio-facing
//! ones derived from the same entries and replication lag between servers.

use crate::exposition::Family;
use crate::Exporter;
use ldap3::{LdapConn, LdapConnSettings, Scope, SearchEntry};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum LdapError {
    #[error("connecting to {url}: {source}")]
    Dial {
        url: String,
        source: Box<ldap3::LdapError>,
    },
    #[error("binding to {url} as {dn}: {source}")]
    Bind {
        url: String,
        dn: String,
        source: Box<ldap3::LdapError>,
    },
    #[error("searching {base} on {url}: {source}")]
    Search {
        url: String,
        base: String,
        source: Box<ldap3::LdapError>,
    },
    #[error(transparent)]
    CaFile(#[from] crate::tls::CaFileError),
    #[error("the LDAP client failed unexpectedly")]
    Panicked,
}

pub struct LdapOptions {
    /// ldap:// or ldaps:// URL of the server whose cn=Monitor is exposed.
    pub url: String,
    /// Other servers (consumers) whose contextCSN is compared for replication lag.
    pub consumers: Vec<String>,
    pub bind_dn: Option<String>,
    pub password: Option<String>,
    pub starttls: bool,
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
    /// DNs whose contextCSN is read (e.g. the suffix `dc=example,dc=com`).
    pub replication_objects: Vec<String>,
}

pub struct LdapExporter {
    opts: LdapOptions,
    tls: Option<Arc<rustls::ClientConfig>>,
    dial: [AtomicU64; 2],
    bind: [AtomicU64; 2],
    scrape: [AtomicU64; 2],
}

/// A CSN: "YYYYmmddHHMMSS.ffffffZ#count#sid#mod".
#[derive(Debug, Clone, PartialEq)]
pub struct Csn {
    pub time: f64,
    pub count: f64,
    pub sid: String,
    pub modifier: f64,
}

pub fn parse_csn(s: &str) -> Option<Csn> {
    let mut parts = s.split('#');
    let ts = parts.next()?;
    let count = u64::from_str_radix(parts.next()?, 16).ok()? as f64;
    let sid = parts.next()?.to_string();
    let modifier = u64::from_str_radix(parts.next()?, 16).ok()? as f64;
    if parts.next().is_some() || ts.len() < 15 || !ts.is_char_boundary(14) {
        return None;
    }
    let (whole, frac) = ts
        .trim_end_matches('Z')
        .split_once('.')
        .unwrap_or((ts.trim_end_matches('Z'), ""));
    if whole.len() != 14 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| whole[r].parse::<i64>().ok();
    let days = days_from_civil(n(0..4)?, n(4..6)?, n(6..8)?)?;
    let secs = days * 86400 + n(8..10)? * 3600 + n(10..12)? * 60 + n(12..14)?;
    let frac: f64 = if frac.is_empty() {
        0.0
    } else {
        format!("0.{frac}").parse().ok()?
    };
    Some(Csn {
        time: secs as f64 + frac,
        count,
        sid,
        modifier,
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> Option<i64> {
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146097 + doe - 719468)
}

/// contextCSN values per replication object DN.
type Csns = Vec<(String, Vec<Csn>)>;

/// What one server's cn=Monitor holds, by DN.
struct MonitorData {
    entries: Vec<SearchEntry>,
    csns: Csns,
}

impl LdapExporter {
    pub fn new(opts: LdapOptions) -> Result<Self, LdapError> {
        let tls = opts
            .ca_file
            .as_deref()
            .map(crate::tls::client_config)
            .transpose()?;
        Ok(LdapExporter {
            opts,
            tls,
            dial: Default::default(),
            bind: Default::default(),
            scrape: Default::default(),
        })
    }

    fn connect(&self, url: &str) -> Result<LdapConn, LdapError> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.opts.timeout)
            .set_starttls(self.opts.starttls);
        if let Some(cfg) = &self.tls {
            settings = settings.set_config(cfg.clone());
        }
        let mut conn = LdapConn::with_settings(settings, url).map_err(|source| {
            count(&self.dial, false);
            LdapError::Dial {
                url: url.to_string(),
                source: Box::new(source),
            }
        })?;
        count(&self.dial, true);
        if let (Some(dn), Some(pw)) = (&self.opts.bind_dn, &self.opts.password) {
            let bound = conn
                .with_timeout(self.opts.timeout)
                .simple_bind(dn, pw)
                .and_then(|r| r.success());
            count(&self.bind, bound.is_ok());
            bound.map_err(|source| LdapError::Bind {
                url: url.to_string(),
                dn: dn.clone(),
                source: Box::new(source),
            })?;
        }
        Ok(conn)
    }

    fn search(
        &self,
        conn: &mut LdapConn,
        url: &str,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<SearchEntry>, LdapError> {
        let err = |source| LdapError::Search {
            url: url.to_string(),
            base: base.to_string(),
            source: Box::new(source),
        };
        let (entries, _) = conn
            .with_timeout(self.opts.timeout)
            .search(base, scope, filter, attrs.to_vec())
            .and_then(|r| r.success())
            .map_err(err)?;
        Ok(entries.into_iter().map(SearchEntry::construct).collect())
    }

    fn read_csns(&self, conn: &mut LdapConn, url: &str) -> Result<Csns, LdapError> {
        let mut out = Vec::new();
        for dn in &self.opts.replication_objects {
            let entries = self.search(
                conn,
                url,
                dn,
                Scope::Base,
                "(objectClass=*)",
                &["contextCSN"],
            )?;
            let csns = entries
                .iter()
                .flat_map(|e| e.attrs.get("contextCSN").into_iter().flatten())
                .filter_map(|v| parse_csn(v))
                .collect();
            out.push((dn.clone(), csns));
        }
        Ok(out)
    }

    fn read_monitor(&self) -> Result<MonitorData, LdapError> {
        let url = &self.opts.url;
        let mut conn = self.connect(url)?;
        // One subtree search brings every counter the families need.
        let entries = self.search(
            &mut conn,
            url,
            "cn=Monitor",
            Scope::Subtree,
            "(objectClass=*)",
            &[
                "objectClass",
                "monitoredInfo",
                "monitorCounter",
                "monitorOpInitiated",
                "monitorOpCompleted",
            ],
        )?;
        let csns = self.read_csns(&mut conn, url)?;
        let _ = conn.unbind();
        Ok(MonitorData { entries, csns })
    }

    fn consumer_csns(&self, url: &str) -> Result<Csns, LdapError> {
        let mut conn = self.connect(url)?;
        let csns = self.read_csns(&mut conn, url);
        let _ = conn.unbind();
        csns
    }
}

fn count(pair: &[AtomicU64; 2], ok: bool) {
    pair[usize::from(!ok)].fetch_add(1, Ordering::Relaxed);
}

fn ok_fail(name: &str, help: &str, pair: &[AtomicU64; 2]) -> Family {
    let mut f = Family::counter(name, help);
    f.add(&[("result", "ok")], pair[0].load(Ordering::Relaxed) as f64);
    f.add(
        &[("result", "fail")],
        pair[1].load(Ordering::Relaxed) as f64,
    );
    f
}

impl Exporter for LdapExporter {
    fn build_info_name(&self) -> &'static str {
        "openldap_exporter"
    }
    fn title(&self) -> &'static str {
        "Carbonio Monitoring OpenLDAP exporter"
    }

    fn gather(&self) -> Vec<Family> {
        // ldap3's blocking client runs its own runtime, which must not be
        // nested in ours: run it on plain threads, consumers concurrently.
        let (main, consumers) = std::thread::scope(|s| {
            let main = s.spawn(|| self.read_monitor());
            let consumers: Vec<_> = self
                .opts
                .consumers
                .iter()
                .map(|url| (url, s.spawn(move || self.consumer_csns(url))))
                .collect();
            let main = main.join().unwrap_or_else(|_| Err(LdapError::Panicked));
            let consumers: Vec<_> = consumers
                .into_iter()
                .map(|(url, h)| (url.clone(), h.join().ok()))
                .collect();
            (main, consumers)
        });
        let mut out = Vec::new();
        let up = match main {
            Ok(data) => {
                count(&self.scrape, true);
                out.extend(render(&data));
                lag(&data, &consumers, &mut out);
                1.0
            }
            Err(e) => {
                if matches!(e, LdapError::Search { .. }) {
                    count(&self.scrape, false);
                }
                tracing::error!(error = %e, "reading cn=Monitor failed");
                0.0
            }
        };
        out.push(
            Family::gauge(
                "openldap_up",
                "Whether cn=Monitor could be read (1) or not (0).",
            )
            .with(&[], up),
        );
        out.push(ok_fail(
            "openldap_dial",
            "successful vs unsuccessful ldap dial attempts",
            &self.dial,
        ));
        out.push(ok_fail(
            "openldap_bind",
            "successful vs unsuccessful ldap bind attempts",
            &self.bind,
        ));
        out.push(ok_fail(
            "openldap_scrape",
            "successful vs unsuccessful ldap scrape attempts",
            &self.scrape,
        ));
        out
    }
}

fn first_number(e: &SearchEntry, attr: &str) -> Option<f64> {
    e.attrs.get(attr)?.first()?.parse().ok()
}

fn has_class(e: &SearchEntry, class: &str) -> bool {
    e.attrs
        .get("objectClass")
        .is_some_and(|v| v.iter().any(|c| c.eq_ignore_ascii_case(class)))
}

/// The leading RDN value: "cn=Max Pending,cn=Threads,cn=Monitor" → "Max Pending".
fn rdn_value(dn: &str) -> &str {
    dn.split(',')
        .next()
        .and_then(|r| r.split_once('='))
        .map_or(dn, |(_, v)| v)
}

fn parent_rdn(dn: &str) -> &str {
    dn.split(',')
        .nth(1)
        .and_then(|r| r.split_once('='))
        .map_or("", |(_, v)| v)
}

fn snake(s: &str) -> String {
    s.to_ascii_lowercase().replace(' ', "_")
}

fn render(data: &MonitorData) -> Vec<Family> {
    let mut monitored = Family::gauge(
        "openldap_monitored_object",
        "cn=Monitor (objectClass=monitoredObject) monitoredInfo",
    );
    let mut counters = Family::gauge(
        "openldap_monitor_counter_object",
        "cn=Monitor (objectClass=monitorCounterObject) monitorCounter",
    );
    let mut operations = Family::gauge(
        "openldap_monitor_operation",
        "cn=Operations,cn=Monitor (objectClass=monitorOperation) monitorOpCompleted",
    );
    let mut replication = Family::gauge(
        "openldap_monitor_replication",
        "cn=Monitor monitorReplication",
    );
    // Carbonio-facing families with plain names and labels.
    let mut connections = Family::gauge(
        "openldap_connections_current",
        "Connections currently open to slapd.",
    );
    let mut connections_total = Family::counter(
        "openldap_connections_total",
        "Connections accepted by slapd since it started.",
    );
    let mut max_fds = Family::gauge(
        "openldap_max_file_descriptors",
        "File descriptors slapd may use.",
    );
    let mut initiated = Family::counter(
        "openldap_operations_initiated_total",
        "LDAP operations initiated, by operation.",
    );
    let mut completed = Family::counter(
        "openldap_operations_completed_total",
        "LDAP operations completed, by operation.",
    );
    let mut threads = Family::gauge("openldap_threads", "slapd worker threads, by state (active, open, pending, starting, max, max_pending, backload).");
    let mut stats = Family::counter(
        "openldap_statistics_total",
        "Data slapd has sent since it started, by kind (bytes, pdu, entries, referrals).",
    );
    let mut waiters = Family::gauge(
        "openldap_waiters",
        "Connections waiting to read or write, by type.",
    );
    let mut uptime = Family::gauge("openldap_uptime_seconds", "Seconds since slapd started.");
    for e in &data.entries {
        let dn = e.dn.as_str();
        let name = rdn_value(dn);
        let parent = parent_rdn(dn);
        if has_class(e, "monitoredObject") {
            if let Some(v) = first_number(e, "monitoredInfo") {
                monitored.add(&[("dn", dn)], v);
                match parent {
                    "Threads" => {
                        threads.add(&[("state", &snake(name))], v);
                    }
                    "Time" if name == "Uptime" => {
                        uptime.add(&[], v);
                    }
                    _ => {}
                }
            }
        }
        if has_class(e, "monitorCounterObject") {
            if let Some(v) = first_number(e, "monitorCounter") {
                counters.add(&[("dn", dn)], v);
                match (parent, name) {
                    ("Connections", "Current") => {
                        connections.add(&[], v);
                    }
                    ("Connections", "Total") => {
                        connections_total.add(&[], v);
                    }
                    ("Connections", "Max File Descriptors") => {
                        max_fds.add(&[], v);
                    }
                    ("Statistics", kind) => {
                        stats.add(&[("kind", &snake(kind))], v);
                    }
                    ("Waiters", kind) => {
                        waiters.add(&[("type", &snake(kind))], v);
                    }
                    _ => {}
                }
            }
        }
        if has_class(e, "monitorOperation") && parent == "Operations" {
            let op = snake(name);
            if let Some(v) = first_number(e, "monitorOpCompleted") {
                operations.add(&[("dn", dn)], v);
                completed.add(&[("operation", &op)], v);
            }
            if let Some(v) = first_number(e, "monitorOpInitiated") {
                initiated.add(&[("operation", &op)], v);
            }
        }
    }
    for (_, csns) in &data.csns {
        for c in csns {
            replication.add(&[("id", &c.sid), ("type", "gt")], c.time.floor());
            replication.add(&[("id", &c.sid), ("type", "count")], c.count);
            replication.add(&[("id", &c.sid), ("type", "mod")], c.modifier);
        }
    }
    vec![
        monitored,
        counters,
        operations,
        replication,
        connections,
        connections_total,
        max_fds,
        initiated,
        completed,
        threads,
        stats,
        waiters,
        uptime,
    ]
}

/// Seconds each consumer's contextCSN trails the provider's, per replication object and server id.
fn lag(
    data: &MonitorData,
    consumers: &[(String, Option<Result<Csns, LdapError>>)],
    out: &mut Vec<Family>,
) {
    if consumers.is_empty() {
        return;
    }
    let mut lag = Family::gauge(
        "openldap_replication_lag_seconds",
        "How far a consumer's contextCSN trails the provider's, per replication object (base) and server id (sid).",
    );
    let mut consumer_up = Family::gauge(
        "openldap_replication_consumer_up",
        "Whether the consumer's contextCSN could be read.",
    );
    let provider: HashMap<(&str, &str), f64> = data
        .csns
        .iter()
        .flat_map(|(base, csns)| {
            csns.iter()
                .map(move |c| ((base.as_str(), c.sid.as_str()), c.time))
        })
        .collect();
    for (url, result) in consumers {
        match result {
            Some(Ok(csns)) => {
                consumer_up.add(&[("consumer", url)], 1.0);
                for (base, list) in csns {
                    for c in list {
                        if let Some(p) = provider.get(&(base.as_str(), c.sid.as_str())) {
                            lag.add(
                                &[("consumer", url), ("base", base), ("sid", &c.sid)],
                                (p - c.time).max(0.0),
                            );
                        }
                    }
                }
            }
            Some(Err(e)) => {
                tracing::error!(consumer = %url, error = %e, "reading consumer contextCSN failed");
                consumer_up.add(&[("consumer", url)], 0.0);
            }
            None => {
                consumer_up.add(&[("consumer", url)], 0.0);
            }
        }
    }
    out.extend([lag, consumer_up]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn csn_parsing() {
        let c = parse_csn("20261122124702.123456Z#000000#001#000000").unwrap();
        assert_eq!(c.sid, "001");
        assert!((c.time - 1795351622.123456).abs() < 1e-3, "{}", c.time);
        assert_eq!(
            parse_csn("19700101000000.000000Z#00000a#000#000001")
                .map(|c| (c.time, c.count, c.modifier)),
            Some((0.0, 10.0, 1.0))
        );
        for bad in [
            "",
            "x#1#2#3",
            "20261122124702.1Z#zz#001#000",
            "2026112212470.1Z#0#001#0",
            "20261322124702Z#0#001#0",
            "20261122124702Z#0#001",
        ] {
            assert_eq!(parse_csn(bad), None, "{bad}");
        }
    }

    #[test]
    fn rdn_helpers() {
        assert_eq!(
            rdn_value("cn=Max Pending,cn=Threads,cn=Monitor"),
            "Max Pending"
        );
        assert_eq!(
            parent_rdn("cn=Max Pending,cn=Threads,cn=Monitor"),
            "Threads"
        );
        assert_eq!(snake("Max Pending"), "max_pending");
    }

    #[test]
    fn lag_is_provider_minus_consumer() {
        let csn = |t: &str| parse_csn(&format!("{t}.000000Z#000000#001#000000")).unwrap();
        let base = "dc=carbonio,dc=test".to_string();
        let data = MonitorData {
            entries: Vec::new(),
            csns: vec![(base.clone(), vec![csn("20261122124742")])],
        };
        let consumers = vec![
            (
                "ldap://c1".to_string(),
                Some(Ok(vec![(base.clone(), vec![csn("20261122124700")])])),
            ),
            ("ldap://c2".to_string(), None),
        ];
        let mut out = Vec::new();
        lag(&data, &consumers, &mut out);
        let lag = out
            .iter()
            .find(|f| f.name == "openldap_replication_lag_seconds")
            .unwrap();
        assert_eq!(lag.samples.len(), 1);
        assert_eq!(lag.samples[0].value, 42.0);
        let up = out
            .iter()
            .find(|f| f.name == "openldap_replication_consumer_up")
            .unwrap();
        assert_eq!(
            up.samples.iter().map(|s| s.value).collect::<Vec<_>>(),
            [1.0, 0.0]
        );
    }

    proptest! {
        #[test]
        fn csn_never_panics(s in "\\PC*") {
            let _ = parse_csn(&s);
        }
    }
}
