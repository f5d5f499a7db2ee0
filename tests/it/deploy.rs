//! The systemd units in `deploy/systemd`: `systemd-analyze verify` accepts
//! each (with ExecStart pointing at the built binary), and the binary
//! accepts every flag each ExecStart passes.

use crate::harness::{require, OURS};
use std::path::Path;
use std::process::Command;

#[test]
fn systemd_units_verify_and_their_flags_parse() {
    let analyze = require("systemd-analyze", "systemd");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/systemd");
    let tmp = tempfile::tempdir().unwrap();
    let mut units = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "service") {
            continue;
        }
        units += 1;
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("/usr/bin/carbonio-monitor", OURS);
        let copy = tmp.path().join(&name);
        std::fs::write(&copy, &text).unwrap();
        let out = Command::new(&analyze)
            .arg("verify")
            .arg(&copy)
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );

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
