use super::{CollectError, NodeConfig};
use crate::exposition::Family;
use crate::procfs::read_string;

/// Legacy (non-detailed) names as node_exporter derives them from the
/// kernel's per-interface statistics.
const RECEIVE: [(&str, &[&str]); 9] = [
    ("bytes", &["rx_bytes"]),
    ("packets", &["rx_packets"]),
    ("errs", &["rx_errors"]),
    ("drop", &["rx_dropped", "rx_missed_errors"]),
    ("fifo", &["rx_fifo_errors"]),
    ("frame", &["rx_frame_errors"]),
    ("compressed", &["rx_compressed"]),
    ("multicast", &["multicast"]),
    ("nohandler", &["rx_nohandler"]),
];
const TRANSMIT: [(&str, &[&str]); 8] = [
    ("bytes", &["tx_bytes"]),
    ("packets", &["tx_packets"]),
    ("errs", &["tx_errors"]),
    ("drop", &["tx_dropped"]),
    ("fifo", &["tx_fifo_errors"]),
    ("colls", &["collisions"]),
    ("carrier", &["tx_carrier_errors"]),
    ("compressed", &["tx_compressed"]),
];

pub fn collect(cfg: &NodeConfig, out: &mut Vec<Family>) -> Result<(), CollectError> {
    let dir = cfg.sys_root.join("class/net");
    let devices = crate::procfs::list_dir(&dir)?;
    let mut fams: Vec<(String, Family, &[&str])> = Vec::new();
    for (dir_name, list) in [("receive", &RECEIVE[..]), ("transmit", &TRANSMIT[..])] {
        for (name, sources) in list {
            let metric = format!("node_network_{dir_name}_{name}_total");
            let help = format!("Network device statistic {dir_name}_{name}.");
            fams.push((metric.clone(), Family::counter(metric, help), sources));
        }
    }
    for dev in &devices {
        if cfg.netdev_device_exclude.is_match(dev) {
            continue;
        }
        let stats = dir.join(dev).join("statistics");
        if !stats.is_dir() {
            continue;
        }
        for (_, fam, sources) in fams.iter_mut() {
            let mut total = 0u64;
            let mut any = false;
            for s in sources.iter() {
                if let Ok(v) = read_string(&stats.join(s)) {
                    if let Ok(n) = v.trim().parse::<u64>() {
                        total += n;
                        any = true;
                    }
                }
            }
            if any {
                fam.add(&[("device", dev)], total as f64);
            }
        }
    }
    out.extend(fams.into_iter().map(|(_, f, _)| f));
    Ok(())
}
