//! Remote log files for DataFusion's Parquet reader: an `ObjectStore` whose
//! reads go through the collector's object storage tier (range requests
//! and its bounded chunk cache). Read-only: only the collector writes the
//! bucket, so writes and listings are refused.

use carbonio_collector::store::tier;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    Attributes, CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload,
    PutResult, Result,
};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

const URL: &str = "carbonio-tier://logs";

/// Object sizes the scans have seen (from the parts' manifests), so reads
/// need no HEAD request.
#[derive(Debug, Default)]
struct TierReader {
    sizes: Mutex<HashMap<String, u64>>,
}

static READER: LazyLock<Arc<TierReader>> = LazyLock::new(Arc::default);

/// Makes the remote files readable in `runtime` under the tier's URL.
pub fn register(
    runtime: &Arc<RuntimeEnv>,
    files: &[(String, u64)],
) -> datafusion::error::Result<ObjectStoreUrl> {
    let url = ObjectStoreUrl::parse(URL)?;
    {
        let mut sizes = READER.sizes.lock().unwrap_or_else(|p| p.into_inner());
        for (key, size) in files {
            sizes.insert(key.clone(), *size);
        }
    }
    let store: Arc<dyn ObjectStore> = READER.clone();
    runtime.register_object_store(url.as_ref(), store);
    Ok(url)
}

impl std::fmt::Display for TierReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TierReader")
    }
}

fn refused(what: &str) -> object_store::Error {
    object_store::Error::NotSupported {
        source: format!("{what}: remote log files are read-only here").into(),
    }
}

fn generic(e: impl std::fmt::Display) -> object_store::Error {
    object_store::Error::Generic {
        store: "carbonio-tier",
        source: e.to_string().into(),
    }
}

#[async_trait::async_trait]
impl ObjectStore for TierReader {
    async fn put_opts(&self, _: &Path, _: PutPayload, _: PutOptions) -> Result<PutResult> {
        Err(refused("put"))
    }

    async fn put_multipart_opts(
        &self,
        _: &Path,
        _: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        Err(refused("put"))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let key = location.to_string();
        let size = self
            .sizes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .copied()
            .ok_or_else(|| object_store::Error::NotFound {
                path: key.clone(),
                source: "not a remote log file of this store".into(),
            })?;
        let range = match options.range {
            None => 0..size,
            Some(GetRange::Bounded(r)) => r.start..r.end.min(size),
            Some(GetRange::Offset(o)) => o..size,
            Some(GetRange::Suffix(n)) => size.saturating_sub(n)..size,
        };
        if range.start > range.end || (range.start >= size && size > 0) {
            return Err(generic(format!("{key}: range {range:?} of {size} bytes")));
        }
        let meta = ObjectMeta {
            location: location.clone(),
            last_modified: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
            size,
            e_tag: None,
            version: None,
        };
        let bytes = if options.head {
            Default::default()
        } else {
            let tier =
                tier::installed().ok_or_else(|| generic("no storage.object_store configured"))?;
            let (start, len) = (range.start, (range.end - range.start) as usize);
            tokio::task::spawn_blocking(move || tier.read_key(&key, size, start, len))
                .await
                .map_err(generic)?
                .map_err(generic)?
        };
        Ok(GetResult {
            payload: GetResultPayload::Stream(
                futures::stream::once(async move { Ok(bytes) }).boxed(),
            ),
            meta,
            range,
            attributes: Attributes::default(),
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        locations.map(|_| Err(refused("delete"))).boxed()
    }

    fn list(&self, _: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        futures::stream::once(async { Err(refused("list")) }).boxed()
    }

    async fn list_with_delimiter(&self, _: Option<&Path>) -> Result<ListResult> {
        Err(refused("list"))
    }

    async fn copy_opts(&self, _: &Path, _: &Path, _: CopyOptions) -> Result<()> {
        Err(refused("copy"))
    }
}
