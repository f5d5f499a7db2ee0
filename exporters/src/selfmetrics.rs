//! The exporter's own `process_*` families (as client_golang's process
//! collector names them) and `<prefix>_build_info`.

use crate::exposition::Family;
use crate::procfs;
use std::path::Path;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn build_info(prefix: &str) -> Family {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    Family::gauge(
        format!("{prefix}_build_info"),
        format!("A metric with a constant '1' value labeled by version, revision, branch, goversion from which {prefix} was built, and the goos and goarch for the build."),
    )
    .with(
        &[
            ("branch", ""),
            ("goarch", arch),
            ("goos", std::env::consts::OS),
            ("goversion", "rust"),
            ("revision", ""),
            ("version", VERSION),
        ],
        1.0,
    )
}

/// `process_*` families for the current process; empty if /proc is unreadable.
pub fn process_families() -> Vec<Family> {
    let proc_root = Path::new("/proc");
    let me = proc_root.join("self");
    let Ok(stat) = procfs::read_string(&me.join("stat"))
        .and_then(|t| procfs::parse_stat(&me.join("stat"), &t))
    else {
        return Vec::new();
    };
    let ticks = procfs::clock_ticks();
    let mut out = vec![
        Family::counter(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
        )
        .with(&[], (stat.utime as f64 + stat.stime as f64) / ticks),
        Family::gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
        )
        .with(&[], stat.rss as f64 * procfs::page_size() as f64),
        Family::gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
        )
        .with(&[], stat.vsize as f64),
    ];
    // Boot time never changes; reading /proc/stat each scrape is costly.
    static BOOT_TIME: std::sync::OnceLock<Option<f64>> = std::sync::OnceLock::new();
    if let Some(bt) = *BOOT_TIME.get_or_init(|| procfs::boot_time(proc_root).ok()) {
        out.push(
            Family::gauge(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
            )
            .with(&[], bt + stat.starttime as f64 / ticks),
        );
    }
    if let Ok(n) = procfs::count_fds(&me.join("fd")) {
        out.push(
            Family::gauge("process_open_fds", "Number of open file descriptors.")
                .with(&[], n as f64),
        );
    }
    if let Ok(limits) = procfs::read_string(&me.join("limits")) {
        let max = procfs::parse_max_fds(&limits).map_or(f64::INFINITY, |v| v as f64);
        out.push(
            Family::gauge(
                "process_max_fds",
                "Maximum number of open file descriptors.",
            )
            .with(&[], max),
        );
        let vmax = limits
            .lines()
            .find(|l| l.starts_with("Max address space"))
            .and_then(|l| l["Max address space".len()..].split_whitespace().next())
            .map_or(-1.0, |v| v.parse::<f64>().unwrap_or(-1.0));
        // client_golang reports "unlimited" as -1 (uint max cast), keep the same.
        out.push(
            Family::gauge(
                "process_virtual_memory_max_bytes",
                "Maximum amount of virtual memory available in bytes.",
            )
            .with(
                &[],
                if vmax < 0.0 {
                    1.8446744073709552e19
                } else {
                    vmax
                },
            ),
        );
    }
    out
}
