use super::{key_values, CollectError, NodeConfig};
use crate::exposition::Family;
use crate::procfs::{parse_num, read_string};

pub fn collect(cfg: &NodeConfig, out: &mut Vec<Family>) -> Result<(), CollectError> {
    let path = cfg.proc_root.join("vmstat");
    let text = read_string(&path)?;
    for (key, value) in key_values(&text) {
        if !cfg.vmstat_fields.is_match(key) {
            continue;
        }
        let v: f64 = parse_num(&path, value)?;
        out.push(
            Family::untyped(
                format!("node_vmstat_{key}"),
                format!("/proc/vmstat information field {key}."),
            )
            .with(&[], v),
        );
    }
    Ok(())
}
