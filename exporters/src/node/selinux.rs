use super::{CollectError, NodeConfig};
use crate::exposition::Family;
use crate::procfs::read_trimmed;

/// Reports only `node_selinux_enabled` unless selinuxfs is mounted.
pub fn collect(cfg: &NodeConfig, out: &mut Vec<Family>) -> Result<(), CollectError> {
    let enforce = cfg.sys_root.join("fs/selinux/enforce");
    let Ok(mode) = read_trimmed(&enforce) else {
        out.push(
            Family::gauge(
                "node_selinux_enabled",
                "SELinux is enabled, 1 is true, 0 is false",
            )
            .with(&[], 0.0),
        );
        return Ok(());
    };
    out.push(
        Family::gauge(
            "node_selinux_enabled",
            "SELinux is enabled, 1 is true, 0 is false",
        )
        .with(&[], 1.0),
    );
    out.push(
        Family::gauge(
            "node_selinux_current_mode",
            "SELinux current mode, 1 is enforcing, 0 is permissive",
        )
        .with(&[], if mode == "1" { 1.0 } else { 0.0 }),
    );
    Ok(())
}
