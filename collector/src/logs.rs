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

/// A log line with its fields borrowed: what a parser hands on before
/// anything is copied, and what a row of the head reads as.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LineRef<'a> {
    pub timestamp_ns: i64,
    pub received_ns: i64,
    pub host: &'a str,
    pub app: &'a str,
    pub procid: &'a str,
    pub msgid: &'a str,
    pub facility: Option<u8>,
    pub severity: Option<u8>,
    pub message: &'a str,
    pub structured_data: &'a str,
    pub source: &'a str,
}

impl LineRef<'_> {
    pub fn to_record(&self) -> LogRecord {
        LogRecord {
            timestamp_ns: self.timestamp_ns,
            received_ns: self.received_ns,
            host: self.host.to_string(),
            app: self.app.to_string(),
            procid: self.procid.to_string(),
            msgid: self.msgid.to_string(),
            facility: self.facility,
            severity: self.severity,
            message: self.message.to_string(),
            structured_data: self.structured_data.to_string(),
            source: self.source.to_string(),
        }
    }

    /// Bytes of its text fields.
    pub fn text_len(&self) -> usize {
        self.fields().iter().map(|s| s.len()).sum()
    }

    fn fields(&self) -> [&str; 7] {
        [
            self.host,
            self.app,
            self.procid,
            self.msgid,
            self.message,
            self.structured_data,
            self.source,
        ]
    }

    /// The WAL encoding of a line (`LogRecord::decode` reads it back).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp_ns.to_le_bytes());
        out.extend_from_slice(&self.received_ns.to_le_bytes());
        out.push(self.facility.unwrap_or(NONE));
        out.push(self.severity.unwrap_or(NONE));
        for s in self.fields() {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
}

impl LogRecord {
    pub fn as_line(&self) -> LineRef<'_> {
        LineRef {
            timestamp_ns: self.timestamp_ns,
            received_ns: self.received_ns,
            host: &self.host,
            app: &self.app,
            procid: &self.procid,
            msgid: &self.msgid,
            facility: self.facility,
            severity: self.severity,
            message: &self.message,
            structured_data: &self.structured_data,
            source: &self.source,
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        self.as_line().encode(out);
    }

    pub fn decode(b: &[u8]) -> Result<LogRecord, DecodeError> {
        let mut r = Reader(b);
        let timestamp_ns = r.u64()? as i64;
        let received_ns = r.u64()? as i64;
        let opt = |v: u8| (v != NONE).then_some(v);
        let facility = opt(r.take(1)?[0]);
        let severity = opt(r.take(1)?[0]);
        let mut strings = Vec::with_capacity(7);
        for _ in 0..7 {
            strings.push(r.string("field")?);
        }
        r.finish()?;
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

/// Reads the little-endian, length-prefixed fields of a WAL record.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError(format!(
                "truncated: needed {n} bytes, {} left",
                self.0.len()
            )));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }

    /// A u32 length, then that many UTF-8 bytes.
    fn string(&mut self, what: &str) -> Result<String, DecodeError> {
        let len = self.u32()? as usize;
        String::from_utf8(self.take(len)?.to_vec())
            .map_err(|_| DecodeError(format!("{what} is not UTF-8")))
    }

    fn finish(&self) -> Result<(), DecodeError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(DecodeError(format!("{} trailing bytes", self.0.len())))
        }
    }
}

/// Where a tailed file was read up to. The identity survives renames
/// (device and inode) and tells a reused inode or a truncated-and-rewritten
/// file apart (checksum of the first line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    pub fingerprint: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Checkpoint {
    pub file: FileId,
    /// The path it was read under (rotation may have moved it since).
    pub path: String,
    /// Bytes consumed: every line before this offset is stored.
    pub offset: u64,
}

/// One record of the log WAL: a line (syslog), or lines read from a file
/// together with the checkpoint after them, so both are durable at once and
/// a restart neither re-reads nor skips them.
#[derive(Debug, Clone, PartialEq)]
pub enum WalEntry {
    Line(LogRecord),
    Tailed {
        checkpoint: Checkpoint,
        lines: Vec<LogRecord>,
    },
}

const KIND_LINE: u8 = 0;
const KIND_TAILED: u8 = 1;

impl WalEntry {
    pub fn encode_line(line: &LineRef, out: &mut Vec<u8>) {
        out.push(KIND_LINE);
        line.encode(out);
    }

    pub fn encode_tailed(checkpoint: &Checkpoint, lines: &[LogRecord], out: &mut Vec<u8>) {
        out.push(KIND_TAILED);
        let c = checkpoint;
        out.extend_from_slice(&c.file.dev.to_le_bytes());
        out.extend_from_slice(&c.file.ino.to_le_bytes());
        out.extend_from_slice(&c.file.fingerprint.to_le_bytes());
        out.extend_from_slice(&c.offset.to_le_bytes());
        out.extend_from_slice(&(c.path.len() as u32).to_le_bytes());
        out.extend_from_slice(c.path.as_bytes());
        out.extend_from_slice(&(lines.len() as u32).to_le_bytes());
        for r in lines {
            let at = out.len();
            out.extend_from_slice(&[0; 4]);
            r.encode(out);
            let len = (out.len() - at - 4) as u32;
            out[at..at + 4].copy_from_slice(&len.to_le_bytes());
        }
    }

    pub fn decode(b: &[u8]) -> Result<WalEntry, DecodeError> {
        let Some((kind, rest)) = b.split_first() else {
            return Err(DecodeError("empty record".into()));
        };
        match *kind {
            KIND_LINE => LogRecord::decode(rest).map(WalEntry::Line),
            KIND_TAILED => {
                let mut r = Reader(rest);
                let dev = r.u64()?;
                let ino = r.u64()?;
                let fingerprint = r.u32()?;
                let offset = r.u64()?;
                let path = r.string("path")?;
                let count = r.u32()? as usize;
                let mut lines = Vec::with_capacity(count.min(4096));
                for _ in 0..count {
                    let len = r.u32()? as usize;
                    lines.push(LogRecord::decode(r.take(len)?)?);
                }
                r.finish()?;
                Ok(WalEntry::Tailed {
                    checkpoint: Checkpoint {
                        file: FileId {
                            dev,
                            ino,
                            fingerprint,
                        },
                        path,
                        offset,
                    },
                    lines,
                })
            }
            other => Err(DecodeError(format!("unknown record kind {other}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wal_entries_round_trip() {
        let line = LogRecord {
            message: "hello".into(),
            source: "file:///var/log/x.log".into(),
            ..LogRecord::default()
        };
        let mut b = Vec::new();
        WalEntry::encode_line(&line.as_line(), &mut b);
        assert_eq!(WalEntry::decode(&b), Ok(WalEntry::Line(line.clone())));
        let checkpoint = Checkpoint {
            file: FileId {
                dev: 2049,
                ino: 77,
                fingerprint: 0xdead_beef,
            },
            path: "/var/log/x.log".into(),
            offset: 4096,
        };
        for lines in [vec![], vec![line.clone(), line]] {
            let mut b = Vec::new();
            WalEntry::encode_tailed(&checkpoint, &lines, &mut b);
            assert_eq!(
                WalEntry::decode(&b),
                Ok(WalEntry::Tailed {
                    checkpoint: checkpoint.clone(),
                    lines
                })
            );
            assert!(WalEntry::decode(&b[..b.len() - 1]).is_err());
        }
    }

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
            let _ = WalEntry::decode(&b);
        }
    }
}
