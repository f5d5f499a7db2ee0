//! RFC 6587 framing over arbitrary reads: no panic, bounded buffering, all input consumed at EOF.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut framer = carbonio_collector::syslog::framing::Framer::new(64);
    let mut buf = Vec::new();
    // The first byte picks the read size, so frames split across reads are covered.
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    for chunk in data.chunks(step) {
        buf.extend_from_slice(chunk);
        let _ = framer.decode(&mut buf, false);
        assert!(buf.len() <= 64 + 11);
    }
    let _ = framer.decode(&mut buf, true);
    assert!(buf.is_empty());
});
