//! `bench rules`: the same 1,000 alerting rules evaluated by Prometheus and
//! by `carbonio-monitor run`, each scraping the same synthetic targets live
//! (one tool after the other). Reports the evaluation time per round (the
//! sum of every group's `evaluationTime` from `/api/v1/rules` for one round)
//! and the CPU the rules cost: the process's CPU with the rules minus its
//! CPU scraping the same targets without them.

use crate::ingest::Targets;
use crate::{clock_ticks, cpu_ticks, free_port, rss_kib};
use anyhow::{bail, Context, Result};
use base64::Engine as _;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Options {
    pub rules: usize,
    pub groups: usize,
    pub targets: usize,
    pub series: usize,
    pub interval: u64,
    pub seconds: u64,
    pub warmup: u64,
}

const PASSWORD: &str = "bench-rules-password";
const FAMILIES: usize = 20;

/// A mix of the rule shapes operators write, over the synthetic families
/// (even families are counters, odd ones gauges, `shard` = target).
fn rule(k: usize, targets: usize) -> String {
    let counter = (k / 7 * 2) % FAMILIES;
    let gauge = counter + 1;
    let shard = k % targets.max(1);
    let expr = match k % 7 {
        0 => format!("sum by (shard) (rate(bench_metric_{counter}[1m])) > 1000"),
        1 => format!("bench_metric_{gauge}{{shard=\"{shard}\"}} > 99.9"),
        2 => format!(
            "avg by (shard) (avg_over_time(bench_metric_{gauge}{{shard=\"{shard}\"}}[5m])) > 50"
        ),
        3 => format!(
            "predict_linear(bench_metric_{gauge}{{shard=\"{shard}\",item=\"{gauge}\"}}[5m], 3600) < -10000"
        ),
        4 => format!(
            "sum by (shard) (rate(bench_metric_{counter}{{shard=\"{shard}\"}}[1m])) / sum by (shard) (rate(bench_metric_{}{{shard=\"{shard}\"}}[1m])) > 2",
            (counter + 2) % FAMILIES
        ),
        5 => format!("max by (shard) (bench_metric_{gauge}{{item=~\"{}.*\"}}) > 90", k % 9 + 1),
        _ => format!("absent(bench_metric_{gauge}{{shard=\"{shard}\",item=\"missing\"}})"),
    };
    let hold = if k % 2 == 0 { "1m" } else { "0s" };
    format!(
        "      - alert: BenchRule{k}\n        expr: '{expr}'\n        for: {hold}\n        labels:\n          severity: warning\n        annotations:\n          summary: 'shard {{{{ $labels.shard }}}} at {{{{ $value | humanize }}}}'\n"
    )
}

fn rules_file(o: &Options) -> String {
    let mut out = String::from("groups:\n");
    let per_group = o.rules.div_ceil(o.groups.max(1));
    for (g, chunk) in (0..o.rules)
        .collect::<Vec<_>>()
        .chunks(per_group.max(1))
        .enumerate()
    {
        let _ = writeln!(out, "  - name: bench{g}\n    rules:");
        for &k in chunk {
            out.push_str(&rule(k, o.targets));
        }
    }
    out
}

fn config(o: &Options, ports: &[u16], with_rules: bool) -> String {
    let mut c = format!(
        "global:\n  scrape_interval: 5s\n  scrape_timeout: 5s\n  evaluation_interval: {}s\n",
        o.interval
    );
    if with_rules {
        c.push_str("rule_files: [rules.yml]\n");
    }
    c.push_str("scrape_configs:\n  - job_name: bench\n    static_configs:\n      - targets:\n");
    for p in ports {
        let _ = writeln!(c, "        - '127.0.0.1:{p}'");
    }
    c
}

struct Tool {
    name: &'static str,
    child: Child,
    base: String,
    auth: Option<String>,
}

impl Tool {
    fn get(&self, agent: &ureq::Agent, path: &str) -> Result<Value> {
        let mut req = agent.get(&format!("{}{path}", self.base));
        if let Some(a) = &self.auth {
            req = req.set("Authorization", a);
        }
        let body = req
            .call()
            .with_context(|| format!("{} {path}", self.name))?
            .into_string()?;
        serde_json::from_str(&body).with_context(|| format!("{} {path}: not JSON", self.name))
    }

    fn wait_ready(&mut self, agent: &ureq::Agent) -> Result<()> {
        let started = Instant::now();
        loop {
            if agent.get(&format!("{}/-/ready", self.base)).call().is_ok() {
                return Ok(());
            }
            if self.child.try_wait()?.is_some() || started.elapsed() > Duration::from_secs(60) {
                bail!("{} did not become ready", self.name);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tool {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(name: &'static str, binary: &Path, dir: &Path, config: &str, run: usize) -> Result<Tool> {
    let cfg = dir.join(format!("config-{run}.yml"));
    std::fs::write(&cfg, config)?;
    let port = free_port()?;
    let log = std::fs::File::create(dir.join(format!("{name}-{run}.log").replace(' ', "-")))?;
    let data = dir.join(format!("data-{name}-{run}").replace(' ', "-"));
    let mut cmd = Command::new(binary);
    let auth = if name == "Prometheus" {
        cmd.arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        None
    } else {
        cmd.arg("run")
            .arg("--config")
            .arg(&cfg)
            .arg("--data")
            .arg(&data)
            .arg("--web.listen-address")
            .arg(format!("127.0.0.1:{port}"))
            .env("CARBONIO_MONITOR_ADMIN_PASSWORD", PASSWORD);
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("admin:{PASSWORD}"))
        ))
    };
    let child = cmd
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    Ok(Tool {
        name,
        child,
        base: format!("http://127.0.0.1:{port}"),
        auth,
    })
}

/// What one tool measured.
struct Measured {
    name: &'static str,
    rounds: Vec<f64>,
    rule_cpu_per_round: f64,
    cpu_with: f64,
    cpu_without: f64,
    rss_kib: u64,
    firing: usize,
    errors: usize,
}

fn measure(
    name: &'static str,
    binary: &Path,
    dir: &Path,
    o: &Options,
    ports: &[u16],
) -> Result<Measured> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build();
    let ticks = clock_ticks();
    let window = Duration::from_secs(o.seconds);

    // Without rules: what scraping the targets alone costs.
    let mut tool = start(name, binary, dir, &config(o, ports, false), 0)?;
    tool.wait_ready(&agent)?;
    std::thread::sleep(Duration::from_secs(o.warmup));
    let c0 = cpu_ticks(tool.child.id())?;
    std::thread::sleep(window);
    let cpu_without = (cpu_ticks(tool.child.id())? - c0) as f64 / ticks;
    drop(tool);

    // With the rules: the same, plus every group's evaluation time per round.
    let mut tool = start(name, binary, dir, &config(o, ports, true), 1)?;
    tool.wait_ready(&agent)?;
    std::thread::sleep(Duration::from_secs(o.warmup));
    let pid = tool.child.id();
    let c0 = cpu_ticks(pid)?;
    let started = Instant::now();
    // group → lastEvaluation → evaluationTime
    let mut seen: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    let mut errors = 0;
    while started.elapsed() < window {
        let rules = tool.get(&agent, "/api/v1/rules?type=alert")?;
        for g in rules["data"]["groups"].as_array().into_iter().flatten() {
            let name = g["name"].as_str().unwrap_or_default().to_string();
            let last = g["lastEvaluation"].as_str().unwrap_or_default().to_string();
            if last.starts_with("0001") || last.is_empty() {
                continue;
            }
            let t = g["evaluationTime"].as_f64().unwrap_or(0.0);
            seen.entry(name).or_default().insert(last, t);
            errors = g["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["health"] == "err")
                .count()
                .max(errors);
        }
        // Twice per interval sees every group's every evaluation (each is
        // shown until the next) while the polling itself stays cheap.
        std::thread::sleep(Duration::from_secs_f64(o.interval as f64 / 2.0));
    }
    let cpu_with = (cpu_ticks(pid)? - c0) as f64 / ticks;
    let firing = tool.get(&agent, "/api/v1/alerts")?["data"]["alerts"]
        .as_array()
        .map_or(0, |a| a.iter().filter(|a| a["state"] == "firing").count());
    let rss = rss_kib(pid)?;
    drop(tool);

    // Round k: the k-th evaluation of every group in the window.
    let per_group: Vec<Vec<f64>> = seen
        .values()
        .map(|m| m.values().copied().collect())
        .collect();
    let n = per_group.iter().map(Vec::len).min().unwrap_or(0);
    if per_group.len() < o.groups.min(o.rules) || n == 0 {
        bail!(
            "{name}: saw {} of {} groups evaluated; raise --seconds",
            per_group.len(),
            o.groups
        );
    }
    let rounds: Vec<f64> = (0..n)
        .map(|k| per_group.iter().map(|g| g[k]).sum())
        .collect();
    let rounds_in_window = o.seconds as f64 / o.interval as f64;
    Ok(Measured {
        name,
        rule_cpu_per_round: (cpu_with - cpu_without) / rounds_in_window,
        rounds,
        cpu_with,
        cpu_without,
        rss_kib: rss,
        firing,
        errors,
    })
}

pub fn run(binary: &Path, o: &Options) -> Result<()> {
    let targets = Targets::start(o.targets, o.series)?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("rules.yml"), rules_file(o))?;
    let check = Command::new("/usr/bin/promtool")
        .args(["check", "rules"])
        .arg(dir.path().join("rules.yml"))
        .output()
        .context("running promtool (apt install prometheus)")?;
    if !check.status.success() {
        bail!("promtool rejects the generated rules: {check:?}");
    }
    eprintln!(
        "{} alerting rules in {} groups every {} s; {} targets x {} series scraped every 5 s; \
         {} s measured with and without the rules after {} s warm-up",
        o.rules, o.groups, o.interval, o.targets, o.series, o.seconds, o.warmup
    );
    let theirs = measure(
        "Prometheus",
        Path::new("/usr/bin/prometheus"),
        dir.path(),
        o,
        &targets.ports,
    )?;
    let ours = measure(
        "carbonio-monitor run",
        binary,
        dir.path(),
        o,
        &targets.ports,
    )?;
    report(o, &[ours, theirs]);
    Ok(())
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn report(o: &Options, rows: &[Measured]) {
    println!(
        "{:<22} {:>7} {:>12} {:>11} {:>15} {:>12} {:>12} {:>9} {:>7} {:>7}",
        "tool",
        "rounds",
        "round ms p50",
        "round ms max",
        "rule CPU ms/rnd",
        "CPU s rules",
        "CPU s none",
        "RSS MiB",
        "firing",
        "errors"
    );
    for m in rows {
        println!(
            "{:<22} {:>7} {:>12.1} {:>11.1} {:>15.1} {:>12.2} {:>12.2} {:>9.0} {:>7} {:>7}",
            m.name,
            m.rounds.len(),
            median(&m.rounds) * 1000.0,
            m.rounds.iter().copied().fold(0.0, f64::max) * 1000.0,
            m.rule_cpu_per_round * 1000.0,
            m.cpu_with,
            m.cpu_without,
            m.rss_kib as f64 / 1024.0,
            m.firing,
            m.errors
        );
    }
    if let [ours, theirs] = rows {
        println!(
            "ratio ours/Prometheus ({} rules): round time {:.2}, rule CPU per round {:.2}",
            o.rules,
            median(&ours.rounds) / median(&theirs.rounds).max(1e-9),
            ours.rule_cpu_per_round / theirs.rule_cpu_per_round.max(1e-9)
        );
    }
}
