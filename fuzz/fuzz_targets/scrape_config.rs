//! The configuration file: parse, validate, compile relabel rules, apply them.
#![no_main]
use carbonio_collector::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok((_, jobs)) = Config::parse(std::path::Path::new("fuzz.yml"), text) {
            for job in jobs {
                let mut labels = carbonio_collector::relabel::Labels::new();
                labels.insert("__address__".into(), "host:9100".into());
                let _ = carbonio_collector::relabel::apply(&job.relabel, &mut labels);
            }
        }
    }
});
