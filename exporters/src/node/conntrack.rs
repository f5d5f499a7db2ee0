use super::{CollectError, NodeConfig};
use crate::exposition::Family;
use crate::procfs::{read_string, read_u64, ReadError};

const STATS: [(&str, &str); 8] = [
    ("found", "Number of searched entries which were successful."),
    ("invalid", "Number of packets seen which can not be tracked."),
    ("ignore", "Number of packets seen which are already connected to a conntrack entry."),
    ("insert", "Number of entries inserted into the list."),
    ("insert_failed", "Number of entries for which list insertion was attempted but failed."),
    ("drop", "Number of packets dropped due to conntrack failure."),
    ("early_drop", "Number of dropped conntrack entries to make room for new ones, if maximum table size was reached."),
    ("search_restart", "Number of conntrack table lookups which had to be restarted due to hashtable resizes."),
];

pub fn collect(cfg: &NodeConfig, out: &mut Vec<Family>) -> Result<(), CollectError> {
    let dir = cfg.proc_root.join("sys/net/netfilter");
    let count = read_u64(&dir.join("nf_conntrack_count"))?;
    let max = read_u64(&dir.join("nf_conntrack_max"))?;
    out.push(
        Family::gauge(
            "node_nf_conntrack_entries",
            "Number of currently allocated flow entries for connection tracking.",
        )
        .with(&[], count as f64),
    );
    out.push(
        Family::gauge(
            "node_nf_conntrack_entries_limit",
            "Maximum size of connection tracking table.",
        )
        .with(&[], max as f64),
    );

    let path = cfg.proc_root.join("net/stat/nf_conntrack");
    let text = read_string(&path)?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    let mut sums = vec![0u64; header.len()];
    for line in lines {
        for (i, v) in line.split_whitespace().enumerate() {
            let n = u64::from_str_radix(v, 16)
                .map_err(|_| ReadError::parse(&path, format!("bad hex {v:?}")))?;
            if let Some(s) = sums.get_mut(i) {
                *s += n;
            }
        }
    }
    for (stat, help) in STATS {
        if let Some(i) = header.iter().position(|h| *h == stat) {
            out.push(
                Family::gauge(format!("node_nf_conntrack_stat_{stat}"), help)
                    .with(&[], sums[i] as f64),
            );
        }
    }
    Ok(())
}
