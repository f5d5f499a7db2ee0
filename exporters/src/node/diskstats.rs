use super::{CollectError, NodeConfig};
use crate::exposition::Family;
use crate::procfs::{parse_num, read_string};
use std::collections::HashMap;

/// (name, help, kind, scale) for /proc/diskstats fields 4.. in order.
/// Sectors are 512 bytes; times are milliseconds.
const FIELDS: [(&str, &str, bool, f64); 17] = [
    (
        "reads_completed_total",
        "The total number of reads completed successfully.",
        true,
        1.0,
    ),
    (
        "reads_merged_total",
        "The total number of reads merged.",
        true,
        1.0,
    ),
    (
        "read_bytes_total",
        "The total number of bytes read successfully.",
        true,
        512.0,
    ),
    (
        "read_time_seconds_total",
        "The total number of seconds spent by all reads.",
        true,
        0.001,
    ),
    (
        "writes_completed_total",
        "The total number of writes completed successfully.",
        true,
        1.0,
    ),
    (
        "writes_merged_total",
        "The number of writes merged.",
        true,
        1.0,
    ),
    (
        "written_bytes_total",
        "The total number of bytes written successfully.",
        true,
        512.0,
    ),
    (
        "write_time_seconds_total",
        "This is the total number of seconds spent by all writes.",
        true,
        0.001,
    ),
    (
        "io_now",
        "The number of I/Os currently in progress.",
        false,
        1.0,
    ),
    (
        "io_time_seconds_total",
        "Total seconds spent doing I/Os.",
        true,
        0.001,
    ),
    (
        "io_time_weighted_seconds_total",
        "The weighted # of seconds spent doing I/Os.",
        true,
        0.001,
    ),
    (
        "discards_completed_total",
        "The total number of discards completed successfully.",
        true,
        1.0,
    ),
    (
        "discards_merged_total",
        "The total number of discards merged.",
        true,
        1.0,
    ),
    (
        "discarded_sectors_total",
        "The total number of sectors discarded successfully.",
        true,
        1.0,
    ),
    (
        "discard_time_seconds_total",
        "This is the total number of seconds spent by all discards.",
        true,
        0.001,
    ),
    (
        "flush_requests_total",
        "The total number of flush requests completed successfully",
        true,
        1.0,
    ),
    (
        "flush_requests_time_seconds_total",
        "This is the total number of seconds spent by all flush requests.",
        true,
        0.001,
    ),
];

pub fn collect(cfg: &NodeConfig, out: &mut Vec<Family>) -> Result<(), CollectError> {
    let path = cfg.proc_root.join("diskstats");
    let text = read_string(&path)?;
    let mut fams: Vec<Family> = FIELDS
        .iter()
        .map(|(name, help, counter, _)| {
            let name = format!("node_disk_{name}");
            if *counter {
                Family::counter(name, *help)
            } else {
                Family::gauge(name, *help)
            }
        })
        .collect();
    let mut info = Family::gauge("node_disk_info", "Info of /sys/block/<block_device>.");
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        if parts.len() < 4 {
            continue;
        }
        let (major, minor, dev) = (parts[0], parts[1], parts[2]);
        if cfg.disk_devices_exclude.is_match(dev) {
            continue;
        }
        let udev = udev_properties(cfg, major, minor);
        let prop = |k: &str| udev.get(k).map(String::as_str).unwrap_or("");
        info.add(
            &[
                ("device", dev),
                ("major", major),
                ("minor", minor),
                ("path", prop("ID_PATH")),
                ("wwn", prop("ID_WWN")),
                ("model", prop("ID_MODEL")),
                ("serial", prop("ID_SERIAL_SHORT")),
                ("revision", prop("ID_REVISION")),
            ],
            1.0,
        );
        for (i, value) in parts[3..].iter().enumerate().take(FIELDS.len()) {
            let v: f64 = parse_num(&path, value)?;
            fams[i].add(&[("device", dev)], v * FIELDS[i].3);
        }
    }
    out.push(info);
    out.extend(fams);
    Ok(())
}

/// udev's `E:KEY=VALUE` lines for a block device; empty when udev data is absent.
fn udev_properties(cfg: &NodeConfig, major: &str, minor: &str) -> HashMap<String, String> {
    let path = cfg.udev_data.join(format!("b{major}:{minor}"));
    let Ok(text) = std::fs::read_to_string(path) else {
        return HashMap::new();
    };
    text.lines()
        .filter_map(|l| l.strip_prefix("E:"))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
