//! Command-line definitions. Exporter flags follow the upstream exporters'
//! names (`--web.listen-address`, `--collector.textfile.directory`, ...).

use anyhow::{bail, Context, Result};
use carbonio_exporters::node::{self, FieldFilter, NodeConfig};
use clap::{Args, Parser, Subcommand};
use regex::Regex;
use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "carbonio-monitor",
    version,
    about = "Monitoring backend for Carbonio: exporters, collector, query service and UI"
)]
pub struct Cli {
    /// Log level or tracing filter (RUST_LOG overrides it).
    #[arg(long = "log.level", global = true, default_value = "info")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // parsed once at start-up
pub enum Command {
    /// Collector and query service in one process on the embedded default: with no --config, DATA/config.yml is created (self-scrape, syslog on 127.0.0.1:1514 UDP and TCP) and the API listens on 127.0.0.1:9090. Evaluates `rule_files` and sends alerts as `alerting:` says.
    Run(RunArgs),
    /// Run a Prometheus exporter on its documented port.
    Exporter {
        #[command(subcommand)]
        kind: ExporterKind,
    },
    /// Collector role: scrapes the configured targets, receives syslog and tails log files into the WAL-backed stores (rules are evaluated by `run`).
    Collector(CollectorArgs),
    /// Query role: the Prometheus HTTP API over a data directory a collector writes (reopened periodically).
    Query(QueryArgs),
    /// Validate a configuration file (the global and scrape_configs sections, relabeling, referenced files).
    CheckConfig { file: PathBuf },
    /// Validate rule files (Prometheus's format plus log_alert rules), like `promtool check rules`.
    CheckRules {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Import OpenMetrics backfill or the legacy Logger's zmstat CSV files.
    #[command(subcommand)]
    Import(ImportCommand),
    /// The built-in Carbonio dashboards (Grafana dashboard JSON).
    #[command(subcommand)]
    Dashboards(DashboardsCommand),
    /// Inspection and test tools for the storage internals.
    #[command(hide = true, subcommand)]
    Debug(DebugCommand),
}

#[derive(Subcommand, Debug)]
pub enum DashboardsCommand {
    /// Write every dashboard as DIR/<uid>.json, for import into Grafana.
    Export { dir: PathBuf },
}

#[derive(Subcommand, Debug)]
pub enum ImportCommand {
    /// Load an OpenMetrics file with timestamps (as `promtool tsdb create-blocks-from openmetrics` takes) into 2 h blocks. The collector must not be running on DIR.
    Openmetrics {
        file: PathBuf,
        /// Data directory to write the blocks into.
        #[arg(long, default_value = "data")]
        data: PathBuf,
    },
    /// Load a zmstat directory (today's *.csv and YYYY-MM-DD/*.csv.gz of the deprecated Logger) as zmstat_<file>_<column> metrics. Re-runs add nothing. The collector must not be running on --data.
    Zmstat {
        /// The zmstat directory (/opt/zextras/zmstat, /opt/zimbra/zmstat, or a copy).
        dir: PathBuf,
        /// Data directory to write into.
        #[arg(long, default_value = "data")]
        data: PathBuf,
        /// The `host` label: the node the files come from (default: this machine's name).
        #[arg(long)]
        host: Option<String>,
        /// IANA zone the zone-less timestamps were written in (default: this machine's, from /etc/timezone or TZ, else UTC).
        #[arg(long)]
        timezone: Option<String>,
        /// After the import, follow the directory and store new rows as they are written, until SIGTERM or Ctrl-C.
        #[arg(long)]
        watch: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum DebugCommand {
    /// Append COUNT records "id:<n>" (n from START), one fsynced append each, printing "ack <n>" after each.
    WalWrite {
        dir: PathBuf,
        start: u64,
        count: u64,
    },
    /// Print every record of a WAL directory, then a replay summary.
    WalRead { dir: PathBuf },
    /// Open a data directory (blocks + replayed WAL) and print each series, its sample count and last sample.
    HeadDump {
        data: PathBuf,
        /// Print every sample as `time:value` instead of only the last one.
        #[arg(long)]
        values: bool,
    },
    /// Print every stored log line of a data directory as NDJSON (read-only, safe while a collector runs).
    LogsDump { data: PathBuf },
    /// Evaluate rule files over a data directory at every group interval from START to END (seconds), as `promtool test rules` does from time 0; prints each evaluation's pending and firing alerts as JSON lines.
    EvalRules {
        data: PathBuf,
        rules: PathBuf,
        #[arg(long, default_value_t = 0)]
        start: i64,
        #[arg(long)]
        end: i64,
        /// Evaluation interval of groups that set none.
        #[arg(long, default_value = "1m", value_parser = parse_duration)]
        interval: std::time::Duration,
    },
}

#[derive(Subcommand, Debug)]
pub enum ExporterKind {
    /// Host metrics, node_exporter compatible (port 9100).
    Node(Box<NodeArgs>),
    /// Process groups, process-exporter compatible (port 9256).
    Process(ProcessArgs),
    /// PostgreSQL, postgres_exporter compatible (port 9187).
    Postgres(PostgresArgs),
    /// OpenLDAP cn=Monitor, openldap_exporter compatible (port 9330).
    Ldap(LdapArgs),
    /// nginx stub_status, nginx-prometheus-exporter compatible (port 9113).
    Nginx(NginxArgs),
    /// Carbonio Mesh (HashiCorp Consul), consul_exporter compatible (port 9107).
    Mesh(MeshArgs),
}

#[derive(Args, Debug, Clone)]
pub struct WebArgs {
    /// Address to listen on (":PORT" means all interfaces).
    #[arg(long = "web.listen-address")]
    pub listen_address: String,
    /// Path under which to expose metrics.
    #[arg(long = "web.telemetry-path", default_value = "/metrics")]
    pub telemetry_path: String,
    /// exporter-toolkit web config file (TLS and basic auth).
    #[arg(long = "web.config.file")]
    pub config_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct NodeArgs {
    #[command(flatten)]
    pub web: WebArgs,
    #[arg(long = "path.procfs", default_value = "/proc")]
    pub procfs: PathBuf,
    #[arg(long = "path.sysfs", default_value = "/sys")]
    pub sysfs: PathBuf,
    #[arg(long = "path.rootfs", default_value = "/")]
    pub rootfs: PathBuf,
    #[arg(long = "path.udev.data", default_value = "/run/udev/data")]
    pub udev_data: PathBuf,
    /// Directory of *.prom files (Carbonio's mailbox writes /opt/zextras/zmstat/prometheus).
    #[arg(long = "collector.textfile.directory")]
    pub textfile_directory: Option<PathBuf>,
    #[arg(long = "collector.filesystem.mount-points-exclude", default_value = node::DEFAULT_MOUNT_POINTS_EXCLUDE)]
    pub mount_points_exclude: String,
    #[arg(long = "collector.filesystem.fs-types-exclude", default_value = node::DEFAULT_FS_TYPES_EXCLUDE)]
    pub fs_types_exclude: String,
    #[arg(long = "collector.diskstats.device-exclude", default_value = node::DEFAULT_DISK_EXCLUDE)]
    pub disk_exclude: String,
    #[arg(long = "collector.netdev.device-exclude", default_value = node::DEFAULT_NETDEV_EXCLUDE)]
    pub netdev_exclude: String,
    #[arg(long = "collector.netstat.fields", default_value = node::DEFAULT_NETSTAT_FIELDS)]
    pub netstat_fields: String,
    #[arg(long = "collector.vmstat.fields", default_value = node::DEFAULT_VMSTAT_FIELDS)]
    pub vmstat_fields: String,
    /// Start from no collectors; enable some with --collector.NAME.
    #[arg(long = "collector.disable-defaults")]
    pub disable_defaults: bool,
    /// Set by --collector.NAME (rewritten from argv).
    #[arg(long = "enable-collector", hide = true)]
    pub enable: Vec<String>,
    /// Set by --no-collector.NAME (rewritten from argv).
    #[arg(long = "disable-collector", hide = true)]
    pub disable: Vec<String>,
}

impl NodeArgs {
    pub fn to_config(&self) -> Result<NodeConfig> {
        let re = |flag: &str, s: &str| {
            Regex::new(s).with_context(|| format!("invalid regex for {flag}"))
        };
        let known: Vec<&'static str> = node::COLLECTORS.iter().map(|(n, _)| *n).collect();
        for name in self.enable.iter().chain(&self.disable) {
            if !known.contains(&name.as_str()) {
                bail!("unknown collector {name:?}; known: {}", known.join(", "));
            }
        }
        let enabled = known
            .into_iter()
            .filter(|n| {
                (!self.disable_defaults || self.enable.iter().any(|e| e == n))
                    && !self.disable.iter().any(|d| d == n)
            })
            .collect();
        Ok(NodeConfig {
            proc_root: self.procfs.clone(),
            sys_root: self.sysfs.clone(),
            root_fs: self.rootfs.clone(),
            udev_data: self.udev_data.clone(),
            textfile_dir: self.textfile_directory.clone(),
            fs_mount_points_exclude: re("mount-points-exclude", &self.mount_points_exclude)?,
            fs_types_exclude: re("fs-types-exclude", &self.fs_types_exclude)?,
            disk_devices_exclude: re("diskstats.device-exclude", &self.disk_exclude)?,
            netdev_device_exclude: re("netdev.device-exclude", &self.netdev_exclude)?,
            netstat_fields: FieldFilter::new(re("netstat.fields", &self.netstat_fields)?),
            vmstat_fields: FieldFilter::new(re("vmstat.fields", &self.vmstat_fields)?),
            enabled,
        })
    }
}

#[derive(Args, Debug)]
pub struct PostgresArgs {
    #[command(flatten)]
    pub web: WebArgs,
    /// DSN(s), comma-separated: postgresql://user:pass@host:5432/postgres?sslmode=require or libpq key=value.
    #[arg(
        long = "data-source-name",
        env = "DATA_SOURCE_NAME",
        hide_env_values = true,
        value_delimiter = ',',
        required = true
    )]
    pub dsns: Vec<String>,
    /// Timeout of connecting and of each query.
    #[arg(long = "postgres.timeout", default_value = "5s", value_parser = parse_duration)]
    pub timeout: std::time::Duration,
    /// Databases whose pg_stat_user_tables are exposed (comma-separated; off by default).
    #[arg(long = "collector.stat_user_tables.databases", value_delimiter = ',')]
    pub user_tables_databases: Vec<String>,
}

#[derive(Args, Debug)]
pub struct LdapArgs {
    #[command(flatten)]
    pub web: WebArgs,
    /// Server whose cn=Monitor is read: ldap://, ldaps:// URL or host:port.
    #[arg(
        long = "ldap.addr",
        alias = "ldapAddr",
        default_value = "ldap://localhost:389"
    )]
    pub addr: String,
    /// Bind DN allowed to read cn=Monitor (Carbonio: zimbra_ldap_userdn).
    #[arg(long = "ldap.user", alias = "ldapUser")]
    pub user: Option<String>,
    /// Bind password (prefer --ldap.password-file or LDAP_PASSWORD; it is never logged).
    #[arg(
        long = "ldap.password",
        alias = "ldapPass",
        env = "LDAP_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// File holding the bind password.
    #[arg(long = "ldap.password-file", conflicts_with = "password")]
    pub password_file: Option<std::path::PathBuf>,
    /// Upgrade an ldap:// connection with StartTLS.
    #[arg(long = "ldap.starttls")]
    pub starttls: bool,
    /// CA certificate (PEM) for ldaps:// or StartTLS.
    #[arg(long = "ldap.ca-file")]
    pub ca_file: Option<std::path::PathBuf>,
    /// Timeout of connecting and of each LDAP operation.
    #[arg(long = "ldap.timeout", default_value = "5s", value_parser = parse_duration)]
    pub timeout: std::time::Duration,
    /// DN whose contextCSN is exposed as openldap_monitor_replication (repeatable).
    #[arg(long = "ldap.replication-object", alias = "replicationObject")]
    pub replication_objects: Vec<String>,
    /// Consumer server compared with --ldap.addr for replication lag (repeatable).
    #[arg(long = "ldap.consumer")]
    pub consumers: Vec<String>,
}

/// "host:port" means ldap://host:port.
pub fn ldap_url(s: &str) -> String {
    if s.contains("://") {
        s.to_string()
    } else {
        format!("ldap://{s}")
    }
}

impl LdapArgs {
    pub fn password(&self) -> Result<Option<String>> {
        if let Some(path) = &self.password_file {
            let p = std::fs::read_to_string(path)
                .with_context(|| format!("reading password file {}", path.display()))?;
            return Ok(Some(p.trim_end_matches(['\r', '\n']).to_string()));
        }
        Ok(self.password.clone())
    }
}

#[derive(Args, Debug)]
pub struct MeshArgs {
    #[command(flatten)]
    pub web: WebArgs,
    /// Consul HTTP API address (a missing scheme means http://).
    #[arg(
        long = "consul.server",
        env = "CONSUL_HTTP_ADDR",
        default_value = "http://localhost:8500"
    )]
    pub server: String,
    /// ACL token sent as X-Consul-Token (Carbonio Mesh runs with ACLs).
    #[arg(
        long = "consul.token",
        env = "CONSUL_HTTP_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// File holding the ACL token (e.g. /etc/carbonio/carbonio-prometheus/service-discover/token).
    #[arg(long = "consul.token-file", conflicts_with = "token")]
    pub token_file: Option<std::path::PathBuf>,
    /// CA certificate (PEM) to verify an https:// Consul server.
    #[arg(long = "consul.ca-file", env = "CONSUL_CACERT")]
    pub ca_file: Option<std::path::PathBuf>,
    /// Timeout of each Consul API request.
    #[arg(long = "consul.timeout", default_value = "500ms", value_parser = parse_duration)]
    pub timeout: std::time::Duration,
    /// Query each service's health for consul_catalog_service_node_healthy and consul_service_tag.
    #[arg(long = "consul.health-summary", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub health_summary: bool,
    /// Allow any Consul server (not only the leader) to answer catalog and health reads.
    #[arg(long = "consul.allow_stale", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub allow_stale: bool,
}

impl MeshArgs {
    /// The token from the flag, the environment or the token file (trimmed).
    pub fn token(&self) -> Result<Option<String>> {
        if let Some(path) = &self.token_file {
            let t = std::fs::read_to_string(path)
                .with_context(|| format!("reading token file {}", path.display()))?;
            return Ok(Some(t.trim().to_string()));
        }
        Ok(self.token.clone().filter(|t| !t.is_empty()))
    }

    pub fn server_url(&self) -> String {
        if self.server.contains("://") {
            self.server.clone()
        } else {
            format!("http://{}", self.server)
        }
    }
}

#[derive(Args, Debug)]
pub struct NginxArgs {
    #[command(flatten)]
    pub web: WebArgs,
    /// URL of nginx's stub_status page.
    #[arg(
        long = "nginx.scrape-uri",
        default_value = "http://127.0.0.1:8080/stub_status"
    )]
    pub scrape_uri: String,
    /// Timeout for one stub_status request (Go duration: 5s, 500ms).
    #[arg(long = "nginx.timeout", default_value = "5s", value_parser = parse_duration)]
    pub timeout: std::time::Duration,
    /// Opt-in: count requests by status class (and latency, if the format ends
    /// with $request_time) from this access log, e.g. /opt/zextras/log/nginx.access.log.
    #[arg(long = "nginx.access-log")]
    pub access_log: Option<std::path::PathBuf>,
}

/// Sizes as Prometheus's retention flag takes them: "0", "512MB", "20GB", "1TB" (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("invalid size {s:?}"))?;
    let factor: u64 = match unit {
        "" | "B" => 1,
        "KB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        "TB" => 1 << 40,
        _ => {
            return Err(format!(
                "invalid size unit in {s:?} (use B, KB, MB, GB or TB)"
            ))
        }
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// Go-style durations as upstream flags take them: "500ms", "5s", "1m", "1h", "15d".
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        "w" => n * 7.0 * 86400.0,
        _ => {
            return Err(format!(
                "invalid duration unit in {s:?} (use ms, s, m or h)"
            ))
        }
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("duration must be positive: {s:?}"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

#[derive(Args, Debug)]
pub struct ProcessArgs {
    #[command(flatten)]
    pub web: WebArgs,
    /// process-exporter YAML config; without it, the built-in Carbonio groups are used.
    #[arg(long = "config.path")]
    pub config_path: Option<PathBuf>,
    #[arg(long = "procfs", default_value = "/proc")]
    pub procfs: PathBuf,
    /// Count children of a grouped process in its group.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub children: bool,
    /// Report per-thread-name metrics.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub threads: bool,
    /// Read smaps_rollup for proportional memory.
    #[arg(long = "gather-smaps", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub gather_smaps: bool,
}

/// Accepts upstream spellings: Go's single-dash long flags (`-web.listen-address`)
/// and node_exporter's `--collector.NAME` / `--no-collector.NAME` toggles;
/// fills in each exporter's documented default port.
pub fn normalize_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out: Vec<OsString> = Vec::new();
    let mut kind: Option<String> = None;
    let mut has_listen = false;
    for (i, arg) in args.into_iter().enumerate() {
        let Some(s) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if i > 0 && kind.is_none() && out.last().is_some_and(|p| p == "exporter") {
            kind = Some(s.to_string());
        }
        let s = match s.strip_prefix('-') {
            Some(rest) if !rest.starts_with('-') && rest.len() > 1 => format!("--{rest}"),
            _ => s.to_string(),
        };
        if s.starts_with("--web.listen-address") {
            has_listen = true;
        }
        let (flag, value) = match s.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (s.clone(), None),
        };
        let is_toggle = |name: &str| node::COLLECTORS.iter().any(|(n, _)| *n == name);
        if let Some(name) = flag
            .strip_prefix("--no-collector.")
            .filter(|n| is_toggle(n))
        {
            out.push("--disable-collector".into());
            out.push(name.into());
        } else if let Some(name) = flag.strip_prefix("--collector.").filter(|n| is_toggle(n)) {
            let off = value.as_deref() == Some("false");
            out.push(
                if off {
                    "--disable-collector"
                } else {
                    "--enable-collector"
                }
                .into(),
            );
            out.push(name.into());
        } else {
            out.push(s.into());
        }
    }
    if !has_listen {
        if let Some(port) = kind.as_deref().and_then(default_port) {
            out.push(format!("--web.listen-address=:{port}").into());
        }
    }
    out
}

fn default_port(kind: &str) -> Option<u16> {
    Some(match kind {
        "node" => 9100,
        "process" => 9256,
        "postgres" => 9187,
        "ldap" => 9330,
        "nginx" => 9113,
        "mesh" => 9107,
        _ => return None,
    })
}

fn parse_listen(s: &str) -> Result<String, String> {
    Ok(listen_address(s))
}

/// ":9100" (Go style) listens on all interfaces.
pub fn listen_address(s: &str) -> String {
    match s.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(args: &[&str]) -> Vec<String> {
        normalize_args(args.iter().map(OsString::from))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn upstream_flag_spellings() {
        assert_eq!(
            norm(&[
                "cm",
                "exporter",
                "node",
                "--no-collector.arp",
                "--collector.textfile.directory=/x"
            ]),
            [
                "cm",
                "exporter",
                "node",
                "--disable-collector",
                "arp",
                "--collector.textfile.directory=/x",
                "--web.listen-address=:9100"
            ]
        );
        assert_eq!(
            norm(&[
                "cm",
                "exporter",
                "process",
                "-web.listen-address=:1",
                "-children=false"
            ]),
            [
                "cm",
                "exporter",
                "process",
                "--web.listen-address=:1",
                "--children=false"
            ]
        );
        assert_eq!(norm(&["cm", "-h"]), ["cm", "-h"]);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(std::time::Duration::from_secs(5)));
        assert_eq!(
            parse_duration("250ms"),
            Ok(std::time::Duration::from_millis(250))
        );
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(
            parse_duration("15d"),
            Ok(std::time::Duration::from_secs(15 * 86400))
        );
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("20GB"), Ok(20 << 30));
        assert!(parse_size("20 parsecs").is_err());
        assert!(parse_size("99999999999TB").is_err());
    }

    #[test]
    fn node_toggles() {
        let cli = Cli::parse_from(norm(&[
            "cm",
            "exporter",
            "node",
            "--collector.disable-defaults",
            "--collector.cpu",
        ]));
        let Command::Exporter {
            kind: ExporterKind::Node(args),
        } = cli.command
        else {
            panic!()
        };
        assert_eq!(args.to_config().unwrap().enabled, ["cpu"]);
        let cli = Cli::parse_from(norm(&[
            "cm",
            "exporter",
            "node",
            "--enable-collector",
            "wifi",
        ]));
        let Command::Exporter {
            kind: ExporterKind::Node(args),
        } = cli.command
        else {
            panic!()
        };
        assert!(args.to_config().is_err());
    }
}

#[derive(Args, Debug)]
pub struct CollectorArgs {
    /// Configuration file (Prometheus-format global and scrape_configs).
    #[arg(long)]
    pub config: PathBuf,
    /// Data directory (the WAL lives in DIR/wal, blocks in DIR/blocks).
    #[arg(long, default_value = "data")]
    pub data: PathBuf,
    /// Address for health, reload, self-metrics and /api/v1/targets (":PORT": all interfaces).
    #[arg(long = "web.listen-address", default_value = "127.0.0.1:9097", value_parser = parse_listen)]
    pub listen: String,
    /// Allow reloading the configuration with POST /-/reload (as Prometheus's flag).
    #[arg(long = "web.enable-lifecycle")]
    pub enable_lifecycle: bool,
    /// exporter-toolkit web config file: `tls_server_config` and `basic_auth_users` for every endpoint (query nodes reading /api/v1/fleet/* then need the credentials).
    #[arg(long = "web.config.file")]
    pub web_config: Option<PathBuf>,
    #[command(flatten)]
    pub storage: StorageArgs,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Configuration file; without one, DATA/config.yml (created with defaults when missing).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Data directory (metrics WAL and blocks, logs, users.json).
    #[arg(long, default_value = "data")]
    pub data: PathBuf,
    /// Address of the API and the web UI; ":PORT": all interfaces.
    #[arg(long = "web.listen-address", default_value = "127.0.0.1:9090", value_parser = parse_listen)]
    pub listen: String,
    /// Allow reloading the configuration with POST /-/reload (as Prometheus's flag).
    #[arg(long = "web.enable-lifecycle")]
    pub enable_lifecycle: bool,
    /// exporter-toolkit web config file: `tls_server_config` serves the API and web UI over TLS (session cookies then get `Secure`).
    #[arg(long = "web.config.file")]
    pub web_config: Option<PathBuf>,
    #[command(flatten)]
    pub storage: StorageArgs,
}

#[derive(Args, Debug)]
pub struct QueryArgs {
    /// Configuration file for the `query:`, `auth:`, `storage.object_store` and `fleet:` sections (other sections are ignored).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Data directory a collector writes (read only); with `fleet:`, this node's own state (users, mirrored catalogs, object cache).
    #[arg(long, default_value = "data")]
    pub data: PathBuf,
    /// Address of the API and the web UI (":PORT": all interfaces).
    #[arg(long = "web.listen-address", default_value = "127.0.0.1:9090", value_parser = parse_listen)]
    pub listen: String,
    /// How often the data directory is reopened to see new data.
    #[arg(long = "storage.refresh-interval", default_value = "15s", value_parser = parse_duration)]
    pub refresh_interval: std::time::Duration,
    /// exporter-toolkit web config file: `tls_server_config` serves the API and web UI over TLS (session cookies then get `Secure`).
    #[arg(long = "web.config.file")]
    pub web_config: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct StorageArgs {
    /// How often the in-memory head is written out as a Parquet block.
    #[arg(long = "storage.flush-interval", default_value = "2h", value_parser = parse_duration)]
    pub flush_interval: std::time::Duration,
    /// Blocks entirely older than this are deleted (Prometheus's default: 15d).
    #[arg(long = "storage.retention.time", default_value = "15d", value_parser = parse_duration)]
    pub retention_time: std::time::Duration,
    /// Oldest blocks are deleted while all blocks exceed this size (e.g. 20GB; 0 = no limit); log parts have the same limit of their own.
    #[arg(long = "storage.retention.size", default_value = "0", value_parser = parse_size)]
    pub retention_size: u64,
    /// How often the log head is written out as Parquet (and whenever it holds 500,000 lines).
    #[arg(long = "storage.logs.flush-interval", default_value = "5m", value_parser = parse_duration)]
    pub logs_flush_interval: std::time::Duration,
}
