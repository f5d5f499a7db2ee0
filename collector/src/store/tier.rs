//! The object storage tier: finished metric blocks (and log parts, see
//! `logs::LogStore::upload_parts`) are uploaded to an
//! S3-compatible bucket (`PREFIX/blocks/<block>.<upload time>/{series.parquet,
//! samples.parquet,meta.json}`, the manifest last), verified (each object's
//! size read back), and only then is the local `samples.parquet` replaced
//! by a `remote.json` marker. The block's manifest and series table stay in
//! the data directory as the catalog; reads of remote samples go through
//! range requests and a bounded local chunk cache. An upload that fails
//! (the server down, a crash) leaves the block local and is tried again.
//!
//! The tier is process-wide (`install`) because the block read path is too:
//! blocks are found by listing the data directory, from any thread.

use super::rangecache::{CacheStats, RangeCache};
use crate::config::ObjectStoreConfig;
use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The marker a block directory holds once its samples are remote.
pub const MARKER: &str = "remote.json";
/// Files of a block, in upload order: the manifest last, so a block whose
/// manifest is in the bucket is whole there.
const FILES: [&str; 3] = ["series.parquet", "samples.parquet", "meta.json"];
/// Larger files go up in parts of this size.
const PART: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum TierError {
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("object storage configuration: {0}")]
    Config(String),
    #[error("upload of {key} not verified: {msg}")]
    Verify { key: String, msg: String },
    #[error("the object storage request was abandoned")]
    Abandoned,
}

/// What `remote.json` says: where the block's samples are.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Remote {
    pub key: String,
    pub bytes: u64,
}

/// The `remote.json` of `dir`, if it has one.
fn read_marker<T: serde::de::DeserializeOwned>(dir: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(dir.join(MARKER)).ok()?).ok()
}

impl Remote {
    pub fn read(dir: &Path) -> Option<Remote> {
        read_marker(dir)
    }
}

/// Renames a remote block or part directory to a hidden, unique name, so it
/// is no longer listed while its objects are deleted; gives the new path.
pub fn hide_for_deletion(dir: &Path) -> std::io::Result<PathBuf> {
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("item");
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let hidden = dir.with_file_name(format!(".deleting-{name}.{stamp}"));
    std::fs::rename(dir, &hidden)?;
    Ok(hidden)
}

/// Directories under `parent` whose deletion a crash (or the server)
/// interrupted after `hide_for_deletion`.
pub fn hidden_deletions(parent: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(parent)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with(".deleting-"))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// What `remote.json` says in a log part: the folder of its hour files
/// (their sizes are in the part's `meta.json`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RemotePart {
    pub prefix: String,
}

impl RemotePart {
    pub fn read(dir: &Path) -> Option<RemotePart> {
        read_marker(dir)
    }
}

#[derive(Debug, Default)]
struct Counts {
    uploads: AtomicU64,
    upload_bytes: AtomicU64,
    upload_failures: AtomicU64,
    range_requests: AtomicU64,
    deletes: AtomicU64,
}

pub struct Tier {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    description: String,
    upload_after: Duration,
    local_grace: Duration,
    cache: RangeCache,
    counts: Counts,
    runtime: tokio::runtime::Runtime,
}

static INSTALLED: OnceLock<Arc<Tier>> = OnceLock::new();

/// Makes `tier` the process's tier; false when one is installed already.
pub fn install(tier: Arc<Tier>) -> bool {
    INSTALLED.set(tier).is_ok()
}

pub fn installed() -> Option<&'static Arc<Tier>> {
    INSTALLED.get()
}

/// Installs the tier `config` describes, if any. A process keeps the tier
/// it started with: a changed section needs a restart.
pub fn install_configured(
    config: Option<&ObjectStoreConfig>,
    data: &Path,
) -> Result<(), TierError> {
    let Some(c) = config else {
        return Ok(());
    };
    if installed().is_some() {
        return Ok(());
    }
    let tier = Tier::new(c, data)?;
    tracing::info!(to = tier.description(), "object storage tier enabled");
    install(Arc::new(tier));
    Ok(())
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> TierError + '_ {
    move |source| TierError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Figures for the self-metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct TierStats {
    pub uploads: u64,
    pub upload_bytes: u64,
    pub upload_failures: u64,
    pub range_requests: u64,
    pub deletes: u64,
    pub cache: CacheStats,
}

impl Tier {
    pub fn new(c: &ObjectStoreConfig, data: &Path) -> Result<Tier, TierError> {
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&c.bucket)
            .with_region(&c.region)
            .with_virtual_hosted_style_request(!c.path_style)
            // A server that is down fails an upload in seconds; it is
            // tried again at the next maintenance pass.
            .with_retry(RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(10),
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(60)),
            );
        if let Some(e) = &c.endpoint {
            b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
        }
        if let Some(k) = &c.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(s) = &c.secret_access_key {
            b = b.with_secret_access_key(s);
        }
        if let Some(f) = &c.secret_access_key_file {
            let s = std::fs::read_to_string(f).map_err(io(f))?;
            b = b.with_secret_access_key(s.trim_end());
        }
        let store = b.build()?;
        let cache_dir = c
            .cache_dir
            .clone()
            .unwrap_or_else(|| data.join("object-cache"));
        let cache = RangeCache::open(&cache_dir, c.cache_max_bytes).map_err(io(&cache_dir))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("object-store")
            .enable_all()
            .build()
            .map_err(io(data))?;
        Ok(Tier {
            store: Arc::new(store),
            prefix: c.prefix.trim_end_matches('/').to_string(),
            description: format!(
                "s3://{}/{} at {}",
                c.bucket,
                c.prefix,
                c.endpoint.as_deref().unwrap_or("AWS")
            ),
            upload_after: c.upload_after.0,
            local_grace: c.local_grace.0,
            cache,
            counts: Counts::default(),
            runtime,
        })
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    pub fn upload_after(&self) -> Duration {
        self.upload_after
    }

    pub fn local_grace(&self) -> Duration {
        self.local_grace
    }

    pub fn stats(&self) -> TierStats {
        let c = &self.counts;
        TierStats {
            uploads: c.uploads.load(Ordering::Relaxed),
            upload_bytes: c.upload_bytes.load(Ordering::Relaxed),
            upload_failures: c.upload_failures.load(Ordering::Relaxed),
            range_requests: c.range_requests.load(Ordering::Relaxed),
            deletes: c.deletes.load(Ordering::Relaxed),
            cache: self.cache.stats(),
        }
    }

    /// Runs a request on the tier's runtime and waits for it, from any
    /// thread (the read path is synchronous).
    fn run<T: Send + 'static>(
        &self,
        f: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Result<T, TierError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv().map_err(|_| TierError::Abandoned)
    }

    /// `PREFIX/<folder>.<upload time>/` as an object key prefix: a name
    /// that comes back (a block rebuilt under the same time range) never
    /// meets an old upload's objects or cached chunks.
    fn folder(&self, folder: &str) -> String {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        if self.prefix.is_empty() {
            format!("{folder}.{stamp}/")
        } else {
            format!("{}/{folder}.{stamp}/", self.prefix)
        }
    }

    /// Uploads the block in `dir`, verifies it, marks it remote and drops
    /// the local samples file. Returns the bytes uploaded.
    pub fn upload_block(&self, dir: &Path) -> Result<u64, TierError> {
        let folder = self.folder(&format!("blocks/{}", dir_name(dir)?));
        let files: Vec<String> = FILES.iter().map(|f| f.to_string()).collect();
        let sizes = self.counted(self.upload_files(dir, &folder, &files))?;
        let remote = Remote {
            key: format!("{folder}samples.parquet"),
            bytes: sizes[1],
        };
        write_marker(dir, &serde_json::to_vec(&remote).unwrap_or_default())?;
        remove_synced(dir, &["samples.parquet".to_string()])?;
        Ok(sizes.iter().sum())
    }

    /// Uploads a log part (its hour files, then `meta.json`), verifies it,
    /// marks it remote and drops the local hour files.
    /// With `drop_local` false the hour files stay until the caller removes
    /// them (readers may have listed them).
    pub fn upload_part(
        &self,
        dir: &Path,
        hour_files: &[String],
        drop_local: bool,
    ) -> Result<u64, TierError> {
        let folder = self.folder(&format!("logs/parts/{}", dir_name(dir)?));
        let mut files = hour_files.to_vec();
        files.push("meta.json".into());
        let sizes = self.counted(self.upload_files(dir, &folder, &files))?;
        let marker = RemotePart { prefix: folder };
        write_marker(dir, &serde_json::to_vec(&marker).unwrap_or_default())?;
        if drop_local {
            remove_synced(dir, hour_files)?;
        }
        Ok(sizes.iter().sum())
    }

    fn counted(&self, sizes: Result<Vec<u64>, TierError>) -> Result<Vec<u64>, TierError> {
        match &sizes {
            Ok(s) => {
                self.counts.uploads.fetch_add(1, Ordering::Relaxed);
                self.counts
                    .upload_bytes
                    .fetch_add(s.iter().sum(), Ordering::Relaxed);
            }
            Err(_) => {
                self.counts.upload_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        sizes
    }

    /// Puts `files` of `dir` under `folder` in order, then reads each
    /// object's size back; gives the sizes.
    fn upload_files(
        &self,
        dir: &Path,
        folder: &str,
        files: &[String],
    ) -> Result<Vec<u64>, TierError> {
        let mut sizes = Vec::new();
        for file in files {
            let local = dir.join(file);
            let bytes = Bytes::from(std::fs::read(&local).map_err(io(&local))?);
            sizes.push(bytes.len() as u64);
            self.put(format!("{folder}{file}"), bytes)?;
        }
        for (file, size) in files.iter().zip(&sizes) {
            let key = format!("{folder}{file}");
            let store = self.store.clone();
            let path = ObjectPath::from(key.as_str());
            let meta = self.run(async move { store.head(&path).await })??;
            if meta.size != *size {
                return Err(TierError::Verify {
                    key,
                    msg: format!("{} bytes in the bucket, {size} here", meta.size),
                });
            }
        }
        Ok(sizes)
    }

    fn put(&self, key: String, bytes: Bytes) -> Result<(), TierError> {
        let store = self.store.clone();
        let path = ObjectPath::from(key);
        self.run(async move {
            if bytes.len() <= PART {
                return store.put(&path, PutPayload::from(bytes)).await.map(|_| ());
            }
            let upload = store.put_multipart(&path).await?;
            let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
            w.put(bytes);
            match w.finish().await {
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            }
        })??;
        Ok(())
    }

    /// Deletes a block's objects (those already gone are fine).
    pub fn delete_block(&self, remote: &Remote) -> Result<(), TierError> {
        let folder = remote
            .key
            .strip_suffix("samples.parquet")
            .ok_or_else(|| TierError::Config(format!("unexpected key {}", remote.key)))?;
        self.delete_keys(FILES.iter().map(|f| format!("{folder}{f}")).collect())
    }

    /// Deletes a log part's objects: `files` and its manifest.
    pub fn delete_part(&self, remote: &RemotePart, files: &[String]) -> Result<(), TierError> {
        let mut keys: Vec<String> = files
            .iter()
            .map(|f| format!("{}{f}", remote.prefix))
            .collect();
        keys.push(format!("{}meta.json", remote.prefix));
        self.delete_keys(keys)
    }

    fn delete_keys(&self, keys: Vec<String>) -> Result<(), TierError> {
        for key in keys {
            let store = self.store.clone();
            let path = ObjectPath::from(key);
            match self.run(async move { store.delete(&path).await })? {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.counts.deletes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Bytes [start, start + len) of a remote samples file.
    pub fn read(&self, remote: &Remote, start: u64, len: usize) -> std::io::Result<Bytes> {
        self.read_key(&remote.key, remote.bytes, start, len)
    }

    /// Every object under `prefix` (a folder, ending in `/`): (key, size).
    pub fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, TierError> {
        use futures_util::TryStreamExt;
        let store = self.store.clone();
        let prefix = ObjectPath::from(prefix);
        let objects: Vec<object_store::ObjectMeta> =
            self.run(async move { store.list(Some(&prefix)).try_collect().await })??;
        Ok(objects
            .into_iter()
            .map(|o| (o.location.to_string(), o.size))
            .collect())
    }

    /// A whole (small) object, not cached: manifests a query node mirrors.
    pub fn get(&self, key: &str) -> Result<Bytes, TierError> {
        let store = self.store.clone();
        let path = ObjectPath::from(key);
        Ok(self.run(async move {
            match store.get(&path).await {
                Ok(r) => r.bytes().await,
                Err(e) => Err(e),
            }
        })??)
    }

    /// Bytes [start, start + len) of the object `key` of `size` bytes,
    /// through the chunk cache.
    pub fn read_key(&self, key: &str, size: u64, start: u64, len: usize) -> std::io::Result<Bytes> {
        let fetch = |range: std::ops::Range<u64>| -> std::io::Result<Bytes> {
            self.counts.range_requests.fetch_add(1, Ordering::Relaxed);
            let store = self.store.clone();
            let path = ObjectPath::from(key);
            self.run(async move { store.get_range(&path, range).await })
                .map_err(std::io::Error::other)?
                .map_err(std::io::Error::other)
        };
        self.cache.read(key, size, start, len, &fetch)
    }
}

fn dir_name(dir: &Path) -> Result<&str, TierError> {
    dir.file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| TierError::Config(format!("{}: no directory name", dir.display())))
}

/// `remote.json` written durably: once it is there, the objects are.
fn write_marker(dir: &Path, bytes: &[u8]) -> Result<(), TierError> {
    let marker = dir.join(MARKER);
    let tmp = dir.join(".remote.json.tmp");
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io(&tmp))?;
    std::fs::rename(&tmp, &marker).map_err(io(&marker))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// Removes local copies now held remotely.
fn remove_synced(dir: &Path, files: &[String]) -> Result<(), TierError> {
    for f in files {
        let path = dir.join(f);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path)(e)),
        }
    }
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}
