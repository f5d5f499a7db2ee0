//! Read-only SQL over `logs`, `samples` and `series`: DataFusion with DDL,
//! DML and statements refused (so no COPY, external tables or SET), a
//! memory pool per query and a time limit.

use crate::logs_table::{time_bounds, LogSource, LogsTable};
use async_trait::async_trait;
use carbonio_collector::store::head::Matcher;
use carbonio_collector::store::MetricRead;
use datafusion::arrow::array::{
    ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Failed(String),
    #[error("query timed out after {0:?}")]
    Timeout(Duration),
}

/// Samples one `samples` scan may build; narrow by time or metric beyond.
const MAX_SCAN_SAMPLES: usize = 20_000_000;

pub struct Sql {
    logs: Arc<dyn LogSource>,
    metrics: Arc<dyn MetricRead + Send + Sync>,
    pub timeout: Duration,
    pub memory_bytes: usize,
}

impl Sql {
    pub fn new(
        logs: Arc<dyn LogSource>,
        metrics: Arc<dyn MetricRead + Send + Sync>,
        timeout: Duration,
        memory_bytes: usize,
    ) -> Self {
        Sql {
            logs,
            metrics,
            timeout,
            memory_bytes,
        }
    }

    fn session(&self) -> Result<SessionContext, DataFusionError> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(self.memory_bytes, 1.0)
            .build_arc()?;
        let ctx = SessionContext::new_with_config_rt(
            SessionConfig::new().with_target_partitions(2),
            runtime,
        );
        ctx.register_table("logs", Arc::new(LogsTable::new(self.logs.clone())))?;
        ctx.register_table(
            "samples",
            Arc::new(MetricsTable::samples(self.metrics.clone())),
        )?;
        ctx.register_table(
            "series",
            Arc::new(MetricsTable::series(self.metrics.clone())),
        )?;
        Ok(ctx)
    }

    /// Runs one read-only statement to completion within the limits.
    pub async fn run(&self, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>), SqlError> {
        let ctx = self
            .session()
            .map_err(|e| SqlError::Failed(e.to_string()))?;
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let df = ctx.sql_with_options(sql, options).await.map_err(|e| {
            let msg = e.to_string();
            if msg.contains("not supported") || msg.contains("Unsupported") {
                SqlError::Refused(format!("read-only SQL: {msg}"))
            } else {
                SqlError::Failed(msg)
            }
        })?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let batches = tokio::time::timeout(self.timeout, df.collect())
            .await
            .map_err(|_| SqlError::Timeout(self.timeout))?
            .map_err(|e| SqlError::Failed(e.to_string()))?;
        Ok((schema, batches))
    }
}

/// `samples` (metric, labels as JSON, timestamp, value) or `series`
/// (metric, labels) read through the store's read API, bounded by the
/// time and `metric = '…'` filters DataFusion pushes down.
#[derive(Clone)]
struct MetricsTable {
    metrics: Arc<dyn MetricRead + Send + Sync>,
    with_samples: bool,
    schema: SchemaRef,
}

impl std::fmt::Debug for MetricsTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.with_samples {
            "samples"
        } else {
            "series"
        })
    }
}

impl MetricsTable {
    fn samples(metrics: Arc<dyn MetricRead + Send + Sync>) -> Self {
        let ts = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
        MetricsTable {
            metrics,
            with_samples: true,
            schema: Arc::new(Schema::new(vec![
                Field::new("metric", DataType::Utf8, false),
                Field::new("labels", DataType::Utf8, false),
                Field::new("timestamp", ts, false),
                Field::new("value", DataType::Float64, false),
            ])),
        }
    }

    fn series(metrics: Arc<dyn MetricRead + Send + Sync>) -> Self {
        MetricsTable {
            metrics,
            with_samples: false,
            schema: Arc::new(Schema::new(vec![
                Field::new("metric", DataType::Utf8, false),
                Field::new("labels", DataType::Utf8, false),
            ])),
        }
    }

    fn batch(&self, filters: &[Expr]) -> Result<RecordBatch, DataFusionError> {
        let (start_ns, end_ns) = time_bounds(filters);
        let (start, end) = (start_ns.div_euclid(1_000_000), end_ns.div_euclid(1_000_000));
        let matcher = match metric_filter(filters) {
            Some(name) => Matcher::Equal("__name__".into(), name),
            None => Matcher::regex("__name__", ".+", false)
                .map_err(|e| DataFusionError::External(Box::new(e)))?,
        };
        let ext = |e: carbonio_collector::store::StoreError| DataFusionError::External(Box::new(e));
        let (mut names, mut labels, mut times, mut values) = (vec![], vec![], vec![], vec![]);
        let json = |l: &carbonio_collector::relabel::Labels| {
            let rest: std::collections::BTreeMap<&String, &String> =
                l.iter().filter(|(k, _)| k.as_str() != "__name__").collect();
            serde_json::to_string(&rest).unwrap_or_default()
        };
        if self.with_samples {
            let selected = self.metrics.select(&[matcher], start, end).map_err(ext)?;
            let total: usize = selected.iter().map(|(_, s)| s.len()).sum();
            if total > MAX_SCAN_SAMPLES {
                return Err(DataFusionError::ResourcesExhausted(format!(
                    "samples scan would read {total} samples; narrow it with a timestamp range or metric = '…'"
                )));
            }
            for (l, points) in selected {
                let (name, lj) = (l.get("__name__").cloned().unwrap_or_default(), json(&l));
                for (t, v) in points {
                    names.push(name.clone());
                    labels.push(lj.clone());
                    times.push(t);
                    values.push(v);
                }
            }
        } else {
            for l in self.metrics.series(&[matcher], start, end).map_err(ext)? {
                names.push(l.get("__name__").cloned().unwrap_or_default());
                labels.push(json(&l));
            }
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(names)),
            Arc::new(StringArray::from(labels)),
        ];
        if self.with_samples {
            columns.push(Arc::new(
                TimestampMillisecondArray::from(times).with_timezone("UTC"),
            ));
            columns.push(Arc::new(Float64Array::from(values)));
        }
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

#[async_trait]
impl TableProvider for MetricsTable {
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
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let this = self.clone();
        let filters = filters.to_vec();
        let batch = tokio::task::spawn_blocking(move || this.batch(&filters))
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))??;
        MemorySourceConfig::try_new_exec(&[vec![batch]], self.schema.clone(), projection.cloned())
            .map(|e| e as Arc<dyn ExecutionPlan>)
    }
}

/// The metric name of a `metric = '…'` filter, if there is one.
fn metric_filter(filters: &[Expr]) -> Option<String> {
    filters.iter().find_map(|f| match f {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => match (left.as_ref(), right.as_ref()) {
            (Expr::Column(c), Expr::Literal(ScalarValue::Utf8(Some(v)), _))
            | (Expr::Literal(ScalarValue::Utf8(Some(v)), _), Expr::Column(c))
                if c.name == "metric" =>
            {
                Some(v.clone())
            }
            _ => None,
        },
        _ => None,
    })
}
