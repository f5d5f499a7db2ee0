//! Carbonio Monitoring query service: PromQL over the store (`promql`), the
//! Prometheus HTTP API and its authentication (`api`, `auth`), the `logs`
//! table for DataFusion (`logs_table`), and the query role's view of a data
//! directory (`source`) or of several collectors and their bucket
//! (`fleet`), rules and alerting (`rules`), the web UI (`ui`). This crate
//! is the only one that depends on DataFusion.

pub mod api;
pub mod auth;
pub mod fleet;
pub mod logs;
#[cfg(feature = "sql")]
pub mod logs_table;
pub mod promql;
pub mod rules;
pub mod source;
#[cfg(feature = "sql")]
pub mod sql;
pub mod ui;
