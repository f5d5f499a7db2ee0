use super::{CollectError, NodeConfig};
use crate::exposition::{Family, Kind};
use crate::textparse;
use std::time::UNIX_EPOCH;

/// Reads `*.prom` files like node_exporter's textfile collector: a bad file
/// is skipped and flagged with `node_textfile_scrape_error 1`, the rest are
/// kept. Unlike node_exporter, a file whose samples carry timestamps is read
/// (without them) rather than skipped.
pub fn collect(cfg: &NodeConfig, out: &mut Vec<Family>) -> Result<(), CollectError> {
    let mut error = false;
    let mut mtimes = Family::gauge(
        "node_textfile_mtime_seconds",
        "Unixtime mtime of textfiles successfully read.",
    );
    let mut collected: Vec<Family> = Vec::new();
    if let Some(dir) = &cfg.textfile_dir {
        match std::fs::read_dir(dir) {
            Err(e) => {
                tracing::error!(dir = %dir.display(), error = %e, "failed to read textfile collector directory");
                error = true;
            }
            Ok(entries) => {
                let mut paths: Vec<_> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "prom"))
                    .collect();
                paths.sort();
                for path in paths {
                    match read_file(&path) {
                        Ok((families, mtime)) => {
                            if let Err(msg) = merge(&mut collected, families) {
                                tracing::error!(file = %path.display(), "{msg}");
                                error = true;
                                continue;
                            }
                            mtimes.add(&[("file", &path.display().to_string())], mtime);
                        }
                        Err(msg) => {
                            tracing::error!(file = %path.display(), "{msg}");
                            error = true;
                        }
                    }
                }
            }
        }
    }
    out.extend(collected);
    out.push(mtimes);
    out.push(
        Family::gauge(
            "node_textfile_scrape_error",
            "1 if there was an error opening or reading a file, 0 otherwise",
        )
        .with(&[], if error { 1.0 } else { 0.0 }),
    );
    Ok(())
}

fn read_file(path: &std::path::Path) -> Result<(Vec<Family>, f64), String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("failed to read textfile: {e}"))?;
    let mtime = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64());
    let parsed =
        textparse::parse(&text).map_err(|e| format!("failed to parse textfile data: {e}"))?;
    // node_exporter skips a file with timestamps whole; Carbonio's mailbox
    // writes its *.prom files with millisecond timestamps, so that would lose
    // every mailboxd series. The values are kept, stamped at scrape time.
    if parsed.has_timestamps {
        tracing::debug!(file = %path.display(), "client-side timestamps ignored");
    }
    let families = parsed
        .families
        .into_iter()
        .map(|mut f| {
            if f.help.is_empty() {
                f.help = format!("Metric read from {}", path.display());
            }
            f
        })
        .collect();
    Ok((families, mtime))
}

/// Same-named families from several files merge when their types agree.
fn merge(into: &mut Vec<Family>, families: Vec<Family>) -> Result<(), String> {
    for f in families {
        match into.iter_mut().find(|g| g.name == f.name) {
            Some(g)
                if g.kind != f.kind && !(g.kind == Kind::Untyped || f.kind == Kind::Untyped) =>
            {
                return Err(format!(
                    "metric {} has conflicting types across files",
                    f.name
                ));
            }
            Some(g) => g.samples.extend(f.samples),
            None => into.push(f),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carbonio_mailbox_textfile_is_read() {
        let dir = tempfile::tempdir().unwrap();
        // What Carbonio's mailbox writes: a space before '{', millisecond
        // timestamps, no TYPE or HELP.
        std::fs::write(
            dir.path().join("mailboxd.prom"),
            "mailboxd_imap_conn {instance=\"mbox1\"} 12 1795463115000\nmailboxd_soap_ms_avg 3.5 1795463115000\n",
        )
        .unwrap();
        let cfg = NodeConfig {
            textfile_dir: Some(dir.path().to_path_buf()),
            ..NodeConfig::default()
        };
        let mut out = Vec::new();
        collect(&cfg, &mut out).unwrap();
        let value = |name: &str| {
            out.iter()
                .find(|f| f.name == name)
                .and_then(|f| f.samples.first())
                .map(|s| s.value)
        };
        assert_eq!(value("mailboxd_imap_conn"), Some(12.0));
        assert_eq!(value("mailboxd_soap_ms_avg"), Some(3.5));
        assert_eq!(value("node_textfile_scrape_error"), Some(0.0));
    }
}
