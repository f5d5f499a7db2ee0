//! A small reader of exposition text for comparisons in tests.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default)]
pub struct Family {
    pub kind: String,
    pub label_names: BTreeSet<String>,
    /// (sample name, sorted labels) → value
    pub samples: BTreeMap<(String, Vec<(String, String)>), f64>,
}

pub fn parse(text: &str) -> BTreeMap<String, Family> {
    let mut fams: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            let (Some(name), Some(kind)) = (it.next(), it.next()) else {
                continue;
            };
            fams.entry(name.to_string()).or_default().kind = kind.to_string();
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, parse_labels(l.trim_end_matches('}'))),
            None => (series, Vec::new()),
        };
        let family = family_of(&fams, name);
        let f = fams.entry(family).or_default();
        for (k, _) in &labels {
            if k != "le" && k != "quantile" {
                f.label_names.insert(k.clone());
            }
        }
        let v = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().expect("value"),
        };
        f.samples.insert((name.to_string(), labels), v);
    }
    fams
}

fn family_of(fams: &BTreeMap<String, Family>, name: &str) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if fams
                .get(base)
                .is_some_and(|f| f.kind == "summary" || f.kind == "histogram")
            {
                return base.to_string();
            }
        }
    }
    name.to_string()
}

fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(eq) = rest.find("=\"") {
        let key = rest[..eq].trim_start_matches(',').trim().to_string();
        let mut value = String::new();
        let mut chars = rest[eq + 2..].char_indices();
        let mut end = 0;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, e)) = chars.next() {
                        value.push(if e == 'n' { '\n' } else { e });
                    }
                }
                '"' => {
                    end = eq + 2 + i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.push((key, value));
        rest = &rest[end..];
    }
    out.sort();
    out
}

/// Value of the one sample `name` with exactly these labels.
pub fn value(fams: &BTreeMap<String, Family>, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut l: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    l.sort();
    fams.values()
        .find_map(|f| f.samples.get(&(name.to_string(), l.clone())).copied())
}
