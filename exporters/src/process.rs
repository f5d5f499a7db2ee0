//! The process exporter (port 9256): ncabatoff/process-exporter's
//! `namedprocess_namegroup_*` families over groups from its config format.

pub mod config;
mod read;

use crate::exposition::Family;
use crate::procfs;
use crate::serve::scrape_bookkeeping;
use crate::Exporter;
use config::Config;
use read::{ProcSample, ProcStub, ThreadSample};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

type Details = Result<(ProcSample, u64, Vec<ThreadSample>), procfs::ReadError>;

pub struct ProcessOptions {
    pub proc_root: PathBuf,
    pub config: Config,
    /// Processes whose ancestor is in a group join that group.
    pub children: bool,
    pub threads: bool,
    pub gather_smaps: bool,
}

/// Counters that must never go down for a group, even when processes exit.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counters {
    pub cpu_user: f64,
    pub cpu_system: f64,
    pub read_bytes: f64,
    pub write_bytes: f64,
    pub major_faults: f64,
    pub minor_faults: f64,
    pub ctx_voluntary: f64,
    pub ctx_nonvoluntary: f64,
}

impl std::ops::AddAssign for Counters {
    fn add_assign(&mut self, o: Counters) {
        self.cpu_user += o.cpu_user;
        self.cpu_system += o.cpu_system;
        self.read_bytes += o.read_bytes;
        self.write_bytes += o.write_bytes;
        self.major_faults += o.major_faults;
        self.minor_faults += o.minor_faults;
        self.ctx_voluntary += o.ctx_voluntary;
        self.ctx_nonvoluntary += o.ctx_nonvoluntary;
    }
}

#[derive(Default)]
struct Tracker {
    /// (pid, start ticks) → the group decided when the process was first seen.
    known: HashMap<(i32, u64), Option<String>>,
    /// (pid, start ticks) → (group, last counters) of grouped processes seen last scrape.
    live: HashMap<(i32, u64), (String, Counters)>,
    /// Counters of exited processes, per group.
    exited: BTreeMap<String, Counters>,
    scrape_errors: u64,
    procread_errors: u64,
    partial_errors: u64,
}

pub struct ProcessExporter {
    opts: ProcessOptions,
    tracker: Mutex<Tracker>,
    boot_time: OnceLock<f64>,
}

#[derive(Default)]
struct Group {
    procs: u64,
    counters: Counters,
    resident: f64,
    virtual_: f64,
    swapped: f64,
    pss: f64,
    swap_pss: f64,
    open_fds: f64,
    worst_fd_ratio: f64,
    threads: f64,
    oldest_start: f64,
    states: [f64; 5],
    thread_groups: BTreeMap<String, (u64, Counters)>,
    wchans: BTreeMap<String, u64>,
}

const STATES: [&str; 5] = ["Running", "Sleeping", "Waiting", "Zombie", "Other"];

impl ProcessExporter {
    pub fn new(opts: ProcessOptions) -> Self {
        ProcessExporter {
            opts,
            tracker: Mutex::new(Tracker::default()),
            boot_time: OnceLock::new(),
        }
    }

    /// Boot time is read once: it never changes and /proc/stat is costly to produce.
    fn boot_time(&self) -> Result<f64, procfs::ReadError> {
        if let Some(bt) = self.boot_time.get() {
            return Ok(*bt);
        }
        let bt = procfs::boot_time(&self.opts.proc_root)?;
        Ok(*self.boot_time.get_or_init(|| bt))
    }

    /// Reads grouped processes (and their threads) on two workers.
    fn read_details(&self, work: &[(&ProcStub, String)], boot: f64) -> Vec<Details> {
        let ticks = procfs::clock_ticks();
        let root = &self.opts.proc_root;
        let next = AtomicUsize::new(0);
        let slots: Vec<Mutex<Option<Details>>> = work.iter().map(|_| Mutex::new(None)).collect();
        let worker = || loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some((stub, _)) = work.get(i) else { break };
            let start_time = boot + stub.stat.starttime as f64 / ticks;
            let result = read::details(root, stub, start_time, self.opts.gather_smaps).map(
                |(p, partial)| {
                    let threads = if self.opts.threads {
                        read::threads(root, stub.pid)
                    } else {
                        Vec::new()
                    };
                    (p, partial, threads)
                },
            );
            if let Ok(mut slot) = slots[i].lock() {
                *slot = Some(result);
            }
        };
        std::thread::scope(|scope| {
            scope.spawn(worker);
            worker();
        });
        slots
            .into_iter()
            .map(|slot| {
                slot.into_inner().ok().flatten().unwrap_or_else(|| {
                    Err(procfs::ReadError::parse(root, "process read worker failed"))
                })
            })
            .collect()
    }

    /// Groups are decided once per process, at first sight; children of a
    /// grouped process join its group when they match nothing themselves.
    fn assign_groups(
        &self,
        stubs: &[ProcStub],
        known: &HashMap<(i32, u64), Option<String>>,
        boot: f64,
    ) -> Vec<Option<String>> {
        let ticks = procfs::clock_ticks();
        let mut fresh = vec![false; stubs.len()];
        let mut groups: Vec<Option<String>> = stubs
            .iter()
            .enumerate()
            .map(
                |(i, stub)| match known.get(&(stub.pid, stub.stat.starttime)) {
                    Some(g) => g.clone(),
                    None => {
                        fresh[i] = true;
                        let start_time = boot + stub.stat.starttime as f64 / ticks;
                        self.opts.config.group_of(&read::attrs(
                            &self.opts.proc_root,
                            stub,
                            start_time,
                        ))
                    }
                },
            )
            .collect();
        if self.opts.children {
            let index: HashMap<i32, usize> =
                stubs.iter().enumerate().map(|(i, p)| (p.pid, i)).collect();
            for i in 0..stubs.len() {
                if !fresh[i] || groups[i].is_some() {
                    continue;
                }
                // Walk up the ancestry (bounded, in case of a pid cycle from racing reads).
                let mut ppid = stubs[i].stat.ppid;
                for _ in 0..64 {
                    let Some(&j) = index.get(&ppid) else { break };
                    if let Some(g) = &groups[j] {
                        groups[i] = Some(g.clone());
                        break;
                    }
                    ppid = stubs[j].stat.ppid;
                }
            }
        }
        groups
    }
}

impl Exporter for ProcessExporter {
    fn build_info_name(&self) -> &'static str {
        "process_exporter"
    }
    fn title(&self) -> &'static str {
        "Carbonio Monitoring process exporter"
    }

    fn gather(&self) -> Vec<Family> {
        let start = Instant::now();
        let scan = self
            .boot_time()
            .and_then(|boot| Ok((boot, read::scan_stats(&self.opts.proc_root)?)));
        let mut tracker = match self.tracker.lock() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        };
        let (boot, stubs, ok) = match scan {
            Ok((boot, stubs)) => {
                tracker.procread_errors += stubs.procread_errors;
                (boot, stubs.procs, true)
            }
            Err(e) => {
                tracing::error!(error = %e, "scanning processes failed");
                tracker.scrape_errors += 1;
                (0.0, Vec::new(), false)
            }
        };
        let assigned = self.assign_groups(&stubs, &tracker.known, boot);
        tracker.known = stubs
            .iter()
            .zip(&assigned)
            .map(|(p, g)| ((p.pid, p.stat.starttime), g.clone()))
            .collect();

        let mut groups: BTreeMap<String, Group> = tracker
            .exited
            .keys()
            .map(|k| (k.clone(), Group::default()))
            .collect();
        let mut live = HashMap::new();
        let work: Vec<(&ProcStub, String)> = stubs
            .iter()
            .zip(assigned)
            .filter_map(|(stub, group)| Some((stub, group?)))
            .collect();
        let details = self.read_details(&work, boot);
        for ((stub, name), result) in work.into_iter().zip(details) {
            let (p, partial, threads) = match result {
                Ok(r) => r,
                Err(e) if e.is_not_found() => continue, // exited mid-scrape
                Err(e) => {
                    tracing::debug!(pid = stub.pid, error = %e, "reading process failed");
                    tracker.procread_errors += 1;
                    continue;
                }
            };
            tracker.partial_errors += partial;
            let g = groups.entry(name.clone()).or_default();
            add_proc(g, &p);
            for t in &threads {
                add_thread(g, t);
            }
            live.insert((stub.pid, p.start_ticks), (name, p.counters));
        }
        // Processes gone since the last scrape keep contributing their last counters.
        let previous = std::mem::take(&mut tracker.live);
        for (key, (group, counters)) in previous {
            if !live.contains_key(&key) {
                *tracker.exited.entry(group.clone()).or_default() += counters;
                groups.entry(group).or_default();
            }
        }
        tracker.live = live;
        for (name, g) in groups.iter_mut() {
            if let Some(c) = tracker.exited.get(name) {
                g.counters += *c;
            }
        }
        let mut out = render(&groups, self.opts.threads);
        out.push(
            Family::counter(
                "namedprocess_scrape_errors",
                "general scrape errors: no proc metrics collected during a cycle",
            )
            .with(&[], tracker.scrape_errors as f64),
        );
        out.push(
            Family::counter(
                "namedprocess_scrape_procread_errors",
                "incremented each time a proc's metrics collection fails",
            )
            .with(&[], tracker.procread_errors as f64),
        );
        out.push(Family::counter("namedprocess_scrape_partial_errors", "incremented each time a tracked proc's metrics collection fails partially, e.g. unreadable I/O stats").with(&[], tracker.partial_errors as f64));
        out.extend(scrape_bookkeeping(
            "namedprocess",
            &[("process", ok, start.elapsed().as_secs_f64())],
        ));
        out
    }
}

fn add_proc(g: &mut Group, p: &ProcSample) {
    g.procs += 1;
    g.counters += p.counters;
    g.resident += p.resident;
    g.virtual_ += p.virtual_;
    g.swapped += p.swapped;
    g.pss += p.pss;
    g.swap_pss += p.swap_pss;
    g.open_fds += p.open_fds;
    if p.max_fds > 0.0 {
        g.worst_fd_ratio = g.worst_fd_ratio.max(p.open_fds / p.max_fds);
    }
    g.threads += p.num_threads;
    if g.oldest_start == 0.0 || p.start_time < g.oldest_start {
        g.oldest_start = p.start_time;
    }
    let state = match p.state {
        'R' => 0,
        'S' => 1,
        'D' => 2,
        'Z' => 3,
        _ => 4,
    };
    g.states[state] += 1.0;
}

fn add_thread(g: &mut Group, t: &ThreadSample) {
    let entry = g.thread_groups.entry(t.name.clone()).or_default();
    entry.0 += 1;
    entry.1 += t.counters;
    if !t.wchan.is_empty() {
        *g.wchans.entry(t.wchan.clone()).or_default() += 1;
    }
}

fn render(groups: &BTreeMap<String, Group>, threads: bool) -> Vec<Family> {
    let p = "namedprocess_namegroup_";
    let mut num_procs = Family::gauge(format!("{p}num_procs"), "number of processes in this group");
    let mut cpu = Family::counter(format!("{p}cpu_seconds_total"), "Cpu user usage in seconds");
    let mut read = Family::counter(
        format!("{p}read_bytes_total"),
        "number of bytes read by this group",
    );
    let mut write = Family::counter(
        format!("{p}write_bytes_total"),
        "number of bytes written by this group",
    );
    let mut majflt = Family::counter(format!("{p}major_page_faults_total"), "Major page faults");
    let mut minflt = Family::counter(format!("{p}minor_page_faults_total"), "Minor page faults");
    let mut ctx = Family::counter(format!("{p}context_switches_total"), "Context switches");
    let mut mem = Family::gauge(
        format!("{p}memory_bytes"),
        "number of bytes of memory in use",
    );
    let mut fds = Family::gauge(
        format!("{p}open_filedesc"),
        "number of open file descriptors for this group",
    );
    let mut worst = Family::gauge(
        format!("{p}worst_fd_ratio"),
        "the worst (closest to 1) ratio between open fds and max fds among all procs in this group",
    );
    let mut oldest = Family::gauge(
        format!("{p}oldest_start_time_seconds"),
        "start time in seconds since 1970/01/01 of oldest process in group",
    );
    let mut nthreads = Family::gauge(format!("{p}num_threads"), "Number of threads");
    let mut states = Family::gauge(
        format!("{p}states"),
        "Number of processes in states Running, Sleeping, Waiting, Zombie, or Other",
    );
    let mut t_count = Family::gauge(
        format!("{p}thread_count"),
        "Number of threads in this group with same threadname",
    );
    let mut t_cpu = Family::counter(
        format!("{p}thread_cpu_seconds_total"),
        "Cpu user/system usage in seconds",
    );
    let mut t_io = Family::counter(
        format!("{p}thread_io_bytes_total"),
        "number of bytes read/written by these threads",
    );
    let mut t_maj = Family::counter(
        format!("{p}thread_major_page_faults_total"),
        "Major page faults for these threads",
    );
    let mut t_min = Family::counter(
        format!("{p}thread_minor_page_faults_total"),
        "Minor page faults for these threads",
    );
    let mut t_ctx = Family::counter(
        format!("{p}thread_context_switches_total"),
        "Context switches for these threads",
    );
    let mut wchan = Family::gauge(
        format!("{p}threads_wchan"),
        "Number of threads in this group waiting on each wchan",
    );
    for (name, g) in groups {
        let gl = [("groupname", name.as_str())];
        let c = &g.counters;
        num_procs.add(&gl, g.procs as f64);
        cpu.add(&[gl[0], ("mode", "user")], c.cpu_user);
        cpu.add(&[gl[0], ("mode", "system")], c.cpu_system);
        read.add(&gl, c.read_bytes);
        write.add(&gl, c.write_bytes);
        majflt.add(&gl, c.major_faults);
        minflt.add(&gl, c.minor_faults);
        ctx.add(&[gl[0], ("ctxswitchtype", "voluntary")], c.ctx_voluntary);
        ctx.add(
            &[gl[0], ("ctxswitchtype", "nonvoluntary")],
            c.ctx_nonvoluntary,
        );
        for (memtype, v) in [
            ("resident", g.resident),
            ("virtual", g.virtual_),
            ("swapped", g.swapped),
            ("proportionalResident", g.pss),
            ("proportionalSwapped", g.swap_pss),
        ] {
            mem.add(&[gl[0], ("memtype", memtype)], v);
        }
        fds.add(&gl, g.open_fds);
        worst.add(&gl, g.worst_fd_ratio);
        oldest.add(&gl, g.oldest_start);
        nthreads.add(&gl, g.threads);
        for (state, v) in STATES.iter().zip(g.states) {
            states.add(&[gl[0], ("state", state)], v);
        }
        if threads {
            for (tname, (count, tc)) in &g.thread_groups {
                let tl = [gl[0], ("threadname", tname.as_str())];
                t_count.add(&tl, *count as f64);
                t_cpu.add(&[tl[0], tl[1], ("mode", "user")], tc.cpu_user);
                t_cpu.add(&[tl[0], tl[1], ("mode", "system")], tc.cpu_system);
                t_io.add(&[tl[0], tl[1], ("iomode", "read")], tc.read_bytes);
                t_io.add(&[tl[0], tl[1], ("iomode", "write")], tc.write_bytes);
                t_maj.add(&tl, tc.major_faults);
                t_min.add(&tl, tc.minor_faults);
                t_ctx.add(
                    &[tl[0], tl[1], ("ctxswitchtype", "voluntary")],
                    tc.ctx_voluntary,
                );
                t_ctx.add(
                    &[tl[0], tl[1], ("ctxswitchtype", "nonvoluntary")],
                    tc.ctx_nonvoluntary,
                );
            }
            for (w, n) in &g.wchans {
                wchan.add(&[gl[0], ("wchan", w.as_str())], *n as f64);
            }
        }
    }
    vec![
        num_procs, cpu, read, write, majflt, minflt, ctx, mem, fds, worst, oldest, nthreads,
        states, t_count, t_cpu, t_io, t_maj, t_min, t_ctx, wchan,
    ]
}
