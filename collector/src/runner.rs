//! Runs the scrapes: one thread per target, started at a per-target offset
//! inside the interval and then every interval, appending each scrape to the
//! store as one batch.

use crate::config::Job;
use crate::discovery;
use crate::relabel::Labels;
use crate::scrape::target::{jitter, Scraper, TargetState};
use crate::store::Store;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Starts a scrape loop for every target of every job; they run until `stop` is set.
pub fn start(jobs: &[Job], store: Arc<Store>, stop: Arc<AtomicBool>) -> Vec<JoinHandle<()>> {
    let mut handles = Vec::new();
    for job in jobs {
        let (targets, errors) = discovery::targets(job);
        for e in errors {
            tracing::error!(job = %job.config.job_name, error = %e, "target discovery failed");
        }
        for t in targets.into_iter().filter_map(|t| t.labels) {
            let (job, store, stop) = (job.clone(), store.clone(), stop.clone());
            let name = format!(
                "scrape {}",
                t.get("instance").map(String::as_str).unwrap_or("?")
            );
            let spawned = std::thread::Builder::new()
                .name(name)
                .spawn(move || scrape_loop(&job, &t, &store, &stop));
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => tracing::error!(error = %e, "could not start a scrape thread"),
            }
        }
    }
    handles
}

fn scrape_loop(job: &Job, target: &Labels, store: &Store, stop: &AtomicBool) {
    let interval = job.interval.as_millis().max(1) as i64;
    let offset = jitter(target, job.interval).as_millis() as i64;
    let mut next = (now_ms() / interval) * interval + offset;
    if next < now_ms() {
        next += interval;
    }
    let scraper = Scraper::new();
    let mut state = TargetState::default();
    loop {
        // Sleep in short steps so a stop request is seen promptly.
        while now_ms() < next {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let left = (next - now_ms()).clamp(1, 100) as u64;
            std::thread::sleep(Duration::from_millis(left));
        }
        let ts = now_ms();
        let result = scraper.scrape(job, target, &mut state, ts);
        if let Some(e) = &result.error {
            tracing::warn!(job = %job.config.job_name, instance = target.get("instance").map(String::as_str).unwrap_or(""), error = %e, "scrape failed");
        }
        let batch: Vec<(Labels, i64, f64)> = result
            .samples
            .into_iter()
            .map(|s| (s.labels, s.timestamp_ms, s.value))
            .collect();
        if let Err(e) = store.append(&batch) {
            tracing::error!(error = %e, "writing the scrape to the WAL failed; samples not acknowledged");
        }
        next += interval;
        // After a long stall, skip missed slots rather than scraping in a burst.
        while next <= now_ms() {
            next += interval;
        }
    }
}
