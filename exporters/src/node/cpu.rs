use super::{CollectError, NodeConfig};
use crate::exposition::Family;
use crate::procfs::{clock_ticks, parse_num, read_string};

const MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

pub fn collect(cfg: &NodeConfig, out: &mut Vec<Family>) -> Result<(), CollectError> {
    let path = cfg.proc_root.join("stat");
    let text = read_string(&path)?;
    let ticks = clock_ticks();
    let mut seconds = Family::counter(
        "node_cpu_seconds_total",
        "Seconds the CPUs spent in each mode.",
    );
    let mut guest = Family::counter(
        "node_cpu_guest_seconds_total",
        "Seconds the CPUs spent in guests (VMs) for each mode.",
    );
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let Some(cpu) = it.next().and_then(|c| c.strip_prefix("cpu")) else {
            continue;
        };
        if cpu.is_empty() {
            continue; // the aggregate line
        }
        let values: Vec<f64> = it
            .map(|v| parse_num::<f64>(&path, v))
            .collect::<Result<_, _>>()?;
        for (mode, v) in MODES.iter().zip(&values) {
            seconds.add(&[("cpu", cpu), ("mode", mode)], v / ticks);
        }
        if let (Some(g), Some(gn)) = (values.get(8), values.get(9)) {
            guest.add(&[("cpu", cpu), ("mode", "user")], g / ticks);
            guest.add(&[("cpu", cpu), ("mode", "nice")], gn / ticks);
        }
    }
    out.push(seconds);
    out.push(guest);
    Ok(())
}
