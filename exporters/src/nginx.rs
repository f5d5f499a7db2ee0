//! The nginx exporter (port 9113): nginx `stub_status` as
//! nginx-prometheus-exporter exposes it.

pub mod accesslog;

use crate::exposition::Family;
use crate::{selfmetrics, Exporter};
use accesslog::AccessLog;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StubStatusError {
    #[error("stub_status line {line}: {msg}")]
    Parse { line: usize, msg: String },
}

/// The counters of one stub_status page.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StubStatus {
    pub active: u64,
    pub accepted: u64,
    pub handled: u64,
    pub requests: u64,
    pub reading: u64,
    pub writing: u64,
    pub waiting: u64,
}

/// Parses nginx's stub_status text:
/// ```text
/// Active connections: 1
/// server accepts handled requests
///  16 16 31
/// Reading: 0 Writing: 1 Waiting: 0
/// ```
pub fn parse_stub_status(text: &str) -> Result<StubStatus, StubStatusError> {
    let lines: Vec<&str> = text.lines().collect();
    let err = |line: usize, msg: &str| StubStatusError::Parse {
        line,
        msg: msg.to_string(),
    };
    let num = |line: usize, s: &str| {
        s.parse::<u64>()
            .map_err(|_| err(line, &format!("not a number: {s:?}")))
    };
    if lines.len() < 4 {
        return Err(err(lines.len() + 1, "expected 4 lines"));
    }
    let active = lines[0]
        .strip_prefix("Active connections:")
        .ok_or_else(|| err(1, "expected 'Active connections:'"))?;
    if lines[1].split_whitespace().collect::<Vec<_>>()
        != ["server", "accepts", "handled", "requests"]
    {
        return Err(err(2, "expected 'server accepts handled requests'"));
    }
    let counts: Vec<&str> = lines[2].split_whitespace().collect();
    let [accepted, handled, requests] = counts[..] else {
        return Err(err(3, "expected three numbers"));
    };
    let rw: Vec<&str> = lines[3].split_whitespace().collect();
    let ["Reading:", reading, "Writing:", writing, "Waiting:", waiting] = rw[..] else {
        return Err(err(4, "expected 'Reading: N Writing: N Waiting: N'"));
    };
    Ok(StubStatus {
        active: num(1, active.trim())?,
        accepted: num(3, accepted)?,
        handled: num(3, handled)?,
        requests: num(3, requests)?,
        reading: num(4, reading)?,
        writing: num(4, writing)?,
        waiting: num(4, waiting)?,
    })
}

pub struct NginxOptions {
    pub scrape_uri: String,
    pub timeout: Duration,
    /// Opt-in: an access log to count requests by status class from.
    pub access_log: Option<std::path::PathBuf>,
}

pub struct NginxExporter {
    opts: NginxOptions,
    agent: ureq::Agent,
    access_log: Option<AccessLog>,
}

impl NginxExporter {
    pub fn new(opts: NginxOptions) -> Self {
        // A kept-alive connection, as upstream's Go client does: a scrape adds
        // one request to nginx's counters but no connection.
        let agent = ureq::AgentBuilder::new()
            .timeout(opts.timeout)
            .max_idle_connections_per_host(1)
            .user_agent(concat!("carbonio-monitor/", env!("CARGO_PKG_VERSION")))
            .build();
        let access_log = opts.access_log.clone().map(AccessLog::new);
        NginxExporter {
            opts,
            agent,
            access_log,
        }
    }

    fn fetch(&self) -> Result<StubStatus, String> {
        let resp = self
            .agent
            .get(&self.opts.scrape_uri)
            .call()
            .map_err(|e| format!("fetching {}: {e}", self.opts.scrape_uri))?;
        let body = resp
            .into_string()
            .map_err(|e| format!("reading {}: {e}", self.opts.scrape_uri))?;
        parse_stub_status(&body).map_err(|e| format!("{}: {e}", self.opts.scrape_uri))
    }
}

impl Exporter for NginxExporter {
    fn build_info_name(&self) -> &'static str {
        "nginxexporter"
    }
    fn title(&self) -> &'static str {
        "Carbonio Monitoring nginx exporter"
    }
    fn build_info(&self) -> Family {
        Family::gauge(
            "nginxexporter_build_info",
            "A metric with a constant '1' value labeled by version, revision, branch, goversion from which nginxexporter was built, and the goos and goarch for the build.",
        )
        .with(
            &[
                ("arch", std::env::consts::ARCH),
                ("commit", ""),
                ("date", ""),
                ("dirty", "false"),
                ("go", "rust"),
                ("version", selfmetrics::VERSION),
            ],
            1.0,
        )
    }

    fn gather(&self) -> Vec<Family> {
        // The log is read before stub_status is fetched, so this scrape's own
        // request is counted by the next one, never half-way.
        let mut logged = self
            .access_log
            .as_ref()
            .map(AccessLog::collect)
            .unwrap_or_default();
        let up =
            |v: f64| Family::gauge("nginx_up", "Status of the last metric scrape").with(&[], v);
        let s = match self.fetch() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "nginx stub_status scrape failed");
                logged.push(up(0.0));
                return logged;
            }
        };
        let c = |name: &str, help: &str, v: u64| Family::counter(name, help).with(&[], v as f64);
        let g = |name: &str, help: &str, v: u64| Family::gauge(name, help).with(&[], v as f64);
        logged.extend([
            up(1.0),
            c(
                "nginx_connections_accepted",
                "Accepted client connections",
                s.accepted,
            ),
            g(
                "nginx_connections_active",
                "Active client connections",
                s.active,
            ),
            c(
                "nginx_connections_handled",
                "Handled client connections",
                s.handled,
            ),
            g(
                "nginx_connections_reading",
                "Connections where NGINX is reading the request header",
                s.reading,
            ),
            g(
                "nginx_connections_waiting",
                "Idle client connections",
                s.waiting,
            ),
            g(
                "nginx_connections_writing",
                "Connections where NGINX is writing the response back to the client",
                s.writing,
            ),
            c(
                "nginx_http_requests_total",
                "Total http requests",
                s.requests,
            ),
        ]);
        logged
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_stub_status() {
        let s = parse_stub_status("Active connections: 2 \nserver accepts handled requests\n 16 15 31 \nReading: 0 Writing: 1 Waiting: 1 \n").unwrap();
        assert_eq!(
            s,
            StubStatus {
                active: 2,
                accepted: 16,
                handled: 15,
                requests: 31,
                reading: 0,
                writing: 1,
                waiting: 1
            }
        );
    }

    #[test]
    fn garbage_is_a_positioned_error() {
        assert!(matches!(
            parse_stub_status("<html>"),
            Err(StubStatusError::Parse { line: 2, .. })
        ));
        let bad = "Active connections: x\nserver accepts handled requests\n 1 1 1\nReading: 0 Writing: 1 Waiting: 0\n";
        assert!(matches!(
            parse_stub_status(bad),
            Err(StubStatusError::Parse { line: 1, .. })
        ));
        let bad = "Active connections: 1\nserver accepts handled requests\n 1 1\nReading: 0 Writing: 1 Waiting: 0\n";
        assert!(matches!(
            parse_stub_status(bad),
            Err(StubStatusError::Parse { line: 3, .. })
        ));
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse_stub_status(&s);
        }
    }
}
