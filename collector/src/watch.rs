//! Change notifications for the directories holding watched files (files
//! are often replaced by rename, so their directories are what is watched).
//! Callers also poll: notifications only shorten the wait.

use std::path::PathBuf;
use std::sync::mpsc;

/// Watches the parent directory of each pattern; every change that is not
/// a mere access sends `()`. None (polling only) when nothing is to be
/// watched or the platform refuses.
pub fn watch_dirs<'a>(
    patterns: impl Iterator<Item = &'a String>,
    what: &str,
    tx: mpsc::Sender<()>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let dirs: std::collections::BTreeSet<PathBuf> = patterns
        .filter_map(|pattern| PathBuf::from(pattern).parent().map(PathBuf::from))
        .map(|d| {
            if d.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                d
            }
        })
        .collect();
    if dirs.is_empty() {
        return None;
    }
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = tx.send(());
        }
    })
    .map_err(|e| tracing::warn!(error = %e, what, "change notifications unavailable; polling only"))
    .ok()?;
    for dir in dirs {
        if let Err(e) = watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %dir.display(), error = %e, what, "cannot watch directory; polling it");
        }
    }
    Some(watcher)
}
