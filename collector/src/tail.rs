//! File tailing (the `tail:` section): follows log files that never reach
//! syslog (`mailbox.log`, `audit.log`, nginx access logs). One thread,
//! woken by change notifications on the files' directories or by the poll
//! interval. Each batch of lines is stored together with the checkpoint
//! after it (one WAL record), so a restart resumes exactly there.
//!
//! Rotation: a file renamed away keeps being read through its open handle
//! until it has been quiet for `rotate_wait`, while the new file at the path
//! is read from its start; a file truncated in place (copytruncate) is read
//! again from its start, and its copy (the same first line) from where the
//! original was stored up to, then finished like a renamed file. A file
//! rotated while the collector was down is found again by its identity
//! (device, inode, first-line checksum) in its directory and read from its
//! checkpoint.

pub mod follow;
pub mod mailbox;
pub mod multiline;
pub mod nginx;

use crate::config::{ReadFrom, TailConfig, TailFiles, TailParser};
use crate::logs::{Checkpoint, FileId, LogRecord};
use crate::store::logs::LogStore;
use follow::{dev_ino, Follower};
use multiline::{Grouper, Record};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// What a parser took from a record (the rest of the line is filled in by
/// the tailer).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    pub timestamp_ns: Option<i64>,
    pub severity: Option<u8>,
    pub msgid: String,
    pub message: String,
    pub structured_data: String,
}

/// Counters per file path, for self-metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct FileCounts {
    pub lines: u64,
    pub bytes: u64,
    /// Records kept as plain text because the file's parser did not match.
    pub parse_fallbacks: u64,
    /// Lines or multiline records cut at the size or line limit.
    pub truncated: u64,
    /// Renamed away (or deleted) and replaced.
    pub rotations: u64,
    /// Truncated in place (copytruncate).
    pub truncations: u64,
    pub write_failures: u64,
}

#[derive(Debug, Default)]
pub struct TailStats {
    files: Mutex<BTreeMap<String, FileCounts>>,
    followed: std::sync::atomic::AtomicUsize,
}

impl TailStats {
    fn with(&self, path: &Path, f: impl FnOnce(&mut FileCounts)) {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        f(files.entry(path.display().to_string()).or_default());
    }

    pub fn snapshot(&self) -> BTreeMap<String, FileCounts> {
        self.files.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Files open for reading now (rotated ones still being drained included).
    pub fn followed(&self) -> usize {
        self.followed.load(Ordering::Relaxed)
    }
}

/// The running tailer; dropping it stops the thread. What was read but not
/// stored is read again on the next start.
pub struct Tailer {
    stop: Arc<AtomicBool>,
    wake: mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Tailer {
    pub fn start(config: TailConfig, logs: Arc<LogStore>, stats: Arc<TailStats>) -> Tailer {
        let stop = Arc::new(AtomicBool::new(false));
        let (wake, woken) = mpsc::channel();
        let watcher_tx = wake.clone();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("tail".into())
            .spawn(move || {
                let patterns = config.files.iter().flat_map(|f| f.paths.iter());
                let _watcher = crate::watch::watch_dirs(patterns, "tailed file", watcher_tx);
                let mut state = State::new(config, logs, stats);
                while !flag.load(Ordering::Relaxed) {
                    state.scan();
                    let _ = woken.recv_timeout(state.config.poll_interval.0);
                    // Coalesce a burst of notifications into one scan.
                    while woken.try_recv().is_ok() {}
                }
            })
            .map_err(|e| tracing::error!(error = %e, "could not start file tailing"))
            .ok();
        Tailer { stop, wake, thread }
    }
}

impl Drop for Tailer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.wake.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Followed {
    group: usize,
    follower: Follower,
}

struct State {
    config: TailConfig,
    logs: Arc<LogStore>,
    stats: Arc<TailStats>,
    host: String,
    followed: Vec<Followed>,
    first_scan: bool,
}

impl State {
    fn new(config: TailConfig, logs: Arc<LogStore>, stats: Arc<TailStats>) -> State {
        State {
            config,
            logs,
            stats,
            host: local_host_name(),
            followed: Vec::new(),
            first_scan: true,
        }
    }

    fn scan(&mut self) {
        self.discover();
        let idle = |f: &TailFiles| {
            f.multiline
                .as_ref()
                .map_or(Duration::from_secs(1), |m| m.timeout.0)
        };
        let rotate_wait = self.config.rotate_wait.0;
        let mut finished = Vec::new();
        let mut copied = Vec::new();
        for (i, f) in self.followed.iter_mut().enumerate() {
            let group = &self.config.files[f.group];
            // A retired file is finished once quiet for rotate_wait.
            let finish = f
                .follower
                .retired
                .is_some_and(|_| f.follower.last_data.elapsed() >= rotate_wait);
            match f.follower.poll(idle(group), finish) {
                Ok(progress) => {
                    if let Some((id, offset)) = &progress.truncated {
                        copied.push((f.group, f.follower.path.clone(), *id, *offset));
                    }
                    let ok = store(
                        &self.logs,
                        &self.stats,
                        &self.host,
                        group,
                        &mut f.follower,
                        progress,
                    );
                    if finish && ok {
                        finished.push(i);
                    }
                }
                Err(e) => {
                    tracing::warn!(path = %f.follower.path.display(), error = %e, "reading a tailed file failed");
                    if f.follower.retired.is_some() {
                        finished.push(i);
                    }
                }
            }
        }
        for (group, path, id, offset) in copied {
            self.follow_copy(group, &path, &id, offset);
        }
        for i in finished.into_iter().rev() {
            let f = self.followed.remove(i);
            if let Some(id) = f.follower.id() {
                self.logs.forget_checkpoint(&id);
            }
            tracing::info!(path = %f.follower.path.display(), "finished a rotated file");
        }
        self.stats
            .followed
            .store(self.followed.len(), Ordering::Relaxed);
        self.first_scan = false;
    }

    /// Starts following new files, retires files whose path moved on, and
    /// (on the first scan) finds files rotated while we were down.
    fn discover(&mut self) {
        let mut seen: BTreeSet<(u64, u64)> = BTreeSet::new();
        let mut claimed: BTreeSet<FileId> = BTreeSet::new();
        for (group, files) in self.config.files.iter().enumerate() {
            for pattern in &files.paths {
                for path in crate::discovery::expand_pattern(pattern) {
                    let Ok(meta) = std::fs::metadata(&path) else {
                        continue;
                    };
                    if !meta.is_file() {
                        continue;
                    }
                    let key = dev_ino(&meta);
                    if !seen.insert(key) {
                        continue;
                    }
                    if let Some(f) = self
                        .followed
                        .iter_mut()
                        .find(|f| f.follower.dev_ino() == key)
                    {
                        // Renamed to another watched name: same file, new path.
                        f.follower.path = path;
                        f.follower.retired = None;
                        continue;
                    }
                    match self.open_new(group, &path) {
                        Ok(f) => {
                            claimed.extend(f.follower.id());
                            tracing::info!(path = %path.display(), offset = f.follower.committed(), "following");
                            self.followed.push(f);
                        }
                        Err(e) => {
                            tracing::warn!(path = %path.display(), error = %e, "cannot open a file to tail")
                        }
                    }
                }
            }
        }
        for f in &mut self.followed {
            if f.follower.retired.is_none() && !seen.contains(&f.follower.dev_ino()) {
                f.follower.retired = Some(Instant::now());
                self.stats.with(&f.follower.path, |c| c.rotations += 1);
            }
        }
        if self.first_scan {
            self.resume_rotated(&self.logs.checkpoints(), &claimed);
        }
    }

    fn open_new(&self, group: usize, path: &Path) -> std::io::Result<Followed> {
        let files = &self.config.files[group];
        let file = std::fs::File::open(path)?;
        let meta = file.metadata()?;
        let (dev, ino) = dev_ino(&meta);
        let fingerprint = follow::fingerprint(&file)?;
        let known = fingerprint.and_then(|fingerprint| {
            self.logs.checkpoint(&FileId {
                dev,
                ino,
                fingerprint,
            })
        });
        let offset = match known {
            Some(c) if c.offset <= meta.len() => c.offset,
            Some(_) => 0,
            None if self.first_scan && files.read_from == ReadFrom::End => meta.len(),
            None => 0,
        };
        let follower = Follower::new(
            path.to_path_buf(),
            file,
            offset,
            self.config.max_line_size,
            grouper_factory(files, self.config.max_line_size),
        )?;
        Ok(Followed { group, follower })
    }

    /// Checkpointed files no longer at a watched path (rotated while we
    /// were down): found in their directory by identity, read from their
    /// checkpoint, then finished like any rotated file. A copy found for
    /// its truncated original is read from its own checkpoint if it has one.
    fn resume_rotated(
        &mut self,
        checkpoints: &BTreeMap<FileId, Checkpoint>,
        claimed: &BTreeSet<FileId>,
    ) {
        let mut found = Vec::new();
        for (id, checkpoint) in checkpoints {
            if claimed.contains(id) {
                continue;
            }
            let old = Path::new(&checkpoint.path);
            let group = self.group_of(old);
            match group.and_then(|g| find_by_identity(old, id, checkpoint.offset).map(|f| (g, f))) {
                Some((group, (path, itself))) => found.push((itself, group, path, id, checkpoint)),
                None => self.logs.forget_checkpoint(id),
            }
        }
        // Files found by their own identity first.
        found.sort_by_key(|(itself, ..)| !itself);
        for (_, group, path, id, checkpoint) in found {
            if !self.follow_retired(group, &path, checkpoint.offset) {
                self.logs.forget_checkpoint(id);
                continue;
            }
            let old = Path::new(&checkpoint.path);
            tracing::info!(path = %path.display(), was = %old.display(), offset = checkpoint.offset, "resuming a file rotated while stopped");
        }
    }

    /// A file truncated in place: its copy holds what was not stored yet.
    fn follow_copy(&mut self, group: usize, truncated: &Path, id: &FileId, offset: u64) {
        match find_by_identity(truncated, id, offset) {
            Some((copy, false)) => {
                if self.follow_retired(group, &copy, offset) {
                    tracing::info!(path = %copy.display(), was = %truncated.display(), offset, "reading the copy of a truncated file");
                }
            }
            _ => tracing::info!(path = %truncated.display(), "no copy of a truncated file found"),
        }
    }

    /// Reads a rotated file from `offset` until it has been quiet for
    /// `rotate_wait`; false when that file is followed already (it is read
    /// once, from where its follower is).
    fn follow_retired(&mut self, group: usize, path: &Path, offset: u64) -> bool {
        let followed = std::fs::metadata(path).is_ok_and(|m| {
            self.followed
                .iter()
                .any(|f| f.follower.dev_ino() == dev_ino(&m))
        });
        if followed {
            return false;
        }
        let files = &self.config.files[group];
        let opened = std::fs::File::open(path).and_then(|file| {
            Follower::new(
                path.to_path_buf(),
                file,
                offset,
                self.config.max_line_size,
                grouper_factory(files, self.config.max_line_size),
            )
        });
        match opened {
            Ok(mut follower) => {
                follower.retired = Some(Instant::now());
                self.followed.push(Followed { group, follower });
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot reopen a rotated file")
            }
        }
        true
    }

    /// The group whose patterns watch `path`'s directory.
    fn group_of(&self, path: &Path) -> Option<usize> {
        self.config.files.iter().position(|f| {
            f.paths
                .iter()
                .any(|p| Path::new(p).parent() == path.parent())
        })
    }
}

/// A file in `old`'s directory with the checkpointed identity, and whether
/// it is that file itself: the same inode and first line (renamed), or else
/// the same first line and at least `offset` bytes (copied by copytruncate).
fn find_by_identity(old: &Path, id: &FileId, offset: u64) -> Option<(PathBuf, bool)> {
    let dir = old.parent()?;
    let mut copy = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let Ok(file) = std::fs::File::open(&path) else {
            continue;
        };
        let Ok(meta) = file.metadata() else { continue };
        if !meta.is_file() || follow::fingerprint(&file).ok().flatten() != Some(id.fingerprint) {
            continue;
        }
        if dev_ino(&meta) == (id.dev, id.ino) {
            return Some((path, true));
        }
        if meta.len() >= offset && copy.is_none() {
            copy = Some((path, false));
        }
    }
    copy
}

fn grouper_factory(files: &TailFiles, max_bytes: usize) -> Box<dyn Fn() -> Grouper + Send> {
    let (start, max_lines) = match (&files.multiline, files.parser) {
        (Some(m), _) => (Some(m.start.0.clone()), m.max_lines),
        (None, TailParser::Mailbox) => (regex::Regex::new(mailbox::RECORD_START).ok(), 1000),
        (None, _) => (None, 1),
    };
    Box::new(move || Grouper::new(start.clone(), max_lines, max_bytes))
}

/// Stores a poll's records with the checkpoint after them; false when the
/// WAL refused them (the follower then reads them again).
fn store(
    logs: &LogStore,
    stats: &TailStats,
    host: &str,
    files: &TailFiles,
    follower: &mut Follower,
    progress: follow::Progress,
) -> bool {
    if let Some((old, _)) = progress.truncated {
        stats.with(&follower.path, |c| c.truncations += 1);
        logs.forget_checkpoint(&old);
    }
    let Some(id) = follower.id() else {
        if progress.records.is_empty() {
            return true; // no complete first line yet: nothing to store
        }
        // Lines without an identity to checkpoint them under: read them again.
        follower.rewind();
        return false;
    };
    if progress.records.is_empty() && progress.checkpoint == follower.committed() {
        return true;
    }
    let received_ns = now_ns();
    let source = format!("file://{}", follower.path.display());
    let mut fallbacks = 0;
    let mut truncated = 0;
    let lines: Vec<LogRecord> = progress
        .records
        .iter()
        .filter(|r| !r.text.trim().is_empty())
        .map(|r| {
            truncated += u64::from(r.truncated);
            let (record, fell_back) = to_record(r, files, host, &source, received_ns);
            fallbacks += u64::from(fell_back);
            record
        })
        .collect();
    let count = lines.len() as u64;
    let checkpoint = Checkpoint {
        file: id,
        path: follower.path.display().to_string(),
        offset: progress.checkpoint,
    };
    match logs.append_tailed(checkpoint, lines) {
        Ok(()) => {
            follower.commit(progress.checkpoint);
            stats.with(&follower.path, |c| {
                c.lines += count;
                c.bytes += progress.bytes_read;
                c.parse_fallbacks += fallbacks;
                c.truncated += truncated;
            });
            true
        }
        Err(e) => {
            tracing::error!(path = %follower.path.display(), error = %e, "storing tailed lines failed; they will be read again");
            stats.with(&follower.path, |c| c.write_failures += 1);
            follower.rewind();
            false
        }
    }
}

/// A record as a stored line; true when the file's parser did not match.
fn to_record(
    r: &Record,
    files: &TailFiles,
    host: &str,
    source: &str,
    received_ns: i64,
) -> (LogRecord, bool) {
    let parsed = match files.parser {
        TailParser::Plain => Ok(None),
        TailParser::Mailbox => mailbox::parse(&r.text, files.timezone)
            .map(Some)
            .map_err(|e| e.to_string()),
        TailParser::Nginx => nginx::parse(&r.text).map(Some).map_err(|e| e.to_string()),
    };
    let fell_back = parsed.is_err();
    let parsed = parsed.ok().flatten().unwrap_or_else(|| Parsed {
        message: r.text.clone(),
        ..Parsed::default()
    });
    let app = match (&files.app, files.parser) {
        (Some(app), _) => app.clone(),
        (None, TailParser::Mailbox) => "mailboxd".into(),
        (None, TailParser::Nginx) => "nginx".into(),
        (None, TailParser::Plain) => default_app(source),
    };
    (
        LogRecord {
            timestamp_ns: parsed.timestamp_ns.unwrap_or(received_ns),
            received_ns,
            host: files.host.clone().unwrap_or_else(|| host.to_string()),
            app,
            procid: String::new(),
            msgid: parsed.msgid,
            facility: None,
            severity: parsed.severity,
            message: parsed.message,
            structured_data: parsed.structured_data,
            source: source.to_string(),
        },
        fell_back,
    )
}

/// `file:///var/log/clamd.log` → `clamd`.
fn default_app(source: &str) -> String {
    let name = source.rsplit('/').next().unwrap_or(source);
    name.split('.').next().unwrap_or(name).to_string()
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

fn local_host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
