//! Carbonio's log4j layout, `%d %-5p [%t] [%z] %c{1} - %m%n`, shared by
//! `mailbox.log`, `audit.log`, `sync.log` and the other mailboxd logs:
//!
//! `2024-03-01 10:00:00,123 WARN  [qtp-12:https://…/AuthRequest] [name=a@b.c;oip=10.1.2.3;] security - cmd=Auth; …`
//!
//! The context (`name=…;oip=…;ua=…;`) becomes structured data, so searches
//! can ask for `oip` or `name`; the logger (`security`) is the msgid.

use super::Parsed;
use chrono::TimeZone;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailboxError {
    #[error("no `yyyy-MM-dd HH:mm:ss,SSS` timestamp at the start")]
    Timestamp,
    #[error("the local time {0} does not exist in the configured timezone")]
    NonexistentTime(String),
    #[error("no level after the timestamp")]
    Level,
    #[error("no ` - ` between the logger and the message")]
    Message,
}

const TIMESTAMP_LEN: usize = "2024-03-01 10:00:00,123".len();

/// The start of a record (continuation lines of a stack trace do not match).
pub const RECORD_START: &str = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} ";

pub fn parse(text: &str, tz: chrono_tz::Tz) -> Result<Parsed, MailboxError> {
    let stamp = text.get(..TIMESTAMP_LEN).ok_or(MailboxError::Timestamp)?;
    let naive = chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S,%3f")
        .map_err(|_| MailboxError::Timestamp)?;
    // In the hour repeated when clocks go back, the first occurrence.
    let ts = tz
        .from_local_datetime(&naive)
        .earliest()
        .ok_or_else(|| MailboxError::NonexistentTime(stamp.to_string()))?;
    let rest = text[TIMESTAMP_LEN..].trim_start_matches(' ');
    let (level, mut rest) = rest.split_once(' ').ok_or(MailboxError::Level)?;
    rest = rest.trim_start_matches(' ');
    let mut params: Vec<(String, String)> = Vec::new();
    if let Some((thread, after)) = bracketed(rest) {
        params.push(("thread".into(), thread.to_string()));
        rest = after;
        if let Some((context, after)) = bracketed(rest) {
            for pair in context.split(';').filter(|p| !p.is_empty()) {
                if let Some((k, v)) = pair.split_once('=') {
                    params.push((k.trim().to_string(), v.to_string()));
                }
            }
            rest = after;
        }
    }
    let (logger, message) = rest.split_once(" - ").ok_or(MailboxError::Message)?;
    let mut sd = serde_json::Map::new();
    for (k, v) in params {
        sd.insert(k, serde_json::Value::String(v));
    }
    Ok(Parsed {
        timestamp_ns: ts.timestamp_nanos_opt(),
        severity: severity(level),
        msgid: logger.trim().to_string(),
        message: message.to_string(),
        structured_data: if sd.is_empty() {
            String::new()
        } else {
            serde_json::json!({ "mailbox": sd }).to_string()
        },
    })
}

/// `[inner] rest` → (inner, rest); the inner text may hold brackets (thread
/// names carry URLs), so it ends at the first `] `.
fn bracketed(s: &str) -> Option<(&str, &str)> {
    let inner = s.strip_prefix('[')?;
    let end = inner.find("] ")?;
    Some((&inner[..end], &inner[end + 2..]))
}

fn severity(level: &str) -> Option<u8> {
    Some(match level {
        "FATAL" => 2,
        "ERROR" => 3,
        "WARN" => 4,
        "INFO" => 6,
        "DEBUG" | "TRACE" => 7,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn audit_failure() {
        let line = "2015-12-05 18:47:36,435 WARN  [qtp1234-56:http://127.0.0.1:80/service/soap/AuthRequest] [name=pepe@domain.com;oip=10.1.2.123;ua=zclient/2.0.5_GA_1839;] security - cmd=Auth; account=pepe@domain.com; protocol=soap; error=authentication failed for [admin], invalid password;";
        let p = parse(line, chrono_tz::Europe::Rome).unwrap();
        // 18:47:36.435 in Rome (UTC+1 in December) is 17:47:36.435 UTC.
        assert_eq!(p.timestamp_ns, Some(1_449_337_656_435_000_000));
        assert_eq!(p.severity, Some(4));
        assert_eq!(p.msgid, "security");
        assert!(p.message.starts_with("cmd=Auth; account=pepe@domain.com;"));
        let sd: serde_json::Value = serde_json::from_str(&p.structured_data).unwrap();
        assert_eq!(sd["mailbox"]["oip"], "10.1.2.123");
        assert_eq!(
            sd["mailbox"]["thread"],
            "qtp1234-56:http://127.0.0.1:80/service/soap/AuthRequest"
        );
    }

    #[test]
    fn empty_context_and_errors() {
        let p = parse(
            "2024-03-01 10:00:00,001 INFO  [main] [] soap - started",
            chrono_tz::UTC,
        )
        .unwrap();
        assert_eq!(p.message, "started");
        assert!(p.structured_data.contains("\"thread\":\"main\""));
        assert_eq!(
            parse("\tat java.lang.Thread.run", chrono_tz::UTC),
            Err(MailboxError::Timestamp)
        );
        assert_eq!(
            parse("2024-03-01 10:00:00,001 INFO  no dash here", chrono_tz::UTC),
            Err(MailboxError::Message)
        );
        assert_eq!(
            parse(
                "2024-03-31 02:30:00,000 INFO  [m] x - y",
                chrono_tz::Europe::Rome
            ),
            Err(MailboxError::NonexistentTime(
                "2024-03-31 02:30:00,000".into()
            ))
        );
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,80}") {
            let _ = parse(&s, chrono_tz::UTC);
            let _ = parse(&format!("2024-03-01 10:00:00,001 {s}"), chrono_tz::UTC);
        }
    }
}
