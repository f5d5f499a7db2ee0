//! /proc/PID/stat parsing: comm may hold anything, fields may be missing.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = carbonio_exporters::procfs::parse_stat(std::path::Path::new("stat"), text);
        let _ = carbonio_exporters::procfs::parse_status(text);
        let _ = carbonio_exporters::procfs::parse_max_fds(text);
    }
});
