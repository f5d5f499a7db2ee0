//! One stored log line, whatever its source (syslog or a tailed file), in
//! the shape of the `logs` table, and its WAL encoding.

/// Facility names by number (RFC 5424 §6.2.1, the keywords syslog uses).
pub const FACILITY_NAMES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];

/// Severity names by number (0 = emerg … 7 = debug).
pub const SEVERITY_NAMES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

pub fn facility_name(n: u8) -> Option<&'static str> {
    FACILITY_NAMES.get(n as usize).copied()
}

pub fn severity_name(n: u8) -> Option<&'static str> {
    SEVERITY_NAMES.get(n as usize).copied()
}

/// A severity by name or number (`err`, `error`, `3`), as operators type it.
pub fn severity_from_str(s: &str) -> Option<u8> {
    let s = s.to_ascii_lowercase();
    if let Ok(n) = s.parse::<u8>() {
        return (n < 8).then_some(n);
    }
    let alias = match s.as_str() {
        "error" => "err",
        "warn" => "warning",
        "critical" => "crit",
        "emergency" | "panic" => "emerg",
        "information" | "informational" => "info",
        other => other,
    };
    SEVERITY_NAMES
        .iter()
        .position(|n| *n == alias)
        .map(|p| p as u8)
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogRecord {
    /// Event time (from the message; the receive time when it has none), ns since the epoch.
    pub timestamp_ns: i64,
    /// When we received it, ns since the epoch.
    pub received_ns: i64,
    pub host: String,
    pub app: String,
    pub procid: String,
    pub msgid: String,
    pub facility: Option<u8>,
    pub severity: Option<u8>,
    pub message: String,
    /// RFC 5424 structured data as JSON: `{"id": {"param": "value"}}`; empty when none.
    pub structured_data: String,
    /// Where it came from: `udp://peer`, `tcp://peer`, `tls://peer`, `file:///path`.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("log WAL record: {0}")]
pub struct DecodeError(pub String);

const NONE: u8 = 0xff;

impl LogRecord {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp_ns.to_le_bytes());
        out.extend_from_slice(&self.received_ns.to_le_bytes());
        out.push(self.facility.unwrap_or(NONE));
        out.push(self.severity.unwrap_or(NONE));
        for s in [
            &self.host,
            &self.app,
            &self.procid,
            &self.msgid,
            &self.message,
            &self.structured_data,
            &self.source,
        ] {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }

    pub fn decode(mut b: &[u8]) -> Result<LogRecord, DecodeError> {
        let mut take = |n: usize| -> Result<&[u8], DecodeError> {
            if b.len() < n {
                return Err(DecodeError(format!(
                    "truncated: needed {n} bytes, {} left",
                    b.len()
                )));
            }
            let (head, rest) = b.split_at(n);
            b = rest;
            Ok(head)
        };
        let i64_at = |s: &[u8]| {
            let mut a = [0u8; 8];
            a.copy_from_slice(s);
            i64::from_le_bytes(a)
        };
        let timestamp_ns = i64_at(take(8)?);
        let received_ns = i64_at(take(8)?);
        let opt = |v: u8| (v != NONE).then_some(v);
        let facility = opt(take(1)?[0]);
        let severity = opt(take(1)?[0]);
        let mut strings = Vec::with_capacity(7);
        for _ in 0..7 {
            let mut len = [0u8; 4];
            len.copy_from_slice(take(4)?);
            let bytes = take(u32::from_le_bytes(len) as usize)?;
            strings.push(
                String::from_utf8(bytes.to_vec())
                    .map_err(|_| DecodeError("field is not UTF-8".into()))?,
            );
        }
        if !b.is_empty() {
            return Err(DecodeError(format!("{} trailing bytes", b.len())));
        }
        let mut it = strings.into_iter();
        let mut next = || it.next().unwrap_or_default();
        Ok(LogRecord {
            timestamp_ns,
            received_ns,
            facility,
            severity,
            host: next(),
            app: next(),
            procid: next(),
            msgid: next(),
            message: next(),
            structured_data: next(),
            source: next(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let r = LogRecord {
            timestamp_ns: 1_700_000_000_123_456_789,
            received_ns: 1_700_000_001_000_000_000,
            host: "mta1.example.com".into(),
            app: "postfix/smtpd".into(),
            procid: "4242".into(),
            msgid: String::new(),
            facility: Some(2),
            severity: None,
            message: "connect from unknown[10.0.0.1] — ünïcode\nsecond line".into(),
            structured_data: r#"{"meta@1":{"k":"v"}}"#.into(),
            source: "tcp://10.0.0.1:514".into(),
        };
        let mut b = Vec::new();
        r.encode(&mut b);
        assert_eq!(LogRecord::decode(&b), Ok(r));
    }

    #[test]
    fn severity_names_and_aliases() {
        assert_eq!(severity_from_str("err"), Some(3));
        assert_eq!(severity_from_str("ERROR"), Some(3));
        assert_eq!(severity_from_str("4"), Some(4));
        assert_eq!(severity_from_str("9"), None);
        assert_eq!(severity_name(6), Some("info"));
        assert_eq!(facility_name(17), Some("local1"));
        assert_eq!(facility_name(24), None);
    }

    proptest! {
        #[test]
        fn decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = LogRecord::decode(&b);
        }
    }
}
