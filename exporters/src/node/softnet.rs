use super::{CollectError, NodeConfig};
use crate::exposition::Family;
use crate::procfs::{read_string, ReadError};

pub fn collect(cfg: &NodeConfig, out: &mut Vec<Family>) -> Result<(), CollectError> {
    let path = cfg.proc_root.join("net/softnet_stat");
    let text = read_string(&path)?;
    let mut processed = Family::counter(
        "node_softnet_processed_total",
        "Number of processed packets",
    );
    let mut dropped = Family::counter("node_softnet_dropped_total", "Number of dropped packets");
    let mut squeezed = Family::counter(
        "node_softnet_times_squeezed_total",
        "Number of times processing packets ran out of quota",
    );
    for (cpu, line) in text.lines().enumerate() {
        let f: Vec<u64> = line
            .split_whitespace()
            .map(|v| u64::from_str_radix(v, 16))
            .collect::<Result<_, _>>()
            .map_err(|_| ReadError::parse(&path, format!("bad line {}", cpu + 1)))?;
        if f.len() < 3 {
            return Err(ReadError::parse(
                &path,
                format!("line {} has {} fields", cpu + 1, f.len()),
            )
            .into());
        }
        let cpu = cpu.to_string();
        processed.add(&[("cpu", &cpu)], f[0] as f64);
        dropped.add(&[("cpu", &cpu)], f[1] as f64);
        squeezed.add(&[("cpu", &cpu)], f[2] as f64);
    }
    out.extend([processed, dropped, squeezed]);
    Ok(())
}
