//! Log WAL record decoding: replay must survive any bytes a damaged disk returns.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = carbonio_collector::logs::LogRecord::decode(data);
    let _ = carbonio_collector::logs::WalEntry::decode(data);
});
