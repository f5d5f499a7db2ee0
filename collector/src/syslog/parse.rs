//! One syslog message (already framed) into a `LogRecord`: RFC 5424, RFC
//! 3164 and the variants real senders emit, through `syslog_loose`'s exact
//! parser with an explicit zone for zone-less timestamps. What does not
//! parse is kept whole as a raw message with the peer as host: never dropped.

use super::fast3164;
use crate::logs::{LineRef, LogRecord};
use chrono::{DateTime, Datelike, FixedOffset, TimeZone, Utc};
use syslog_loose::{Message, ProcId, Protocol, Variant};

/// How a message was understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    Rfc5424,
    Rfc3164,
    /// Only a `<PRI>` (or nothing) was recognised; the rest is the message.
    Fallback,
}

/// Parses `raw` received from `peer` (`udp://10.0.0.1:514`) at `received_ns`;
/// `tz` is the zone of timestamps that carry none (RFC 3164).
pub fn parse(raw: &[u8], peer: &str, received_ns: i64, tz: chrono_tz::Tz) -> (LogRecord, Parsed) {
    let mut record = LogRecord::default();
    let how = parse_with(raw, peer, received_ns, tz, |line| record = line.to_record());
    (record, how)
}

/// As `parse`, but hands the line to `f` with its fields borrowed from
/// `raw`: the listeners copy them once, straight into a column batch.
pub fn parse_with(
    raw: &[u8],
    peer: &str,
    received_ns: i64,
    tz: chrono_tz::Tz,
    f: impl FnOnce(&LineRef),
) -> Parsed {
    // Valid UTF-8 (nearly every line) is checked fastest by from_utf8.
    let text = match std::str::from_utf8(raw) {
        Ok(t) => std::borrow::Cow::Borrowed(t),
        Err(_) => String::from_utf8_lossy(raw),
    };
    let text = text.trim_end_matches(['\n', '\r', '\0']);
    let received = DateTime::<Utc>::from_timestamp_nanos(received_ns);
    if let Some(line) = fast3164::read(text) {
        if let Some(timestamp_ns) = zone_less_time(line.date, received, tz) {
            f(&LineRef {
                timestamp_ns,
                received_ns,
                host: line.host,
                app: line.app,
                procid: line.procid,
                facility: Some(line.pri >> 3),
                severity: Some(line.pri & 7),
                message: line.message.trim_start_matches('\u{feff}'),
                source: peer,
                ..LineRef::default()
            });
            return Parsed::Rfc3164;
        }
    }
    general(text, peer, received_ns, tz, f)
}

/// A year-less local time as syslog_loose reads it: the year by
/// `resolve_year`, the earliest instant when the zone makes it ambiguous.
/// Lines of one read share a receive time and mostly their second, so the
/// last answer is kept: zone lookups were a tenth of parsing.
fn zone_less_time(
    date: syslog_loose::IncompleteDate,
    received: DateTime<Utc>,
    tz: chrono_tz::Tz,
) -> Option<i64> {
    type Question = (syslog_loose::IncompleteDate, DateTime<Utc>, chrono_tz::Tz);
    thread_local! {
        static LAST: std::cell::Cell<Option<(Question, Option<i64>)>> =
            const { std::cell::Cell::new(None) };
    }
    let question = (date, received, tz);
    if let Some((asked, answer)) = LAST.get() {
        if asked == question {
            return answer;
        }
    }
    let (month, day, hour, min, sec) = date;
    let year = resolve_year(received, tz, month, day, hour, min, sec);
    let answer = tz
        .with_ymd_and_hms(year, month, day, hour, min, sec)
        .earliest()
        .and_then(|t| t.timestamp_nanos_opt());
    LAST.set(Some((question, answer)));
    answer
}

/// Any message, through syslog_loose.
fn general(
    text: &str,
    peer: &str,
    received_ns: i64,
    tz: chrono_tz::Tz,
    f: impl FnOnce(&LineRef),
) -> Parsed {
    let received = DateTime::<Utc>::from_timestamp_nanos(received_ns);
    let year = |(month, day, hour, min, sec): syslog_loose::IncompleteDate| {
        resolve_year(received, tz, month, day, hour, min, sec)
    };
    match syslog_loose::parse_message_with_year_exact_tz(text, year, Some(tz), Variant::Either) {
        Ok(m) if m.timestamp.is_some() || matches!(m.protocol, Protocol::RFC5424(_)) => {
            let kind = match m.protocol {
                Protocol::RFC5424(_) => Parsed::Rfc5424,
                Protocol::RFC3164 => Parsed::Rfc3164,
            };
            from_message(m, peer, received_ns, f);
            kind
        }
        _ => {
            fallback(text, peer, received_ns, f);
            Parsed::Fallback
        }
    }
}

/// The year of a year-less timestamp: this year in `tz`, or last year when
/// that would put the message more than a day in the future (a December
/// message read in January).
fn resolve_year(
    now: DateTime<Utc>,
    tz: chrono_tz::Tz,
    month: u32,
    day: u32,
    hour: u32,
    min: u32,
    sec: u32,
) -> i32 {
    let year = now.with_timezone(&tz).year();
    let candidate = tz
        .with_ymd_and_hms(year, month, day, hour, min, sec)
        .earliest();
    match candidate {
        Some(t) if t.with_timezone(&Utc) > now + chrono::Duration::days(1) => year - 1,
        _ => year,
    }
}

fn from_message(m: Message<&str>, peer: &str, received_ns: i64, f: impl FnOnce(&LineRef)) {
    let timestamp_ns = m
        .timestamp
        .and_then(|t: DateTime<FixedOffset>| t.timestamp_nanos_opt())
        .unwrap_or(received_ns);
    let structured_data = if m.structured_data.is_empty() {
        String::new()
    } else {
        let map: serde_json::Map<String, serde_json::Value> = m
            .structured_data
            .iter()
            .map(|e| {
                // params() undoes the RFC 5424 escapes (\" \\ \]).
                let params: serde_json::Map<String, serde_json::Value> = e
                    .params()
                    .map(|(k, v)| (k.to_string(), serde_json::Value::String(v)))
                    .collect();
                (e.id.to_string(), serde_json::Value::Object(params))
            })
            .collect();
        serde_json::Value::Object(map).to_string()
    };
    let peer_host_name;
    let host = match m.hostname {
        Some(h) => h,
        None => {
            peer_host_name = peer_host(peer);
            &peer_host_name
        }
    };
    let mut pid = itoa::Buffer::new();
    f(&LineRef {
        timestamp_ns,
        received_ns,
        host,
        app: m.appname.unwrap_or_default(),
        procid: match m.procid {
            Some(ProcId::PID(p)) => pid.format(p),
            Some(ProcId::Name(n)) => n,
            None => "",
        },
        msgid: m.msgid.unwrap_or_default(),
        facility: m.facility.map(|f| f as u8),
        severity: m.severity.map(|s| s as u8),
        message: m.msg.trim_start_matches('\u{feff}'),
        structured_data: &structured_data,
        source: peer,
    });
}

/// No recognisable header: keep a leading `<PRI>` if there is one, and the
/// rest verbatim, with the peer as host and the receive time.
fn fallback(text: &str, peer: &str, received_ns: i64, f: impl FnOnce(&LineRef)) {
    let (pri, rest) = split_pri(text);
    f(&LineRef {
        timestamp_ns: received_ns,
        received_ns,
        host: &peer_host(peer),
        facility: pri.map(|p| p >> 3),
        severity: pri.map(|p| p & 7),
        message: rest,
        source: peer,
        ..LineRef::default()
    });
}

/// `<PRI>` at the start (0–191, 1–3 digits) and what follows it.
fn split_pri(text: &str) -> (Option<u8>, &str) {
    let Some(rest) = text.strip_prefix('<') else {
        return (None, text);
    };
    let Some(end) = rest.find('>').filter(|e| (1..=3).contains(e)) else {
        return (None, text);
    };
    match rest[..end].parse::<u8>() {
        Ok(p) if p <= 191 && rest[..end].bytes().all(|b| b.is_ascii_digit()) => {
            (Some(p), &rest[end + 1..])
        }
        _ => (None, text),
    }
}

/// The address part of `scheme://host:port`.
fn peer_host(peer: &str) -> String {
    let addr = peer.split_once("://").map_or(peer, |(_, a)| a);
    match addr.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => {
            host.trim_matches(['[', ']']).to_string()
        }
        _ => addr.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    const PEER: &str = "tcp://10.1.2.3:40000";
    // 2026-11-23T12:00:00Z
    const NOW: i64 = 1_795_435_200_000_000_000;

    fn p(raw: &str) -> (LogRecord, Parsed) {
        parse(raw.as_bytes(), PEER, NOW, chrono_tz::UTC)
    }

    #[test]
    fn rfc5424_with_structured_data_and_fraction() {
        let (r, k) = p(
            r#"<165>1 2026-11-23T11:59:58.123456+01:00 mbox1.example.com carbonio 4242 AUDIT [meta@32473 user="a\"b" ip="10.0.0.9"][x@1 k="]"] login failed"#,
        );
        assert_eq!(k, Parsed::Rfc5424);
        assert_eq!(r.facility, Some(20));
        assert_eq!(r.severity, Some(5));
        assert_eq!(r.host, "mbox1.example.com");
        assert_eq!(r.app, "carbonio");
        assert_eq!(r.procid, "4242");
        assert_eq!(r.msgid, "AUDIT");
        assert_eq!(r.message, "login failed");
        assert_eq!(r.timestamp_ns, 1_795_431_598_123_456_000);
        let sd: serde_json::Value = serde_json::from_str(&r.structured_data).unwrap();
        assert_eq!(sd["meta@32473"]["ip"], "10.0.0.9");
        assert_eq!(sd["meta@32473"]["user"], "a\"b");
    }

    #[test]
    fn rfc3164_as_rsyslog_forwards_it() {
        let (r, k) =
            p("<22>Nov 23 11:59:01 mta1 postfix/smtpd[1234]: connect from unknown[10.0.0.1]");
        assert_eq!(k, Parsed::Rfc3164);
        assert_eq!((r.facility, r.severity), (Some(2), Some(6)));
        assert_eq!(r.host, "mta1");
        assert_eq!(r.app, "postfix/smtpd");
        assert_eq!(r.procid, "1234");
        assert_eq!(r.message, "connect from unknown[10.0.0.1]");
        assert_eq!(r.timestamp_ns, NOW - 59_000_000_000);
    }

    #[test]
    fn december_message_read_in_january_is_last_year() {
        // 2027-01-01T00:00:30Z
        let now = 1_798_761_630_000_000_000;
        let (r, _) = parse(b"<13>Dec 31 23:59:50 h app: x", PEER, now, chrono_tz::UTC);
        assert_eq!(r.timestamp_ns, now - 40_000_000_000);
    }

    #[test]
    fn zone_less_timestamps_use_the_configured_zone() {
        let (r, _) = parse(
            b"<13>Nov 23 12:59:00 h app: x",
            PEER,
            NOW,
            chrono_tz::Europe::Rome,
        );
        assert_eq!(r.timestamp_ns, NOW - 60_000_000_000);
    }

    #[test]
    fn pri_only_and_garbage_are_kept_whole() {
        let (r, k) = p("<34>something without a header");
        assert_eq!(k, Parsed::Fallback);
        assert_eq!((r.facility, r.severity), (Some(4), Some(2)));
        assert_eq!(r.message, "something without a header");
        assert_eq!(r.host, "10.1.2.3");
        assert_eq!(r.timestamp_ns, NOW);
        let (r, k) = p("\u{1}\u{2} <999> garbage ]]]");
        assert_eq!(k, Parsed::Fallback);
        assert_eq!(r.message, "\u{1}\u{2} <999> garbage ]]]");
        assert_eq!(r.facility, None);
        let (r, _) = parse(&[0xff, 0xfe, b'a'], "udp://[::1]:5", NOW, chrono_tz::UTC);
        assert_eq!(r.host, "::1");
        assert!(r.message.ends_with('a'));
    }

    fn general_record(raw: &str, now: i64, tz: chrono_tz::Tz) -> (LogRecord, Parsed) {
        let mut record = LogRecord::default();
        let text = raw.trim_end_matches(['\n', '\r', '\0']);
        let how = general(text, PEER, now, tz, |l| record = l.to_record());
        (record, how)
    }

    /// Mostly a usual value, sometimes an edge case, now and then noise.
    fn piece(
        usual: &'static [&'static str],
        edge: &'static [&'static str],
    ) -> impl Strategy<Value = String> {
        proptest::prop_oneof![
            8 => proptest::sample::select(usual).prop_map(str::to_string),
            2 => proptest::sample::select(edge).prop_map(str::to_string),
            1 => proptest::string::string_regex("[ -~\\t\u{a0}é]{0,4}").unwrap(),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]
        /// The byte reader of common lines reads exactly what syslog_loose
        /// reads, on lines built near (and across) the edge of what it accepts.
        #[test]
        fn fast_reader_agrees_with_syslog_loose(
            pri in piece(&["<22>", "<0>", "<191>", "<022>"], &["<192>", "<0022>", "<>", "22>", "< 22>"]),
            month in piece(&["Dec", "Nov", "Feb", "Mar"], &["dec", "DEC", "Xyz", "De"]),
            day in piece(&[" 2 ", "  2 ", " 12 ", " 28 ", " 02 "], &[" 30 ", " 31 ", " 123 ", "2 ", "   2 ", " 2  "]),
            time in piece(&["02:00:00", "23:59:59", "02:30:00"], &["2:00:00", "24:00:00", "12:60:00", "02:30:00:", "02:30:00 ", "02:30"]),
            host in piece(&[" mta2", " ::1", " host[1]", " [x]"], &[" -", " h:", "  h", " é", " h\u{a0}x", " :"]),
            tag in piece(&[" postfix/smtpd[37869]", " app", " app[0]", " a-b.c[12]"], &[" app[012]", " app[]", " [1]", " a[1]x", " -", " app[x]", " a]b", " a[[1]", " a[+1]", " a[1234567890]"]),
            sep in piece(&[": ", ":", ":\t "], &[" : ", " ", ": [", ": -", ":  - x", ": [a b=\"c\"] m"]),
            msg in piece(&["connect from x[1.2.3.4]", "", "a\tb", "é x"], &["\u{feff}bom", "trailing  ", "x\u{a0}", "-", "[x]"]),
            now in proptest::sample::select(&[NOW, 1_798_761_630_000_000_000, 1_774_738_800_000_000_000][..]),
            tz in proptest::sample::select(&[chrono_tz::UTC, chrono_tz::Europe::Rome, chrono_tz::America::New_York][..]),
        ) {
            let line = format!("{pri}{month}{day}{time}{host}{tag}{sep}{msg}");
            let text = line.trim_end_matches(['\n', '\r', '\0']);
            if fast3164::read(text).is_some() {
                let fast = parse(line.as_bytes(), PEER, now, tz);
                proptest::prop_assert_eq!(fast, general_record(&line, now, tz), "{:?}", line);
            }
        }
    }

    #[test]
    fn fast_reader_takes_the_mail_corpus_lines() {
        for line in [
            "<22>Dec  2 02:00:00 mta2 postfix/smtpd[37869]: connect from mbox3.example.com[10.0.1.12]",
            "<166>Dec  2 02:00:00 ldap1 slapd[51929]: conn=1001 fd=47 ACCEPT from IP=10.0.1.11:34874 (IP=0.0.0.0:389)",
            "<86>Dec 12 02:00:01 mta1 CROND[5]: (root) CMD (/opt/zextras/libexec/zmstatuslog)",
        ] {
            assert!(fast3164::read(line).is_some(), "{line}");
            assert_eq!(p(line), general_record(line, NOW, chrono_tz::UTC));
        }
    }

    #[test]
    fn iso_timestamp_in_3164_and_embedded_newline() {
        let (r, k) = p("<14>2026-11-23T11:00:00+00:00 web1 nginx: GET /\nsecond line");
        assert_ne!(k, Parsed::Fallback);
        assert_eq!(r.timestamp_ns, NOW - 3_600_000_000_000);
        assert_eq!(r.message, "GET /\nsecond line");
    }
}
