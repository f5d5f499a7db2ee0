//! The tailing parsers (Carbonio mailbox log4j layout, nginx access logs)
//! and multiline grouping: any text is parsed or refused with an error,
//! never a panic; grouping keeps offsets in order.
#![no_main]
use carbonio_collector::tail::{mailbox, multiline::Grouper, nginx};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = mailbox::parse(&text, chrono_tz::Europe::Rome);
    let _ = nginx::parse(&text);
    let start = regex::Regex::new(mailbox::RECORD_START).ok();
    let mut g = Grouper::new(start, 4, 64);
    let mut at = 0u64;
    let mut last_end = 0u64;
    for line in text.split('\n') {
        let end = at + line.len() as u64 + 1;
        if let Some(r) = g.push(line, at, end, false) {
            assert!(r.end >= last_end && r.end <= end);
            last_end = r.end;
        }
        at = end;
    }
    let _ = g.take_open();
});
