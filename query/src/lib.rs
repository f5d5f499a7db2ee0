//! Carbonio Monitoring query service: PromQL over the store, log search,
//! read-only SQL, rules and alerting, and the web UI.
//!
//! Built so far: the `logs` table for DataFusion (`logs_table`), pruned by
//! the log store's time manifest and including the unflushed head. The rest
//! is tracked in issues #6, #7 and #8; this crate is the only one that
//! depends on DataFusion, so nothing else pays for its build.

pub mod logs_table;

pub use carbonio_collector::NotBuilt;
