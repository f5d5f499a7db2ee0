//! A collector's catalog as found in the bucket, mirrored into a local
//! directory laid out as a data directory: each metric block's manifest
//! and series table with a `remote.json` naming its samples object, each
//! log part's manifest with a `remote.json` naming its folder. The usual
//! snapshot readers then read it, fetching samples and log files through
//! the tier's range cache. The mirror only ever deletes its own files,
//! never objects: the collector owns its prefix.

use carbonio_collector::store::tier::{Remote, RemotePart, Tier, TierError, MARKER};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// A folder in the bucket: `<name>.<upload time ns>`, with its objects.
#[derive(Debug, Default)]
struct Folder {
    key: String,
    stamp: u128,
    objects: BTreeMap<String, u64>,
}

/// Newest complete upload of each name under `root` (`PREFIX/blocks/` or
/// `PREFIX/logs/parts/`); complete means its manifest (`meta.json`, put
/// last) is there.
fn folders(tier: &Tier, root: &str) -> Result<BTreeMap<String, Folder>, TierError> {
    let mut all: BTreeMap<String, Folder> = BTreeMap::new();
    for (key, size) in tier.list(root)? {
        let Some(rest) = key.strip_prefix(root) else {
            continue;
        };
        let Some((folder, object)) = rest.split_once('/') else {
            continue;
        };
        let f = all.entry(folder.to_string()).or_insert_with(|| Folder {
            key: format!("{root}{folder}/"),
            ..Folder::default()
        });
        f.objects.insert(object.to_string(), size);
    }
    let mut newest: BTreeMap<String, Folder> = BTreeMap::new();
    for (folder, mut f) in all {
        let Some((name, stamp)) = folder.rsplit_once('.') else {
            continue;
        };
        let Ok(stamp) = stamp.parse::<u128>() else {
            continue;
        };
        if !f.objects.contains_key("meta.json") {
            continue;
        }
        f.stamp = stamp;
        if newest.get(name).is_none_or(|old| old.stamp < stamp) {
            newest.insert(name.to_string(), f);
        }
    }
    Ok(newest)
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> TierError + '_ {
    move |source| TierError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Directory entries of `dir` not starting with a dot: (name, path).
fn entries(dir: &Path) -> Vec<(String, PathBuf)> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                .filter(|(n, _)| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

/// Makes `dir/<name>.<stamp>` for each wanted folder (through a temporary
/// directory, so a reader never sees half of one) and removes the rest.
fn sync_dir(
    dir: &Path,
    wanted: &BTreeMap<String, Folder>,
    fill: impl Fn(&Path, &Folder) -> Result<(), TierError>,
) -> Result<(), TierError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let target: HashSet<String> = wanted
        .iter()
        .map(|(name, f)| format!("{name}.{}", f.stamp))
        .collect();
    for (name, path) in entries(dir) {
        if !target.contains(&name) {
            std::fs::remove_dir_all(&path).map_err(io(&path))?;
        }
    }
    for (name, f) in wanted {
        let dest = dir.join(format!("{name}.{}", f.stamp));
        if dest.exists() {
            continue;
        }
        let tmp = dir.join(format!(".tmp-{name}"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        match fill(&tmp, f) {
            Ok(()) => std::fs::rename(&tmp, &dest).map_err(io(&dest))?,
            // Deleted since the listing (compaction, retention): its data
            // is in a newer upload or with the collector.
            Err(TierError::Store(object_store::Error::NotFound { .. })) => {
                let _ = std::fs::remove_dir_all(&tmp);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn fetch(tier: &Tier, key: &str, to: &Path) -> Result<(), TierError> {
    let bytes = tier.get(key)?;
    std::fs::write(to, &bytes).map_err(io(to))
}

/// The name a mirrored directory had at the collector: `<name>.<stamp>`.
pub fn collector_name(mirrored: &str) -> &str {
    mirrored.rsplit_once('.').map_or(mirrored, |(n, _)| n)
}

/// Brings `mirror` (a data directory layout) up to date with the bucket
/// under `prefix`.
pub fn refresh(tier: &Tier, prefix: &str, mirror: &Path) -> Result<(), TierError> {
    let root = |sub: &str| {
        if prefix.is_empty() {
            sub.to_string()
        } else {
            format!("{prefix}/{sub}")
        }
    };
    let blocks: BTreeMap<String, Folder> = folders(tier, &root("blocks/"))?
        .into_iter()
        .filter(|(_, f)| {
            ["series.parquet", "samples.parquet"]
                .iter()
                .all(|o| f.objects.contains_key(*o))
        })
        .collect();
    sync_dir(&mirror.join("blocks"), &blocks, |tmp, f| {
        fetch(tier, &format!("{}meta.json", f.key), &tmp.join("meta.json"))?;
        fetch(
            tier,
            &format!("{}series.parquet", f.key),
            &tmp.join("series.parquet"),
        )?;
        let remote = Remote {
            key: format!("{}samples.parquet", f.key),
            bytes: f.objects.get("samples.parquet").copied().unwrap_or(0),
        };
        write_json(&tmp.join(MARKER), &remote)
    })?;
    let parts = folders(tier, &root("logs/parts/"))?;
    let parts_dir = mirror.join("logs").join("parts");
    sync_dir(&parts_dir, &parts, |tmp, f| {
        fetch(tier, &format!("{}meta.json", f.key), &tmp.join("meta.json"))?;
        let marker = RemotePart {
            prefix: f.key.clone(),
        };
        write_json(&tmp.join(MARKER), &marker)
    })?;
    Ok(())
}

/// The blocks mirrored now, as the collector names them.
pub fn block_names(mirror: &Path) -> Vec<String> {
    entries(&mirror.join("blocks"))
        .into_iter()
        .map(|(n, _)| collector_name(&n).to_string())
        .collect()
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), TierError> {
    let bytes = serde_json::to_vec(value).map_err(|e| TierError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(path, bytes).map_err(io(path))
}

/// The part a remote log file key belongs to:
/// `PREFIX/logs/parts/<name>.<stamp>/<hour file>`.
pub fn part_of_key(key: &str) -> Option<&str> {
    let mut segments = key.rsplit('/');
    segments.next()?;
    Some(collector_name(segments.next()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_keys_and_folders() {
        assert_eq!(
            part_of_key("a/b/logs/parts/0001-0002-00000003-77.1700000000000000000/00.parquet"),
            Some("0001-0002-00000003-77")
        );
        assert_eq!(collector_name("blk.123"), "blk");
        assert_eq!(collector_name("plain"), "plain");
    }
}
