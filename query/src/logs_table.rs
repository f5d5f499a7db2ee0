//! The `logs` table for DataFusion: the log store's Parquet files, chosen by
//! their manifest time range (ListingTable cannot prune by a timestamp
//! inside files), read with DataFusion's Parquet reader so the same filters
//! also prune row groups, plus the not-yet-flushed head as an in-memory
//! batch. Every filter is answered `Inexact`: DataFusion applies them again
//! above the scan, so pruning can only skip data, never change a result.
//! Row groups whose token filters lack a word a `word_match` needs are
//! skipped (a `ParquetAccessPlan` per file), and files with none left.

use crate::logs::words;
use async_trait::async_trait;
use carbonio_collector::store::logs::{LogSnapshot, LogStore, LogStoreError, LogView};
use carbonio_collector::store::tokens::{self, RowGroupFilter};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DFSchema, DataFusionError, ScalarValue};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::parquet::ParquetAccessPlan;
use datafusion::datasource::physical_plan::{FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::TableType;
use datafusion::execution::cache::cache_manager::FileMetadataCache;
use datafusion::execution::cache::default_cache::DefaultCache;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::ExecutionPlan;
use std::sync::{Arc, LazyLock};

/// Where the table's data comes from: the live store (collector and query
/// in one process) or a read-only snapshot of a data directory.
pub trait LogSource: Send + Sync {
    fn view(&self, start_ns: i64, end_ns: i64) -> Result<LogView, LogStoreError>;
}

impl LogSource for LogStore {
    fn view(&self, start_ns: i64, end_ns: i64) -> Result<LogView, LogStoreError> {
        LogStore::view(self, start_ns, end_ns)
    }
}

impl LogSource for LogSnapshot {
    fn view(&self, start_ns: i64, end_ns: i64) -> Result<LogView, LogStoreError> {
        LogSnapshot::view(self, start_ns, end_ns)
    }
}

pub struct LogsTable {
    source: Arc<dyn LogSource>,
    schema: SchemaRef,
}

impl std::fmt::Debug for LogsTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogsTable")
    }
}

impl LogsTable {
    pub fn new(source: Arc<dyn LogSource>) -> Self {
        LogsTable {
            source,
            schema: carbonio_collector::store::logs::schema(),
        }
    }
}

/// Parsed footers of hour files, shared by every search and SQL session
/// (each has its own runtime): files never change once written.
static FOOTERS: LazyLock<Arc<FileMetadataCache>> =
    LazyLock::new(|| Arc::new(DefaultCache::new(64 << 20)));

impl LogsTable {
    /// DataFusion's Parquet reader over `files`, pruning row groups by the
    /// filters' statistics too.
    fn parquet(
        &self,
        state: &dyn Session,
        url: ObjectStoreUrl,
        files: Vec<PartitionedFile>,
        filters: &[Expr],
        projection: Option<&Vec<usize>>,
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let store = state.runtime_env().object_store(&url)?;
        let mut source = ParquetSource::new(self.schema.clone()).with_parquet_file_reader_factory(
            Arc::new(CachedParquetFileReaderFactory::new(store, FOOTERS.clone())),
        );
        if let Some(predicate) = conjunction(filters.to_vec()) {
            let df_schema = DFSchema::try_from(self.schema.as_ref().clone())?;
            source = source.with_predicate(state.create_physical_expr(predicate, &df_schema)?);
        }
        let mut config = FileScanConfigBuilder::new(url, Arc::new(source))
            .with_projection_indices(projection.cloned())?
            .with_limit(limit);
        for file in files {
            config = config.with_file(file);
        }
        Ok(DataSourceExec::from_data_source(config.build()))
    }
}

#[async_trait]
impl TableProvider for LogsTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let (start, end) = time_bounds(filters);
        let view = self
            .source
            .view(start, end)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let need = filters
            .iter()
            .filter_map(need)
            .reduce(|a, b| Need::All(vec![a, b]));
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        let local: Vec<PartitionedFile> = view
            .files
            .iter()
            .filter_map(|(path, size)| {
                let file = PartitionedFile::new(path.display().to_string(), *size);
                pruned(file, need.as_ref(), || tokens::of_local(path, *size))
            })
            .collect();
        if !local.is_empty() {
            let url = ObjectStoreUrl::local_filesystem();
            inputs.push(self.parquet(state, url, local, filters, projection, limit)?);
        }
        let remote: Vec<PartitionedFile> = view
            .remote
            .iter()
            .filter_map(|(key, size)| {
                let file = PartitionedFile::new(key.clone(), *size);
                pruned(file, need.as_ref(), || tokens::of_remote(key, *size))
            })
            .collect();
        if !remote.is_empty() {
            let url = remote::register(state.runtime_env(), &view.remote)?;
            inputs.push(self.parquet(state, url, remote, filters, projection, limit)?);
        }
        if !view.head.is_empty() {
            inputs.push(MemorySourceConfig::try_new_exec(
                &[view.head],
                self.schema.clone(),
                projection.cloned(),
            )?);
        }
        if inputs.is_empty() {
            let projected = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => self.schema.clone(),
            };
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        UnionExec::try_new(inputs)
    }
}

/// The words a row group must hold for the filters to match in it.
enum Need {
    All(Vec<Need>),
    Any(Vec<Need>),
    Word(u64),
}

/// What `e` requires of the message's words; None when it requires
/// nothing the token filters can tell (negations, other columns).
fn need(e: &Expr) -> Option<Need> {
    match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => match (need(left), need(right)) {
            (Some(a), Some(b)) => Some(Need::All(vec![a, b])),
            (a, b) => a.or(b),
        },
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => Some(Need::Any(vec![need(left)?, need(right)?])),
        e => {
            let keys = tokens::keys_of(words::matched_text(e)?);
            (!keys.is_empty()).then(|| Need::All(keys.into_iter().map(Need::Word).collect()))
        }
    }
}

impl Need {
    fn allows(&self, f: &RowGroupFilter) -> bool {
        match self {
            Need::All(v) => v.iter().all(|n| n.allows(f)),
            Need::Any(v) => v.iter().any(|n| n.allows(f)),
            Need::Word(k) => f.may_contain(*k),
        }
    }
}

/// `file` with the row groups that cannot match left out, or None when
/// none can.
fn pruned(
    file: PartitionedFile,
    need: Option<&Need>,
    filters: impl FnOnce() -> Arc<Vec<RowGroupFilter>>,
) -> Option<PartitionedFile> {
    let Some(need) = need else {
        return Some(file);
    };
    let filters = filters();
    if filters.is_empty() {
        return Some(file);
    }
    let mut plan = ParquetAccessPlan::new_all(filters.len());
    let mut kept = 0;
    for (i, f) in filters.iter().enumerate() {
        if need.allows(f) {
            kept += 1;
        } else {
            plan.skip(i);
        }
    }
    match kept {
        0 => None,
        k if k == filters.len() => Some(file),
        _ => Some(file.with_extension(plan)),
    }
}

/// The `timestamp` range the filters allow, in ns (inclusive); the whole
/// line when they do not bound it.
pub fn time_bounds(filters: &[Expr]) -> (i64, i64) {
    let mut bounds = (i64::MIN, i64::MAX);
    for f in filters {
        narrow(f, &mut bounds);
    }
    bounds
}

fn narrow(expr: &Expr, bounds: &mut (i64, i64)) {
    match expr {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => {
            narrow(left, bounds);
            narrow(right, bounds);
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (op, value) = match (is_timestamp(left), is_timestamp(right)) {
                (true, false) => (*op, nanos(right)),
                (false, true) => match op.swap() {
                    Some(op) => (op, nanos(left)),
                    None => return,
                },
                _ => return,
            };
            let Some(v) = value else { return };
            match op {
                Operator::Gt => bounds.0 = bounds.0.max(v.saturating_add(1)),
                Operator::GtEq => bounds.0 = bounds.0.max(v),
                Operator::Lt => bounds.1 = bounds.1.min(v.saturating_sub(1)),
                Operator::LtEq => bounds.1 = bounds.1.min(v),
                Operator::Eq => {
                    bounds.0 = bounds.0.max(v);
                    bounds.1 = bounds.1.min(v);
                }
                _ => {}
            }
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) if is_timestamp(expr) => {
            if let Some(v) = nanos(low) {
                bounds.0 = bounds.0.max(v);
            }
            if let Some(v) = nanos(high) {
                bounds.1 = bounds.1.min(v);
            }
        }
        _ => {}
    }
}

fn is_timestamp(e: &Expr) -> bool {
    matches!(e, Expr::Column(c) if c.name == "timestamp")
}

fn nanos(e: &Expr) -> Option<i64> {
    let Expr::Literal(v, _) = e else { return None };
    match v {
        ScalarValue::TimestampNanosecond(Some(n), _) => Some(*n),
        ScalarValue::TimestampMicrosecond(Some(n), _) => n.checked_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(n), _) => n.checked_mul(1_000_000),
        ScalarValue::TimestampSecond(Some(n), _) => n.checked_mul(1_000_000_000),
        _ => None,
    }
}

mod remote;
#[cfg(test)]
mod tests;
