//! Our node exporter against Debian's node_exporter on the same machine.

use crate::expo::{self, value};
use crate::harness::{get_text, http_get, ours, upstream_node_exporter};
use std::time::Instant;

/// Families of collectors that failed upstream are left out of the comparison.
fn failed_collectors(text: &str) -> Vec<String> {
    let fams = expo::parse(text);
    fams.get("node_scrape_collector_success")
        .map(|f| {
            f.samples
                .iter()
                .filter(|(_, v)| **v == 0.0)
                .filter_map(|((_, labels), _)| {
                    labels
                        .iter()
                        .find(|(k, _)| k == "collector")
                        .map(|(_, v)| v.clone())
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn families_types_and_labels_match_node_exporter() {
    let textfiles = tempfile::tempdir().unwrap();
    std::fs::write(
        textfiles.path().join("carbonio.prom"),
        "# HELP mailboxd_soap_count SOAP requests.\n# TYPE mailboxd_soap_count gauge\nmailboxd_soap_count{host=\"mbox1\"} 42\n",
    )
    .unwrap();
    let dir_flag = format!(
        "--collector.textfile.directory={}",
        textfiles.path().display()
    );
    let upstream = upstream_node_exporter(&[&dir_flag]);
    let ours = ours("node", &[&dir_flag]);

    let t0 = Instant::now();
    let up_text = get_text(&upstream.url("/metrics"));
    let our_text = get_text(&ours.url("/metrics"));
    let between = t0.elapsed().as_secs_f64();

    let failed = failed_collectors(&up_text);
    let up = expo::parse(&up_text);
    let our = expo::parse(&our_text);
    let mut problems = Vec::new();
    let mut compared = 0;
    for (name, f) in &up {
        if name.starts_with("go_") || name.starts_with("promhttp_") {
            continue;
        }
        let Some(o) = our.get(name) else {
            problems.push(format!("missing family {name} ({})", f.kind));
            continue;
        };
        compared += 1;
        if o.kind != f.kind {
            problems.push(format!("{name}: type {} upstream, {} ours", f.kind, o.kind));
        }
        if o.label_names != f.label_names {
            problems.push(format!(
                "{name}: labels {:?} upstream, {:?} ours",
                f.label_names, o.label_names
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} differences (upstream failed collectors: {failed:?}):\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert!(compared > 150, "only {compared} families compared");

    // Slow-moving values agree.
    let mem = |f: &std::collections::BTreeMap<String, expo::Family>| {
        value(f, "node_memory_MemTotal_bytes", &[])
    };
    assert_eq!(mem(&up), mem(&our), "MemTotal");
    assert!(mem(&our).is_some());
    let fs = &up["node_filesystem_size_bytes"];
    assert!(!fs.samples.is_empty());
    for ((name, labels), v) in &fs.samples {
        let l: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            value(&our, name, &l),
            Some(*v),
            "filesystem size {labels:?}"
        );
    }
    assert_eq!(
        value(&up, "node_boot_time_seconds", &[]),
        value(&our, "node_boot_time_seconds", &[])
    );
    for ((name, labels), v) in &up["node_cpu_seconds_total"].samples {
        let l: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let o = value(&our, name, &l).unwrap_or_else(|| panic!("no cpu sample {labels:?}"));
        assert!(
            (o - v).abs() <= 1.0 + between,
            "cpu {labels:?}: upstream {v}, ours {o}"
        );
    }
    assert_eq!(
        value(&our, "mailboxd_soap_count", &[("host", "mbox1")]),
        Some(42.0)
    );
    assert_eq!(
        value(&up, "mailboxd_soap_count", &[("host", "mbox1")]),
        Some(42.0)
    );
    assert_eq!(value(&our, "node_textfile_scrape_error", &[]), Some(0.0));
}

#[test]
fn bad_textfile_is_flagged_and_others_kept() {
    let textfiles = tempfile::tempdir().unwrap();
    std::fs::write(textfiles.path().join("good.prom"), "carbonio_good 1\n").unwrap();
    std::fs::write(textfiles.path().join("bad.prom"), "carbonio_bad{ 1\n").unwrap();
    std::fs::write(
        textfiles.path().join("stamped.prom"),
        "carbonio_stamped 1 1700000000000\n",
    )
    .unwrap();
    let ours = ours(
        "node",
        &[&format!(
            "--collector.textfile.directory={}",
            textfiles.path().display()
        )],
    );
    let fams = expo::parse(&get_text(&ours.url("/metrics")));
    assert_eq!(value(&fams, "carbonio_good", &[]), Some(1.0));
    assert_eq!(value(&fams, "carbonio_bad", &[]), None);
    // node_exporter skips a file with timestamps; Carbonio's mailbox writes
    // them that way, so we keep its values (without the timestamps).
    assert_eq!(value(&fams, "carbonio_stamped", &[]), Some(1.0));
    assert_eq!(value(&fams, "node_textfile_scrape_error", &[]), Some(1.0));
    assert_eq!(
        value(
            &fams,
            "node_scrape_collector_success",
            &[("collector", "textfile")]
        ),
        Some(1.0)
    );
}

/// A /proc with garbage and missing files: a partial scrape with
/// `node_scrape_collector_success 0` for the affected collectors, never a 500.
#[test]
fn unreadable_proc_files_give_partial_scrape() {
    let fake = tempfile::tempdir().unwrap();
    let p = fake.path();
    std::fs::write(p.join("loadavg"), "garbage\n").unwrap();
    std::fs::write(
        p.join("stat"),
        "cpu  1 2 3 4 5 6 7 8 9 10\ncpu0 x y\nbtime notanumber\n",
    )
    .unwrap();
    std::fs::write(
        p.join("meminfo"),
        "MemTotal:       1024 kB\nMemFree: lots kB\n",
    )
    .unwrap();
    std::fs::create_dir_all(p.join("sys/fs")).unwrap();
    std::fs::write(p.join("sys/fs/file-nr"), "1\t0\n").unwrap();
    let ours = ours("node", &[&format!("--path.procfs={}", p.display())]);
    let (status, _, body) = http_get(&ours.url("/metrics"), &[]).unwrap();
    assert_eq!(status, 200);
    let fams = expo::parse(&String::from_utf8(body).unwrap());
    for collector in [
        "loadavg",
        "cpu",
        "stat",
        "meminfo",
        "filefd",
        "diskstats",
        "vmstat",
    ] {
        assert_eq!(
            value(
                &fams,
                "node_scrape_collector_success",
                &[("collector", collector)]
            ),
            Some(0.0),
            "{collector} should fail on the fake /proc"
        );
    }
    // Collectors that do not read /proc still succeed.
    assert_eq!(
        value(
            &fams,
            "node_scrape_collector_success",
            &[("collector", "uname")]
        ),
        Some(1.0)
    );
    assert!(
        value(&fams, "node_uname_info", &[]).is_none(),
        "uname_info has labels"
    );
    assert!(fams.contains_key("node_uname_info"));
}
