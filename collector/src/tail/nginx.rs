//! nginx access logs: the `combined` format and Carbonio proxy's `upstream`
//! format, which adds the client port, the full URL, the upstream and the
//! server address:
//!
//! `10.0.0.1:51234 - - [01/Mar/2024:10:00:00 +0100]  "GET https://mail.example.com/ HTTP/1.1" 200 512 "-" "Mozilla/5.0" "10.0.0.5:8080" "10.0.0.2:443"`
//!
//! The whole line stays the message; the fields become structured data and
//! the status sets the severity (5xx err, 4xx warning, else info).

use super::Parsed;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NginxError {
    #[error("no ` - ` after the client address")]
    Client,
    #[error("no `[time]` field")]
    Time,
    #[error("time {0:?} is not `dd/Mon/yyyy:HH:MM:SS ±zzzz`")]
    TimeFormat(String),
    #[error("no quoted request")]
    Request,
    #[error("status {0:?} is not a number")]
    Status(String),
}

pub fn parse(line: &str) -> Result<Parsed, NginxError> {
    let (client, rest) = line.split_once(" - ").ok_or(NginxError::Client)?;
    let (user, rest) = rest.split_once(" [").ok_or(NginxError::Time)?;
    let (time, rest) = rest.split_once(']').ok_or(NginxError::Time)?;
    let ts = chrono::DateTime::parse_from_str(time, "%d/%b/%Y:%H:%M:%S %z")
        .map_err(|_| NginxError::TimeFormat(time.to_string()))?;
    let (request, rest) = quoted(rest.trim_start()).ok_or(NginxError::Request)?;
    let mut numbers = rest.split_whitespace();
    let status = numbers.next().unwrap_or("");
    let code: u16 = status
        .parse()
        .map_err(|_| NginxError::Status(status.to_string()))?;
    let bytes = numbers.next().unwrap_or("");
    let mut fields = vec![
        ("client", client),
        ("user", user),
        ("request", request),
        ("status", status),
        ("bytes", bytes),
    ];
    // The quoted fields after the byte count, in the formats' order.
    let mut tail = rest
        .trim_start()
        .split_once(' ')
        .and_then(|(_, r)| r.trim_start().split_once(' '))
        .map_or("", |(_, r)| r);
    for name in ["referer", "user_agent", "upstream", "server"] {
        let Some((value, after)) = quoted(tail.trim_start()) else {
            break;
        };
        fields.push((name, value));
        tail = after;
    }
    let mut sd = serde_json::Map::new();
    for (k, v) in fields {
        if !v.is_empty() && v != "-" {
            sd.insert(k.into(), serde_json::Value::String(v.into()));
        }
    }
    Ok(Parsed {
        timestamp_ns: ts.timestamp_nanos_opt(),
        severity: Some(match code {
            500.. => 3,
            400..=499 => 4,
            _ => 6,
        }),
        message: line.to_string(),
        structured_data: serde_json::json!({ "nginx": sd }).to_string(),
        ..Parsed::default()
    })
}

/// `"inner" rest` → (inner, rest). nginx writes `"` inside values as `\x22`,
/// so the next quote ends the field.
fn quoted(s: &str) -> Option<(&str, &str)> {
    let inner = s.strip_prefix('"')?;
    let end = inner.find('"')?;
    Some((&inner[..end], &inner[end + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sd(p: &Parsed) -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(&p.structured_data).unwrap()["nginx"].clone()
    }

    #[test]
    fn carbonio_upstream_format() {
        let line = r#"10.0.0.1:51234 - - [01/Mar/2024:10:00:00 +0100]  "GET https://mail.example.com/service/soap HTTP/1.1" 502 512 "-" "Mozilla/5.0 (X11; Linux)" "10.0.0.5:8080" "10.0.0.2:443""#;
        let p = parse(line).unwrap();
        assert_eq!(p.timestamp_ns, Some(1_709_283_600_000_000_000));
        assert_eq!(p.severity, Some(3));
        let f = sd(&p);
        assert_eq!(f["client"], "10.0.0.1:51234");
        assert_eq!(f["status"], "502");
        assert_eq!(f["user_agent"], "Mozilla/5.0 (X11; Linux)");
        assert_eq!(f["upstream"], "10.0.0.5:8080");
        assert_eq!(f["server"], "10.0.0.2:443");
        assert!(f.get("referer").is_none());
        assert_eq!(p.message, line);
    }

    #[test]
    fn combined_format_and_errors() {
        let p = parse(r#"192.168.1.9 - bob [10/Oct/2023:13:55:36 -0700] "POST /login HTTP/1.1" 401 23 "https://x/" "curl/8.0""#).unwrap();
        assert_eq!(p.severity, Some(4));
        assert_eq!(sd(&p)["user"], "bob");
        assert_eq!(sd(&p)["referer"], "https://x/");
        assert_eq!(parse("garbage"), Err(NginxError::Client));
        assert_eq!(
            parse(r#"1.2.3.4 - - [yesterday] "GET /" 200 1"#),
            Err(NginxError::TimeFormat("yesterday".into()))
        );
        assert_eq!(
            parse(r#"1.2.3.4 - - [10/Oct/2023:13:55:36 -0700] "GET /" OK 1"#),
            Err(NginxError::Status("OK".into()))
        );
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,120}") {
            let _ = parse(&s);
            let _ = parse(&format!("1.2.3.4 - - [10/Oct/2023:13:55:36 -0700] {s}"));
        }
    }
}
