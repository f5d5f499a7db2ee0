use super::{CollectError, NodeConfig};
use crate::exposition::Family;
use crate::procfs::{parse_num, read_string, ReadError};

pub fn collect(cfg: &NodeConfig, out: &mut Vec<Family>) -> Result<(), CollectError> {
    let path = cfg.proc_root.join("sys/fs/file-nr");
    let text = read_string(&path)?;
    let f: Vec<&str> = text.split_whitespace().collect();
    if f.len() < 3 {
        return Err(ReadError::parse(&path, "expected 3 fields").into());
    }
    let allocated: f64 = parse_num(&path, f[0])?;
    let maximum: f64 = parse_num(&path, f[2])?;
    out.push(
        Family::gauge(
            "node_filefd_allocated",
            "File descriptor statistics: allocated.",
        )
        .with(&[], allocated),
    );
    out.push(
        Family::gauge(
            "node_filefd_maximum",
            "File descriptor statistics: maximum.",
        )
        .with(&[], maximum),
    );
    Ok(())
}
