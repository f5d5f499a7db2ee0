use super::{CollectError, NodeConfig};
use crate::exposition::Family;
use crate::procfs::read_string;
use std::collections::BTreeMap;

pub fn collect(cfg: &NodeConfig, out: &mut Vec<Family>) -> Result<(), CollectError> {
    let text = read_string(&cfg.proc_root.join("net/arp"))?;
    let mut per_device: BTreeMap<&str, u64> = BTreeMap::new();
    for line in text.lines().skip(1) {
        if let Some(dev) = line.split_whitespace().nth(5) {
            *per_device.entry(dev).or_default() += 1;
        }
    }
    let mut fam = Family::gauge("node_arp_entries", "ARP entries by device");
    for (dev, n) in per_device {
        fam.add(&[("device", dev)], n as f64);
    }
    out.push(fam);
    Ok(())
}
