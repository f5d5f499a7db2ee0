//! The product's configuration file (`carbonio-monitor.yml`): its `global`
//! and `scrape_configs` sections take Prometheus's format. Unknown keys are
//! errors that name the key and the line.

use crate::duration;
use crate::relabel::{RelabelConfig, Rule};
use serde::{Deserialize, Deserializer};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Yaml {
        path: PathBuf,
        source: serde_yaml_ng::Error,
    },
    #[error("{path}: {at}: {msg}")]
    Invalid {
        path: PathBuf,
        at: String,
        msg: String,
    },
}

/// A Prometheus duration in YAML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        duration::parse(&s)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub global: GlobalConfig,
    #[serde(default)]
    pub scrape_configs: Vec<ScrapeConfig>,
    /// Syslog listeners (none when absent).
    #[serde(default)]
    pub syslog: SyslogConfig,
    /// Log files followed as they grow (none when absent).
    #[serde(default)]
    pub tail: TailConfig,
    /// Limits of the query service.
    #[serde(default)]
    pub query: QueryConfig,
    /// Who may use the query API and UI (besides `DATA/users.json`).
    #[serde(default)]
    pub auth: AuthConfig,
    /// Rule files (globs), as Prometheus's `rule_files:`.
    #[serde(default)]
    pub rule_files: Vec<String>,
    /// Where alerts are sent.
    #[serde(default)]
    pub alerting: AlertingConfig,
    /// Counters made from log lines as they arrive.
    #[serde(default)]
    pub log_metrics: Vec<LogMetric>,
    /// Where stored samples are also sent (Prometheus remote write 1.0).
    #[serde(default)]
    pub remote_write: Vec<RemoteWriteConfig>,
    /// Where finished blocks live besides the data directory.
    #[serde(default)]
    pub storage: StorageConfig,
    /// Collectors a stateless `carbonio-monitor query` serves together
    /// (their buckets' prefixes in `storage.object_store`'s bucket).
    pub fleet: Option<FleetConfig>,
}

/// The collectors a query node answers for: their blocks and log parts
/// from the bucket, their heads from each collector over HTTP.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    pub collectors: Vec<FleetMember>,
    /// Labels that tell replicas apart (as Thanos's `--query.replica-label`):
    /// dropped from results, and series equal without them merged.
    #[serde(default)]
    pub replica_labels: Vec<String>,
    /// How often the bucket is listed for new blocks and log parts.
    #[serde(default = "default_fleet_refresh")]
    pub refresh_interval: Dur,
    /// Time limit of each request to a collector.
    #[serde(default = "default_fleet_timeout")]
    pub timeout: Dur,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetMember {
    /// The collector's HTTP address, e.g. `http://10.0.0.5:9464`.
    pub url: String,
    /// The collector's `storage.object_store.prefix`.
    #[serde(default)]
    pub prefix: String,
    /// Credentials for a collector started with `--web.config.file`.
    pub basic_auth: Option<BasicAuth>,
    pub authorization: Option<Authorization>,
    pub tls_config: Option<TlsConfig>,
}

fn default_fleet_refresh() -> Dur {
    Dur(Duration::from_secs(15))
}
fn default_fleet_timeout() -> Dur {
    Dur(Duration::from_secs(30))
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// S3-compatible object storage for finished metric blocks and log
    /// parts (a restart applies changes).
    pub object_store: Option<ObjectStoreConfig>,
}

/// An S3-compatible bucket (AWS, MinIO, Ceph RGW, ...). Credentials not
/// given here come from the environment (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectStoreConfig {
    /// e.g. `http://minio.example.com:9000`; AWS's endpoint when absent.
    pub endpoint: Option<String>,
    pub bucket: String,
    #[serde(default = "default_region")]
    pub region: String,
    /// This collector's folder in the bucket (collectors sharing a bucket
    /// each take their own).
    #[serde(default)]
    pub prefix: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// A file holding the secret access key.
    pub secret_access_key_file: Option<PathBuf>,
    /// `http://endpoint/bucket/key` instead of `http://bucket.endpoint/key`
    /// (MinIO and most self-hosted servers).
    #[serde(default)]
    pub path_style: bool,
    /// Blocks whose newest sample is older than this are uploaded (after
    /// compaction has joined them into days).
    #[serde(default = "default_upload_after")]
    pub upload_after: Dur,
    /// How long an uploaded log part's local files, and parts a compaction
    /// replaced, stay (searches that listed them may still read them).
    #[serde(default = "default_local_grace")]
    pub local_grace: Dur,
    /// Local copies of the parts of remote files queries read (default:
    /// `DATA/object-cache`), at most `cache_max_bytes`.
    pub cache_dir: Option<PathBuf>,
    #[serde(default = "default_cache_max_bytes")]
    pub cache_max_bytes: u64,
}

fn default_region() -> String {
    "us-east-1".into()
}
fn default_upload_after() -> Dur {
    Dur(Duration::from_secs(26 * 3600))
}
fn default_local_grace() -> Dur {
    Dur(Duration::from_secs(300))
}
fn default_cache_max_bytes() -> u64 {
    1 << 30
}

/// One `remote_write:` entry, as Prometheus's. Samples are read from the
/// WAL, so a receiver that is down delays them instead of losing them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteConfig {
    pub url: String,
    /// Names the queue (its position file and metrics); default: derived
    /// from the URL.
    pub name: Option<String>,
    #[serde(default = "default_remote_timeout")]
    pub remote_timeout: Dur,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub write_relabel_configs: Vec<RelabelConfig>,
    pub basic_auth: Option<BasicAuth>,
    pub authorization: Option<Authorization>,
    pub tls_config: Option<TlsConfig>,
    #[serde(default)]
    pub queue_config: QueueConfig,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    #[serde(default = "default_max_samples_per_send")]
    pub max_samples_per_send: usize,
    /// A batch that is not full is sent after this long.
    #[serde(default = "default_batch_send_deadline")]
    pub batch_send_deadline: Dur,
    #[serde(default = "default_min_backoff")]
    pub min_backoff: Dur,
    #[serde(default = "default_max_backoff")]
    pub max_backoff: Dur,
    #[serde(default = "yes")]
    pub retry_on_http_429: bool,
    /// While the receiver is down, WAL segments are kept for it up to this
    /// many bytes; beyond, the oldest unsent segments are given up (counted).
    #[serde(default = "default_max_backlog_bytes")]
    pub max_backlog_bytes: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_samples_per_send: default_max_samples_per_send(),
            batch_send_deadline: default_batch_send_deadline(),
            min_backoff: default_min_backoff(),
            max_backoff: default_max_backoff(),
            retry_on_http_429: true,
            max_backlog_bytes: default_max_backlog_bytes(),
        }
    }
}

fn default_remote_timeout() -> Dur {
    Dur(Duration::from_secs(30))
}
fn default_max_samples_per_send() -> usize {
    2000
}
fn default_batch_send_deadline() -> Dur {
    Dur(Duration::from_secs(5))
}
fn default_min_backoff() -> Dur {
    Dur(Duration::from_millis(30))
}
fn default_max_backoff() -> Dur {
    Dur(Duration::from_secs(5))
}
fn default_max_backlog_bytes() -> u64 {
    1 << 30
}

impl RemoteWriteConfig {
    /// The queue's name: `name`, or a short hash of the URL as Prometheus
    /// derives one.
    pub fn queue_name(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => format!("{:08x}", crc32fast::hash(self.url.as_bytes())),
        }
    }
}

/// One `log_metrics:` entry: a counter of the log lines that match,
/// stored as an ordinary series (one per label set).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogMetric {
    /// The counter's name, e.g. `carbonio_mail_deliveries_total`.
    pub name: String,
    /// Only lines whose app matches this glob (`postfix/*`); every line when absent.
    pub app: Option<Glob>,
    /// Lines must match this (the message, else its structured data);
    /// named captures become labels.
    pub regex: Pattern,
    /// Line fields that become labels: host, app, procid, msgid.
    #[serde(default)]
    pub by: Vec<String>,
    /// Fixed labels of every series.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A glob from the config: `*` any run of characters, `?` one.
#[derive(Debug, Clone)]
pub struct Glob(pub regex::Regex);

impl PartialEq for Glob {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Glob {
    /// The whole text must match; no escapes.
    pub fn new(pattern: &str) -> Result<Glob, regex::Error> {
        let re = regex::escape(pattern)
            .replace("\\*", ".*")
            .replace("\\?", ".");
        regex::Regex::new(&format!("^{re}$")).map(Glob)
    }
}

impl<'de> Deserialize<'de> for Glob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Glob::new(&s).map_err(|e| serde::de::Error::custom(format!("bad glob: {e}")))
    }
}

/// The `alerting:` section: Prometheus's `alertmanagers`, plus webhooks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertingConfig {
    #[serde(default)]
    pub alertmanagers: Vec<AlertmanagerConfig>,
    /// Receivers of Alertmanager's webhook payload (version 4), sent directly.
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    /// A firing alert is sent again after this long (`--rules.alert.resend-delay`).
    #[serde(default = "default_resend_delay")]
    pub resend_delay: Dur,
    /// After a restart, `for` timers continue when the outage was shorter
    /// than this (`--rules.alert.for-outage-tolerance`).
    #[serde(default = "default_outage_tolerance")]
    pub for_outage_tolerance: Dur,
    /// A restored alert waits at least this long before firing
    /// (`--rules.alert.for-grace-period`).
    #[serde(default = "default_grace_period")]
    pub for_grace_period: Dur,
}

impl Default for AlertingConfig {
    fn default() -> Self {
        AlertingConfig {
            alertmanagers: Vec::new(),
            webhooks: Vec::new(),
            resend_delay: default_resend_delay(),
            for_outage_tolerance: default_outage_tolerance(),
            for_grace_period: default_grace_period(),
        }
    }
}

fn default_resend_delay() -> Dur {
    Dur(Duration::from_secs(60))
}

fn default_outage_tolerance() -> Dur {
    Dur(Duration::from_secs(3600))
}

fn default_grace_period() -> Dur {
    Dur(Duration::from_secs(600))
}

/// One `alertmanagers:` entry (API v2).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    #[serde(default)]
    pub scheme: Scheme,
    #[serde(default)]
    pub path_prefix: String,
    #[serde(default = "default_notify_timeout")]
    pub timeout: Dur,
    /// Only `v2` exists in current Alertmanagers.
    #[serde(default = "default_api_version")]
    pub api_version: String,
    pub basic_auth: Option<BasicAuth>,
    pub authorization: Option<Authorization>,
    pub tls_config: Option<TlsConfig>,
    #[serde(default)]
    pub static_configs: Vec<StaticConfig>,
}

fn default_notify_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}

fn default_api_version() -> String {
    "v2".into()
}

/// A webhook receiver: alerts grouped by `group_by`, posted as
/// Alertmanager's webhook payload, retried with back-off from an outbox
/// kept on disk.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub name: String,
    pub url: String,
    /// Labels alerts are grouped by; one notification per group.
    #[serde(default = "default_group_by")]
    pub group_by: Vec<String>,
    /// Wait before the first notification of a new group, so alerts
    /// firing together arrive together.
    #[serde(default = "default_group_wait")]
    pub group_wait: Dur,
    /// A group that still fires is notified again after this long.
    #[serde(default = "default_repeat_interval")]
    pub repeat_interval: Dur,
    #[serde(default = "yes")]
    pub send_resolved: bool,
    #[serde(default = "default_notify_timeout")]
    pub timeout: Dur,
    /// Give up on one notification after this long of failed attempts.
    #[serde(default = "default_give_up")]
    pub give_up_after: Dur,
    pub basic_auth: Option<BasicAuth>,
    pub authorization: Option<Authorization>,
}

fn default_group_by() -> Vec<String> {
    vec!["alertname".into()]
}

fn default_group_wait() -> Dur {
    Dur(Duration::from_secs(10))
}

fn default_repeat_interval() -> Dur {
    Dur(Duration::from_secs(4 * 3600))
}

fn default_give_up() -> Dur {
    Dur(Duration::from_secs(24 * 3600))
}

/// The `query:` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryConfig {
    /// A query running longer is stopped (Prometheus's `--query.timeout`).
    #[serde(default = "default_query_timeout")]
    pub timeout: Dur,
    /// Samples one query may load (Prometheus's `--query.max-samples`).
    #[serde(default = "default_max_samples")]
    pub max_samples: usize,
    /// Queries evaluated at once; more wait (`--query.max-concurrency`).
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// How far back an instant selector looks (`--query.lookback-delta`).
    #[serde(default = "default_lookback")]
    pub lookback_delta: Dur,
    /// Memory one log search or SQL query may use.
    #[serde(default = "default_max_memory")]
    pub max_memory_bytes: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            timeout: default_query_timeout(),
            max_samples: default_max_samples(),
            max_concurrency: default_max_concurrency(),
            lookback_delta: default_lookback(),
            max_memory_bytes: default_max_memory(),
        }
    }
}

fn default_query_timeout() -> Dur {
    Dur(Duration::from_secs(120))
}
fn default_max_samples() -> usize {
    50_000_000
}
fn default_max_concurrency() -> usize {
    20
}
fn default_max_memory() -> usize {
    512 << 20
}
fn default_lookback() -> Dur {
    Dur(Duration::from_secs(300))
}

/// The `auth:` section: local users with bcrypt hashes and API tokens
/// stored as hex SHA-256 (`echo -n TOKEN | sha256sum`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub users: Vec<UserConfig>,
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// Web UI logins against Carbonio's directory (simple bind).
    pub ldap: Option<LdapAuthConfig>,
    /// How long a web UI session lives without a request.
    #[serde(default = "default_session_idle")]
    pub session_idle_timeout: Dur,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            users: Vec::new(),
            tokens: Vec::new(),
            ldap: None,
            session_idle_timeout: default_session_idle(),
        }
    }
}

fn default_session_idle() -> Dur {
    Dur(Duration::from_secs(12 * 3600))
}

/// What a user may do: `viewer` reads; `admin` also reloads and changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    #[default]
    Admin,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub username: String,
    /// bcrypt (`$2b$…`) or argon2 (`$argon2id$…`).
    pub password_hash: String,
    #[serde(default)]
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub name: String,
    pub sha256: String,
    #[serde(default)]
    pub role: Role,
}

/// LDAP simple bind for the web UI: the user's DN from `user_dn`
/// (`{user}` replaced by the escaped login name), then the role from the
/// entry: admin when `zimbraIsAdminAccount` is TRUE (Carbonio's admins) or
/// `memberOf` names one of `admin_groups`; viewer when it names one of
/// `viewer_groups` (or when `viewer_groups` is empty); refused otherwise.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapAuthConfig {
    /// `ldap://host:389` or `ldaps://host:636`.
    pub url: String,
    /// e.g. `uid={user},ou=people,dc=example,dc=com`.
    pub user_dn: String,
    #[serde(default)]
    pub starttls: bool,
    /// PEM CA file for ldaps/StartTLS (default: the system's roots).
    pub ca_file: Option<std::path::PathBuf>,
    #[serde(default)]
    pub admin_groups: Vec<String>,
    #[serde(default)]
    pub viewer_groups: Vec<String>,
    #[serde(default = "default_ldap_timeout")]
    pub timeout: Dur,
}

fn default_ldap_timeout() -> Dur {
    Dur(Duration::from_secs(5))
}

/// The `tail:` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TailConfig {
    /// How often files are checked when no change notification came.
    #[serde(default = "default_tail_poll")]
    pub poll_interval: Dur,
    /// How long a file rotated away (renamed) is still read after its last line.
    #[serde(default = "default_rotate_wait")]
    pub rotate_wait: Dur,
    /// Longer lines (or multiline records) are truncated to this many bytes.
    #[serde(default = "default_max_line")]
    pub max_line_size: usize,
    #[serde(default)]
    pub files: Vec<TailFiles>,
}

impl Default for TailConfig {
    fn default() -> Self {
        TailConfig {
            poll_interval: default_tail_poll(),
            rotate_wait: default_rotate_wait(),
            max_line_size: default_max_line(),
            files: Vec::new(),
        }
    }
}

fn default_tail_poll() -> Dur {
    Dur(Duration::from_secs(1))
}
fn default_rotate_wait() -> Dur {
    Dur(Duration::from_secs(5))
}
fn default_max_line() -> usize {
    1 << 20
}

/// Files read the same way.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TailFiles {
    /// Paths; the last element may hold `*` and `?`.
    pub paths: Vec<String>,
    #[serde(default)]
    pub parser: TailParser,
    /// The `app` of every line; defaults to the parser's (`mailboxd`,
    /// `nginx`) or, for plain files, the file name up to its first dot.
    pub app: Option<String>,
    /// The `host` of every line; defaults to this machine's host name.
    pub host: Option<String>,
    /// Zone of timestamps that carry none (mailbox log), an IANA name.
    #[serde(default = "utc", deserialize_with = "timezone")]
    pub timezone: chrono_tz::Tz,
    /// Groups continuation lines (stack traces) with the line they follow;
    /// the mailbox parser groups by its timestamp unless told otherwise.
    pub multiline: Option<Multiline>,
    /// Where a file seen for the first time (no checkpoint) is read from.
    /// Files created later, by rotation, are always read from the start.
    #[serde(default)]
    pub read_from: ReadFrom,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TailParser {
    /// The line is the message.
    #[default]
    Plain,
    /// Carbonio's log4j layout (`mailbox.log`, `audit.log`, `sync.log`, …).
    Mailbox,
    /// nginx access logs: `combined` and Carbonio's `upstream` format.
    Nginx,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    #[default]
    Beginning,
    End,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Multiline {
    /// A line matching this starts a record; others continue the one before.
    pub start: Pattern,
    #[serde(default = "default_max_lines")]
    pub max_lines: usize,
    /// A record with no new line for this long is complete.
    #[serde(default = "default_multiline_timeout")]
    pub timeout: Dur,
}

fn default_max_lines() -> usize {
    1000
}
fn default_multiline_timeout() -> Dur {
    Dur(Duration::from_secs(1))
}

/// A regular expression from the config (compiled while parsing, so a bad
/// one is reported with its line).
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        regex::Regex::new(&s)
            .map(Pattern)
            .map_err(|e| serde::de::Error::custom(format!("bad regular expression: {e}")))
    }
}

/// The `syslog:` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// Zone of timestamps that carry none (RFC 3164), an IANA name.
    #[serde(default = "utc", deserialize_with = "timezone")]
    pub timezone: chrono_tz::Tz,
    /// Longer messages are truncated to this many bytes (and counted).
    #[serde(default = "default_max_message")]
    pub max_message_size: usize,
    #[serde(default)]
    pub listeners: Vec<SyslogListener>,
}

impl Default for SyslogConfig {
    fn default() -> Self {
        SyslogConfig {
            timezone: chrono_tz::UTC,
            max_message_size: default_max_message(),
            listeners: Vec::new(),
        }
    }
}

fn utc() -> chrono_tz::Tz {
    chrono_tz::UTC
}

/// 64 KiB: above RFC 5425's SHOULD (8 KiB), room for Java stack traces.
fn default_max_message() -> usize {
    64 * 1024
}

fn timezone<'de, D: Deserializer<'de>>(d: D) -> Result<chrono_tz::Tz, D::Error> {
    parse_timezone(&String::deserialize(d)?).map_err(serde::de::Error::custom)
}

/// An IANA zone name, with the error the configuration and the command
/// line both report.
pub fn parse_timezone(s: &str) -> Result<chrono_tz::Tz, String> {
    s.parse::<chrono_tz::Tz>()
        .map_err(|_| format!("unknown timezone {s:?} (use an IANA name such as Europe/Rome)"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogProtocol {
    Udp,
    Tcp,
    Tls,
}

impl SyslogProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            SyslogProtocol::Udp => "udp",
            SyslogProtocol::Tcp => "tcp",
            SyslogProtocol::Tls => "tls",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogListener {
    pub protocol: SyslogProtocol,
    /// `host:port`, e.g. `0.0.0.0:1514`.
    pub address: String,
    pub tls: Option<SyslogTls>,
}

impl SyslogListener {
    /// The name counters carry: `tcp://0.0.0.0:1514`.
    pub fn name(&self) -> String {
        format!("{}://{}", self.protocol.as_str(), self.address)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// When set, clients must present a certificate signed by this CA.
    pub client_ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalConfig {
    #[serde(default = "default_interval")]
    pub scrape_interval: Dur,
    /// Defaults to 10s, or to scrape_interval when that is shorter (as Prometheus does).
    #[serde(default)]
    pub scrape_timeout: Option<Dur>,
    #[serde(default = "default_interval")]
    pub evaluation_interval: Dur,
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
}

impl Default for GlobalConfig {
    fn default() -> Self {
        GlobalConfig {
            scrape_interval: default_interval(),
            scrape_timeout: None,
            evaluation_interval: default_interval(),
            external_labels: BTreeMap::new(),
        }
    }
}

fn default_interval() -> Dur {
    Dur(Duration::from_secs(60))
}
fn default_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}
fn default_metrics_path() -> String {
    "/metrics".into()
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    #[default]
    Http,
    Https,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeConfig {
    pub job_name: String,
    pub scrape_interval: Option<Dur>,
    pub scrape_timeout: Option<Dur>,
    #[serde(default = "default_metrics_path")]
    pub metrics_path: String,
    #[serde(default)]
    pub params: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub scheme: Scheme,
    #[serde(default)]
    pub honor_labels: bool,
    #[serde(default = "yes")]
    pub honor_timestamps: bool,
    #[serde(default)]
    pub sample_limit: u64,
    #[serde(default)]
    pub static_configs: Vec<StaticConfig>,
    #[serde(default)]
    pub file_sd_configs: Vec<FileSdConfig>,
    #[serde(default)]
    pub consul_sd_configs: Vec<ConsulSdConfig>,
    #[serde(default)]
    pub relabel_configs: Vec<RelabelConfig>,
    #[serde(default)]
    pub metric_relabel_configs: Vec<RelabelConfig>,
    pub basic_auth: Option<BasicAuth>,
    pub authorization: Option<Authorization>,
    pub tls_config: Option<TlsConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSdConfig {
    pub files: Vec<String>,
    pub refresh_interval: Option<Dur>,
}

/// Prometheus's `consul_sd_configs` (services from a Consul catalog, as
/// Carbonio Mesh registers them).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsulSdConfig {
    #[serde(default = "consul_server")]
    pub server: String,
    #[serde(default)]
    pub scheme: Scheme,
    /// ACL token, sent as `X-Consul-Token`.
    pub token: Option<String>,
    /// A file holding the token (read at each refresh).
    pub token_file: Option<PathBuf>,
    pub datacenter: Option<String>,
    /// Only these services (all when empty).
    #[serde(default)]
    pub services: Vec<String>,
    /// Only service instances carrying every one of these tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Only nodes with this metadata.
    #[serde(default)]
    pub node_meta: BTreeMap<String, String>,
    #[serde(default = "comma")]
    pub tag_separator: String,
    #[serde(default = "yes")]
    pub allow_stale: bool,
    pub refresh_interval: Option<Dur>,
    /// For `scheme: https`, as a scrape job's.
    pub tls_config: Option<TlsConfig>,
}

fn consul_server() -> String {
    "localhost:8500".into()
}

fn comma() -> String {
    ",".into()
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    #[serde(rename = "type", default = "bearer")]
    pub kind: String,
    pub credentials: Option<String>,
    pub credentials_file: Option<PathBuf>,
}

/// The `Authorization` header value from basic auth or credentials.
pub fn auth_header(
    basic: &Option<BasicAuth>,
    authorization: &Option<Authorization>,
) -> Result<Option<String>, String> {
    use base64::Engine;
    if let Some(b) = basic {
        let password = match (&b.password, &b.password_file) {
            (Some(p), _) => p.clone(),
            (None, Some(f)) => std::fs::read_to_string(f)
                .map_err(|e| format!("password_file {}: {e}", f.display()))?
                .trim_end()
                .to_string(),
            (None, None) => String::new(),
        };
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{password}", b.username));
        return Ok(Some(format!("Basic {token}")));
    }
    if let Some(a) = authorization {
        let credentials = match (&a.credentials, &a.credentials_file) {
            (Some(c), _) => c.clone(),
            (None, Some(f)) => std::fs::read_to_string(f)
                .map_err(|e| format!("credentials_file {}: {e}", f.display()))?
                .trim_end()
                .to_string(),
            (None, None) => return Err("authorization needs credentials".into()),
        };
        return Ok(Some(format!("{} {credentials}", a.kind)));
    }
    Ok(None)
}

fn bearer() -> String {
    "Bearer".into()
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub server_name: Option<String>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
    pub min_version: Option<String>,
}

/// A job after validation, with defaults from `global` applied.
#[derive(Debug, Clone)]
pub struct Job {
    pub config: ScrapeConfig,
    pub interval: Duration,
    pub timeout: Duration,
    pub relabel: Vec<Rule>,
    pub metric_relabel: Vec<Rule>,
}

impl Config {
    pub fn load(path: &Path) -> Result<(Config, Vec<Job>), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates; semantic errors name the job and its line.
    pub fn parse(path: &Path, text: &str) -> Result<(Config, Vec<Job>), ConfigError> {
        let cfg: Config = if text.trim().is_empty() {
            serde_yaml_ng::from_str("{}")
        } else {
            serde_yaml_ng::from_str(text)
        }
        .map_err(|source| ConfigError::Yaml {
            path: path.to_path_buf(),
            source,
        })?;
        let g = &cfg.global;
        let invalid = |at: String, msg: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            at,
            msg,
        };
        let global_timeout = g
            .scrape_timeout
            .map_or(default_timeout().0.min(g.scrape_interval.0), |d| d.0);
        if global_timeout > g.scrape_interval.0 {
            return Err(invalid(
                "global".into(),
                "scrape_timeout is greater than scrape_interval".into(),
            ));
        }
        for m in &cfg.log_metrics {
            let at = format!("log_metrics {:?} (line {})", m.name, line_of(text, &m.name));
            if !crate::scrape::parse::valid_metric_name(&m.name) {
                return Err(invalid(at, "not a valid metric name".into()));
            }
            for f in &m.by {
                if !["host", "app", "procid", "msgid"].contains(&f.as_str()) {
                    return Err(invalid(
                        at,
                        format!("by {f:?}: one of host, app, procid, msgid"),
                    ));
                }
            }
            for l in m.labels.keys().chain(m.by.iter()) {
                if m.regex.0.capture_names().flatten().any(|c| c == l) {
                    return Err(invalid(at, format!("label {l:?} is also a capture name")));
                }
            }
        }
        let mut names = HashSet::new();
        let mut jobs = Vec::new();
        for sc in &cfg.scrape_configs {
            let at = format!(
                "job {:?} (line {})",
                sc.job_name,
                line_of(text, &sc.job_name)
            );
            if sc.job_name.is_empty() {
                return Err(invalid(at, "job_name is empty".into()));
            }
            if !names.insert(sc.job_name.clone()) {
                return Err(invalid(
                    at,
                    "found multiple scrape configs with this job name".into(),
                ));
            }
            let interval = sc.scrape_interval.unwrap_or(g.scrape_interval).0;
            // Like Prometheus: a job timeout defaults to the global one, capped by the job interval.
            let timeout = sc
                .scrape_timeout
                .map(|d| d.0)
                .unwrap_or_else(|| global_timeout.min(interval));
            if timeout > interval {
                return Err(invalid(
                    at,
                    format!(
                        "scrape_timeout {timeout:?} is greater than scrape_interval {interval:?}"
                    ),
                ));
            }
            if interval.is_zero() {
                return Err(invalid(at, "scrape_interval must be positive".into()));
            }
            if !sc.metrics_path.starts_with('/') {
                return Err(invalid(
                    at,
                    format!("metrics_path {:?} must start with /", sc.metrics_path),
                ));
            }
            if let Some(b) = &sc.basic_auth {
                if b.password.is_some() && b.password_file.is_some() {
                    return Err(invalid(
                        at,
                        "at most one of basic_auth password & password_file must be configured"
                            .into(),
                    ));
                }
            }
            if let Some(a) = &sc.authorization {
                if a.credentials.is_some() && a.credentials_file.is_some() {
                    return Err(invalid(at, "at most one of authorization credentials & credentials_file must be configured".into()));
                }
                if sc.basic_auth.is_some() {
                    return Err(invalid(
                        at,
                        "at most one of basic_auth and authorization must be configured".into(),
                    ));
                }
            }
            let tls_configs = sc.tls_config.iter().chain(
                sc.consul_sd_configs
                    .iter()
                    .filter_map(|c| c.tls_config.as_ref()),
            );
            for t in tls_configs {
                check_min_version(t).map_err(|msg| invalid(at.clone(), msg))?;
            }
            for c in &sc.consul_sd_configs {
                if c.token.is_some() && c.token_file.is_some() {
                    return Err(invalid(
                        at,
                        "at most one of consul_sd_configs token & token_file must be configured"
                            .into(),
                    ));
                }
                if c.server.is_empty() || c.server.contains('/') {
                    return Err(invalid(
                        at,
                        format!(
                            "consul_sd_configs server {:?}: host:port expected",
                            c.server
                        ),
                    ));
                }
            }
            for st in &sc.static_configs {
                for t in &st.targets {
                    if !valid_target(t) {
                        return Err(invalid(
                            at.clone(),
                            format!("{t:?} is not a valid host:port target"),
                        ));
                    }
                }
            }
            let compile =
                |rules: &[RelabelConfig], section: &str| -> Result<Vec<Rule>, ConfigError> {
                    rules
                        .iter()
                        .enumerate()
                        .map(|(i, r)| {
                            r.compile()
                                .map_err(|msg| invalid(format!("{at}, {section}[{i}]"), msg))
                        })
                        .collect()
                };
            let relabel = compile(&sc.relabel_configs, "relabel_configs")?;
            let metric_relabel = compile(&sc.metric_relabel_configs, "metric_relabel_configs")?;
            jobs.push(Job {
                config: sc.clone(),
                interval,
                timeout,
                relabel,
                metric_relabel,
            });
        }
        if let Some(o) = &cfg.storage.object_store {
            let at = format!(
                "storage.object_store (line {})",
                line_of(text, "object_store")
            );
            if o.bucket.is_empty() {
                return Err(invalid(at, "bucket is empty".into()));
            }
            if o.secret_access_key.is_some() && o.secret_access_key_file.is_some() {
                return Err(invalid(
                    at,
                    "at most one of secret_access_key & secret_access_key_file must be configured"
                        .into(),
                ));
            }
            // Characters object_store paths keep as they are, no empty or
            // `..` segments: keys read back are the keys written.
            let plain = o
                .prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c));
            let segments_ok = o
                .prefix
                .split('/')
                .all(|p| !(p.is_empty() || p == "." || p == ".."));
            let prefix_ok = o.prefix.is_empty() || (plain && segments_ok);
            if !prefix_ok {
                return Err(invalid(
                    at,
                    format!(
                        "prefix {:?}: letters, digits, '.', '_', '-' in '/'-separated names expected",
                        o.prefix
                    ),
                ));
            }
        }
        if let Some(f) = &cfg.fleet {
            let at = format!("fleet (line {})", line_of(text, "fleet"));
            if cfg.storage.object_store.is_none() {
                return Err(invalid(
                    at,
                    "needs storage.object_store (the collectors' bucket)".into(),
                ));
            }
            let mut seen = HashSet::new();
            for m in &f.collectors {
                if !(m.url.starts_with("http://") || m.url.starts_with("https://")) {
                    return Err(invalid(
                        at,
                        format!("collector url {:?}: http:// or https:// expected", m.url),
                    ));
                }
                if !seen.insert(m.prefix.trim_matches('/')) {
                    return Err(invalid(
                        at,
                        format!(
                            "two collectors with prefix {:?}: each collector needs its own",
                            m.prefix
                        ),
                    ));
                }
            }
        }
        let mut queues = HashSet::new();
        for (i, rw) in cfg.remote_write.iter().enumerate() {
            let at = format!("remote_write[{i}] (line {})", line_of(text, &rw.url));
            let host = ["http://", "https://"]
                .iter()
                .find_map(|scheme| rw.url.strip_prefix(scheme));
            if host.is_none_or(|h| h.is_empty() || h.starts_with('/')) {
                return Err(invalid(
                    at,
                    format!("url {:?}: an http:// or https:// URL expected", rw.url),
                ));
            }
            let name = rw.queue_name();
            if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
                return Err(invalid(
                    at,
                    format!("name {name:?}: a plain file name expected"),
                ));
            }
            if !queues.insert(name.clone()) {
                return Err(invalid(at, format!("duplicate remote write name {name:?}")));
            }
            if rw.basic_auth.is_some() && rw.authorization.is_some() {
                return Err(invalid(
                    at,
                    "at most one of basic_auth and authorization must be configured".into(),
                ));
            }
            if let Some(t) = &rw.tls_config {
                check_min_version(t).map_err(|msg| invalid(at.clone(), msg))?;
            }
            let q = &rw.queue_config;
            if q.max_samples_per_send == 0
                || q.min_backoff.0.is_zero()
                || q.min_backoff.0 > q.max_backoff.0
            {
                return Err(invalid(
                    at,
                    "queue_config: max_samples_per_send and min_backoff must be positive, min_backoff at most max_backoff".into(),
                ));
            }
            for (j, r) in rw.write_relabel_configs.iter().enumerate() {
                r.compile()
                    .map_err(|msg| invalid(format!("{at}, write_relabel_configs[{j}]"), msg))?;
            }
        }
        Ok((cfg, jobs))
    }
}

fn check_min_version(t: &TlsConfig) -> Result<(), String> {
    match t.min_version.as_deref() {
        None | Some("TLS12") | Some("TLS13") => Ok(()),
        Some(v @ ("TLS10" | "TLS11")) => Err(format!(
            "tls_config min_version {v}: TLS 1.0 and 1.1 are not supported (TLS12 or TLS13)"
        )),
        Some(v) => Err(format!("tls_config min_version {v:?}: one of TLS12, TLS13")),
    }
}

/// The 1-based line where `job_name: <name>` is written (0 if not found).
fn line_of(text: &str, job: &str) -> usize {
    text.lines()
        .position(|l| {
            let l = l.trim_start().trim_start_matches("- ").trim_start();
            l.strip_prefix("job_name:")
                .map(|v| v.trim().trim_matches(['"', '\'']) == job)
                .unwrap_or(false)
        })
        .map_or(0, |i| i + 1)
}

/// host:port with a port, as Prometheus's static targets must be (no scheme or path).
fn valid_target(t: &str) -> bool {
    if t.contains('/') || t.is_empty() {
        return false;
    }
    match t.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok(),
        None => true, // Prometheus adds the scheme's default port
    }
}

/// Keys whose values `/api/v1/status/config` shows as `<secret>`, as
/// Prometheus does.
const SECRET_KEYS: [&str; 5] = [
    "password",
    "secret_access_key",
    "credentials",
    "token",
    "password_hash",
];

/// A configuration's text for display, its secrets replaced by `<secret>`
/// (comments go: the text is re-serialised). Text that does not parse is
/// not shown.
pub fn redacted(text: &str) -> String {
    fn walk(v: &mut serde_yaml_ng::Value) {
        match v {
            serde_yaml_ng::Value::Mapping(m) => {
                for (k, v) in m.iter_mut() {
                    let secret = k.as_str().is_some_and(|k| SECRET_KEYS.contains(&k));
                    if secret && !v.is_null() {
                        *v = serde_yaml_ng::Value::String("<secret>".into());
                    } else {
                        walk(v);
                    }
                }
            }
            serde_yaml_ng::Value::Sequence(s) => s.iter_mut().for_each(walk),
            serde_yaml_ng::Value::Tagged(t) => walk(&mut t.value),
            _ => {}
        }
    }
    if text.trim().is_empty() {
        return String::new();
    }
    match serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) {
        Ok(mut v) => {
            walk(&mut v);
            serde_yaml_ng::to_string(&v).unwrap_or_default()
        }
        Err(_) => "# (the configuration text does not parse)\n".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_configuration_hides_secrets() {
        let text = "storage:\n  object_store:\n    bucket: b\n    secret_access_key: s3cr3t\n\
                    remote_write:\n  - url: http://x\n    basic_auth: {username: u, password: pw}\n\
                    fleet:\n  collectors:\n    - url: http://c\n      authorization: {credentials: tok}\n";
        let shown = redacted(text);
        for secret in ["s3cr3t", "pw", "tok"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(
            shown.contains("username: u") && shown.contains("<secret>"),
            "{shown}"
        );
        assert!(redacted(": : [").contains("does not parse"));
    }

    fn parse(text: &str) -> Result<(Config, Vec<Job>), ConfigError> {
        Config::parse(Path::new("carbonio-monitor.yml"), text)
    }

    #[test]
    fn fleet_needs_a_bucket_and_one_prefix_per_collector() {
        let bucket = "storage:\n  object_store:\n    bucket: b\n";
        let fleet = "fleet:\n  replica_labels: [replica]\n  collectors:\n    - url: http://a:9097\n      prefix: site/a\n";
        let (cfg, _) = parse(&format!("{bucket}{fleet}")).unwrap();
        let f = cfg.fleet.unwrap();
        assert_eq!(f.collectors[0].prefix, "site/a");
        assert_eq!(f.refresh_interval.0, Duration::from_secs(15));
        assert!(parse(fleet)
            .unwrap_err()
            .to_string()
            .contains("storage.object_store"));
        let twice = format!("{bucket}{fleet}    - url: http://b:9097\n      prefix: site/a/\n");
        assert!(parse(&twice).unwrap_err().to_string().contains("own"));
        let no_scheme = format!("{bucket}fleet:\n  collectors:\n    - url: a:9097\n");
        assert!(parse(&no_scheme)
            .unwrap_err()
            .to_string()
            .contains("http://"));
    }

    #[test]
    fn remote_write_entries_are_checked() {
        let (cfg, _) = parse(
            "remote_write:\n  - url: https://mimir.example:9009/api/v1/push\n    queue_config:\n      max_samples_per_send: 500\n",
        )
        .unwrap();
        let rw = &cfg.remote_write[0];
        assert_eq!(rw.queue_config.max_samples_per_send, 500);
        assert_eq!(
            rw.queue_config.batch_send_deadline.0,
            Duration::from_secs(5)
        );
        assert_eq!(rw.queue_name().len(), 8, "a name derived from the URL");
        for (bad, says) in [
            ("remote_write:\n  - url: mimir:9009\n", "http:// or https://"),
            (
                "remote_write:\n  - url: http://a/w\n    name: q\n  - url: http://b/w\n    name: q\n",
                "duplicate",
            ),
            ("remote_write:\n  - url: http://a/w\n    name: ../x\n", "plain file name"),
            (
                "storage:\n  object_store:\n    bucket: b\n    prefix: 'a b/%c'\n",
                "prefix",
            ),
            (
                "remote_write:\n  - url: http://a/w\n    write_relabel_configs:\n      - regex: '('\n",
                "write_relabel_configs[0]",
            ),
            (
                "remote_write:\n  - url: http://a/w\n    queue_config:\n      max_shards: 4\n",
                "unknown field",
            ),
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    const FULL: &str = r#"
global:
  scrape_interval: 30s
  scrape_timeout: 5s
  external_labels:
    cluster: mail.example.com
scrape_configs:
  - job_name: node
    scrape_interval: 15s
    metrics_path: /metrics
    params:
      collect[]: [cpu, meminfo]
    scheme: https
    honor_labels: true
    honor_timestamps: false
    sample_limit: 10000
    basic_auth:
      username: prometheus
      password_file: /etc/carbonio-monitor/scrape-password
    tls_config:
      ca_file: /etc/ssl/carbonio-ca.pem
      server_name: mail.example.com
      insecure_skip_verify: false
    static_configs:
      - targets: ['mta1.example.com:9100', 'mbox1.example.com:9100']
        labels:
          role: mta
    file_sd_configs:
      - files: ['/etc/carbonio-monitor/targets/*.json']
        refresh_interval: 1m
    relabel_configs:
      - source_labels: [__address__]
        regex: '([^:]+):\d+'
        target_label: host
      - source_labels: [__address__]
        modulus: 2
        target_label: __tmp_shard
        action: hashmod
    metric_relabel_configs:
      - regex: 'go_.*'
        source_labels: [__name__]
        action: drop
  - job_name: mailbox
    authorization:
      credentials_file: /etc/carbonio-monitor/mailbox-token
    static_configs:
      - targets: ['mbox1.example.com:8080']
"#;

    #[test]
    fn every_supported_key() {
        let (cfg, jobs) = parse(FULL).unwrap();
        assert_eq!(cfg.global.external_labels["cluster"], "mail.example.com");
        assert_eq!(jobs.len(), 2);
        assert_eq!(
            (jobs[0].interval, jobs[0].timeout),
            (Duration::from_secs(15), Duration::from_secs(5))
        );
        assert_eq!(
            (jobs[1].interval, jobs[1].timeout),
            (Duration::from_secs(30), Duration::from_secs(5))
        );
        assert_eq!(jobs[0].config.scheme, Scheme::Https);
        assert_eq!(jobs[0].relabel.len(), 2);
        assert!(!jobs[0].config.honor_timestamps && jobs[1].config.honor_timestamps);
        assert_eq!(
            jobs[1].config.authorization.as_ref().unwrap().kind,
            "Bearer"
        );
    }

    #[test]
    fn tail_section() {
        let (cfg, _) = parse(
            "tail:\n  poll_interval: 250ms\n  files:\n    - paths: ['/opt/zextras/log/mailbox.log']\n      parser: mailbox\n      timezone: Europe/Rome\n    - paths: ['/var/log/x/*.log']\n      read_from: end\n      multiline:\n        start: '^\\S'\n",
        )
        .unwrap();
        assert_eq!(cfg.tail.poll_interval.0, Duration::from_millis(250));
        assert_eq!(cfg.tail.rotate_wait.0, Duration::from_secs(5));
        assert_eq!(cfg.tail.files[0].parser, TailParser::Mailbox);
        assert_eq!(cfg.tail.files[0].timezone, chrono_tz::Europe::Rome);
        assert_eq!(cfg.tail.files[1].read_from, ReadFrom::End);
        let m = cfg.tail.files[1].multiline.as_ref().unwrap();
        assert!(m.start.0.is_match("x") && !m.start.0.is_match(" x"));
        assert_eq!(m.max_lines, 1000);
        let bad_regex =
            parse("tail:\n  files:\n    - paths: [a]\n      multiline:\n        start: '(['\n")
                .unwrap_err()
                .to_string();
        assert!(
            bad_regex.contains("line 5") && bad_regex.contains("regular expression"),
            "{bad_regex}"
        );
        let bad_parser = parse("tail:\n  files:\n    - paths: [a]\n      parser: json\n")
            .unwrap_err()
            .to_string();
        assert!(
            bad_parser.contains("line 4") && bad_parser.contains("json"),
            "{bad_parser}"
        );
    }

    #[test]
    fn unknown_keys_name_key_and_line() {
        let err = parse("scrape_configs:\n  - job_name: a\n    scrape_intervall: 5s\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("scrape_intervall") && err.contains("line 3"),
            "{err}"
        );
        let err = parse("global:\n  scrape_interval: 5 seconds\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("duration"), "{err}");
    }

    #[test]
    fn semantic_errors_name_the_job_and_line() {
        let cases = [
            ("scrape_configs:\n  - job_name: a\n  - job_name: a\n", "multiple scrape configs"),
            ("scrape_configs:\n  - job_name: a\n    scrape_interval: 5s\n    scrape_timeout: 10s\n", "greater than"),
            ("scrape_configs:\n  - job_name: a\n    static_configs:\n      - targets: ['http://x:9100/metrics']\n", "not a valid"),
            ("scrape_configs:\n  - job_name: a\n    relabel_configs:\n      - action: hashmod\n        target_label: x\n", "modulus"),
            ("scrape_configs:\n  - job_name: a\n    basic_auth:\n      username: u\n      password: p\n      password_file: f\n", "at most one"),
            ("scrape_configs:\n  - job_name: a\n    metrics_path: metrics\n", "must start with /"),
        ];
        for (text, expected) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(
                err.contains(expected) && err.contains("job \"a\" (line 2"),
                "{text}: {err}"
            );
        }
        assert!(parse("").is_ok());
        // A short global interval lowers the default timeout, as in Prometheus.
        let (_, jobs) =
            parse("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: a\n").unwrap();
        assert_eq!(jobs[0].timeout, Duration::from_secs(1));
    }
}
