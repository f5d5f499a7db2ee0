//! Carbonio Monitoring collector: scraping (`scrape`), syslog ingestion
//! (`syslog`), file tailing (`tail`) and the columnar store (`store`).
//!
//! Built so far: the configuration (`config`), relabeling (`relabel`),
//! target discovery (`discovery`), the exposition parser and one scrape with
//! its cache and staleness (`scrape`), the scrape manager (`manager`), the
//! role as one object with reload and maintenance (`service`), its HTTP
//! listener (`http`) and self-metrics (`selfmetrics`), OpenMetrics backfill
//! (`import`), the metric and log stores (`store`), and syslog over UDP, TCP
//! and TLS (`syslog`, records in `logs`), file tailing (`tail`) and the
//! directory watching both discovery and tailing use (`watch`).

pub mod config;
pub mod discovery;
pub mod duration;
pub mod fleet;
pub mod http;
pub mod import;
pub mod logmetrics;
pub mod logs;
pub mod manager;
pub mod relabel;
pub mod remote_write;
pub mod scrape;
pub mod selfmetrics;
pub mod service;
pub mod store;
pub mod syslog;
pub mod tail;
pub mod watch;
pub mod zmstat;
