//! Our own exposition writer: byte-compatible Prometheus text 0.0.4 (what
//! client_golang writes) and OpenMetrics 1.0.0.

use std::fmt::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Untyped,
    Summary,
    Histogram,
}

impl Kind {
    fn text_name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Untyped => "untyped",
            Kind::Summary => "summary",
            Kind::Histogram => "histogram",
        }
    }
    fn openmetrics_name(self) -> &'static str {
        match self {
            Kind::Untyped => "unknown",
            other => other.text_name(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Appended to the family name: "", "_sum", "_count", "_bucket".
    pub suffix: &'static str,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: String,
    pub help: String,
    pub kind: Kind,
    pub samples: Vec<Sample>,
}

impl Family {
    pub fn new(name: impl Into<String>, help: impl Into<String>, kind: Kind) -> Self {
        Family {
            name: name.into(),
            help: help.into(),
            kind,
            samples: Vec::new(),
        }
    }
    pub fn counter(name: impl Into<String>, help: impl Into<String>) -> Self {
        Self::new(name, help, Kind::Counter)
    }
    pub fn gauge(name: impl Into<String>, help: impl Into<String>) -> Self {
        Self::new(name, help, Kind::Gauge)
    }
    pub fn untyped(name: impl Into<String>, help: impl Into<String>) -> Self {
        Self::new(name, help, Kind::Untyped)
    }

    /// Adds a sample; `labels` are (name, value) pairs in any order.
    pub fn add(&mut self, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.samples.push(Sample {
            suffix: "",
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        });
        self
    }

    /// Builder form of [`Family::add`] for single-sample families.
    pub fn with(mut self, labels: &[(&str, &str)], value: f64) -> Self {
        self.add(labels, value);
        self
    }
}

/// Sorts families by name, merges duplicates, and sorts labels and samples
/// the way client_golang does, so output is stable and comparable.
pub fn normalize(mut families: Vec<Family>) -> Vec<Family> {
    for f in &mut families {
        for s in &mut f.samples {
            s.labels.sort();
        }
    }
    families.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out: Vec<Family> = Vec::with_capacity(families.len());
    for f in families {
        match out.last_mut() {
            Some(last) if last.name == f.name => last.samples.extend(f.samples),
            _ => out.push(f),
        }
    }
    for f in &mut out {
        f.samples.sort_by(|a, b| {
            let ka = a.labels.iter().map(|(_, v)| v.as_str());
            let kb = b.labels.iter().map(|(_, v)| v.as_str());
            ka.cmp(kb).then(a.suffix.cmp(b.suffix))
        });
        f.samples
            .dedup_by(|a, b| a.suffix == b.suffix && a.labels == b.labels);
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text004,
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text004 => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// Picks the format from an `Accept` header, honouring q-values.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text004;
        };
        let mut best = (Format::Text004, 0.0f32);
        let mut text_q = 0.0f32;
        for part in accept.split(',') {
            let mut params = part.split(';').map(str::trim);
            let media = params.next().unwrap_or("").to_ascii_lowercase();
            let mut q = 1.0f32;
            let mut version = None;
            for p in params {
                if let Some(v) = p.strip_prefix("q=") {
                    q = v.parse().unwrap_or(0.0);
                } else if let Some(v) = p.strip_prefix("version=") {
                    version = Some(v.to_string());
                }
            }
            match media.as_str() {
                "application/openmetrics-text" => {
                    let supported = version.as_deref().is_none_or(|v| v == "1.0.0");
                    if supported && q > best.1 {
                        best = (Format::OpenMetrics, q);
                    }
                }
                "text/plain" | "*/*" | "text/*" => text_q = text_q.max(q),
                _ => {}
            }
        }
        if best.0 == Format::OpenMetrics && best.1 >= text_q {
            Format::OpenMetrics
        } else {
            Format::Text004
        }
    }
}

pub fn encode(families: &[Family], format: Format) -> String {
    let mut out = String::with_capacity(families.len() * 256);
    match format {
        Format::Text004 => encode_text(families, &mut out),
        Format::OpenMetrics => encode_openmetrics(families, &mut out),
    }
    out
}

fn encode_text(families: &[Family], out: &mut String) {
    for f in families {
        if f.samples.is_empty() {
            continue;
        }
        out.push_str("# HELP ");
        out.push_str(&f.name);
        out.push(' ');
        escape_into(out, &f.help, false);
        out.push_str("\n# TYPE ");
        out.push_str(&f.name);
        out.push(' ');
        out.push_str(f.kind.text_name());
        out.push('\n');
        for s in &f.samples {
            write_sample(out, &f.name, s.suffix, &s.labels, s.value);
        }
    }
}

fn encode_openmetrics(families: &[Family], out: &mut String) {
    for f in families {
        if f.samples.is_empty() {
            continue;
        }
        // OpenMetrics names counter families without `_total`; samples carry it.
        let (family_name, sample_suffix) = match f.kind {
            Kind::Counter => (f.name.strip_suffix("_total").unwrap_or(&f.name), "_total"),
            _ => (f.name.as_str(), ""),
        };
        let _ = write!(
            out,
            "# TYPE {} {}\n# HELP {} ",
            family_name,
            f.kind.openmetrics_name(),
            family_name
        );
        escape_into(out, &f.help, true);
        out.push('\n');
        for s in &f.samples {
            let suffix = if s.suffix.is_empty() {
                sample_suffix
            } else {
                s.suffix
            };
            write_sample(out, family_name, suffix, &s.labels, s.value);
        }
    }
    out.push_str("# EOF\n");
}

fn write_sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(String, String)],
    value: f64,
) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            escape_into(out, v, true);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    format_value(out, value);
    out.push('\n');
}

fn escape_into(out: &mut String, s: &str, quote: bool) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Formats like Go's `strconv.FormatFloat(v, 'g', -1, 64)`, which
/// client_golang uses: shortest digits, exponent form below 1e-4 and from 1e6.
pub fn format_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v == 0.0 {
        out.push('0');
    } else {
        let sci = format!("{v:e}");
        let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        if !(-4..6).contains(&exp) {
            let sign = if exp < 0 { '-' } else { '+' };
            let _ = write!(out, "{mantissa}e{sign}{:02}", exp.abs());
        } else {
            let _ = write!(out, "{v}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(v: f64) -> String {
        let mut s = String::new();
        format_value(&mut s, v);
        s
    }

    #[test]
    fn floats_match_go() {
        assert_eq!(fmt(0.0), "0");
        assert_eq!(fmt(1.0), "1");
        assert_eq!(fmt(-125000.0), "-125000");
        assert_eq!(fmt(2.70553174016e11), "2.70553174016e+11");
        assert_eq!(fmt(1548288.0), "1.548288e+06");
        assert_eq!(fmt(0.0001), "0.0001");
        assert_eq!(fmt(0.00001), "1e-05");
        assert_eq!(fmt(f64::NAN), "NaN");
        assert_eq!(fmt(f64::NEG_INFINITY), "-Inf");
        assert_eq!(fmt(123456.0), "123456");
    }

    #[test]
    fn text_and_openmetrics() {
        let fams = normalize(vec![
            Family::counter("x_total", "Help with \\ and\nnewline.")
                .with(&[("b", "2"), ("a", "q\"")], 3.0),
            Family::gauge("g", "G.").with(&[], 1.5),
        ]);
        assert_eq!(
            encode(&fams, Format::Text004),
            "# HELP g G.\n# TYPE g gauge\ng 1.5\n# HELP x_total Help with \\\\ and\\nnewline.\n# TYPE x_total counter\nx_total{a=\"q\\\"\",b=\"2\"} 3\n"
        );
        let om = encode(&fams, Format::OpenMetrics);
        assert!(om.contains("# TYPE x counter\n"));
        assert!(om.contains("x_total{a=\"q\\\"\",b=\"2\"} 3\n"));
        assert!(om.ends_with("# EOF\n"));
    }

    #[test]
    fn negotiation() {
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prom)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("text/plain")), Format::Text004);
        assert_eq!(Format::negotiate(None), Format::Text004);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0.2, text/plain")),
            Format::Text004
        );
    }
}
