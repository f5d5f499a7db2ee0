//! Our nginx exporter against Debian's nginx-prometheus-exporter on one nginx.

use crate::expo::{self, value};
use crate::harness::{self, get_text, ours};
use std::net::TcpListener;
use std::time::{Duration, Instant};

#[test]
fn families_match_upstream_and_counters_move_exactly() {
    let nginx = harness::nginx();
    let uri = nginx.url("/stub_status");
    let upstream = harness::upstream_nginx_exporter(&uri);
    let ours = ours("nginx", &[&format!("--nginx.scrape-uri={uri}")]);

    let up = expo::parse(&get_text(&upstream.url("/metrics")));
    let our = expo::parse(&get_text(&ours.url("/metrics")));
    let mut problems = Vec::new();
    for (name, f) in &up {
        if name.starts_with("go_") || name.starts_with("promhttp_") || name.starts_with("process_")
        {
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
    assert_eq!(value(&our, "nginx_up", &[]), Some(1.0));

    // 25 requests on fresh connections, then one more scrape: a request on the
    // exporter's kept-alive connection, so no new connection.
    let before = expo::parse(&get_text(&ours.url("/metrics")));
    for _ in 0..25 {
        get_text(&nginx.url("/stub_status"));
    }
    let after = expo::parse(&get_text(&ours.url("/metrics")));
    for (name, expected) in [
        ("nginx_http_requests_total", 26.0),
        ("nginx_connections_accepted", 25.0),
        ("nginx_connections_handled", 25.0),
    ] {
        let delta = value(&after, name, &[]).unwrap() - value(&before, name, &[]).unwrap();
        assert_eq!(delta, expected, "{name}");
    }
    // The scrape's own connection is active and being written to while nginx answers it.
    assert!(value(&after, "nginx_connections_active", &[]).unwrap() >= 1.0);
    assert!(value(&after, "nginx_connections_writing", &[]).unwrap() >= 1.0);
}

fn nginx_up(svc: &harness::Service) -> Option<f64> {
    value(
        &expo::parse(&get_text(&svc.url("/metrics"))),
        "nginx_up",
        &[],
    )
}

#[test]
fn unreachable_garbage_and_slow_sources_give_up_0() {
    // Nothing listens on this port.
    let closed = harness::free_port();
    let down = ours(
        "nginx",
        &[&format!(
            "--nginx.scrape-uri=http://127.0.0.1:{closed}/stub_status"
        )],
    );
    assert_eq!(nginx_up(&down), Some(0.0));

    // A page that is not stub_status (our own landing page).
    let garbage = ours("nginx", &[&format!("--nginx.scrape-uri={}", down.url("/"))]);
    assert_eq!(nginx_up(&garbage), Some(0.0));

    // A server that accepts and never answers: the timeout bounds the scrape.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let slow = ours(
        "nginx",
        &[
            &format!("--nginx.scrape-uri=http://{addr}/stub_status"),
            "--nginx.timeout=300ms",
        ],
    );
    let t = Instant::now();
    assert_eq!(nginx_up(&slow), Some(0.0));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "scrape took {:?}",
        t.elapsed()
    );
    drop(silent);
}

fn class(f: &std::collections::BTreeMap<String, expo::Family>, class: &str) -> f64 {
    value(
        f,
        "nginx_access_log_requests_total",
        &[("status_class", class)],
    )
    .unwrap_or(f64::NAN)
}

#[test]
fn access_log_counts_status_classes_across_rotations() {
    // One nginx serves the traffic and writes the log; another serves
    // stub_status, so the exporter's own scrapes stay out of the log.
    let site = harness::nginx();
    let stub = harness::nginx();
    let log = site.path("access.log");
    let ours = ours(
        "nginx",
        &[
            &format!("--nginx.scrape-uri={}", stub.url("/stub_status")),
            &format!("--nginx.access-log={}", log.display()),
        ],
    );
    let scrape = || {
        std::thread::sleep(Duration::from_millis(300)); // nginx logs just after answering
        expo::parse(&get_text(&ours.url("/metrics")))
    };
    let hit = |path: &str, n: usize| {
        for _ in 0..n {
            let _ = harness::http_get(&site.url(path), &[]).unwrap();
        }
    };
    let a = scrape();
    hit("/stub_status", 5);
    hit("/missing", 3);
    let b = scrape();
    assert_eq!(
        (
            class(&b, "2xx") - class(&a, "2xx"),
            class(&b, "4xx") - class(&a, "4xx")
        ),
        (5.0, 3.0)
    );
    assert!(
        value(
            &b,
            "nginx_access_log_response_bytes_total",
            &[("status_class", "2xx")]
        )
        .unwrap()
            > 0.0
    );

    // Rotation by rename: nginx keeps writing the renamed file until USR1 reopens.
    std::fs::rename(&log, site.path("access.log.1")).unwrap();
    hit("/stub_status", 2);
    let pid = std::fs::read_to_string(site.path("nginx.pid")).unwrap();
    assert!(std::process::Command::new("kill")
        .args(["-USR1", pid.trim()])
        .status()
        .unwrap()
        .success());
    harness::wait_until("nginx to reopen its log", Duration::from_secs(10), || {
        log.exists()
    });
    hit("/missing", 4);
    let c = scrape();
    assert_eq!(
        (
            class(&c, "2xx") - class(&b, "2xx"),
            class(&c, "4xx") - class(&b, "4xx")
        ),
        (2.0, 4.0)
    );

    // copytruncate: the file is emptied in place and nginx appends from its start.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    hit("/missing", 2);
    let d = scrape();
    assert_eq!(
        (
            class(&d, "2xx") - class(&c, "2xx"),
            class(&d, "4xx") - class(&c, "4xx")
        ),
        (0.0, 2.0)
    );
    assert_eq!(
        value(&d, "nginx_access_log_unparsed_lines_total", &[]),
        Some(0.0)
    );
    // Carbonio's format has no $request_time: the histogram stays empty.
    assert_eq!(
        value(&d, "nginx_access_log_request_duration_seconds_count", &[]),
        Some(0.0)
    );
}
