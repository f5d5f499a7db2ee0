use super::{CollectError, NodeConfig};
use crate::exposition::Family;
use crate::procfs::read_string;
use std::collections::HashSet;
use std::ffi::CString;

pub fn collect(cfg: &NodeConfig, out: &mut Vec<Family>) -> Result<(), CollectError> {
    // node_exporter prefers PID 1's view of the mounts.
    let text = read_string(&cfg.proc_root.join("1/mounts"))
        .or_else(|_| read_string(&cfg.proc_root.join("mounts")))?;
    let mut size = Family::gauge("node_filesystem_size_bytes", "Filesystem size in bytes.");
    let mut free = Family::gauge(
        "node_filesystem_free_bytes",
        "Filesystem free space in bytes.",
    );
    let mut avail = Family::gauge(
        "node_filesystem_avail_bytes",
        "Filesystem space available to non-root users in bytes.",
    );
    let mut files = Family::gauge("node_filesystem_files", "Filesystem total file nodes.");
    let mut files_free = Family::gauge(
        "node_filesystem_files_free",
        "Filesystem total free file nodes.",
    );
    let mut readonly = Family::gauge("node_filesystem_readonly", "Filesystem read-only status.");
    let mut device_error = Family::gauge(
        "node_filesystem_device_error",
        "Whether an error occurred while getting statistics for the given device.",
    );
    let mut seen = HashSet::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        if parts.len() < 4 {
            continue;
        }
        let device = unescape(parts[0]);
        let mountpoint = unescape(parts[1]);
        let fstype = parts[2];
        if cfg.fs_mount_points_exclude.is_match(&mountpoint)
            || cfg.fs_types_exclude.is_match(fstype)
        {
            continue;
        }
        if !seen.insert((device.clone(), mountpoint.clone())) {
            continue;
        }
        let labels = [
            ("device", device.as_str()),
            ("fstype", fstype),
            ("mountpoint", mountpoint.as_str()),
        ];
        let ro = parts[3].split(',').any(|o| o == "ro");
        let full = cfg.root_fs.join(mountpoint.trim_start_matches('/'));
        match statfs(&full) {
            Some(st) => {
                device_error.add(&labels, 0.0);
                let bsize = st.f_bsize as f64;
                size.add(&labels, st.f_blocks as f64 * bsize);
                free.add(&labels, st.f_bfree as f64 * bsize);
                avail.add(&labels, st.f_bavail as f64 * bsize);
                files.add(&labels, st.f_files as f64);
                files_free.add(&labels, st.f_ffree as f64);
                readonly.add(&labels, if ro { 1.0 } else { 0.0 });
            }
            None => {
                tracing::debug!(mountpoint = %mountpoint, "statfs failed");
                device_error.add(&labels, 1.0);
            }
        }
    }
    out.extend([size, free, avail, files, files_free, readonly, device_error]);
    Ok(())
}

fn statfs(path: &std::path::Path) -> Option<libc::statfs> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statfs writes into a zeroed plain-data struct and reports failure by return code.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    (unsafe { libc::statfs(c.as_ptr(), &mut st) } == 0).then_some(st)
}

/// /proc/mounts escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}
