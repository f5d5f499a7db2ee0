use super::{CollectError, NodeConfig};
use crate::exposition::Family;

/// (sysfs file, metric suffix, counter?) of the numeric per-interface properties.
const PROPS: [(&str, &str, bool); 15] = [
    ("addr_assign_type", "address_assign_type", false),
    ("carrier", "carrier", false),
    ("carrier_changes", "carrier_changes_total", true),
    ("carrier_up_count", "carrier_up_changes_total", true),
    ("carrier_down_count", "carrier_down_changes_total", true),
    ("dev_id", "device_id", false),
    ("dormant", "dormant", false),
    ("flags", "flags", false),
    ("ifindex", "iface_id", false),
    ("iflink", "iface_link", false),
    ("link_mode", "iface_link_mode", false),
    ("mtu", "mtu_bytes", false),
    ("name_assign_type", "name_assign_type", false),
    ("netdev_group", "net_dev_group", false),
    ("type", "protocol_type", false),
];

pub fn collect(cfg: &NodeConfig, out: &mut Vec<Family>) -> Result<(), CollectError> {
    let dir = cfg.sys_root.join("class/net");
    let devices = crate::procfs::list_dir(&dir)?;
    let mut fams: Vec<Family> = PROPS
        .iter()
        .map(|(_, suffix, counter)| {
            let name = format!("node_network_{suffix}");
            let help = format!("Network device property: {suffix}");
            if *counter {
                Family::counter(name, help)
            } else {
                Family::gauge(name, help)
            }
        })
        .collect();
    let mut info = Family::gauge(
        "node_network_info",
        "Non-numeric data from /sys/class/net/<iface>, value is always 1.",
    );
    let mut speed = Family::gauge(
        "node_network_speed_bytes",
        "Network device property: speed_bytes",
    );
    let mut queue = Family::gauge(
        "node_network_transmit_queue_length",
        "Network device property: transmit_queue_length",
    );
    let mut up = Family::gauge(
        "node_network_up",
        "Value is 1 if operstate is 'up', 0 otherwise.",
    );
    for dev in &devices {
        let Ok(base) = crate::procfs::Dir::open(&dir.join(dev)) else {
            continue; // device vanished
        };
        let text = |f: &str| base.read_trimmed(f).unwrap_or_default();
        // Reading some attributes fails with EINVAL on virtual devices: skip them.
        let num = |f: &str| -> Option<f64> {
            let s = base.read_trimmed(f)?;
            match s.strip_prefix("0x") {
                Some(hex) => i64::from_str_radix(hex, 16).ok().map(|v| v as f64),
                None => s.parse().ok(),
            }
        };
        let operstate = text("operstate");
        info.add(
            &[
                ("device", dev),
                ("address", &text("address")),
                ("broadcast", &text("broadcast")),
                ("duplex", &text("duplex")),
                ("operstate", &operstate),
                ("ifalias", &text("ifalias")),
            ],
            1.0,
        );
        up.add(
            &[("device", dev)],
            if operstate == "up" { 1.0 } else { 0.0 },
        );
        for (fam, (file, _, _)) in fams.iter_mut().zip(PROPS.iter()) {
            if let Some(v) = num(file) {
                fam.add(&[("device", dev)], v);
            }
        }
        if let Some(v) = num("speed") {
            speed.add(&[("device", dev)], v * 1000.0 * 1000.0 / 8.0);
        }
        if let Some(v) = num("tx_queue_len") {
            queue.add(&[("device", dev)], v);
        }
    }
    out.extend(fams);
    out.extend([info, speed, queue, up]);
    Ok(())
}
