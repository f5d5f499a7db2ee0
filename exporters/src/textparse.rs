//! Parser for the Prometheus text format 0.0.4 as written into `*.prom`
//! files for the textfile collector. Errors carry the line number.

use crate::exposition::{Family, Kind, Sample};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {msg}")]
pub struct ParseError {
    pub line: usize,
    pub msg: String,
}

/// A parsed sample that came with a client-side timestamp (milliseconds).
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub families: Vec<Family>,
    pub has_timestamps: bool,
}

pub fn parse(text: &str) -> Result<Parsed, ParseError> {
    let mut families: Vec<Family> = Vec::new();
    let mut has_timestamps = false;
    for (idx, raw) in text.lines().enumerate() {
        let line_no = idx + 1;
        let err = |msg: String| ParseError { line: line_no, msg };
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut parts = comment.trim_start().splitn(3, [' ', '\t']);
            let keyword = parts.next().unwrap_or("");
            if keyword != "HELP" && keyword != "TYPE" {
                continue;
            }
            let name = parts
                .next()
                .filter(|n| valid_name(n))
                .ok_or_else(|| err(format!("{keyword} without a valid metric name")))?;
            let rest = parts.next().unwrap_or("").trim();
            let fam = family_mut(&mut families, name, line_no)?;
            if keyword == "HELP" {
                fam.help = unescape(rest, false).map_err(&err)?;
            } else {
                if !fam.samples.is_empty() {
                    return Err(err(format!("TYPE for {name} after its samples")));
                }
                fam.kind = match rest {
                    "counter" => Kind::Counter,
                    "gauge" => Kind::Gauge,
                    "untyped" => Kind::Untyped,
                    "summary" => Kind::Summary,
                    "histogram" => Kind::Histogram,
                    other => return Err(err(format!("unknown metric type {other:?}"))),
                };
            }
            continue;
        }
        let (name, labels, rest) = parse_series(line).map_err(&err)?;
        let mut fields = rest.split_whitespace();
        let value = fields.next().ok_or_else(|| err("missing value".into()))?;
        let value = parse_value(value).ok_or_else(|| err(format!("invalid value {value:?}")))?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>()
                .map_err(|_| err(format!("invalid timestamp {ts:?}")))?;
            has_timestamps = true;
        }
        if fields.next().is_some() {
            return Err(err("unexpected text after timestamp".into()));
        }
        let (family_name, suffix) = owning_family(&families, name);
        let fam = family_mut(&mut families, family_name, line_no)?;
        fam.samples.push(Sample {
            suffix,
            labels,
            value,
        });
    }
    Ok(Parsed {
        families,
        has_timestamps,
    })
}

fn family_mut<'a>(
    families: &'a mut Vec<Family>,
    name: &str,
    _line: usize,
) -> Result<&'a mut Family, ParseError> {
    if let Some(i) = families.iter().position(|f| f.name == name) {
        return Ok(&mut families[i]);
    }
    families.push(Family::new(name, "", Kind::Untyped));
    let last = families.len() - 1;
    Ok(&mut families[last])
}

/// `foo_bucket` belongs to histogram `foo`, `foo_sum`/`foo_count` to a summary or histogram.
fn owning_family<'n>(families: &[Family], name: &'n str) -> (&'n str, &'static str) {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            let owned = families.iter().any(|f| {
                f.name == base
                    && (f.kind == Kind::Histogram
                        || (f.kind == Kind::Summary && suffix != "_bucket"))
            });
            if owned {
                return (base, suffix);
            }
        }
    }
    (name, "")
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

type Labels = Vec<(String, String)>;

fn parse_series(line: &str) -> Result<(&str, Labels, &str), String> {
    let end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..end];
    if !valid_name(name) {
        return Err(format!("invalid metric name {name:?}"));
    }
    let rest = line[end..].trim_start();
    let Some(mut rest) = rest.strip_prefix('{') else {
        return Ok((name, Vec::new(), rest));
    };
    let mut labels = Vec::new();
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((name, labels, r));
        }
        let eq = rest.find('=').ok_or("label without '='")?;
        let label = rest[..eq].trim();
        if !valid_name(label) || label.contains(':') {
            return Err(format!("invalid label name {label:?}"));
        }
        rest = rest[eq + 1..]
            .trim_start()
            .strip_prefix('"')
            .ok_or("label value must be quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let close = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    _ => return Err("invalid escape in label value".into()),
                },
                Some((_, c)) => value.push(c),
            }
        };
        if labels.iter().any(|(l, _): &(String, String)| l == label) {
            return Err(format!("duplicate label {label:?}"));
        }
        labels.push((label.to_string(), value));
        rest = rest[close + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s
            .parse()
            .ok()
            .filter(|_| !s.eq_ignore_ascii_case("inf") && !s.eq_ignore_ascii_case("nan")),
    }
}

fn unescape(s: &str, quote: bool) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('\\') => out.push('\\'),
            Some('"') if quote => out.push('"'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_families() {
        let p = parse("# HELP a_total Things.\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"\"} 3\n\nb 1.5e3\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n").unwrap();
        assert_eq!(p.families.len(), 3);
        assert_eq!(p.families[0].kind, Kind::Counter);
        assert_eq!(p.families[0].samples[0].labels[1].1, "q\"");
        assert_eq!(p.families[1].samples[0].value, 1500.0);
        assert_eq!(p.families[2].samples.len(), 3);
        assert!(!p.has_timestamps);
    }

    #[test]
    fn errors_have_line_numbers() {
        assert_eq!(parse("ok 1\nbad{ 1\n").unwrap_err().line, 2);
        assert_eq!(parse("# TYPE x nonsense\n").unwrap_err().line, 1);
        assert!(parse("x abc\n").is_err());
        assert!(parse("x{a=\"1\",a=\"2\"} 1\n").is_err());
        assert!(parse("x 1 2 3\n").is_err());
    }

    #[test]
    fn timestamps_are_flagged() {
        assert!(parse("x 1 1700000000000\n").unwrap().has_timestamps);
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse(&s);
        }

        #[test]
        fn never_panics_on_near_valid(name in "[a-z_]{1,8}", lv in "[^\n]{0,12}", v in "[-+0-9.eEInfNa]{0,8}") {
            let _ = parse(&format!("# TYPE {name} gauge\n{name}{{l=\"{lv}\"}} {v}\n"));
        }
    }
}
