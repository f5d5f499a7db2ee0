//! The PostgreSQL exporter (port 9187): postgres_exporter 0.11's default
//! families, collected on scrape from one or more servers.
//!
//! The pg_stat_* views change columns between PostgreSQL versions, so their
//! queries are built from the view's own column list (as upstream discovers
//! unknown columns): labels as text, numbers and timestamps as float8.

mod queries;

pub use queries::setting_metric;

use crate::exposition::{Family, Kind};
use crate::serve::scrape_bookkeeping;
use crate::Exporter;
use queries::{ColumnUse, ViewMap, VIEWS};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use sqlx::{Column, Executor, Row, TypeInfo};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("invalid DSN {dsn}: {msg}")]
    Dsn { dsn: String, msg: String },
    #[error("{server}: {context}: {source}")]
    Query {
        server: String,
        context: String,
        source: sqlx::Error,
    },
}

pub struct PostgresOptions {
    pub dsns: Vec<String>,
    pub timeout: Duration,
    /// Databases whose pg_stat_user_tables are exposed (empty: none).
    pub user_tables_databases: Vec<String>,
}

struct Target {
    server: String,
    options: PgConnectOptions,
    pool: PgPool,
    /// Built SQL per view, discovered on first use.
    sql: Mutex<HashMap<&'static str, String>>,
}

pub struct PostgresExporter {
    targets: Vec<Target>,
    timeout: Duration,
    user_tables_databases: Vec<String>,
    scrapes: AtomicU64,
}

/// Parses a DSN as postgres_exporter takes it: a `postgresql://` URL or
/// libpq `key=value` pairs. `sslmode` defaults to `prefer`, as in libpq.
pub fn parse_dsn(dsn: &str) -> Result<PgConnectOptions, PgError> {
    let bad = |msg: String| PgError::Dsn {
        dsn: redact(dsn),
        msg,
    };
    if dsn.starts_with("postgres://") || dsn.starts_with("postgresql://") {
        return PgConnectOptions::from_str(dsn).map_err(|e| bad(e.to_string()));
    }
    let mut o = PgConnectOptions::new_without_pgpass();
    for pair in dsn.split_whitespace() {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| bad(format!("{pair:?} is not key=value")))?;
        let v = v.trim_matches('\'');
        o = match k {
            "host" => o.host(v),
            "port" => o.port(v.parse().map_err(|_| bad(format!("bad port {v:?}")))?),
            "user" => o.username(v),
            "password" => o.password(v),
            "dbname" => o.database(v),
            "sslmode" => o.ssl_mode(PgSslMode::from_str(v).map_err(|e| bad(e.to_string()))?),
            "sslrootcert" => o.ssl_root_cert(v),
            "application_name" => o.application_name(v),
            _ => return Err(bad(format!("unsupported key {k:?}"))),
        };
    }
    Ok(o)
}

/// The DSN with any password replaced, for logs and errors.
pub fn redact(dsn: &str) -> String {
    if let Some(rest) = dsn.split_once("://").map(|(_, r)| r) {
        if let Some((userinfo, host)) = rest.split_once('@') {
            if let Some((user, _)) = userinfo.split_once(':') {
                let scheme = &dsn[..dsn.len() - rest.len()];
                return format!("{scheme}{user}:****@{host}");
            }
        }
        return dsn.to_string();
    }
    dsn.split_whitespace()
        .map(|p| {
            if p.starts_with("password=") {
                "password=****"
            } else {
                p
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl PostgresExporter {
    /// Pools connect lazily: the exporter starts even when a server is down.
    pub fn new(opts: PostgresOptions) -> Result<Self, PgError> {
        let mut targets = Vec::new();
        for dsn in &opts.dsns {
            let options = parse_dsn(dsn)?;
            let server = format!("{}:{}", options.get_host(), options.get_port());
            let pool = PgPoolOptions::new()
                .max_connections(4)
                .acquire_timeout(opts.timeout)
                .connect_lazy_with(options.clone());
            targets.push(Target {
                server,
                options,
                pool,
                sql: Mutex::new(HashMap::new()),
            });
        }
        Ok(PostgresExporter {
            targets,
            timeout: opts.timeout,
            user_tables_databases: opts.user_tables_databases,
            scrapes: AtomicU64::new(0),
        })
    }

    async fn scrape_target(
        &self,
        t: &Target,
        out: &mut Vec<Family>,
        results: &mut Vec<(&'static str, bool, f64)>,
    ) -> Result<(), PgError> {
        let server = t.server.as_str();
        let q = |context: &str| {
            let context = context.to_string();
            move |source| PgError::Query {
                server: server.to_string(),
                context,
                source,
            }
        };
        let version: String = sqlx::query_scalar("SELECT version()")
            .fetch_one(&t.pool)
            .await
            .map_err(q("version"))?;
        let short = version
            .split_whitespace()
            .nth(1)
            .map(semver)
            .unwrap_or_default();
        out.push(
            Family::untyped("pg_static", "Version string as reported by postgres").with(
                &[
                    ("server", server),
                    ("short_version", &short),
                    ("version", &version),
                ],
                1.0,
            ),
        );
        // Independent queries run concurrently, each on its own pooled connection.
        let collect = |f: &'static str| {
            move |r: Result<(), sqlx::Error>, o: Vec<Family>| r.map(|_| o).map_err(q(f))
        };
        let timed = |f: Instant| f.elapsed().as_secs_f64();
        let (views, locks, activity, settings, replication, sizes, bgwriter) = tokio::join!(
            async {
                let mut o = Vec::new();
                for view in VIEWS {
                    self.scrape_view(t, view, &mut o).await?;
                }
                Ok::<_, PgError>(o)
            },
            async {
                let mut o = Vec::new();
                let r = queries::locks(&t.pool, server, &mut o).await;
                collect("pg_locks")(r, o)
            },
            async {
                let mut o = Vec::new();
                let r = queries::activity(&t.pool, server, &mut o).await;
                collect("pg_stat_activity")(r, o)
            },
            async {
                let mut o = Vec::new();
                let r = queries::settings(&t.pool, server, &mut o).await;
                collect("pg_settings")(r, o)
            },
            async {
                let mut o = Vec::new();
                let r = queries::replication_lag(&t.pool, server, &mut o).await;
                collect("replication lag")(r, o)
            },
            async {
                let (start, mut o) = (Instant::now(), Vec::new());
                let r = queries::database_sizes(&t.pool, server, &mut o).await;
                (collect("pg_database_size")(r, o), timed(start))
            },
            async {
                let (start, mut o) = (Instant::now(), Vec::new());
                let r = queries::bgwriter(&t.pool, server, &mut o).await;
                (collect("pg_stat_bgwriter")(r, o), timed(start))
            },
        );
        // The two "collector" families of postgres_exporter 0.11.
        results.push(("database", sizes.0.is_ok(), sizes.1));
        results.push(("bgwriter", bgwriter.0.is_ok(), bgwriter.1));
        for part in [
            views,
            locks,
            activity,
            settings,
            replication,
            sizes.0,
            bgwriter.0,
        ] {
            out.extend(part?);
        }

        for db in &self.user_tables_databases {
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(self.timeout)
                .connect_with(t.options.clone().database(db))
                .await
                .map_err(q(&format!("connecting to database {db}")))?;
            let result = queries::user_tables(&pool, server, db, out).await;
            pool.close().await;
            result.map_err(q(&format!("pg_stat_user_tables in {db}")))?;
        }
        Ok(())
    }

    async fn scrape_view(
        &self,
        t: &Target,
        view: &ViewMap,
        out: &mut Vec<Family>,
    ) -> Result<(), PgError> {
        let err = |source| PgError::Query {
            server: t.server.clone(),
            context: view.prefix.to_string(),
            source,
        };
        let cached = t.sql.lock().ok().and_then(|m| m.get(view.prefix).cloned());
        let sql = match cached {
            Some(sql) => sql,
            None => {
                let sql = numeric_select(&t.pool, view).await.map_err(err)?;
                if let Ok(mut m) = t.sql.lock() {
                    m.insert(view.prefix, sql.clone());
                }
                sql
            }
        };
        let rows = sqlx::query(&sql).fetch_all(&t.pool).await.map_err(err)?;
        let mut families: Vec<Family> = Vec::new();
        for row in &rows {
            let mut labels: Vec<(String, String)> = vec![("server".into(), t.server.clone())];
            let mut values: Vec<(String, f64)> = Vec::new();
            for (i, col) in row.columns().iter().enumerate() {
                let name = col.name();
                match view.column(name) {
                    ColumnUse::Label => {
                        let v: Option<String> = row.try_get(i).map_err(err)?;
                        labels.push((name.to_string(), v.unwrap_or_default()));
                    }
                    ColumnUse::Discard => {}
                    ColumnUse::Metric(_) => {
                        let v: Option<f64> = row.try_get(i).map_err(err)?;
                        values.push((name.to_string(), v.unwrap_or(f64::NAN)));
                    }
                }
            }
            let label_refs: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            for (col, v) in values {
                let name = format!("{}_{col}", view.prefix);
                let idx = match families.iter().position(|f| f.name == name) {
                    Some(i) => i,
                    None => {
                        let (kind, help) = match view.column(&col) {
                            ColumnUse::Metric(Some((kind, help))) => (kind, help.to_string()),
                            _ => (
                                Kind::Untyped,
                                format!("Unknown metric from {}", view.prefix),
                            ),
                        };
                        families.push(Family::new(name, help, kind));
                        families.len() - 1
                    }
                };
                families[idx].add(&label_refs, v);
            }
        }
        out.extend(families);
        Ok(())
    }
}

/// "15.18" → "15.18.0", as upstream's semver parse prints it.
fn semver(v: &str) -> String {
    let v = v.trim_end_matches(|c: char| !c.is_ascii_digit());
    let parts: Vec<&str> = v.split('.').filter(|p| !p.is_empty()).collect();
    match parts.len() {
        1 => format!("{}.0.0", parts[0]),
        2 => format!("{}.{}.0", parts[0], parts[1]),
        _ => parts.join("."),
    }
}

/// Builds `SELECT <labels as text>, <numbers as float8> FROM (<view query>)`
/// from the columns the server reports for the view.
async fn numeric_select(pool: &PgPool, view: &ViewMap) -> Result<String, sqlx::Error> {
    let described = pool.describe(view.query).await?;
    let mut exprs = Vec::new();
    for col in described.columns() {
        let name = col.name();
        let ident = format!("\"{}\"", name.replace('"', "\"\""));
        let expr = match (view.column(name), col.type_info().name()) {
            (ColumnUse::Discard, _) => continue,
            (ColumnUse::Label, _) => format!("{ident}::text"),
            (_, "INT2" | "INT4" | "INT8" | "OID" | "FLOAT4" | "FLOAT8" | "NUMERIC") => {
                format!("{ident}::float8")
            }
            (_, "TIMESTAMPTZ" | "TIMESTAMP") => format!("extract(epoch from {ident})::float8"),
            _ => continue, // text, intervals, LSNs: not numbers, as upstream skips them
        };
        exprs.push(format!("{expr} AS {ident}"));
    }
    Ok(format!(
        "SELECT {} FROM ({}) AS src",
        exprs.join(", "),
        view.query
    ))
}

impl Exporter for PostgresExporter {
    fn build_info_name(&self) -> &'static str {
        "postgres_exporter"
    }
    fn title(&self) -> &'static str {
        "Carbonio Monitoring PostgreSQL exporter"
    }

    fn gather(&self) -> Vec<Family> {
        let start = Instant::now();
        self.scrapes.fetch_add(1, Ordering::Relaxed);
        let mut out = Vec::new();
        let mut results = Vec::new();
        let mut all_up = !self.targets.is_empty();
        let handle = match tokio::runtime::Handle::try_current() {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "no async runtime for PostgreSQL queries");
                return vec![Family::gauge("pg_up", "Whether the last scrape of metrics from PostgreSQL was able to connect to the server (1 for yes, 0 for no).").with(&[], 0.0)];
            }
        };
        for t in &self.targets {
            let mut families = Vec::new();
            let scraped = handle.block_on(async {
                tokio::time::timeout(
                    self.timeout * 4,
                    self.scrape_target(t, &mut families, &mut results),
                )
                .await
            });
            match scraped {
                Ok(Ok(())) => out.extend(families),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "PostgreSQL scrape failed");
                    all_up = false;
                }
                Err(_) => {
                    tracing::error!(server = %t.server, "PostgreSQL scrape timed out");
                    all_up = false;
                }
            }
        }
        out.push(
            Family::gauge("pg_up", "Whether the last scrape of metrics from PostgreSQL was able to connect to the server (1 for yes, 0 for no).")
                .with(&[], if all_up { 1.0 } else { 0.0 }),
        );
        out.push(Family::gauge("pg_exporter_last_scrape_error", "Whether the last scrape of metrics from PostgreSQL resulted in an error (1 for error, 0 for success).").with(&[], if all_up { 0.0 } else { 1.0 }));
        out.push(
            Family::gauge(
                "pg_exporter_last_scrape_duration_seconds",
                "Duration of the last scrape of metrics from PostgresSQL.",
            )
            .with(&[], start.elapsed().as_secs_f64()),
        );
        out.push(
            Family::counter(
                "pg_exporter_scrapes_total",
                "Total number of times PostgresSQL was scraped for metrics.",
            )
            .with(&[], self.scrapes.load(Ordering::Relaxed) as f64),
        );
        // Bookkeeping per collector, one sample each even with several servers.
        let mut merged: Vec<(&str, bool, f64)> = Vec::new();
        for (name, ok, secs) in results {
            match merged.iter_mut().find(|(n, _, _)| *n == name) {
                Some(m) => {
                    m.1 &= ok;
                    m.2 += secs;
                }
                None => merged.push((name, ok, secs)),
            }
        }
        out.extend(scrape_bookkeeping("pg", &merged));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsns() {
        let o =
            parse_dsn("postgresql://u:secret@db.example:6543/carbonio?sslmode=require").unwrap();
        assert_eq!(
            (o.get_host(), o.get_port(), o.get_database()),
            ("db.example", 6543, Some("carbonio"))
        );
        let o = parse_dsn("host=127.0.0.1 port=5433 user=postgres dbname=postgres sslmode=disable")
            .unwrap();
        assert_eq!((o.get_host(), o.get_port()), ("127.0.0.1", 5433));
        assert!(parse_dsn("host=x bogus").is_err());
        assert!(parse_dsn("host=x sslmode=sometimes").is_err());
        assert!(parse_dsn("port=notaport").is_err());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgresql://u:secret@h:5432/db"),
            "postgresql://u:****@h:5432/db"
        );
        assert_eq!(
            redact("host=h password=secret user=u"),
            "host=h password=**** user=u"
        );
        assert!(!parse_dsn("host=h password=secret bogus")
            .unwrap_err()
            .to_string()
            .contains("secret"));
    }

    #[test]
    fn versions() {
        assert_eq!(semver("15.18"), "15.18.0");
        assert_eq!(semver("16.1,"), "16.1.0");
        assert_eq!(semver("17"), "17.0.0");
    }
}
