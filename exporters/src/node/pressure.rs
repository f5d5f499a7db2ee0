use super::{CollectError, NodeConfig};
use crate::exposition::Family;
use crate::procfs::{parse_num, read_string, ReadError};

pub fn collect(cfg: &NodeConfig, out: &mut Vec<Family>) -> Result<(), CollectError> {
    let specs: [(&str, &str, &str, &str); 5] = [
        (
            "cpu",
            "some",
            "node_pressure_cpu_waiting_seconds_total",
            "Total time in seconds that processes have waited for CPU time",
        ),
        (
            "io",
            "some",
            "node_pressure_io_waiting_seconds_total",
            "Total time in seconds that processes have waited due to IO congestion",
        ),
        (
            "io",
            "full",
            "node_pressure_io_stalled_seconds_total",
            "Total time in seconds no process could make progress due to IO congestion",
        ),
        (
            "memory",
            "some",
            "node_pressure_memory_waiting_seconds_total",
            "Total time in seconds that processes have waited for memory",
        ),
        (
            "memory",
            "full",
            "node_pressure_memory_stalled_seconds_total",
            "Total time in seconds no process could make progress due to memory congestion",
        ),
    ];
    for (resource, kind, name, help) in specs {
        let path = cfg.proc_root.join("pressure").join(resource);
        let text = read_string(&path)?;
        let line = text.lines().find(|l| l.starts_with(kind));
        // The cpu file has no "full" line before Linux 5.13; that is not an error.
        let Some(line) = line else { continue };
        let total = line
            .split_whitespace()
            .find_map(|f| f.strip_prefix("total="))
            .ok_or_else(|| ReadError::parse(&path, "no total= field"))?;
        let micros: f64 = parse_num(&path, total)?;
        out.push(Family::counter(name, help).with(&[], micros / 1e6));
    }
    Ok(())
}
