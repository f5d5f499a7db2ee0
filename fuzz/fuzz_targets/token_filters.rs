//! Token filters as stored in a log file (raw, or base64 in older files'
//! metadata): any value decodes or returns an error, and a decoded filter
//! answers lookups without reading past its fingerprints.
#![no_main]
use base64::Engine;
use carbonio_collector::store::tokens::{decode, decode_base64, encode, key, RowGroupFilter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let value = base64::engine::general_purpose::STANDARD.encode(data);
    let decoded = [
        decode(data),
        decode_base64(&value),
        decode_base64(std::str::from_utf8(data).unwrap_or("")),
    ];
    for filters in decoded.into_iter().flatten() {
        for f in &filters {
            for w in ["postfix", "8478BEA8D4", "x"] {
                let _ = f.may_contain(key(w));
            }
        }
        assert_eq!(decode(&encode(&filters)).map(|f| f.len()), Ok(filters.len()));
    }
    // Filters built from arbitrary text find every word they were built from.
    if let Ok(text) = std::str::from_utf8(data) {
        let f = RowGroupFilter::of(text.lines());
        for k in carbonio_collector::store::tokens::keys_of(text) {
            assert!(f.may_contain(k), "{text:?}");
        }
    }
});
