//! Carbonio Monitoring query service: PromQL over the store (`promql`), the
//! Prometheus HTTP API and its authentication (`api`, `auth`), the `logs`
//! table for DataFusion (`logs_table`), and the query role's view of a data
//! directory (`source`). Rules, alerting and the UI are issues #7 and #8;
//! this crate is the only one that depends on DataFusion.

pub mod api;
pub mod auth;
pub mod logs;
pub mod logs_table;
pub mod promql;
pub mod source;

pub use carbonio_collector::NotBuilt;
