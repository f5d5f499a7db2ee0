//! Exporter serving: formats, gzip, landing page, basic auth, TLS, bad web configs.

use crate::harness::{free_port, http_get, ours, require, wait_until, OURS};
use std::io::Read;
use std::process::Command;
use std::time::Duration;

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn formats_gzip_and_landing_page() {
    let svc = ours(
        "node",
        &["--collector.disable-defaults", "--collector.loadavg"],
    );
    let (status, headers, body) = http_get(&svc.url("/metrics"), &[]).unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains("# TYPE node_load1 gauge\nnode_load1 "),
        "{text}"
    );
    assert!(text.contains("node_exporter_build_info{"));
    assert!(text.contains("process_resident_memory_bytes "));
    assert!(text.contains("node_scrape_collector_success{collector=\"loadavg\"} 1"));
    assert!(!text.contains("collector=\"cpu\""), "cpu was not enabled");

    let prom_accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let (_, headers, body) = http_get(&svc.url("/metrics"), &[("Accept", prom_accept)]).unwrap();
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let om = String::from_utf8(body).unwrap();
    assert!(om.ends_with("# EOF\n"));
    assert!(om.contains("# TYPE process_cpu_seconds counter\n"));
    assert!(om.contains("\nprocess_cpu_seconds_total "));

    let (_, headers, body) =
        http_get(&svc.url("/metrics"), &[("Accept-Encoding", "gzip")]).unwrap();
    assert_eq!(header(&headers, "content-encoding"), Some("gzip"));
    let mut plain = String::new();
    flate2::read::GzDecoder::new(body.as_slice())
        .read_to_string(&mut plain)
        .unwrap();
    assert!(plain.contains("node_load1 "));

    let (status, _, body) = http_get(&svc.url("/"), &[]).unwrap();
    assert_eq!(status, 200);
    assert!(String::from_utf8(body)
        .unwrap()
        .contains("href=\"/metrics\""));
    let (status, _, _) = http_get(&svc.url("/nope"), &[]).unwrap();
    assert_eq!(status, 404);
}

#[test]
fn basic_auth_with_bcrypt_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(&web, format!("basic_auth_users:\n  prometheus: {hash}\nhttp_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n")).unwrap();
    let svc = ours(
        "node",
        &[
            "--collector.disable-defaults",
            "--collector.loadavg",
            &format!("--web.config.file={}", web.display()),
        ],
    );
    let url = svc.url("/metrics");
    wait_until("exporter with basic auth", Duration::from_secs(20), || {
        http_get(&url, &[]).is_ok()
    });
    let (status, headers, _) = http_get(&url, &[]).unwrap();
    assert_eq!(status, 401);
    assert_eq!(header(&headers, "www-authenticate"), Some("Basic"));
    // "prometheus:wrong" and "prometheus:s3cret"
    let (status, _, _) =
        http_get(&url, &[("Authorization", "Basic cHJvbWV0aGV1czp3cm9uZw==")]).unwrap();
    assert_eq!(status, 401);
    let (status, headers, _) =
        http_get(&url, &[("Authorization", "Basic cHJvbWV0aGV1czpzM2NyZXQ=")]).unwrap();
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
    // The password must not appear in our logs.
    let log =
        std::fs::read_to_string(svc.path("carbonio-monitor exporter node.log")).unwrap_or_default();
    assert!(!log.contains("s3cret"));
}

#[test]
fn tls_from_web_config() {
    let curl = require("curl", "curl");
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = crate::harness::test_pki(dir.path());
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  min_version: TLS12\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let svc = ours(
        "node",
        &[
            "--collector.disable-defaults",
            "--collector.uname",
            &format!("--web.config.file={}", web.display()),
        ],
    );
    let url = format!("https://127.0.0.1:{}/metrics", svc.port);
    let mut body = String::new();
    wait_until("TLS exporter", Duration::from_secs(20), || {
        let out = Command::new(&curl)
            .args(["-sS", "--fail", "--cacert"])
            .arg(&ca)
            .arg(&url)
            .output()
            .unwrap();
        body = String::from_utf8_lossy(&out.stdout).into_owned();
        out.status.success()
    });
    assert!(body.contains("node_uname_info{"), "{body}");
    // Plain HTTP to the TLS port does not get metrics.
    assert!(!matches!(
        http_get(&svc.url("/metrics"), &[]),
        Ok((200, _, _))
    ));
}

fn run_ours(args: &[&str]) -> (bool, String) {
    let out = Command::new(OURS).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn malformed_web_configs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("typo.yml", "basic_auth_user:\n  a: b\n", "unknown field `basic_auth_user`"),
        ("plain.yml", "basic_auth_users:\n  a: plaintext\n", "not a bcrypt hash"),
        ("nocert.yml", "tls_server_config:\n  cert_file: /nonexistent/cert.pem\n  key_file: /nonexistent/key.pem\n", "/nonexistent/cert.pem"),
        ("yaml.yml", "tls_server_config: [\n", "yaml.yml"),
    ];
    for (file, content, expected) in cases {
        let path = dir.path().join(file);
        std::fs::write(&path, content).unwrap();
        let port = free_port();
        let (ok, err) = run_ours(&[
            "exporter",
            "node",
            &format!("--web.listen-address=127.0.0.1:{port}"),
            &format!("--web.config.file={}", path.display()),
        ]);
        assert!(!ok, "{file} was accepted");
        assert!(err.contains(expected), "{file}: {err}");
        assert!(
            err.contains(file),
            "{file}: error does not name the file: {err}"
        );
    }
    let (ok, err) = run_ours(&[
        "exporter",
        "node",
        "--web.listen-address=127.0.0.1:0",
        "--web.config.file=/nonexistent/web.yml",
    ]);
    assert!(!ok && err.contains("/nonexistent/web.yml"), "{err}");
}

#[test]
fn bad_subcommand_arguments_fail_with_the_reason() {
    let (ok, err) = run_ours(&["import", "zmstat", "/nonexistent/zmstat"]);
    assert!(!ok, "import zmstat succeeded");
    assert!(err.contains("/nonexistent/zmstat"), "import zmstat: {err}");
    let (ok, err) = run_ours(&["exporter", "node", "--no-collector.nonsense"]);
    assert!(!ok, "unknown collector accepted: {err}");
}
