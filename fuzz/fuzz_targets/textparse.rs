//! The textfile collector's exposition parser must return Ok or a typed error.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(parsed) = carbonio_exporters::textparse::parse(text) {
            // Whatever parses must also encode.
            let _ = carbonio_exporters::exposition::encode(
                &carbonio_exporters::exposition::normalize(parsed.families),
                carbonio_exporters::exposition::Format::OpenMetrics,
            );
        }
    }
});
