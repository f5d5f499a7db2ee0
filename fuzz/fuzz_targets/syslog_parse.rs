//! One syslog message: any bytes become a stored record (raw at worst), never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (record, _) = carbonio_collector::syslog::parse::parse(
        data,
        "udp://127.0.0.1:514",
        1_795_435_200_000_000_000,
        chrono_tz::Europe::Rome,
    );
    let mut b = Vec::new();
    record.encode(&mut b);
    assert_eq!(carbonio_collector::logs::LogRecord::decode(&b).as_ref(), Ok(&record));
});
