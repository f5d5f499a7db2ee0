//! Deployment: the systemd units in `deploy/systemd` (`systemd-analyze
//! verify` accepts each, with ExecStart pointing at the built binary, and
//! the binary accepts every flag each ExecStart passes), and the Debian
//! package `cargo deb` makes of them, installed, run and purged in a clean
//! Debian 12 made by `debootstrap`.

use crate::harness::{free_port, require, run_ok, spawn, wait_http_ok, OURS};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `*.service` files of `dir`, by name.
fn units_in(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut units: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "service"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().to_string(), p))
        .collect();
    units.sort();
    units
}

/// `systemd-analyze verify` of a unit whose ExecStart runs `binary`; gives
/// the unit's text.
fn verify_unit(path: &Path, binary: &Path, scratch: &Path) -> String {
    let analyze = require("systemd-analyze", "systemd");
    let name = path.file_name().unwrap();
    let text = std::fs::read_to_string(path)
        .unwrap()
        .replace("/usr/bin/carbonio-monitor", &binary.to_string_lossy());
    let copy = scratch.join(name);
    std::fs::write(&copy, &text).unwrap();
    let out = Command::new(&analyze)
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{name:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn systemd_units_verify_and_their_flags_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/systemd");
    let tmp = tempfile::tempdir().unwrap();
    let mut units = 0;
    for (name, path) in units_in(&dir) {
        units += 1;
        let text = verify_unit(&path, Path::new(OURS), tmp.path());

        let exec = text
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .unwrap_or_else(|| panic!("{name}: no ExecStart"));
        let args: Vec<&str> = exec
            .split_whitespace()
            .skip(1)
            .filter(|a| *a != "$ARGS")
            .collect();
        // Flags are checked before --help is acted on: an unknown one fails.
        let out = Command::new(OURS)
            .args(&args)
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(units >= 9, "{units} units");
}

/// A clean Debian 12 (minbase) made once by debootstrap and kept under
/// `~/.cache/carbonio-monitor/debian12`; each test works on a copy.
fn clean_debian_12(into: &Path) {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let base = PathBuf::from(home).join(".cache/carbonio-monitor/debian12");
    if !base.join("usr/bin/dpkg").exists() {
        let debootstrap = require("debootstrap", "debootstrap");
        let partial = base.with_extension("partial");
        let _ = std::fs::remove_dir_all(&partial);
        std::fs::create_dir_all(&partial).unwrap();
        let out = Command::new(debootstrap)
            .args(["--variant=minbase", "--include=procps", "bookworm"])
            .arg(&partial)
            .arg("http://deb.debian.org/debian")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "debootstrap of Debian 12 failed (needs root and deb.debian.org): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::remove_dir_all(&base);
        std::fs::rename(&partial, &base).unwrap();
    }
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", base.display()))
            .arg(into),
    );
}

fn in_chroot(root: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("chroot")
        .arg(root)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn debian_package_installs_runs_and_purges_in_a_clean_debian_12() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let has_cargo_deb = Command::new(&cargo)
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        has_cargo_deb,
        "cargo-deb not found: cargo install cargo-deb --version 3.8.0 --locked (./test.sh does)"
    );
    // The package of the binary under test: <target>/debug/carbonio-monitor.
    let target = Path::new(OURS).parent().unwrap().parent().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let out = Command::new(&cargo)
        .args([
            "deb",
            "--no-build",
            "--profile",
            "dev",
            "--fast",
            "--output",
        ])
        .arg(out_dir.path())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CARGO_TARGET_DIR", target)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo deb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deb = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("a .deb");

    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    clean_debian_12(r);
    std::fs::copy(&deb, r.join("tmp/carbonio-monitor.deb")).unwrap();
    let (ok, log) = in_chroot(r, &["dpkg", "-i", "/tmp/carbonio-monitor.deb"]);
    assert!(ok, "dpkg -i: {log}");
    assert!(!log.contains("Warning"), "dpkg -i: {log}");

    // What the package put in place.
    let (ok, passwd) = in_chroot(r, &["getent", "passwd", "carbonio-monitor"]);
    assert!(
        ok && passwd.contains(":/var/lib/carbonio-monitor:/usr/sbin/nologin"),
        "{passwd}"
    );
    let (_, owner) = in_chroot(r, &["stat", "-c", "%U %a", "/var/lib/carbonio-monitor"]);
    assert_eq!(owner.trim(), "carbonio-monitor 750");
    let (ok, conffiles) = in_chroot(
        r,
        &[
            "dpkg-query",
            "--showformat=${Conffiles}",
            "--show",
            "carbonio-monitor",
        ],
    );
    assert!(
        ok && conffiles.contains("/etc/carbonio-monitor/carbonio-monitor.yml"),
        "{conffiles}"
    );
    let (ok, check) = in_chroot(
        r,
        &[
            "carbonio-monitor",
            "check-config",
            "/etc/carbonio-monitor/carbonio-monitor.yml",
        ],
    );
    assert!(ok, "{check}");
    let dashboards = std::fs::read_dir(r.join("usr/share/carbonio-monitor/dashboards"))
        .unwrap()
        .count();
    assert!(dashboards >= 10, "{dashboards} dashboards");
    // The package's configuration counts the same log lines as `run`'s default.
    let config =
        std::fs::read_to_string(r.join("etc/carbonio-monitor/carbonio-monitor.yml")).unwrap();
    let log_metrics = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples/log-metrics.yml"),
    )
    .unwrap();
    assert!(
        config.ends_with(&log_metrics),
        "deploy/debian/carbonio-monitor.yml must end with deploy/examples/log-metrics.yml"
    );
    // The installed units are the verified ones, and verify with the installed binary.
    let scratch = tempfile::tempdir().unwrap();
    let installed: Vec<(String, PathBuf)> = units_in(&r.join("lib/systemd/system"))
        .into_iter()
        .filter(|(name, _)| name.starts_with("carbonio-monitor"))
        .collect();
    let shipped = units_in(&Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/systemd"));
    assert_eq!(
        installed.iter().map(|u| &u.0).collect::<Vec<_>>(),
        shipped.iter().map(|u| &u.0).collect::<Vec<_>>()
    );
    for ((name, path), (_, source)) in installed.iter().zip(&shipped) {
        assert_eq!(
            std::fs::read(path).unwrap(),
            std::fs::read(source).unwrap(),
            "{name}"
        );
        verify_unit(path, &r.join("usr/bin/carbonio-monitor"), scratch.path());
    }

    // carbonio-monitor.service's command, as its user, in the chroot (with
    // its own /proc); the syslog port moved off the shared 1514.
    let syslog_port = free_port();
    let etc = r.join("etc/carbonio-monitor/carbonio-monitor.yml");
    std::fs::write(&etc, config.replace("1514", &syslog_port.to_string())).unwrap();
    let port = free_port();
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--fork", "--kill-child=SIGTERM", "sh", "-c"]).arg(format!(
        "mount -t proc proc {root}/proc && exec chroot --userspec=carbonio-monitor:carbonio-monitor {root} \
         /usr/bin/carbonio-monitor run --config /etc/carbonio-monitor/carbonio-monitor.yml \
         --data /var/lib/carbonio-monitor --web.listen-address=127.0.0.1:{port}",
        root = r.display()
    ));
    let svc = spawn("packaged run", tempfile::tempdir().unwrap(), port, cmd);
    wait_http_ok(&svc, "/-/ready");
    let metrics = crate::harness::get_text(&svc.url("/metrics"));
    assert!(
        metrics.contains("carbonio_collector_wal_bytes"),
        "{metrics}"
    );
    drop(svc);
    let (_, wal_owner) = in_chroot(r, &["stat", "-c", "%U", "/var/lib/carbonio-monitor/wal"]);
    assert_eq!(wal_owner.trim(), "carbonio-monitor");

    // Removal keeps the configuration; purge takes configuration and data.
    let (ok, log) = in_chroot(r, &["dpkg", "-r", "carbonio-monitor"]);
    assert!(ok, "dpkg -r: {log}");
    assert!(!r.join("usr/bin/carbonio-monitor").exists());
    assert!(etc.exists() && r.join("var/lib/carbonio-monitor/wal").exists());
    let (ok, log) = in_chroot(r, &["dpkg", "--purge", "carbonio-monitor"]);
    assert!(ok, "dpkg --purge: {log}");
    assert!(!etc.exists() && !r.join("var/lib/carbonio-monitor").exists());
}
