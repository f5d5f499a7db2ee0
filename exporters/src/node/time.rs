use super::{CollectError, NodeConfig};
use crate::exposition::Family;
use crate::procfs::read_trimmed;
use std::time::{SystemTime, UNIX_EPOCH};

pub fn collect(cfg: &NodeConfig, out: &mut Vec<Family>) -> Result<(), CollectError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| CollectError::Other(e.to_string()))?;
    out.push(
        Family::gauge(
            "node_time_seconds",
            "System time in seconds since epoch (1970).",
        )
        .with(&[], now.as_secs_f64()),
    );
    let (zone, offset) = local_zone(now.as_secs() as libc::time_t);
    out.push(
        Family::gauge(
            "node_time_zone_offset_seconds",
            "System time zone offset in seconds.",
        )
        .with(&[("time_zone", &zone)], offset as f64),
    );
    let mut available = Family::gauge(
        "node_time_clocksource_available_info",
        "Available clocksources read from '/sys/devices/system/clocksource'.",
    );
    let mut current = Family::gauge(
        "node_time_clocksource_current_info",
        "Current clocksource read from '/sys/devices/system/clocksource'.",
    );
    let dir = cfg.sys_root.join("devices/system/clocksource");
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        names.sort();
        for name in names {
            let Some(device) = name.strip_prefix("clocksource") else {
                continue;
            };
            let base = dir.join(&name);
            for cs in read_trimmed(&base.join("available_clocksource"))
                .unwrap_or_default()
                .split_whitespace()
            {
                available.add(&[("device", device), ("clocksource", cs)], 1.0);
            }
            if let Ok(cs) = read_trimmed(&base.join("current_clocksource")) {
                current.add(&[("device", device), ("clocksource", &cs)], 1.0);
            }
        }
    }
    out.extend([available, current]);
    Ok(())
}

fn local_zone(t: libc::time_t) -> (String, i64) {
    // SAFETY: localtime_r fills a zeroed tm; tm_zone points into static tz data.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return ("UTC".into(), 0);
    }
    let zone = if tm.tm_zone.is_null() {
        String::new()
    } else {
        unsafe { std::ffi::CStr::from_ptr(tm.tm_zone) }
            .to_string_lossy()
            .into_owned()
    };
    (zone, tm.tm_gmtoff)
}
