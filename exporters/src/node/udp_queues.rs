use super::{CollectError, NodeConfig};
use crate::exposition::Family;
use crate::procfs::{read_string, ReadError};

pub fn collect(cfg: &NodeConfig, out: &mut Vec<Family>) -> Result<(), CollectError> {
    let mut fam = Family::gauge(
        "node_udp_queues",
        "Number of allocated memory in the kernel for UDP datagrams in bytes.",
    );
    for (file, ip) in [("net/udp", "v4"), ("net/udp6", "v6")] {
        let path = cfg.proc_root.join(file);
        let text = match read_string(&path) {
            Ok(t) => t,
            Err(e) if e.is_not_found() && ip == "v6" => continue, // IPv6 disabled
            Err(e) => return Err(e.into()),
        };
        let (mut tx, mut rx) = (0u64, 0u64);
        for line in text.lines().skip(1) {
            let Some(queues) = line.split_whitespace().nth(4) else {
                continue;
            };
            let (t, r) = queues
                .split_once(':')
                .ok_or_else(|| ReadError::parse(&path, format!("bad queue field {queues:?}")))?;
            tx +=
                u64::from_str_radix(t, 16).map_err(|_| ReadError::parse(&path, "bad tx_queue"))?;
            rx +=
                u64::from_str_radix(r, 16).map_err(|_| ReadError::parse(&path, "bad rx_queue"))?;
        }
        fam.add(&[("queue", "tx"), ("ip", ip)], tx as f64);
        fam.add(&[("queue", "rx"), ("ip", ip)], rx as f64);
    }
    out.push(fam);
    Ok(())
}
