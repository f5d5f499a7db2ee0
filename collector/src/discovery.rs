//! Targets from `static_configs`, `file_sd_configs` and `consul_sd_configs`, turned into label
//! sets the way Prometheus does it: scrape labels added, relabeling applied,
//! meta labels removed, `instance` defaulted to the address.

mod consul;

use crate::config::{Job, Scheme};
use crate::relabel::{self, Labels};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("reading target file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("target file {path}: {msg}")]
    Parse { path: PathBuf, msg: String },
    #[error("consul_sd {server}: {msg}")]
    Consul { server: String, msg: String },
}

/// A group of targets sharing labels, as static configs and SD files give them.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetGroup {
    pub targets: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// One target: the labels before relabeling and, unless relabeling dropped
/// it, the final labels (internal `__` labels included, as scraping needs them).
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub discovered: Labels,
    pub labels: Option<Labels>,
}

/// Reads a file_sd file: JSON or YAML by extension, a list of target groups.
pub fn read_file_sd(path: &Path) -> Result<Vec<TargetGroup>, DiscoveryError> {
    let text = std::fs::read_to_string(path).map_err(|source| DiscoveryError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let parse_err = |msg: String| DiscoveryError::Parse {
        path: path.to_path_buf(),
        msg,
    };
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let groups: Vec<TargetGroup> = match ext {
        "json" => serde_json_groups(&text).map_err(parse_err)?,
        "yml" | "yaml" => serde_yaml_ng::from_str(&text).map_err(|e| parse_err(e.to_string()))?,
        _ => {
            return Err(parse_err(
                "file_sd files must end in .json, .yml or .yaml".into(),
            ))
        }
    };
    for g in &groups {
        for name in g.labels.keys() {
            if !crate::scrape::parse::valid_label_name(name) {
                return Err(parse_err(format!("invalid label name {name:?}")));
            }
        }
    }
    Ok(groups)
}

/// JSON is a subset of YAML 1.2, so the YAML parser reads it too; errors keep their line.
fn serde_json_groups(text: &str) -> Result<Vec<TargetGroup>, String> {
    serde_yaml_ng::from_str(text).map_err(|e| e.to_string())
}

/// Files matching a file_sd pattern; like Prometheus, only the last path
/// element may hold `*` or `?`.
pub fn expand_pattern(pattern: &str) -> Vec<PathBuf> {
    let path = Path::new(pattern);
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    if !name.contains(['*', '?']) {
        return if path.exists() {
            vec![path.to_path_buf()]
        } else {
            Vec::new()
        };
    }
    let Ok(crate::config::Glob(re)) = crate::config::Glob::new(name) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_str().is_some_and(|n| re.is_match(n)))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Prometheus's duration text: "15s", "1m30s", "1h", "0s".
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis() as u64;
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("y", 31_536_000_000u64),
        ("w", 604_800_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

/// Target groups last read successfully from each SD file or Consul config.
pub type SdCache = BTreeMap<String, Vec<TargetGroup>>;

/// All targets of a job from its static configs and SD files; SD file errors
/// are returned beside the targets (a bad file does not hide the others).
pub fn targets(job: &Job) -> (Vec<Target>, Vec<DiscoveryError>) {
    targets_cached(job, &mut SdCache::new())
}

/// Like `targets`, but a file that cannot be read or parsed keeps the
/// targets it had at its last good read, as Prometheus does.
pub fn targets_cached(job: &Job, cache: &mut SdCache) -> (Vec<Target>, Vec<DiscoveryError>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut groups: Vec<(TargetGroup, Option<String>)> = job
        .config
        .static_configs
        .iter()
        .map(|s| {
            (
                TargetGroup {
                    targets: s.targets.clone(),
                    labels: s.labels.clone(),
                },
                None,
            )
        })
        .collect();
    for sd in &job.config.file_sd_configs {
        for pattern in &sd.files {
            for file in expand_pattern(pattern) {
                let key = file.display().to_string();
                let read = match read_file_sd(&file) {
                    Ok(gs) => {
                        cache.insert(key, gs.clone());
                        gs
                    }
                    Err(e) => {
                        errors.push(e);
                        cache.get(&key).cloned().unwrap_or_default()
                    }
                };
                groups.extend(
                    read.into_iter()
                        .map(|g| (g, Some(file.display().to_string()))),
                );
            }
        }
    }
    for (i, sd) in job.config.consul_sd_configs.iter().enumerate() {
        let key = format!("consul {} {i}", job.config.job_name);
        let found = match consul::discover(sd) {
            Ok(gs) => {
                cache.insert(key, gs.clone());
                gs
            }
            Err(e) => {
                errors.push(e);
                cache.get(&key).cloned().unwrap_or_default()
            }
        };
        groups.extend(found.into_iter().map(|g| (g, None)));
    }
    for (group, file) in groups {
        for address in &group.targets {
            let mut base = group.labels.clone();
            if let Some(f) = &file {
                base.insert("__meta_filepath".into(), f.clone());
            }
            base.insert("__address__".into(), address.clone());
            out.push(populate(job, base));
        }
    }
    (out, errors)
}

/// Prometheus's PopulateLabels for one discovered label set.
pub fn populate(job: &Job, mut labels: Labels) -> Target {
    let c = &job.config;
    let scheme = match c.scheme {
        Scheme::Http => "http",
        Scheme::Https => "https",
    };
    for (name, value) in [
        ("job", c.job_name.clone()),
        ("__scrape_interval__", format_duration(job.interval)),
        ("__scrape_timeout__", format_duration(job.timeout)),
        ("__metrics_path__", c.metrics_path.clone()),
        ("__scheme__", scheme.to_string()),
    ] {
        if labels.get(name).is_none_or(|v| v.is_empty()) {
            labels.insert(name.to_string(), value);
        }
    }
    for (k, v) in &c.params {
        if let Some(first) = v.first() {
            labels.insert(format!("__param_{k}"), first.clone());
        }
    }
    let discovered = labels.clone();
    if !relabel::apply(&job.relabel, &mut labels) {
        return Target {
            discovered,
            labels: None,
        };
    }
    let Some(address) = labels.get("__address__").filter(|a| !a.is_empty()).cloned() else {
        return Target {
            discovered,
            labels: None,
        };
    };
    labels.retain(|k, _| !k.starts_with("__meta_"));
    if labels.get("instance").is_none_or(|v| v.is_empty()) {
        labels.insert("instance".into(), address);
    }
    Target {
        discovered,
        labels: Some(labels),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn durations_print_like_prometheus() {
        assert_eq!(format_duration(Duration::from_secs(15)), "15s");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1s500ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn file_sd_json_yaml_and_globs() {
        let dir = std::env::temp_dir().join(format!("cm-sd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("a.json"),
            r#"[{"targets": ["mta1:9100"], "labels": {"role": "mta"}}]"#,
        )
        .unwrap();
        std::fs::write(
            dir.join("b.yml"),
            "- targets: ['mbox1:9100', 'mbox2:9100']\n  labels:\n    role: mailstore\n",
        )
        .unwrap();
        std::fs::write(dir.join("bad.json"), "[{\"targets\": 3}]").unwrap();
        let cfg = format!(
            "scrape_configs:\n  - job_name: node\n    params:\n      module: [a, b]\n    file_sd_configs:\n      - files: ['{d}/*.json', '{d}/b.yml']\n",
            d = dir.display()
        );
        let (_, jobs) = Config::parse(Path::new("t.yml"), &cfg).unwrap();
        let (targets, errors) = targets(&jobs[0]);
        assert_eq!(targets.len(), 3);
        assert_eq!(errors.len(), 1, "{errors:?}");
        let t = targets
            .iter()
            .find(|t| t.discovered["__address__"] == "mbox2:9100")
            .unwrap();
        let l = t.labels.as_ref().unwrap();
        assert_eq!(l["instance"], "mbox2:9100");
        assert_eq!(l["role"], "mailstore");
        assert_eq!(l["__param_module"], "a");
        assert_eq!(l["__scrape_interval__"], "1m");
        assert!(!l.contains_key("__meta_filepath") && t.discovered.contains_key("__meta_filepath"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
