use super::{CollectError, NodeConfig};
use crate::exposition::Family;
use crate::procfs::{read_string, ReadError};
use std::path::Path;

pub fn collect(cfg: &NodeConfig, out: &mut Vec<Family>) -> Result<(), CollectError> {
    let mut stats: Vec<(String, String)> = Vec::new();
    for file in ["net/netstat", "net/snmp"] {
        let path = cfg.proc_root.join(file);
        paired_lines(&path, &read_string(&path)?, &mut stats)?;
    }
    // snmp6 is absent when IPv6 is disabled.
    if let Ok(text) = read_string(&cfg.proc_root.join("net/snmp6")) {
        for (key, value) in super::key_values(&text) {
            // "Ip6InOctets" -> ("Ip6", "InOctets"); "Udp6InErrors", "UdpLite6InErrors".
            if let Some(idx) = key.find('6') {
                stats.push((
                    format!("{}_{}", &key[..=idx], &key[idx + 1..]),
                    value.to_string(),
                ));
            }
        }
    }
    for (key, value) in stats {
        if !cfg.netstat_fields.is_match(&key) {
            continue;
        }
        let Ok(v) = value.parse::<f64>() else {
            continue;
        };
        let (proto, field) = key.split_once('_').unwrap_or((&key, ""));
        out.push(
            Family::untyped(
                format!("node_netstat_{key}"),
                format!("Statistic {proto}{field}."),
            )
            .with(&[], v),
        );
    }
    Ok(())
}

/// /proc/net/{netstat,snmp} come as header/value line pairs per protocol.
fn paired_lines(path: &Path, text: &str, out: &mut Vec<(String, String)>) -> Result<(), ReadError> {
    let lines: Vec<&str> = text.lines().collect();
    for pair in lines.chunks(2) {
        let [names, values] = pair else { continue };
        let (proto, names) = names
            .split_once(':')
            .ok_or_else(|| ReadError::parse(path, "missing ':'"))?;
        let (_, values) = values
            .split_once(':')
            .ok_or_else(|| ReadError::parse(path, "missing ':'"))?;
        let names: Vec<&str> = names.split_whitespace().collect();
        let values: Vec<&str> = values.split_whitespace().collect();
        if names.len() != values.len() {
            return Err(ReadError::parse(
                path,
                format!("{proto}: {} names but {} values", names.len(), values.len()),
            ));
        }
        for (n, v) in names.iter().zip(values) {
            out.push((format!("{proto}_{n}"), v.to_string()));
        }
    }
    Ok(())
}
