//! `bench encodings`: bytes per sample of our Parquet blocks under several
//! encodings, against Prometheus's TSDB block built by promtool from the same
//! samples. The data is real: consecutive scrapes of our node and process
//! exporters, stamped 15 s apart as a 15 s scrape interval would.

use anyhow::{bail, Context, Result};
use carbonio_collector::relabel::Labels;
use carbonio_collector::scrape::parse::{Event, Format, Parser};
use carbonio_collector::store::block::{write_block, Codec, Encodings};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

pub fn run(binary: &Path, scrapes: usize) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build();
    let mut series: HashMap<Labels, u64> = HashMap::new();
    let mut samples: Vec<(u64, i64, f64)> = Vec::new();
    let start_ms: i64 = 1_700_000_000_000;
    for (kind, extra) in [("node", vec![]), ("process", vec![])] {
        let port = super::free_port()?;
        let mut args = vec![
            "exporter".to_string(),
            kind.to_string(),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ];
        args.extend(extra);
        let mut exporter = super::Exporter::start(
            format!("{kind} (ours)"),
            binary,
            &args,
            &[],
            port,
            tmp.path(),
            "build with cargo build --release".into(),
        )?;
        exporter.wait_ready(&agent)?;
        eprintln!("{kind}: {scrapes} scrapes");
        for i in 0..scrapes {
            let body = exporter.scrape(&agent)?;
            let ts = start_ms + i as i64 * 15_000;
            for ev in Parser::new(&body, Format::Text004) {
                let Event::Sample(s) = ev.context("parsing our own exporter")? else {
                    continue;
                };
                let value = s.value;
                let mut labels = s.into_labels();
                labels.insert("job".into(), kind.into());
                labels.insert("instance".into(), "mail1.example.com:9100".into());
                let next = series.len() as u64 + 1;
                let id = *series.entry(labels).or_insert(next);
                samples.push((id, ts, value));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let mut series_list: Vec<(u64, Labels)> =
        series.iter().map(|(l, id)| (*id, l.clone())).collect();
    series_list.sort_by_key(|(id, _)| *id);
    println!(
        "\n{} series, {} samples ({scrapes} scrapes of node + process, 15 s apart)\n",
        series_list.len(),
        samples.len()
    );
    println!("{:<72} {:>12} {:>10}", "layout", "bytes", "B/sample");
    let configs = [
        (
            "parquet plain, uncompressed",
            Encodings {
                ids_delta: false,
                timestamps_delta: false,
                values_byte_stream_split: false,
                dictionary: false,
                compression: Codec::None,
            },
        ),
        (
            "parquet plain + snappy",
            Encodings {
                ids_delta: false,
                timestamps_delta: false,
                values_byte_stream_split: false,
                dictionary: false,
                compression: Codec::Snappy,
            },
        ),
        (
            "parquet plain + zstd(3)",
            Encodings {
                ids_delta: false,
                timestamps_delta: false,
                values_byte_stream_split: false,
                dictionary: false,
                compression: Codec::Zstd(3),
            },
        ),
        (
            "parquet dictionary + zstd(3)",
            Encodings {
                ids_delta: false,
                timestamps_delta: false,
                values_byte_stream_split: false,
                dictionary: true,
                compression: Codec::Zstd(3),
            },
        ),
        (
            "parquet delta ids/ts + zstd(3)",
            Encodings {
                values_byte_stream_split: false,
                ..Encodings::default()
            },
        ),
        (
            "parquet delta ids/ts + byte-stream-split values + zstd(3) [our default]",
            Encodings::default(),
        ),
        (
            "parquet delta ids/ts + zstd(9)",
            Encodings {
                values_byte_stream_split: false,
                compression: Codec::Zstd(9),
                ..Encodings::default()
            },
        ),
    ];
    for (name, enc) in configs {
        let dir = tmp
            .path()
            .join(name.replace([' ', '(', ')', '/', '+'], "_"));
        let mut s = samples.clone();
        let meta = write_block(&dir, &series_list, &mut s, enc)
            .with_context(|| format!("writing {name}"))?;
        println!(
            "{name:<72} {:>12} {:>10.2}",
            meta.bytes,
            meta.bytes_per_sample()
        );
    }
    // Prometheus: the same samples as OpenMetrics, into a TSDB block with promtool.
    let om = tmp.path().join("samples.om");
    std::fs::write(&om, openmetrics(&series_list, &samples))?;
    let out = tmp.path().join("prometheus-blocks");
    let status = std::process::Command::new("/usr/bin/promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&om)
        .arg(&out)
        .output()
        .context("running promtool: install the Debian package prometheus")?;
    if !status.status.success() {
        bail!(
            "promtool failed: {}",
            String::from_utf8_lossy(&status.stderr)
        );
    }
    let bytes = dir_size(&out)?;
    println!(
        "{:<72} {:>12} {:>10.2}",
        "prometheus tsdb block (promtool create-blocks-from)",
        bytes,
        bytes as f64 / samples.len() as f64
    );
    Ok(())
}

fn openmetrics(series: &[(u64, Labels)], samples: &[(u64, i64, f64)]) -> String {
    let mut by_id: BTreeMap<u64, Vec<(i64, f64)>> = BTreeMap::new();
    for (id, ts, v) in samples {
        by_id.entry(*id).or_default().push((*ts, *v));
    }
    let mut by_name: BTreeMap<&str, Vec<&(u64, Labels)>> = BTreeMap::new();
    for s in series {
        by_name
            .entry(s.1.get("__name__").map(String::as_str).unwrap_or(""))
            .or_default()
            .push(s);
    }
    let mut out = String::new();
    for (name, list) in by_name {
        let _ = writeln!(out, "# TYPE {name} unknown");
        for (id, labels) in list {
            let l: Vec<String> = labels
                .iter()
                .filter(|(k, _)| *k != "__name__")
                .map(|(k, v)| {
                    format!(
                        "{k}=\"{}\"",
                        v.replace('\\', "\\\\")
                            .replace('"', "\\\"")
                            .replace('\n', "\\n")
                    )
                })
                .collect();
            for (ts, v) in by_id.get(id).into_iter().flatten() {
                let v = if v.is_nan() {
                    "NaN".to_string()
                } else if v.is_infinite() {
                    if *v > 0.0 {
                        "+Inf".into()
                    } else {
                        "-Inf".into()
                    }
                } else {
                    format!("{v}")
                };
                let _ = writeln!(
                    out,
                    "{name}{{{}}} {v} {}.{:03}",
                    l.join(","),
                    ts / 1000,
                    ts % 1000
                );
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

fn dir_size(p: &Path) -> Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(p)? {
        let e = e?;
        let m = e.metadata()?;
        total += if m.is_dir() {
            dir_size(&e.path())?
        } else {
            m.len()
        };
    }
    Ok(total)
}
