use super::{CollectError, NodeConfig};
use crate::exposition::Family;
use crate::procfs::{parse_num, read_string, read_trimmed, ReadError};

/// Column names of /proc/net/dev, receive then transmit, as node_exporter names them.
const RECEIVE: [&str; 8] = [
    "bytes",
    "packets",
    "errs",
    "drop",
    "fifo",
    "frame",
    "compressed",
    "multicast",
];
const TRANSMIT: [&str; 8] = [
    "bytes",
    "packets",
    "errs",
    "drop",
    "fifo",
    "colls",
    "carrier",
    "compressed",
];

/// One read of /proc/net/dev for all interfaces, plus `rx_nohandler` from
/// sysfs, which /proc/net/dev does not carry.
pub fn collect(cfg: &NodeConfig, out: &mut Vec<Family>) -> Result<(), CollectError> {
    let path = cfg.proc_root.join("net/dev");
    let text = read_string(&path)?;
    let mut fams: Vec<Family> = RECEIVE
        .iter()
        .map(|n| ("receive", n))
        .chain(TRANSMIT.iter().map(|n| ("transmit", n)))
        .map(|(dir, n)| {
            Family::counter(
                format!("node_network_{dir}_{n}_total"),
                format!("Network device statistic {dir}_{n}."),
            )
        })
        .collect();
    let mut nohandler = Family::counter(
        "node_network_receive_nohandler_total",
        "Network device statistic receive_nohandler.",
    );
    for line in text.lines().skip(2) {
        let Some((dev, values)) = line.split_once(':') else {
            return Err(ReadError::parse(&path, format!("no ':' in {line:?}")).into());
        };
        let dev = dev.trim();
        if cfg.netdev_device_exclude.is_match(dev) {
            continue;
        }
        let values: Vec<&str> = values.split_whitespace().collect();
        if values.len() != fams.len() {
            return Err(ReadError::parse(
                &path,
                format!("{dev}: {} columns, expected {}", values.len(), fams.len()),
            )
            .into());
        }
        for (fam, v) in fams.iter_mut().zip(values) {
            fam.add(&[("device", dev)], parse_num(&path, v)?);
        }
        let nh = cfg
            .sys_root
            .join("class/net")
            .join(dev)
            .join("statistics/rx_nohandler");
        if let Ok(v) = read_trimmed(&nh) {
            if let Ok(v) = v.parse::<f64>() {
                nohandler.add(&[("device", dev)], v);
            }
        }
    }
    out.extend(fams);
    out.push(nohandler);
    Ok(())
}
