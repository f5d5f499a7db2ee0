use super::{CollectError, NodeConfig};
use crate::exposition::Family;
use crate::procfs::{parse_num, read_string, ReadError};

pub fn collect(cfg: &NodeConfig, out: &mut Vec<Family>) -> Result<(), CollectError> {
    let path = cfg.proc_root.join("loadavg");
    let text = read_string(&path)?;
    let fields: Vec<&str> = text.split_whitespace().collect();
    if fields.len() < 3 {
        return Err(ReadError::parse(&path, "fewer than 3 fields").into());
    }
    for (i, minutes) in ["1", "5", "15"].iter().enumerate() {
        let v: f64 = parse_num(&path, fields[i])?;
        out.push(
            Family::gauge(
                format!("node_load{minutes}"),
                format!("{minutes}m load average."),
            )
            .with(&[], v),
        );
    }
    Ok(())
}
