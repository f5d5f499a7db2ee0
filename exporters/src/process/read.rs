//! Reading one scan of /proc for the process exporter. A process that
//! vanishes mid-read is skipped; unreadable optional files count as partial errors.

use super::config::ProcAttrs;
use super::Counters;
use crate::procfs::{self, ReadError};
use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

/// First phase of a scan: what every process costs (its stat line).
pub struct ProcStub {
    pub pid: i32,
    pub stat: procfs::ProcStat,
}

/// Second phase, only for processes in a group.
pub struct ProcSample {
    pub start_ticks: u64,
    pub state: char,
    pub counters: Counters,
    pub resident: f64,
    pub virtual_: f64,
    pub swapped: f64,
    pub pss: f64,
    pub swap_pss: f64,
    pub open_fds: f64,
    pub max_fds: f64,
    pub num_threads: f64,
    pub start_time: f64,
}

pub struct ThreadSample {
    pub name: String,
    pub counters: Counters,
    pub wchan: String,
}

pub struct Stubs {
    pub procs: Vec<ProcStub>,
    pub procread_errors: u64,
}

/// Reads the stat line of every process.
pub fn scan_stats(proc_root: &Path) -> Result<Stubs, ReadError> {
    let mut out = Stubs {
        procs: Vec::new(),
        procread_errors: 0,
    };
    for pid in procfs::list_pids(proc_root)? {
        let path = proc_root.join(pid.to_string()).join("stat");
        match procfs::read_string(&path).and_then(|t| procfs::parse_stat(&path, &t)) {
            Ok(stat) => out.procs.push(ProcStub { pid, stat }),
            Err(e) if e.is_not_found() => {} // exited between listing and reading
            Err(e) => {
                tracing::debug!(pid, error = %e, "reading process failed");
                out.procread_errors += 1;
            }
        }
    }
    Ok(out)
}

/// What the matchers need, read once when a process is first seen (as
/// process-exporter does: a process keeps the group it matched first).
pub fn attrs(proc_root: &Path, stub: &ProcStub, start_time: f64) -> ProcAttrs {
    let dir = proc_root.join(stub.pid.to_string());
    let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
    let cmdline: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    let uid = procfs::read_string(&dir.join("status"))
        .ok()
        .and_then(|t| procfs::parse_status(&t).uid);
    ProcAttrs {
        pid: stub.pid,
        comm: stub.stat.comm.clone(),
        cmdline,
        username: uid.map(user_name).unwrap_or_default(),
        start_time,
    }
}

/// Reads the rest of a grouped process; returns the sample and its count
/// of unreadable optional files (partial errors).
pub fn details(
    proc_root: &Path,
    stub: &ProcStub,
    start_time: f64,
    smaps: bool,
) -> Result<(ProcSample, u64), ReadError> {
    let ticks = procfs::clock_ticks();
    let page = procfs::page_size() as f64;
    let stat = &stub.stat;
    let dir = procfs::Dir::open(&proc_root.join(stub.pid.to_string()))?;
    let status = procfs::parse_status(&dir.read("status")?);
    let mut partial = 0;
    let (read_bytes, write_bytes) = match dir.read("io") {
        Ok(t) => procfs::parse_io(&t),
        Err(_) => {
            partial += 1;
            (0, 0)
        }
    };
    let open_fds = match procfs::count_fds(&dir.path().join("fd")) {
        Ok(n) => n as f64,
        Err(_) => {
            partial += 1;
            0.0
        }
    };
    let max_fds = dir
        .read("limits")
        .ok()
        .and_then(|l| procfs::parse_max_fds(&l))
        .map_or(0.0, |v| v as f64);
    let (pss, swap_pss) = if smaps {
        match dir.read("smaps_rollup") {
            Ok(t) => smaps_rollup(&t),
            Err(e) if e.is_not_found() => (0.0, 0.0),
            Err(_) => {
                partial += 1;
                (0.0, 0.0)
            }
        }
    } else {
        (0.0, 0.0)
    };
    let sample = ProcSample {
        start_ticks: stat.starttime,
        state: stat.state,
        counters: counters(stat, &status, (read_bytes, write_bytes), ticks),
        resident: stat.rss as f64 * page,
        virtual_: stat.vsize as f64,
        swapped: status.vm_swap as f64,
        pss,
        swap_pss,
        open_fds,
        max_fds,
        num_threads: stat.num_threads as f64,
        start_time,
    };
    Ok((sample, partial))
}

/// Threads of one process; threads that vanish mid-read are skipped.
pub fn threads(root: &Path, pid: i32) -> Vec<ThreadSample> {
    let Ok(task) = procfs::Dir::open(&root.join(pid.to_string()).join("task")) else {
        return Vec::new();
    };
    let Ok(tids) = procfs::list_dir(task.path()) else {
        return Vec::new();
    };
    let ticks = procfs::clock_ticks();
    let mut out = Vec::with_capacity(tids.len());
    for tid in tids {
        let Ok(dir) = task.sub(&tid) else { continue };
        let stat_path = dir.path().join("stat");
        let Ok(stat) = dir
            .read("stat")
            .and_then(|t| procfs::parse_stat(&stat_path, &t))
        else {
            continue;
        };
        let status = dir
            .read("status")
            .map(|t| procfs::parse_status(&t))
            .unwrap_or_default();
        let (read_bytes, write_bytes) = dir
            .read("io")
            .map(|t| procfs::parse_io(&t))
            .unwrap_or((0, 0));
        let wchan = dir.read_trimmed("wchan").unwrap_or_default();
        out.push(ThreadSample {
            counters: counters(&stat, &status, (read_bytes, write_bytes), ticks),
            name: stat.comm,
            wchan: if wchan == "0" { String::new() } else { wchan },
        });
    }
    out
}

fn counters(
    stat: &procfs::ProcStat,
    status: &procfs::ProcStatus,
    io: (u64, u64),
    ticks: f64,
) -> Counters {
    Counters {
        cpu_user: stat.utime as f64 / ticks,
        cpu_system: stat.stime as f64 / ticks,
        read_bytes: io.0 as f64,
        write_bytes: io.1 as f64,
        major_faults: stat.majflt as f64,
        minor_faults: stat.minflt as f64,
        ctx_voluntary: status.voluntary_ctxt_switches as f64,
        ctx_nonvoluntary: status.nonvoluntary_ctxt_switches as f64,
    }
}

/// (Pss, SwapPss) in bytes from /proc/PID/smaps_rollup.
fn smaps_rollup(text: &str) -> (f64, f64) {
    let mut pss = 0.0;
    let mut swap = 0.0;
    for line in text.lines() {
        let kb = |rest: &str| {
            rest.split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
                * 1024.0
        };
        if let Some(rest) = line.strip_prefix("Pss:") {
            pss = kb(rest);
        } else if let Some(rest) = line.strip_prefix("SwapPss:") {
            swap = kb(rest);
        }
    }
    (pss, swap)
}

/// uid → user name from /etc/passwd, read once.
fn user_name(uid: u32) -> String {
    static USERS: OnceLock<HashMap<u32, String>> = OnceLock::new();
    let users = USERS.get_or_init(|| {
        std::fs::read_to_string("/etc/passwd")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                let uid = f.nth(1)?.parse().ok()?;
                Some((uid, name.to_string()))
            })
            .collect()
    });
    users.get(&uid).cloned().unwrap_or_else(|| uid.to_string())
}
