use super::{CollectError, NodeConfig};
use crate::exposition::Family;
use crate::procfs::{page_size, read_string};

pub fn collect(cfg: &NodeConfig, out: &mut Vec<Family>) -> Result<(), CollectError> {
    let page = page_size() as f64;
    let v4 = read_string(&cfg.proc_root.join("net/sockstat"))?;
    parse(&v4, page, out);
    // sockstat6 is absent when IPv6 is disabled.
    if let Ok(v6) = read_string(&cfg.proc_root.join("net/sockstat6")) {
        parse(&v6, page, out);
    }
    Ok(())
}

fn parse(text: &str, page: f64, out: &mut Vec<Family>) {
    for line in text.lines() {
        let Some((proto, rest)) = line.split_once(':') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        for kv in fields.chunks(2) {
            let [key, value] = kv else { continue };
            let Ok(v) = value.parse::<f64>() else {
                continue;
            };
            if proto == "sockets" {
                out.push(
                    Family::gauge(
                        format!("node_sockstat_sockets_{key}"),
                        "Number of IPv4 sockets in use.",
                    )
                    .with(&[], v),
                );
                continue;
            }
            out.push(
                Family::gauge(
                    format!("node_sockstat_{proto}_{key}"),
                    format!("Number of {proto} sockets in state {key}."),
                )
                .with(&[], v),
            );
            if *key == "mem" {
                out.push(
                    Family::gauge(
                        format!("node_sockstat_{proto}_mem_bytes"),
                        format!("Number of {proto} sockets in state mem_bytes."),
                    )
                    .with(&[], v * page),
                );
            }
        }
    }
}
