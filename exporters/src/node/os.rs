use super::{CollectError, NodeConfig};
use crate::exposition::Family;
use crate::procfs::read_string;
use std::collections::HashMap;

const INFO_KEYS: [(&str, &str); 12] = [
    ("build_id", "BUILD_ID"),
    ("id", "ID"),
    ("id_like", "ID_LIKE"),
    ("image_id", "IMAGE_ID"),
    ("image_version", "IMAGE_VERSION"),
    ("name", "NAME"),
    ("pretty_name", "PRETTY_NAME"),
    ("variant", "VARIANT"),
    ("variant_id", "VARIANT_ID"),
    ("version", "VERSION"),
    ("version_codename", "VERSION_CODENAME"),
    ("version_id", "VERSION_ID"),
];

pub fn collect(cfg: &NodeConfig, out: &mut Vec<Family>) -> Result<(), CollectError> {
    let etc = cfg.root_fs.join("etc/os-release");
    let text =
        read_string(&etc).or_else(|_| read_string(&cfg.root_fs.join("usr/lib/os-release")))?;
    let vars = parse_os_release(&text);
    let get = |k: &str| vars.get(k).map(String::as_str).unwrap_or("");
    let labels: Vec<(&str, &str)> = INFO_KEYS.iter().map(|(l, k)| (*l, get(k))).collect();
    out.push(Family::gauge("node_os_info", "A metric with a constant '1' value labeled by build_id, id, id_like, image_id, image_version, name, pretty_name, variant, variant_id, version, version_codename, version_id.").with(&labels, 1.0));
    // VERSION_ID "12" or "22.04" → 12 / 22.04; anything else leaves the family out.
    let version = get("VERSION_ID");
    let numeric: String = version.split('.').take(2).collect::<Vec<_>>().join(".");
    if let Ok(v) = numeric.parse::<f64>() {
        out.push(
            Family::gauge(
                "node_os_version",
                "Metric containing the major.minor part of the OS version.",
            )
            .with(
                &[
                    ("id", get("ID")),
                    ("id_like", get("ID_LIKE")),
                    ("name", get("NAME")),
                ],
                v,
            ),
        );
    }
    Ok(())
}

fn parse_os_release(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_string(),
                v.trim().trim_matches('"').trim_matches('\'').to_string(),
            )
        })
        .collect()
}
