//! The node exporter (port 9100): node_exporter 1.5's default Linux
//! collectors, one module per collector, same family names, types and labels.

mod arp;
mod conntrack;
mod cpu;
mod diskstats;
mod entropy;
mod filefd;
mod filesystem;
mod loadavg;
mod meminfo;
mod netclass;
mod netdev;
mod netstat;
mod os;
mod pressure;
mod selinux;
mod sockstat;
mod softnet;
mod stat;
mod textfile;
mod time;
mod timex;
mod udp_queues;
mod uname;
mod vmstat;

use crate::exposition::Family;
use crate::procfs::ReadError;
use crate::serve::scrape_bookkeeping;
use crate::Exporter;
use regex::Regex;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("{0}")]
    Other(String),
}

type CollectFn = fn(&NodeConfig, &mut Vec<Family>) -> Result<(), CollectError>;

/// Every collector, in node_exporter's naming. All are enabled by default.
pub const COLLECTORS: &[(&str, CollectFn)] = &[
    ("arp", arp::collect),
    ("conntrack", conntrack::collect),
    ("cpu", cpu::collect),
    ("diskstats", diskstats::collect),
    ("entropy", entropy::collect),
    ("filefd", filefd::collect),
    ("filesystem", filesystem::collect),
    ("loadavg", loadavg::collect),
    ("meminfo", meminfo::collect),
    ("netclass", netclass::collect),
    ("netdev", netdev::collect),
    ("netstat", netstat::collect),
    ("os", os::collect),
    ("pressure", pressure::collect),
    ("selinux", selinux::collect),
    ("sockstat", sockstat::collect),
    ("softnet", softnet::collect),
    ("stat", stat::collect),
    ("textfile", textfile::collect),
    ("time", time::collect),
    ("timex", timex::collect),
    ("udp_queues", udp_queues::collect),
    ("uname", uname::collect),
    ("vmstat", vmstat::collect),
];

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub proc_root: PathBuf,
    pub sys_root: PathBuf,
    pub root_fs: PathBuf,
    pub udev_data: PathBuf,
    pub textfile_dir: Option<PathBuf>,
    pub fs_mount_points_exclude: Regex,
    pub fs_types_exclude: Regex,
    pub disk_devices_exclude: Regex,
    pub netdev_device_exclude: Regex,
    pub netstat_fields: FieldFilter,
    pub vmstat_fields: FieldFilter,
    pub enabled: Vec<&'static str>,
}

/// Debian's node_exporter default (wider than upstream's: also /run, /mnt, /media).
pub const DEFAULT_MOUNT_POINTS_EXCLUDE: &str =
    "^/(dev|proc|run|sys|mnt|media|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)";
/// Debian's node_exporter default.
pub const DEFAULT_NETDEV_EXCLUDE: &str = "^lo$";
pub const DEFAULT_FS_TYPES_EXCLUDE: &str = "^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$";
pub const DEFAULT_DISK_EXCLUDE: &str = "^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\\d+n\\d+p)\\d+$";
pub const DEFAULT_NETSTAT_FIELDS: &str = "^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts)|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$";
pub const DEFAULT_VMSTAT_FIELDS: &str = "^(oom_kill|pgpg|pswp|pg.*fault).*";

impl Default for NodeConfig {
    fn default() -> Self {
        let re = |s: &str| Regex::new(s).unwrap_or_else(|_| unreachable!("built-in regex"));
        NodeConfig {
            proc_root: "/proc".into(),
            sys_root: "/sys".into(),
            root_fs: "/".into(),
            udev_data: "/run/udev/data".into(),
            textfile_dir: None,
            fs_mount_points_exclude: re(DEFAULT_MOUNT_POINTS_EXCLUDE),
            fs_types_exclude: re(DEFAULT_FS_TYPES_EXCLUDE),
            disk_devices_exclude: re(DEFAULT_DISK_EXCLUDE),
            netdev_device_exclude: re(DEFAULT_NETDEV_EXCLUDE),
            netstat_fields: FieldFilter::new(re(DEFAULT_NETSTAT_FIELDS)),
            vmstat_fields: FieldFilter::new(re(DEFAULT_VMSTAT_FIELDS)),
            enabled: COLLECTORS.iter().map(|(n, _)| *n).collect(),
        }
    }
}

/// A field-name regex whose answers are remembered: the kernel's field
/// names never change, so each is matched once instead of on every scrape.
#[derive(Debug)]
pub struct FieldFilter {
    re: Regex,
    memo: Mutex<HashMap<String, bool>>,
}

impl FieldFilter {
    pub fn new(re: Regex) -> Self {
        FieldFilter {
            re,
            memo: Mutex::new(HashMap::new()),
        }
    }

    pub fn is_match(&self, field: &str) -> bool {
        let Ok(mut memo) = self.memo.lock() else {
            return self.re.is_match(field);
        };
        if let Some(hit) = memo.get(field) {
            return *hit;
        }
        let hit = self.re.is_match(field);
        // Bounded, in case a fixture or odd kernel invents endless names.
        if memo.len() < 4096 {
            memo.insert(field.to_string(), hit);
        }
        hit
    }
}

impl Clone for FieldFilter {
    fn clone(&self) -> Self {
        FieldFilter::new(self.re.clone())
    }
}

pub struct NodeExporter {
    config: NodeConfig,
}

impl NodeExporter {
    pub fn new(config: NodeConfig) -> Self {
        NodeExporter { config }
    }
}

impl Exporter for NodeExporter {
    fn build_info_name(&self) -> &'static str {
        "node_exporter"
    }
    fn title(&self) -> &'static str {
        "Carbonio Monitoring node exporter"
    }
    fn gather(&self) -> Vec<Family> {
        let mut work: Vec<&(&str, CollectFn)> = COLLECTORS
            .iter()
            .filter(|(name, _)| self.config.enabled.contains(name))
            .collect();
        // The sysfs-heavy collectors go first so both workers finish together.
        work.sort_by_key(|(name, _)| !SLOW_COLLECTORS.contains(name));
        let next = AtomicUsize::new(0);
        let slots: Vec<Mutex<Option<Collected>>> = work.iter().map(|_| Mutex::new(None)).collect();
        let worker = || loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some((name, collect)) = work.get(i) else {
                break;
            };
            let start = Instant::now();
            let mut families = Vec::new();
            let ok = match collect(&self.config, &mut families) {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!(collector = name, error = %e, "collector failed");
                    false
                }
            };
            if let Ok(mut slot) = slots[i].lock() {
                *slot = Some((families, ok, start.elapsed().as_secs_f64()));
            }
        };
        // Two workers, like node_exporter's concurrent collectors but bounded.
        std::thread::scope(|scope| {
            scope.spawn(worker);
            worker();
        });
        let mut out = Vec::with_capacity(256);
        let mut results = Vec::with_capacity(work.len());
        for ((name, _), slot) in work.iter().zip(slots) {
            let Ok(Some((mut families, ok, seconds))) = slot.into_inner() else {
                results.push((*name, false, 0.0));
                continue;
            };
            // A failed collector may have produced partial output; keep it, as node_exporter does.
            out.append(&mut families);
            results.push((*name, ok, seconds));
        }
        out.extend(scrape_bookkeeping("node", &results));
        out
    }
}

type Collected = (Vec<Family>, bool, f64);

const SLOW_COLLECTORS: [&str; 2] = ["netclass", "netstat"];

/// Splits whitespace-separated "key value" files such as /proc/vmstat.
pub(crate) fn key_values(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines().filter_map(|l| {
        let mut it = l.split_whitespace();
        Some((it.next()?, it.next()?))
    })
}
