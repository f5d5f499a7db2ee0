//! DSN parsing and redaction, plus pg_settings unit conversion.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = carbonio_exporters::postgres::parse_dsn(text);
        let _ = carbonio_exporters::postgres::redact(text);
        let mut parts = text.splitn(3, '|');
        let (setting, unit, vartype) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let _ = carbonio_exporters::postgres::setting_metric("x", setting, unit, "d", vartype);
    }
});
