//! Prometheus exporters for Carbonio nodes.
//!
//! Each exporter gathers its families on every scrape (no background polling)
//! and hands them to [`serve`], which negotiates the exposition format,
//! compresses, and applies the exporter-toolkit style web config (TLS, basic auth).

pub mod exposition;
pub mod ldap;
pub mod mesh;
pub mod nginx;
pub mod node;
pub mod postgres;
pub mod process;
pub mod procfs;
pub mod selfmetrics;
pub mod serve;
pub mod textparse;
pub mod tls;
pub mod webconfig;

pub use exposition::{Family, Kind, Sample};

/// Something `serve` can scrape. `gather` runs on a blocking thread.
pub trait Exporter: Send + Sync + 'static {
    /// Metric name prefix used for `<prefix>_build_info` and scrape bookkeeping.
    fn build_info_name(&self) -> &'static str;
    /// Collects all families for one scrape.
    fn gather(&self) -> Vec<Family>;
    /// One-line description for the landing page.
    fn title(&self) -> &'static str;
    /// `<name>_build_info`, labelled as the upstream exporter labels it.
    fn build_info(&self) -> Family {
        selfmetrics::build_info(self.build_info_name())
    }
}
