//! Streaming parser for what scrapes return: Prometheus text 0.0.4 and
//! OpenMetrics 1.0. It yields one event per line, so a large exposition is
//! never held twice, and every error carries its line number.
//!
//! Lenient where real exporters are (Carbonio's mailbox writes a space
//! between the name and `{`, and millisecond timestamps without TYPE lines),
//! strict where ambiguity would corrupt data (bad values, labels, escapes).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text004,
    OpenMetrics,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    Unknown,
}

impl MetricType {
    /// The name `/api/v1/metadata` reports (`untyped` reads as `unknown`).
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::Unknown => "unknown",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "gaugehistogram" => MetricType::GaugeHistogram,
            "summary" => MetricType::Summary,
            "info" => MetricType::Info,
            "stateset" => MetricType::StateSet,
            "untyped" | "unknown" => MetricType::Unknown,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    /// The series as written: name and label block, exactly as in the line
    /// (the key of the scrape cache).
    pub series: &'a str,
    pub name: &'a str,
    /// Label pairs in exposition order; values unescaped.
    pub labels: Vec<(&'a str, String)>,
    pub value: f64,
    /// Milliseconds since the epoch, if the exposition gave one.
    pub timestamp_ms: Option<i64>,
}

impl Sample<'_> {
    /// The sample's label set as the store keys it: `__name__` included, and
    /// empty values dropped (Prometheus treats them as absent).
    pub fn into_labels(self) -> crate::relabel::Labels {
        let mut labels: crate::relabel::Labels = self
            .labels
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        labels.insert("__name__".into(), self.name.to_string());
        labels
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event<'a> {
    Help {
        family: &'a str,
        text: String,
    },
    Type {
        family: &'a str,
        kind: MetricType,
    },
    Unit {
        family: &'a str,
        unit: &'a str,
    },
    Sample(Sample<'a>),
    /// OpenMetrics' final `# EOF`.
    Eof,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub kind: ErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidMetricName(String),
    InvalidLabelName(String),
    UnterminatedLabelValue,
    InvalidEscape,
    DuplicateLabel(String),
    MissingValue,
    InvalidValue(String),
    InvalidTimestamp(String),
    UnknownType(String),
    TrailingText(String),
    ContentAfterEof,
    MissingEof,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: ", self.line)?;
        match &self.kind {
            ErrorKind::InvalidMetricName(n) => write!(f, "invalid metric name {n:?}"),
            ErrorKind::InvalidLabelName(n) => write!(f, "invalid label name {n:?}"),
            ErrorKind::UnterminatedLabelValue => write!(f, "unterminated label value"),
            ErrorKind::InvalidEscape => write!(f, "invalid escape sequence in label value"),
            ErrorKind::DuplicateLabel(n) => write!(f, "duplicate label {n:?}"),
            ErrorKind::MissingValue => write!(f, "missing sample value"),
            ErrorKind::InvalidValue(v) => write!(f, "invalid sample value {v:?}"),
            ErrorKind::InvalidTimestamp(t) => write!(f, "invalid timestamp {t:?}"),
            ErrorKind::UnknownType(t) => write!(f, "unknown metric type {t:?}"),
            ErrorKind::TrailingText(t) => write!(f, "unexpected text {t:?} after the sample"),
            ErrorKind::ContentAfterEof => write!(f, "content after # EOF"),
            ErrorKind::MissingEof => write!(f, "OpenMetrics exposition does not end with # EOF"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Iterates the events of one exposition.
pub struct Parser<'a> {
    lines: std::iter::Enumerate<std::str::Lines<'a>>,
    format: Format,
    seen_eof: bool,
    last_line: usize,
    done: bool,
}

impl<'a> Parser<'a> {
    pub fn new(text: &'a str, format: Format) -> Self {
        Parser {
            lines: text.lines().enumerate(),
            format,
            seen_eof: false,
            last_line: 0,
            done: false,
        }
    }
}

impl<'a> Iterator for Parser<'a> {
    type Item = Result<Event<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        for (idx, raw) in self.lines.by_ref() {
            let line_no = idx + 1;
            self.last_line = line_no;
            let err = |kind| {
                Some(Err(ParseError {
                    line: line_no,
                    kind,
                }))
            };
            if self.seen_eof {
                if raw.trim().is_empty() {
                    continue;
                }
                self.done = true;
                return err(ErrorKind::ContentAfterEof);
            }
            let line = match self.format {
                Format::Text004 => raw.trim(),
                Format::OpenMetrics => raw,
            };
            if line.is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                match parse_comment(comment, self.format) {
                    Ok(Some(Event::Eof)) => {
                        self.seen_eof = true;
                        return Some(Ok(Event::Eof));
                    }
                    Ok(Some(ev)) => return Some(Ok(ev)),
                    Ok(None) => continue,
                    Err(kind) => return err(kind),
                }
            }
            return Some(
                parse_sample(line, self.format)
                    .map(Event::Sample)
                    .map_err(|kind| ParseError {
                        line: line_no,
                        kind,
                    }),
            );
        }
        self.done = true;
        if self.format == Format::OpenMetrics && !self.seen_eof {
            return Some(Err(ParseError {
                line: self.last_line + 1,
                kind: ErrorKind::MissingEof,
            }));
        }
        None
    }
}

fn parse_comment(comment: &str, format: Format) -> Result<Option<Event<'_>>, ErrorKind> {
    let comment = comment.strip_prefix(' ').unwrap_or(comment);
    if comment.trim_end() == "EOF" && format == Format::OpenMetrics {
        return Ok(Some(Event::Eof));
    }
    let mut parts = comment.splitn(3, ' ');
    let keyword = parts.next().unwrap_or("");
    if !matches!(keyword, "HELP" | "TYPE" | "UNIT") {
        return Ok(None); // an ordinary comment
    }
    let family = parts.next().unwrap_or("");
    if !valid_metric_name(family) {
        return Err(ErrorKind::InvalidMetricName(family.to_string()));
    }
    let rest = parts.next().unwrap_or("");
    Ok(Some(match keyword {
        "HELP" => Event::Help {
            family,
            text: unescape_help(rest, format)?,
        },
        "TYPE" => Event::Type {
            family,
            kind: MetricType::parse(rest.trim())
                .ok_or_else(|| ErrorKind::UnknownType(rest.trim().to_string()))?,
        },
        _ => Event::Unit {
            family,
            unit: rest.trim(),
        },
    }))
}

fn unescape_help(s: &str, format: Format) -> Result<String, ErrorKind> {
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
            Some('"') if format == Format::OpenMetrics => out.push('"'),
            // Text 0.0.4 keeps other backslashes as they are.
            Some(other) if format == Format::Text004 => {
                out.push('\\');
                out.push(other);
            }
            None if format == Format::Text004 => out.push('\\'),
            _ => return Err(ErrorKind::InvalidEscape),
        }
    }
    Ok(out)
}

pub fn valid_metric_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

pub fn valid_label_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_sample(line: &str, format: Format) -> Result<Sample<'_>, ErrorKind> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if !valid_metric_name(name) {
        return Err(ErrorKind::InvalidMetricName(name.to_string()));
    }
    let mut rest = line[name_end..].trim_start_matches([' ', '\t']);
    let mut labels: Vec<(&str, String)> = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = parse_labels(after, &mut labels)?;
    }
    let series = line[..line.len() - rest.len()].trim_end();
    let mut fields = rest.split_ascii_whitespace();
    let value = fields.next().ok_or(ErrorKind::MissingValue)?;
    let value = parse_value(value).ok_or_else(|| ErrorKind::InvalidValue(value.to_string()))?;
    let mut timestamp_ms = None;
    if let Some(ts) = fields.next() {
        if ts == "#" && format == Format::OpenMetrics {
            // An exemplar follows; it is not stored.
            return Ok(Sample {
                series,
                name,
                labels,
                value,
                timestamp_ms,
            });
        }
        timestamp_ms = Some(
            parse_timestamp(ts, format)
                .ok_or_else(|| ErrorKind::InvalidTimestamp(ts.to_string()))?,
        );
    }
    if let Some(extra) = fields.next() {
        if !(extra == "#" && format == Format::OpenMetrics) {
            return Err(ErrorKind::TrailingText(extra.to_string()));
        }
    }
    Ok(Sample {
        series,
        name,
        labels,
        value,
        timestamp_ms,
    })
}

/// Parses `name="value",...}` and returns what follows the closing brace.
fn parse_labels<'a>(
    mut s: &'a str,
    labels: &mut Vec<(&'a str, String)>,
) -> Result<&'a str, ErrorKind> {
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Ok(rest);
        }
        let eq = s.find('=').ok_or(ErrorKind::UnterminatedLabelValue)?;
        let name = s[..eq].trim();
        if !valid_label_name(name) {
            return Err(ErrorKind::InvalidLabelName(name.to_string()));
        }
        s = s[eq + 1..].trim_start();
        let body = s
            .strip_prefix('"')
            .ok_or(ErrorKind::UnterminatedLabelValue)?;
        let mut value = String::new();
        let mut end = None;
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    end = Some(i);
                    break;
                }
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    _ => return Err(ErrorKind::InvalidEscape),
                },
                c => value.push(c),
            }
        }
        let end = end.ok_or(ErrorKind::UnterminatedLabelValue)?;
        if labels.iter().any(|(n, _)| *n == name) {
            return Err(ErrorKind::DuplicateLabel(name.to_string()));
        }
        labels.push((name, value));
        s = body[end + 1..].trim_start();
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        _ if s
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE_".contains(&b)) =>
        {
            s.replace('_', "").parse().ok()
        }
        _ => None,
    }
}

/// Text 0.0.4 timestamps are integer milliseconds; OpenMetrics ones are
/// (possibly fractional) seconds.
fn parse_timestamp(s: &str, format: Format) -> Option<i64> {
    match format {
        Format::Text004 => s.parse().ok(),
        Format::OpenMetrics => {
            let secs: f64 = s.parse().ok()?;
            let ms = (secs * 1000.0).round();
            (ms.is_finite() && ms.abs() < 9.2e18).then_some(ms as i64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn events(text: &str, f: Format) -> Vec<Result<Event<'_>, ParseError>> {
        Parser::new(text, f).collect()
    }

    #[test]
    fn text_format() {
        let t = "# HELP up Whether up.\n# TYPE up gauge\nup{job=\"node\",instance=\"a:9100\"} 1 1700000000000\n# a comment\nx_total 3.5e3\n";
        let ev: Vec<_> = events(t, Format::Text004)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(ev.len(), 4);
        let Event::Sample(s) = &ev[2] else { panic!() };
        assert_eq!(
            (s.name, s.value, s.timestamp_ms),
            ("up", 1.0, Some(1_700_000_000_000))
        );
        assert_eq!(
            s.labels,
            vec![
                ("job", "node".to_string()),
                ("instance", "a:9100".to_string())
            ]
        );
    }

    #[test]
    fn carbonio_mailbox_textfile_quirks() {
        // Space before '{', millisecond timestamps, no TYPE/HELP.
        let t = "mailboxd_soap_count {host=\"mbox1\"} 42 1700000000123\nmailboxd_gc_major_count 7 1700000000123\n";
        let ev: Vec<_> = events(t, Format::Text004)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let Event::Sample(s) = &ev[0] else { panic!() };
        assert_eq!(
            (s.name, s.labels.len(), s.timestamp_ms),
            ("mailboxd_soap_count", 1, Some(1_700_000_000_123))
        );
    }

    #[test]
    fn openmetrics_format() {
        let t = "# TYPE req counter\n# UNIT req requests\n# HELP req Reqs \\\"quoted\\\".\nreq_total{a=\"b\"} 5 1700000000.5 # {trace_id=\"x\"} 1\nreq_created 1.7e9\n# EOF\n";
        let ev: Vec<_> = events(t, Format::OpenMetrics)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(ev.last(), Some(&Event::Eof));
        let Event::Sample(s) = &ev[3] else { panic!() };
        assert_eq!((s.value, s.timestamp_ms), (5.0, Some(1_700_000_000_500)));
        assert_eq!(
            ev[2],
            Event::Help {
                family: "req",
                text: "Reqs \"quoted\".".into()
            }
        );
        // Missing EOF and content after it are errors with the line.
        let missing = events("a 1\n", Format::OpenMetrics);
        assert_eq!(
            missing.last().unwrap().as_ref().unwrap_err().kind,
            ErrorKind::MissingEof
        );
        let after = events("# EOF\na 1\n", Format::OpenMetrics);
        assert_eq!(
            after.last().unwrap().as_ref().unwrap_err(),
            &ParseError {
                line: 2,
                kind: ErrorKind::ContentAfterEof
            }
        );
    }

    #[test]
    fn errors_carry_lines() {
        let cases = [
            (
                "ok 1\n9bad 1\n",
                2,
                ErrorKind::InvalidMetricName("9bad".into()),
            ),
            ("a{b=\"c} 1\n", 1, ErrorKind::UnterminatedLabelValue),
            ("a{b=\"\\x\"} 1\n", 1, ErrorKind::InvalidEscape),
            (
                "a{b=\"1\",b=\"2\"} 1\n",
                1,
                ErrorKind::DuplicateLabel("b".into()),
            ),
            ("a\n", 1, ErrorKind::MissingValue),
            ("a one\n", 1, ErrorKind::InvalidValue("one".into())),
            ("a 1 soon\n", 1, ErrorKind::InvalidTimestamp("soon".into())),
            (
                "# TYPE a thing\n",
                1,
                ErrorKind::UnknownType("thing".into()),
            ),
            ("a 1 2 3\n", 1, ErrorKind::TrailingText("3".into())),
            (
                "a{1x=\"v\"} 1\n",
                1,
                ErrorKind::InvalidLabelName("1x".into()),
            ),
        ];
        for (text, line, kind) in cases {
            let err = events(text, Format::Text004)
                .into_iter()
                .find_map(Result::err)
                .unwrap_or_else(|| panic!("{text:?} parsed"));
            assert_eq!(err, ParseError { line, kind }, "{text:?}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = events(&s, Format::Text004);
            let _ = events(&s, Format::OpenMetrics);
        }

        #[test]
        fn valid_samples_round_trip(name in "[a-z_][a-z0-9_]{0,10}", v in -1e12f64..1e12, lv in "[^\"\\\\\n]{0,10}") {
            let text = format!("{name}{{l=\"{lv}\"}} {v}\n");
            let ev = events(&text, Format::Text004);
            prop_assert_eq!(ev.len(), 1);
            let Ok(Event::Sample(s)) = &ev[0] else { panic!("{:?}", ev) };
            prop_assert_eq!(s.value, v);
            prop_assert_eq!(&s.labels[0].1, &lv);
        }
    }
}
