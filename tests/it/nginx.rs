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
