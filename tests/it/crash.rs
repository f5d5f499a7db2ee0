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
