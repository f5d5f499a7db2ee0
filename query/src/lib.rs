//! Carbonio Monitoring query service: PromQL over the store, log search,
//! read-only SQL, rules and alerting, and the web UI.
//!
//! Not built yet (issues #6, #7 and #8); this crate is the only one that will
//! depend on DataFusion, so nothing else pays for its build.

pub use carbonio_collector::NotBuilt;
