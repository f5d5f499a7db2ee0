//! End-to-end tests of the `carbonio-monitor` binary against real services.
//! One test binary (modules below) so it links once.

mod alerting;
mod browser;
mod collector;
mod config;
mod consul_sd;
mod crash;
mod dashboards;
mod default_rules;
mod deploy;
mod expo;
mod fleet;
mod harness;
mod ldap;
mod log_metrics;
mod log_search;
mod mesh;
mod nginx;
mod node;
mod object_store;
mod postgres;
mod process;
mod prometheus;
mod promql_compat;
mod query_api;
mod remote_write;
mod rules_compat;
mod scrape_tls;
mod services;
mod serving;
mod syslog;
mod tail;
mod zmstat;
