//! `bench logs`: our collector and Debian's rsyslog receive the same syslog
//! corpus (`bench/corpus/gen_mail_corpus.py`) over TCP, one after the other,
//! rsyslog writing a plain file (its usual setup) and we our WAL + Parquet
//! store. Reported: sustained ingest (lines/s and MB/s until every line is
//! stored), CPU per million lines, stored bytes per line next to the raw
//! text and `zstd -3` of it, and UDP loss at fixed send rates. With
//! `--rounds N` both run N times, alternating who goes first, and the
//! median of the per-round ratios is reported.

use super::{cpu_ticks, free_port};
use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Options {
    pub corpus: PathBuf,
    /// UDP send rates (messages/s) to measure loss at.
    pub udp_rates: Vec<u64>,
    pub udp_seconds: u64,
    /// Ingest rounds, each running both tools (UDP loss is measured in the
    /// first).
    pub rounds: usize,
}

/// (rate, sent, lost) per UDP send rate.
type Losses = Vec<(u64, u64, u64)>;

struct Ingest {
    name: &'static str,
    seconds: f64,
    cpu_seconds: f64,
    /// Until every line is in its final file (for ours: Parquet, after the
    /// WAL acknowledged it); the same as above for rsyslog.
    final_seconds: f64,
    final_cpu_seconds: f64,
    stored_bytes: u64,
}

pub fn run(binary: &Path, o: &Options) -> Result<()> {
    let corpus = std::fs::read(&o.corpus).with_context(|| {
        format!(
            "reading {} (make it with bench/corpus/gen_mail_corpus.py)",
            o.corpus.display()
        )
    })?;
    let lines = corpus.iter().filter(|b| **b == b'\n').count() as u64;
    if lines == 0 {
        bail!("{} holds no lines", o.corpus.display());
    }
    let zstd = zstd_size(&o.corpus)?;
    eprintln!(
        "corpus: {lines} lines, {:.1} MB raw, {:.1} MB as zstd -3",
        corpus.len() as f64 / 1e6,
        zstd as f64 / 1e6
    );
    // Rounds alternate who goes first: this machine's speed drifts over
    // minutes, and each round's ratio compares two neighbouring runs.
    let mut rounds = Vec::new();
    let mut losses = None;
    for round in 0..o.rounds.max(1) {
        let dir = tempfile::tempdir()?;
        let (tcp, udp) = (free_port()?, free_port()?);
        let measure_udp = losses.is_none();
        let udp_at = measure_udp.then_some(udp);
        let ours_run = || -> Result<(Ingest, Losses)> {
            let ours = Ours::start(binary, dir.path(), tcp, udp)?;
            measure(ours, &corpus, lines, tcp, udp_at, o)
        };
        let theirs_run = || -> Result<(Ingest, Losses)> {
            let theirs = Rsyslog::start(dir.path(), tcp, udp)?;
            measure(theirs, &corpus, lines, tcp, udp_at, o)
        };
        let ((ours, ours_lost), (theirs, theirs_lost)) = if round % 2 == 0 {
            let ours = ours_run()?;
            (ours, theirs_run()?)
        } else {
            let theirs = theirs_run()?;
            (ours_run()?, theirs)
        };
        if measure_udp {
            losses = Some((ours_lost, theirs_lost));
        }
        println!("round {} of {}:", round + 1, o.rounds.max(1));
        report_round(&corpus, lines, zstd, &ours, &theirs);
        rounds.push((ours, theirs));
    }
    if rounds.len() > 1 {
        let ratio = |f: &dyn Fn(&Ingest, &Ingest) -> f64| {
            let mut v: Vec<f64> = rounds.iter().map(|(a, b)| f(a, b)).collect();
            v.sort_by(f64::total_cmp);
            let median = match v.len() % 2 {
                1 => v[v.len() / 2],
                _ => (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0,
            };
            (median, v[0], v[v.len() - 1])
        };
        let rate = ratio(&|ours, theirs| theirs.seconds / ours.seconds);
        let cpu = ratio(&|ours, theirs| ours.cpu_seconds / theirs.cpu_seconds);
        let parquet = ratio(&|ours, theirs| theirs.seconds / ours.final_seconds);
        println!(
            "over {} rounds, median (min–max): ingest rate ours/rsyslog {:.2} ({:.2}–{:.2}); \
             until Parquet {:.2} ({:.2}–{:.2}); CPU per line ours/rsyslog {:.2} ({:.2}–{:.2})",
            rounds.len(),
            rate.0,
            rate.1,
            rate.2,
            parquet.0,
            parquet.1,
            parquet.2,
            cpu.0,
            cpu.1,
            cpu.2
        );
    }
    println!(
        "{:<10} {:>10} {:>14} {:>14}",
        "UDP msg/s", "sent", "ours lost %", "rsyslog lost %"
    );
    let (ours_udp, theirs_udp) = losses.unwrap_or_default();
    for ((rate, sent, ours_lost), (_, _, theirs_lost)) in ours_udp.iter().zip(&theirs_udp) {
        println!(
            "{rate:<10} {sent:>10} {:>14.3} {:>14.3}",
            *ours_lost as f64 * 100.0 / *sent as f64,
            *theirs_lost as f64 * 100.0 / *sent as f64
        );
    }
    println!("(ours fsyncs every batch before reading on; rsyslog's omfile writes without fsync, its default)");
    Ok(())
}

/// A syslog receiver under test: ours or rsyslog.
trait Receiver {
    /// Sends the corpus over TCP and waits until every line is stored.
    fn ingest(&mut self, corpus: &[u8], lines: u64, tcp: u16) -> Result<Ingest>;
    /// Lines received over UDP and stored so far.
    fn udp_stored(&self) -> Result<u64>;
}

/// `receiver`'s TCP ingest, then its UDP losses when `udp` is its port;
/// the receiver is stopped at the end.
fn measure(
    mut receiver: impl Receiver,
    corpus: &[u8],
    lines: u64,
    tcp: u16,
    udp: Option<u16>,
    o: &Options,
) -> Result<(Ingest, Losses)> {
    let ingest = receiver.ingest(corpus, lines, tcp)?;
    let lost = match udp {
        Some(port) => udp_losses(corpus, port, o, |_| receiver.udp_stored())?,
        None => Vec::new(),
    };
    Ok((ingest, lost))
}

/// One round's table: both tools' rates, CPU and stored bytes.
fn report_round(corpus: &[u8], lines: u64, zstd: u64, ours: &Ingest, theirs: &Ingest) {
    println!(
        "{:<28} {:>10} {:>10} {:>8} {:>12} {:>12} {:>10}",
        "tool", "lines/s", "MB/s", "CPU s", "CPU s/M ln", "stored MB", "B/line"
    );
    for m in [ours, theirs] {
        println!(
            "{:<28} {:>10.0} {:>10.1} {:>8.2} {:>12.3} {:>12.1} {:>10.1}",
            m.name,
            lines as f64 / m.seconds,
            corpus.len() as f64 / 1e6 / m.seconds,
            m.cpu_seconds,
            m.cpu_seconds / lines as f64 * 1e6,
            m.stored_bytes as f64 / 1e6,
            m.stored_bytes as f64 / lines as f64
        );
    }
    println!(
        "ours until every line is in Parquet as well: {:.0} lines/s, {:.3} CPU s/M lines",
        lines as f64 / ours.final_seconds,
        ours.final_cpu_seconds / lines as f64 * 1e6
    );
    println!(
        "raw text: {:.1} B/line; zstd -3 of it: {:.1} B/line",
        corpus.len() as f64 / lines as f64,
        zstd as f64 / lines as f64
    );
    println!(
        "ours: {:.1}x smaller than raw, {:.2}x the zstd size; ingest rate ours/rsyslog {:.2}, CPU per line ours/rsyslog {:.2}",
        corpus.len() as f64 / ours.stored_bytes as f64,
        ours.stored_bytes as f64 / zstd as f64,
        theirs.seconds / ours.seconds,
        ours.cpu_seconds / theirs.cpu_seconds
    );
}

fn zstd_size(corpus: &Path) -> Result<u64> {
    let out = Command::new("zstd")
        .args(["-3", "-q", "-c", "-T1"])
        .arg(corpus)
        .stdout(Stdio::piped())
        .spawn()
        .context("running zstd (apt install zstd)")?;
    let mut n = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    let mut stdout = out.stdout.context("zstd stdout")?;
    loop {
        let got = stdout.read(&mut buf)?;
        if got == 0 {
            break;
        }
        n += got as u64;
    }
    Ok(n)
}

/// Sends the corpus over one TCP connection as newline-framed syslog.
fn send_tcp(corpus: &[u8], port: u16) -> Result<()> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    for chunk in corpus.chunks(1 << 20) {
        s.write_all(chunk)?;
    }
    s.shutdown(std::net::Shutdown::Write)?;
    Ok(())
}

/// Sends `rate` messages/s for `seconds` (lines of the corpus), paced per
/// millisecond; returns (rate, sent, lost) per rate.
fn udp_losses(
    corpus: &[u8],
    port: u16,
    o: &Options,
    mut stored: impl FnMut(()) -> Result<u64>,
) -> Result<Losses> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(("127.0.0.1", port))?;
    let mut lines = corpus
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .cycle();
    let mut out = Vec::new();
    for &rate in &o.udp_rates {
        let before = stored(())?;
        let total = rate * o.udp_seconds;
        let start = Instant::now();
        for i in 0..total {
            // Pace: message i is due at i / rate seconds.
            let due = Duration::from_secs_f64(i as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                if wait > Duration::from_micros(200) {
                    std::thread::sleep(wait);
                }
            }
            let line = lines.next().unwrap_or(b"<13>x");
            let _ = socket.send(line);
        }
        std::thread::sleep(Duration::from_secs(2));
        let got = stored(())?.saturating_sub(before);
        out.push((rate, total, total.saturating_sub(got)));
    }
    Ok(out)
}

/// Waits until `done` says so, failing after `limit`.
fn wait(what: &str, limit: Duration, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    let start = Instant::now();
    while !done()? {
        if start.elapsed() > limit {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

struct Ours {
    child: Child,
    metrics_url: String,
    udp_listener: String,
}

impl Ours {
    fn start(binary: &Path, dir: &Path, tcp: u16, udp: u16) -> Result<Ours> {
        let cfg = dir.join("ours.yml");
        std::fs::write(
            &cfg,
            format!(
                "syslog:\n  timezone: UTC\n  listeners:\n    - protocol: tcp\n      address: 127.0.0.1:{tcp}\n    - protocol: udp\n      address: 127.0.0.1:{udp}\n"
            ),
        )?;
        let port = free_port()?;
        let child = Command::new(binary)
            .arg("collector")
            .arg("--config")
            .arg(&cfg)
            .arg("--data")
            .arg(dir.join("ours"))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.logs.flush-interval=5s")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("ours.log"))?)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let ours = Ours {
            child,
            metrics_url: format!("http://127.0.0.1:{port}/metrics"),
            udp_listener: format!("udp://127.0.0.1:{udp}"),
        };
        wait("the collector to start", Duration::from_secs(30), || {
            Ok(ours.metrics().is_ok())
        })?;
        Ok(ours)
    }

    fn metrics(&self) -> Result<String> {
        Ok(ureq::get(&self.metrics_url)
            .timeout(Duration::from_secs(10))
            .call()?
            .into_string()?)
    }

    fn metric(&self, name: &str, label: Option<&str>) -> Result<f64> {
        Ok(super::metric_sum(&self.metrics()?, name, label))
    }

    /// Lines acknowledged (WAL-durable): in the head or in Parquet parts.
    fn durable_lines(&self) -> Result<u64> {
        Ok((self.metric("carbonio_collector_log_head_lines", None)?
            + self.metric("carbonio_collector_log_lines_stored", None)?) as u64)
    }
}

impl Receiver for Ours {
    fn ingest(&mut self, corpus: &[u8], lines: u64, tcp: u16) -> Result<Ingest> {
        let pid = self.child.id();
        let cpu0 = cpu_ticks(pid)?;
        let start = Instant::now();
        send_tcp(corpus, tcp)?;
        wait("every line to be stored", Duration::from_secs(3600), || {
            Ok(self.durable_lines()? >= lines)
        })?;
        let seconds = start.elapsed().as_secs_f64();
        let cpu_seconds = (cpu_ticks(pid)? - cpu0) as f64 / super::clock_ticks();
        wait(
            "every line to be in Parquet",
            Duration::from_secs(600),
            || Ok(self.metric("carbonio_collector_log_lines_stored", None)? >= lines as f64),
        )?;
        let final_seconds = start.elapsed().as_secs_f64();
        let final_cpu_seconds = (cpu_ticks(pid)? - cpu0) as f64 / super::clock_ticks();
        // Stored size once the head is flushed and finished hours compacted.
        wait(
            "the log head to be flushed",
            Duration::from_secs(120),
            || Ok(self.metric("carbonio_collector_log_head_lines", None)? == 0.0),
        )?;
        std::thread::sleep(Duration::from_secs(6));
        let stored_bytes = self.metric("carbonio_collector_log_bytes", None)? as u64;
        Ok(Ingest {
            name: "carbonio-monitor collector",
            seconds,
            cpu_seconds,
            final_seconds,
            final_cpu_seconds,
            stored_bytes,
        })
    }

    fn udp_stored(&self) -> Result<u64> {
        let l = format!("listener=\"{}\"", self.udp_listener);
        Ok(
            (self.metric("carbonio_collector_syslog_messages_total", Some(&l))?
                - self.metric("carbonio_collector_syslog_udp_dropped_total", Some(&l))?)
                as u64,
        )
    }
}

impl Drop for Ours {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Rsyslog {
    child: Child,
    tcp_out: PathBuf,
    udp_out: PathBuf,
}

impl Rsyslog {
    fn start(dir: &Path, tcp: u16, udp: u16) -> Result<Rsyslog> {
        let rs = dir.join("rsyslog");
        std::fs::create_dir_all(&rs)?;
        let (tcp_out, udp_out) = (rs.join("tcp.log"), rs.join("udp.log"));
        let conf = rs.join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                r#"global(workDirectory="{d}" maxMessageSize="64k")
module(load="imtcp")
module(load="imudp")
ruleset(name="tcp") {{ action(type="omfile" file="{t}") }}
ruleset(name="udp") {{ action(type="omfile" file="{u}") }}
input(type="imtcp" address="127.0.0.1" port="{tcp}" ruleset="tcp")
input(type="imudp" address="127.0.0.1" port="{udp}" ruleset="udp")
"#,
                d = rs.display(),
                t = tcp_out.display(),
                u = udp_out.display()
            ),
        )?;
        let child = Command::new("/usr/sbin/rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(rs.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(rs.join("rsyslogd.log"))?)
            .spawn()
            .context("starting /usr/sbin/rsyslogd (apt install rsyslog)")?;
        wait("rsyslogd to listen", Duration::from_secs(20), || {
            Ok(TcpStream::connect(("127.0.0.1", tcp)).is_ok())
        })?;
        Ok(Rsyslog {
            child,
            tcp_out,
            udp_out,
        })
    }
}

impl Receiver for Rsyslog {
    fn ingest(&mut self, corpus: &[u8], lines: u64, tcp: u16) -> Result<Ingest> {
        let pid = self.child.id();
        let cpu0 = cpu_ticks(pid)?;
        let start = Instant::now();
        send_tcp(corpus, tcp)?;
        let mut counter = LineCounter::default();
        wait(
            "every line to be written",
            Duration::from_secs(3600),
            || Ok(counter.count(&self.tcp_out)? >= lines),
        )?;
        let seconds = start.elapsed().as_secs_f64();
        let cpu_seconds = (cpu_ticks(pid)? - cpu0) as f64 / super::clock_ticks();
        Ok(Ingest {
            name: "rsyslog omfile",
            seconds,
            cpu_seconds,
            final_seconds: seconds,
            final_cpu_seconds: cpu_seconds,
            stored_bytes: std::fs::metadata(&self.tcp_out)?.len(),
        })
    }

    fn udp_stored(&self) -> Result<u64> {
        LineCounter::default().count(&self.udp_out)
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Counts the lines of a growing file, reading only what was added.
#[derive(Default)]
struct LineCounter {
    offset: u64,
    lines: u64,
}

impl LineCounter {
    fn count(&mut self, path: &Path) -> Result<u64> {
        use std::io::{Seek, SeekFrom};
        let Ok(mut f) = std::fs::File::open(path) else {
            return Ok(0);
        };
        f.seek(SeekFrom::Start(self.offset))?;
        let mut buf = vec![0u8; 4 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            self.offset += n as u64;
            self.lines += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
        }
        Ok(self.lines)
    }
}
