#![no_main]
use libfuzzer_sys::fuzz_target;

// Rule files (Prometheus's format plus log_alert), and every template in them.
fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = carbonio_query::rules::file::parse(std::path::Path::new("fuzz.yml"), text);
        let _ = carbonio_query::rules::template::Template::parse(text);
    }
});
