//! The scrape parser, both formats: Ok events or a positioned error, never a panic.
#![no_main]
use carbonio_collector::scrape::parse::{Format, Parser};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        for format in [Format::Text004, Format::OpenMetrics] {
            for event in Parser::new(text, format) {
                if let Err(e) = event {
                    let _ = e.to_string();
                }
            }
        }
    }
});
