//! kill -9 during appends loses nothing that was acknowledged.

use crate::harness::OURS;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn wal_keeps_every_acknowledged_record_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("wal");
    let mut acked: Vec<u64> = Vec::new();
    let mut next = 0u64;
    // Three crashes at different points; each run continues where the last one was cut.
    for round in 0..3 {
        let mut child = Command::new(OURS)
            .args(["debug", "wal-write"])
            .arg(&wal)
            .args([&next.to_string(), "1000000"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let stop_after = 300 + round * 250;
        let mut seen = 0;
        while let Some(Ok(line)) = lines.next() {
            let n: u64 = line.strip_prefix("ack ").unwrap().parse().unwrap();
            acked.push(n);
            seen += 1;
            if seen == stop_after {
                break;
            }
        }
        // SIGKILL: no destructor, no flush, whatever was in flight is cut.
        child.kill().unwrap();
        // Acks already in the pipe were acknowledged before the kill.
        for line in lines.map_while(Result::ok) {
            acked.push(line.strip_prefix("ack ").unwrap().parse().unwrap());
        }
        child.wait().unwrap();
        next = acked.last().unwrap() + 1_000_000; // new ids never collide with unacked ones
    }
    let text = crate::harness::debug_output("wal-read", &wal);
    let stored: Vec<u64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("id:"))
        .map(|n| n.parse().unwrap())
        .collect();
    let mut unique = stored.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), stored.len(), "a record was stored twice");
    let stored_set: std::collections::HashSet<u64> = stored.into_iter().collect();
    let lost: Vec<&u64> = acked.iter().filter(|n| !stored_set.contains(n)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged records lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(acked.len() >= 300 + 550 + 800);
}

/// A scrape target whose every series carries the number of times it was
/// served: stored values show which scrapes made it, in order, and how often.
struct CountingTarget {
    port: u16,
}

fn counting_target(series: usize) -> CountingTarget {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let served = served.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // One request per loop: read up to the blank line ending the headers.
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    buf.drain(..end);
                    let seq = served.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    let mut body = String::from("# TYPE heavy_value gauge\n");
                    for k in 0..series {
                        body.push_str(&format!("heavy_value{{k=\"{k}\"}} {seq}\n"));
                    }
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(resp.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    CountingTarget { port }
}

/// `carbonio_collector_samples_appended_total`: samples whose WAL write was
/// fsynced (acknowledged) so far.
fn appended(collector: &crate::harness::Service) -> u64 {
    let text = crate::harness::get_text(&collector.url("/metrics"));
    text.lines()
        .find_map(|l| l.strip_prefix("carbonio_collector_samples_appended_total "))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no samples_appended in\n{text}")) as u64
}

/// Many targets on a short interval, blocks flushed every second, kill -9
/// twice: every sample acknowledged before a kill is stored, none twice,
/// and each scrape is all or nothing.
#[test]
fn collector_kill_9_under_heavy_ingest_keeps_acknowledged_samples_once() {
    const TARGETS: usize = 12;
    const SERIES: usize = 400;
    let targets: Vec<CountingTarget> = (0..TARGETS).map(|_| counting_target(SERIES)).collect();
    let list: Vec<String> = targets
        .iter()
        .map(|t| format!("'127.0.0.1:{}'", t.port))
        .collect();
    let config = format!(
        "global:\n  scrape_interval: 100ms\n  scrape_timeout: 100ms\nscrape_configs:\n  - job_name: heavy\n    static_configs:\n      - targets: [{}]\n",
        list.join(", ")
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("carbonio-monitor.yml");
    std::fs::write(&cfg, config).unwrap();
    let data = dir.path().join("data");
    let mut acknowledged = 0;
    for run in [4u64, 3] {
        let mut collector =
            crate::collector::start_collector(&cfg, &data, &["--storage.flush-interval=1s"]);
        std::thread::sleep(std::time::Duration::from_secs(run));
        acknowledged += appended(&collector);
        collector.kill_9();
    }
    assert!(
        acknowledged > (TARGETS * SERIES * 20) as u64,
        "too little ingest to mean anything: {acknowledged}"
    );
    assert!(
        std::fs::read_dir(data.join("blocks")).map_or(0, |d| d.count()) >= 1,
        "blocks were not flushed during ingest"
    );

    let text = crate::harness::run_ok(
        Command::new(OURS)
            .args(["debug", "head-dump", "--values"])
            .arg(&data),
    );
    let mut stored = 0u64;
    let mut per_instance: std::collections::HashMap<String, Vec<usize>> =
        std::collections::HashMap::new();
    for line in text.lines().filter(|l| l.starts_with('{')) {
        let (labels, rest) = line.split_once("} ").unwrap();
        let mut fields = rest.split(' ');
        let count: usize = fields.next().unwrap().parse().unwrap();
        stored += count as u64;
        if !labels.contains("__name__=\"heavy_value\"") {
            continue;
        }
        let values: Vec<u64> = fields
            .map(|f| f.split_once(':').unwrap().1.parse::<f64>().unwrap() as u64)
            .collect();
        assert_eq!(values.len(), count);
        // Served counts 1, 2, 3, …: the first scrape is kept and at most one
        // jump (the scrapes missed while the collector was down).
        assert_eq!(values.first(), Some(&1), "{labels}: first scrape missing");
        let jumps = values.windows(2).filter(|w| w[1] != w[0] + 1).count();
        assert!(
            values.windows(2).all(|w| w[1] > w[0]),
            "{labels}: a scrape stored twice or out of order: {values:?}"
        );
        assert!(
            jumps <= 1,
            "{labels}: acknowledged scrapes missing: {values:?}"
        );
        let instance = labels
            .split(',')
            .find(|l| l.starts_with("instance="))
            .unwrap()
            .to_string();
        per_instance.entry(instance).or_default().push(count);
    }
    assert_eq!(per_instance.len(), TARGETS);
    for (instance, counts) in &per_instance {
        assert_eq!(counts.len(), SERIES, "{instance}");
        assert!(
            counts.iter().all(|c| *c == counts[0]),
            "{instance}: a scrape was stored in part: {counts:?}"
        );
    }
    let raw: u64 = text
        .lines()
        .find_map(|l| l.strip_suffix(" raw samples"))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        raw, stored,
        "samples stored twice (blocks and replayed WAL overlap)"
    );
    assert!(
        stored >= acknowledged,
        "{} acknowledged samples lost",
        acknowledged - stored
    );
}
