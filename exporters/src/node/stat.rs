use super::{CollectError, NodeConfig};
use crate::exposition::Family;
use crate::procfs::{parse_num, read_string};

pub fn collect(cfg: &NodeConfig, out: &mut Vec<Family>) -> Result<(), CollectError> {
    let path = cfg.proc_root.join("stat");
    let text = read_string(&path)?;
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(key), Some(value)) = (it.next(), it.next()) else {
            continue;
        };
        let fam = match key {
            "intr" => Family::counter("node_intr_total", "Total number of interrupts serviced."),
            "ctxt" => Family::counter(
                "node_context_switches_total",
                "Total number of context switches.",
            ),
            "processes" => Family::counter("node_forks_total", "Total number of forks."),
            "btime" => Family::gauge("node_boot_time_seconds", "Node boot time, in unixtime."),
            "procs_running" => Family::gauge(
                "node_procs_running",
                "Number of processes in runnable state.",
            ),
            "procs_blocked" => Family::gauge(
                "node_procs_blocked",
                "Number of processes blocked waiting for I/O to complete.",
            ),
            _ => continue,
        };
        let v: f64 = parse_num(&path, value)?;
        out.push(fam.with(&[], v));
    }
    Ok(())
}
