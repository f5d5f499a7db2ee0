//! The Carbonio dashboards of `dashboards/` (Grafana dashboard JSON),
//! embedded so the binary can serve and export them.

use anyhow::{Context, Result};
use std::path::Path;

/// (file name, dashboard JSON).
pub const DASHBOARDS: &[(&str, &str)] = &[
    (
        "carbonio-ldap.json",
        include_str!("../dashboards/carbonio-ldap.json"),
    ),
    (
        "carbonio-logs.json",
        include_str!("../dashboards/carbonio-logs.json"),
    ),
    (
        "carbonio-mailstore.json",
        include_str!("../dashboards/carbonio-mailstore.json"),
    ),
    (
        "carbonio-mesh.json",
        include_str!("../dashboards/carbonio-mesh.json"),
    ),
    (
        "carbonio-mta.json",
        include_str!("../dashboards/carbonio-mta.json"),
    ),
    (
        "carbonio-node.json",
        include_str!("../dashboards/carbonio-node.json"),
    ),
    (
        "carbonio-overview.json",
        include_str!("../dashboards/carbonio-overview.json"),
    ),
    (
        "carbonio-postgres.json",
        include_str!("../dashboards/carbonio-postgres.json"),
    ),
    (
        "carbonio-proxy.json",
        include_str!("../dashboards/carbonio-proxy.json"),
    ),
    (
        "carbonio-services.json",
        include_str!("../dashboards/carbonio-services.json"),
    ),
];

/// Writes every dashboard into `dir` (created if missing), for import into
/// Grafana (Dashboards → New → Import, with a Prometheus data source
/// pointing at the query service).
pub fn export(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, json) in DASHBOARDS {
        let path = dir.join(name);
        std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}
