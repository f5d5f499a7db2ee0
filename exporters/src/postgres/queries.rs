//! postgres_exporter 0.11's default queries and metric maps.

use crate::exposition::{Family, Kind};
use sqlx::{PgPool, Row};

pub enum ColumnUse {
    Label,
    Discard,
    /// Known (kind, help), or None for a numeric column upstream does not
    /// know, which it exposes as untyped.
    Metric(Option<(Kind, &'static str)>),
}

pub struct ViewMap {
    pub prefix: &'static str,
    pub query: &'static str,
    labels: &'static [&'static str],
    discard: &'static [&'static str],
    metrics: &'static [(&'static str, Kind, &'static str)],
}

impl ViewMap {
    pub fn column(&self, name: &str) -> ColumnUse {
        if self.labels.contains(&name) {
            ColumnUse::Label
        } else if self.discard.contains(&name) {
            ColumnUse::Discard
        } else {
            ColumnUse::Metric(
                self.metrics
                    .iter()
                    .find(|(n, _, _)| *n == name)
                    .map(|(_, k, h)| (*k, *h)),
            )
        }
    }
}

use Kind::{Counter as C, Gauge as G};

pub const VIEWS: &[ViewMap] = &[
    ViewMap {
        prefix: "pg_stat_database",
        query: "SELECT * FROM pg_stat_database",
        labels: &["datid", "datname"],
        discard: &[],
        metrics: &[
            ("numbackends", G, "Number of backends currently connected to this database."),
            ("xact_commit", C, "Number of transactions in this database that have been committed"),
            ("xact_rollback", C, "Number of transactions in this database that have been rolled back"),
            ("blks_read", C, "Number of disk blocks read in this database"),
            ("blks_hit", C, "Number of times disk blocks were found already in the buffer cache"),
            ("tup_returned", C, "Number of rows returned by queries in this database"),
            ("tup_fetched", C, "Number of rows fetched by queries in this database"),
            ("tup_inserted", C, "Number of rows inserted by queries in this database"),
            ("tup_updated", C, "Number of rows updated by queries in this database"),
            ("tup_deleted", C, "Number of rows deleted by queries in this database"),
            ("conflicts", C, "Number of queries canceled due to conflicts with recovery in this database."),
            ("temp_files", C, "Number of temporary files created by queries in this database."),
            ("temp_bytes", C, "Total amount of data written to temporary files by queries in this database."),
            ("deadlocks", C, "Number of deadlocks detected in this database"),
            ("blk_read_time", C, "Time spent reading data file blocks by backends in this database, in milliseconds"),
            ("blk_write_time", C, "Time spent writing data file blocks by backends in this database, in milliseconds"),
            ("stats_reset", C, "Time at which these statistics were last reset"),
        ],
    },
    ViewMap {
        prefix: "pg_stat_database_conflicts",
        query: "SELECT * FROM pg_stat_database_conflicts",
        labels: &["datid", "datname"],
        discard: &[],
        metrics: &[
            ("confl_tablespace", C, "Number of queries in this database that have been canceled due to dropped tablespaces"),
            ("confl_lock", C, "Number of queries in this database that have been canceled due to lock timeouts"),
            ("confl_snapshot", C, "Number of queries in this database that have been canceled due to old snapshots"),
            ("confl_bufferpin", C, "Number of queries in this database that have been canceled due to pinned buffers"),
            ("confl_deadlock", C, "Number of queries in this database that have been canceled due to deadlocks"),
        ],
    },
    ViewMap {
        prefix: "pg_stat_archiver",
        query: "SELECT *, extract(epoch from now() - last_archived_time) AS last_archive_age FROM pg_stat_archiver",
        labels: &[],
        discard: &["last_archived_wal", "last_archived_time", "last_failed_wal", "last_failed_time", "stats_reset"],
        metrics: &[
            ("archived_count", C, "Number of WAL files that have been successfully archived"),
            ("failed_count", C, "Number of failed attempts for archiving WAL files"),
            ("last_archive_age", G, "Time in seconds since last WAL segment was successfully archived"),
        ],
    },
    ViewMap {
        prefix: "pg_stat_replication",
        query: "SELECT *, (CASE pg_is_in_recovery() WHEN 't' THEN pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_lsn('0/0'))::float ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), pg_lsn('0/0'))::float END) AS pg_current_wal_lsn_bytes, (CASE pg_is_in_recovery() WHEN 't' THEN pg_wal_lsn_diff(pg_last_wal_receive_lsn(), replay_lsn)::float ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float END) AS pg_wal_lsn_diff FROM pg_stat_replication",
        labels: &["application_name", "client_addr", "state", "sync_state", "slot_name"],
        discard: &["pid", "usesysid", "usename", "client_hostname", "client_port", "backend_start", "backend_xmin", "sync_priority", "reply_time"],
        metrics: &[
            ("pg_current_wal_lsn_bytes", G, "WAL position in bytes"),
            ("pg_wal_lsn_diff", G, "Lag in bytes between master and slave"),
        ],
    },
];

fn server_family(name: &str, help: &str, kind: Kind) -> Family {
    Family::new(name, help, kind)
}

pub async fn locks(pool: &PgPool, server: &str, out: &mut Vec<Family>) -> Result<(), sqlx::Error> {
    let rows = sqlx::query(
        "SELECT pg_database.datname::text, tmp.mode, COALESCE(count, 0)::float8 AS count \
         FROM (VALUES ('accesssharelock'),('rowsharelock'),('rowexclusivelock'),('shareupdateexclusivelock'),('sharelock'),('sharerowexclusivelock'),('exclusivelock'),('accessexclusivelock'),('sireadlock')) AS tmp(mode) \
         CROSS JOIN pg_database \
         LEFT JOIN (SELECT database, lower(mode) AS mode, count(*) AS count FROM pg_locks WHERE database IS NOT NULL GROUP BY database, lower(mode)) AS tmp2 \
         ON tmp.mode = tmp2.mode AND pg_database.oid = tmp2.database ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    let mut f = server_family("pg_locks_count", "Number of locks", Kind::Gauge);
    for r in rows {
        let (datname, mode, count): (String, String, f64) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        f.add(
            &[("datname", &datname), ("mode", &mode), ("server", server)],
            count,
        );
    }
    out.push(f);
    Ok(())
}

pub async fn activity(
    pool: &PgPool,
    server: &str,
    out: &mut Vec<Family>,
) -> Result<(), sqlx::Error> {
    let rows = sqlx::query(
        "SELECT pg_database.datname::text, tmp.state, COALESCE(count, 0)::float8 AS count, COALESCE(max_tx_duration, 0)::float8 AS max_tx_duration \
         FROM (VALUES ('active'),('idle'),('idle in transaction'),('idle in transaction (aborted)'),('fastpath function call'),('disabled')) AS tmp(state) \
         CROSS JOIN pg_database \
         LEFT JOIN (SELECT datname, state, count(*) AS count, MAX(EXTRACT(EPOCH FROM now() - xact_start))::float AS max_tx_duration FROM pg_stat_activity GROUP BY datname, state) AS tmp2 \
         ON tmp.state = tmp2.state AND pg_database.datname = tmp2.datname",
    )
    .fetch_all(pool)
    .await?;
    let mut count = server_family(
        "pg_stat_activity_count",
        "number of connections in this state",
        Kind::Gauge,
    );
    let mut max_tx = server_family(
        "pg_stat_activity_max_tx_duration",
        "max duration in seconds any active transaction has been running",
        Kind::Gauge,
    );
    for r in rows {
        let (datname, state): (String, String) = (r.try_get(0)?, r.try_get(1)?);
        let labels = [
            ("datname", datname.as_str()),
            ("server", server),
            ("state", state.as_str()),
        ];
        count.add(&labels, r.try_get(2)?);
        max_tx.add(&labels, r.try_get(3)?);
    }
    out.extend([count, max_tx]);
    Ok(())
}

/// pg_settings as upstream converts them: booleans to 0/1, units to seconds or bytes.
pub async fn settings(
    pool: &PgPool,
    server: &str,
    out: &mut Vec<Family>,
) -> Result<(), sqlx::Error> {
    let rows = sqlx::query(
        "SELECT name, setting, COALESCE(unit, ''), short_desc, vartype FROM pg_settings \
         WHERE vartype IN ('bool', 'integer', 'real') AND name != 'sync_commit_cancel_wait'",
    )
    .fetch_all(pool)
    .await?;
    for r in rows {
        let (name, setting, unit, desc, vartype): (String, String, String, String, String) = (
            r.try_get(0)?,
            r.try_get(1)?,
            r.try_get(2)?,
            r.try_get(3)?,
            r.try_get(4)?,
        );
        match setting_metric(&name, &setting, &unit, &desc, &vartype) {
            Some((metric, help, value)) => {
                out.push(Family::gauge(metric, help).with(&[("server", server)], value))
            }
            None => {
                tracing::debug!(setting = %name, value = %setting, unit = %unit, "pg_settings value skipped")
            }
        }
    }
    Ok(())
}

/// (metric name, help, value) of one pg_settings row.
pub fn setting_metric(
    name: &str,
    setting: &str,
    unit: &str,
    desc: &str,
    vartype: &str,
) -> Option<(String, String, f64)> {
    let base = format!("pg_settings_{}", name.replace('.', "_"));
    if vartype == "bool" {
        return Some((
            base,
            desc.to_string(),
            if setting == "on" { 1.0 } else { 0.0 },
        ));
    }
    let mut v: f64 = setting.parse().ok()?;
    let (suffix, factor) = match unit {
        "" => return Some((base, desc.to_string(), v)),
        "ms" => ("seconds", 0.001),
        "s" => ("seconds", 1.0),
        "min" => ("seconds", 60.0),
        "h" => ("seconds", 3600.0),
        "d" => ("seconds", 86400.0),
        "B" => ("bytes", 1.0),
        "kB" => ("bytes", 1024.0),
        "MB" => ("bytes", 1048576.0),
        "GB" => ("bytes", 1073741824.0),
        "TB" => ("bytes", 1099511627776.0),
        other => {
            // Block units such as "8kB" or "16MB".
            let (n, u) = other.split_at(other.find(|c: char| !c.is_ascii_digit())?);
            let n: f64 = n.parse().ok()?;
            match u {
                "kB" => ("bytes", n * 1024.0),
                "MB" => ("bytes", n * 1048576.0),
                _ => return None,
            }
        }
    };
    // -1 means "disabled" and stays -1, as upstream leaves it.
    if v != -1.0 {
        v *= factor;
    }
    Some((
        format!("{base}_{suffix}"),
        format!("{desc} [Units converted to {suffix}.]"),
        v,
    ))
}

/// Replication state on a replica (0 on a primary), as upstream's example queries.yaml has it.
pub async fn replication_lag(
    pool: &PgPool,
    server: &str,
    out: &mut Vec<Family>,
) -> Result<(), sqlx::Error> {
    let row = sqlx::query(
        "SELECT pg_is_in_recovery()::int::float8, \
         CASE WHEN NOT pg_is_in_recovery() THEN 0 ELSE GREATEST(0, EXTRACT(EPOCH FROM (now() - pg_last_xact_replay_timestamp())))::float8 END",
    )
    .fetch_one(pool)
    .await?;
    out.push(
        Family::gauge(
            "pg_replication_is_replica",
            "Indicates if the server is a replica",
        )
        .with(&[("server", server)], row.try_get(0)?),
    );
    let lag: Option<f64> = row.try_get(1)?;
    out.push(
        Family::gauge(
            "pg_replication_lag",
            "Replication lag behind master in seconds",
        )
        .with(&[("server", server)], lag.unwrap_or(0.0)),
    );
    Ok(())
}

pub async fn database_sizes(
    pool: &PgPool,
    server: &str,
    out: &mut Vec<Family>,
) -> Result<(), sqlx::Error> {
    let rows =
        sqlx::query("SELECT datname::text, pg_database_size(datname)::float8 FROM pg_database")
            .fetch_all(pool)
            .await?;
    let mut f = Family::gauge("pg_database_size_bytes", "Disk space used by the database");
    for r in rows {
        let datname: String = r.try_get(0)?;
        f.add(&[("datname", &datname), ("server", server)], r.try_get(1)?);
    }
    out.push(f);
    Ok(())
}

pub async fn bgwriter(
    pool: &PgPool,
    server: &str,
    out: &mut Vec<Family>,
) -> Result<(), sqlx::Error> {
    const COLUMNS: [(&str, &str); 11] = [
        ("checkpoints_timed", "Number of scheduled checkpoints that have been performed"),
        ("checkpoints_req", "Number of requested checkpoints that have been performed"),
        ("checkpoint_write_time", "Total amount of time that has been spent in the portion of checkpoint processing where files are written to disk, in milliseconds"),
        ("checkpoint_sync_time", "Total amount of time that has been spent in the portion of checkpoint processing where files are synchronized to disk, in milliseconds"),
        ("buffers_checkpoint", "Number of buffers written during checkpoints"),
        ("buffers_clean", "Number of buffers written by the background writer"),
        ("maxwritten_clean", "Number of times the background writer stopped a cleaning scan because it had written too many buffers"),
        ("buffers_backend", "Number of buffers written directly by a backend"),
        ("buffers_backend_fsync", "Number of times a backend had to execute its own fsync call (normally the background writer handles those even when the backend does its own write)"),
        ("buffers_alloc", "Number of buffers allocated"),
        ("stats_reset", "Time at which these statistics were last reset"),
    ];
    let select: Vec<String> = COLUMNS
        .iter()
        .map(|(c, _)| {
            if *c == "stats_reset" {
                "extract(epoch from stats_reset)::float8".to_string()
            } else {
                format!("{c}::float8")
            }
        })
        .collect();
    let row = sqlx::query(&format!(
        "SELECT {} FROM pg_stat_bgwriter",
        select.join(", ")
    ))
    .fetch_one(pool)
    .await?;
    for (i, (col, help)) in COLUMNS.iter().enumerate() {
        let v: Option<f64> = row.try_get(i)?;
        out.push(
            Family::counter(format!("pg_stat_bgwriter_{col}_total"), *help)
                .with(&[("server", server)], v.unwrap_or(f64::NAN)),
        );
    }
    Ok(())
}

/// Per-table statistics of one database (opt-in; Carbonio's own databases).
pub async fn user_tables(
    pool: &PgPool,
    server: &str,
    db: &str,
    out: &mut Vec<Family>,
) -> Result<(), sqlx::Error> {
    const COLUMNS: [(&str, Kind, &str); 21] = [
        (
            "seq_scan",
            C,
            "Number of sequential scans initiated on this table",
        ),
        (
            "seq_tup_read",
            C,
            "Number of live rows fetched by sequential scans",
        ),
        (
            "idx_scan",
            C,
            "Number of index scans initiated on this table",
        ),
        (
            "idx_tup_fetch",
            C,
            "Number of live rows fetched by index scans",
        ),
        ("n_tup_ins", C, "Number of rows inserted"),
        ("n_tup_upd", C, "Number of rows updated"),
        ("n_tup_del", C, "Number of rows deleted"),
        (
            "n_tup_hot_upd",
            C,
            "Number of rows HOT updated (i.e., with no separate index update required)",
        ),
        ("n_live_tup", G, "Estimated number of live rows"),
        ("n_dead_tup", G, "Estimated number of dead rows"),
        (
            "n_mod_since_analyze",
            G,
            "Estimated number of rows changed since last analyze",
        ),
        (
            "last_vacuum",
            G,
            "Last time at which this table was manually vacuumed (not counting VACUUM FULL)",
        ),
        (
            "last_autovacuum",
            G,
            "Last time at which this table was vacuumed by the autovacuum daemon",
        ),
        (
            "last_analyze",
            G,
            "Last time at which this table was manually analyzed",
        ),
        (
            "last_autoanalyze",
            G,
            "Last time at which this table was analyzed by the autovacuum daemon",
        ),
        (
            "vacuum_count",
            C,
            "Number of times this table has been manually vacuumed (not counting VACUUM FULL)",
        ),
        (
            "autovacuum_count",
            C,
            "Number of times this table has been vacuumed by the autovacuum daemon",
        ),
        (
            "analyze_count",
            C,
            "Number of times this table has been manually analyzed",
        ),
        (
            "autoanalyze_count",
            C,
            "Number of times this table has been analyzed by the autovacuum daemon",
        ),
        (
            "index_size_bytes",
            G,
            "Total disk space used by indexes on this table, in bytes",
        ),
        (
            "table_size_bytes",
            G,
            "Total disk space used by this table, in bytes",
        ),
    ];
    let select: Vec<String> = COLUMNS
        .iter()
        .map(|(c, _, _)| match *c {
            "index_size_bytes" => "pg_indexes_size(relid)::float8".to_string(),
            "table_size_bytes" => "pg_table_size(relid)::float8".to_string(),
            c if c.starts_with("last_") => format!("COALESCE(extract(epoch from {c}), 0)::float8"),
            c => format!("{c}::float8"),
        })
        .collect();
    let rows = sqlx::query(&format!(
        "SELECT schemaname::text, relname::text, {} FROM pg_stat_user_tables",
        select.join(", ")
    ))
    .fetch_all(pool)
    .await?;
    let mut fams: Vec<Family> = COLUMNS
        .iter()
        .map(|(c, k, h)| Family::new(format!("pg_stat_user_tables_{c}"), *h, *k))
        .collect();
    for r in rows {
        let (schema, rel): (String, String) = (r.try_get(0)?, r.try_get(1)?);
        let labels = [
            ("datname", db),
            ("relname", rel.as_str()),
            ("schemaname", schema.as_str()),
            ("server", server),
        ];
        for (i, f) in fams.iter_mut().enumerate() {
            let v: Option<f64> = r.try_get(i + 2)?;
            f.add(&labels, v.unwrap_or(f64::NAN));
        }
    }
    out.extend(fams);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_units_like_upstream() {
        let m = |n, s, u, t| setting_metric(n, s, u, "d", t).map(|(name, _, v)| (name, v));
        assert_eq!(
            m("shared_buffers", "16384", "8kB", "integer"),
            Some(("pg_settings_shared_buffers_bytes".into(), 134217728.0))
        );
        assert_eq!(
            m("statement_timeout", "1500", "ms", "integer"),
            Some(("pg_settings_statement_timeout_seconds".into(), 1.5))
        );
        assert_eq!(
            m("autovacuum_naptime", "1", "min", "integer"),
            Some(("pg_settings_autovacuum_naptime_seconds".into(), 60.0))
        );
        assert_eq!(
            m("log_rotation_size", "-1", "kB", "integer"),
            Some(("pg_settings_log_rotation_size_bytes".into(), -1.0))
        );
        assert_eq!(
            m("fsync", "on", "", "bool"),
            Some(("pg_settings_fsync".into(), 1.0))
        );
        assert_eq!(
            m("pg_stat_statements.max", "5000", "", "integer"),
            Some(("pg_settings_pg_stat_statements_max".into(), 5000.0))
        );
        assert_eq!(m("x", "1", "parsecs", "integer"), None);
        assert_eq!(m("x", "many", "", "integer"), None);
    }
}
