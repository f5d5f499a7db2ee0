use super::{CollectError, NodeConfig};
use crate::exposition::Family;
use crate::procfs::{parse_num, read_string};

pub fn collect(cfg: &NodeConfig, out: &mut Vec<Family>) -> Result<(), CollectError> {
    let path = cfg.proc_root.join("meminfo");
    let text = read_string(&path)?;
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let Some(value) = parts.next() else { continue };
        let mut v: f64 = parse_num(&path, value)?;
        // "Active(anon)" becomes "Active_anon", as node_exporter does.
        let key = key.replace('(', "_").replace(')', "");
        let name = if parts.next() == Some("kB") {
            v *= 1024.0;
            format!("node_memory_{key}_bytes")
        } else {
            format!("node_memory_{key}")
        };
        let help = format!(
            "Memory information field {}.",
            name.trim_start_matches("node_memory_")
        );
        out.push(Family::gauge(name, help).with(&[], v));
    }
    Ok(())
}
