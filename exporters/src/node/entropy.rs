use super::{CollectError, NodeConfig};
use crate::exposition::Family;
use crate::procfs::read_u64;

pub fn collect(cfg: &NodeConfig, out: &mut Vec<Family>) -> Result<(), CollectError> {
    let dir = cfg.proc_root.join("sys/kernel/random");
    let avail = read_u64(&dir.join("entropy_avail"))?;
    out.push(
        Family::gauge("node_entropy_available_bits", "Bits of available entropy.")
            .with(&[], avail as f64),
    );
    let pool = read_u64(&dir.join("poolsize"))?;
    out.push(
        Family::gauge("node_entropy_pool_size_bits", "Bits of entropy pool.")
            .with(&[], pool as f64),
    );
    Ok(())
}
