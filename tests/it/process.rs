//! Our process exporter against Debian's process-exporter with one config.

use crate::expo::{self, value};
use crate::harness::{get_text, http_get, ours, upstream_process_exporter};
use std::process::{Child, Command};

struct Sleepers(Vec<Child>);

impl Drop for Sleepers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

const CONFIG: &str = "process_names:\n  - name: \"{{.Comm}}\"\n    cmdline: ['.+']\n";

#[test]
fn families_and_values_match_process_exporter() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("process.yml");
    std::fs::write(&config, CONFIG).unwrap();
    // Three long sleepers under a name nothing else uses give a stable group to compare values on.
    let sleep_bin = dir.path().join("carbonio-sleep");
    std::fs::copy("/bin/sleep", &sleep_bin).expect("copy /bin/sleep");
    let sleepers = Sleepers(
        (0..3)
            .map(|_| Command::new(&sleep_bin).arg("600").spawn().expect("sleep"))
            .collect(),
    );
    let upstream = upstream_process_exporter(&config);
    let ours = ours("process", &[&format!("--config.path={}", config.display())]);
    let up = expo::parse(&get_text(&upstream.url("/metrics")));
    let our = expo::parse(&get_text(&ours.url("/metrics")));

    let mut problems = Vec::new();
    for (name, f) in &up {
        if name.starts_with("go_") || name.starts_with("promhttp_") {
            continue;
        }
        match our.get(name) {
            None => problems.push(format!("missing family {name}")),
            Some(o) if o.kind != f.kind || o.label_names != f.label_names => {
                problems.push(format!(
                    "{name}: upstream {} {:?}, ours {} {:?}",
                    f.kind, f.label_names, o.kind, o.label_names
                ))
            }
            Some(_) => {}
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    let g = [("groupname", "carbonio-sleep")];
    for name in [
        "namedprocess_namegroup_num_procs",
        "namedprocess_namegroup_num_threads",
    ] {
        assert_eq!(value(&our, name, &g), Some(3.0), "{name} ours");
        assert_eq!(value(&up, name, &g), value(&our, name, &g), "{name}");
    }
    let start = |f| value(f, "namedprocess_namegroup_oldest_start_time_seconds", &g).unwrap();
    assert!(
        (start(&up) - start(&our)).abs() < 1.0,
        "start times {} vs {}",
        start(&up),
        start(&our)
    );
    let rss = |f| {
        value(
            f,
            "namedprocess_namegroup_memory_bytes",
            &[g[0], ("memtype", "resident")],
        )
        .unwrap()
    };
    assert!(
        (rss(&up) - rss(&our)).abs() <= 64.0 * 1024.0,
        "resident {} vs {}",
        rss(&up),
        rss(&our)
    );
    drop(sleepers);
}

#[test]
fn processes_vanishing_mid_scrape_never_fail_the_scrape() {
    let ours = ours("process", &[]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 2000 {
                let _ = Command::new("true").status();
                n += 1;
            }
        })
    };
    for _ in 0..15 {
        let (status, _, body) = http_get(&ours.url("/metrics"), &[]).unwrap();
        assert_eq!(status, 200);
        let fams = expo::parse(&String::from_utf8(body).unwrap());
        assert_eq!(
            value(
                &fams,
                "namedprocess_scrape_collector_success",
                &[("collector", "process")]
            ),
            Some(1.0)
        );
        assert_eq!(value(&fams, "namedprocess_scrape_errors", &[]), Some(0.0));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = churn.join();
}

#[test]
fn invalid_process_config_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.yml");
    std::fs::write(&config, "process_names:\n  - name: x\n    cmdline: ['(']\n").unwrap();
    let out = Command::new(crate::harness::OURS)
        .args(["exporter", "process", "--web.listen-address=127.0.0.1:0"])
        .arg(format!("--config.path={}", config.display()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yml") && err.contains("cmdline regex"),
        "{err}"
    );
}
