//! The log search syntax: any text parses or returns an error positioned on
//! a character boundary, never a panic or a stack overflow (deep nesting is
//! cheap to reach here), and whatever parses prints back to the same AST.
#![no_main]
use carbonio_query::logs::syntax::{parse, MAX_QUERY_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match parse(text) {
            Ok(expr) => {
                let printed = expr.to_string();
                // Facility names can make the canonical form longer than the input.
                if printed.len() <= MAX_QUERY_LEN {
                    assert_eq!(parse(&printed), Ok(expr), "{text:?} printed as {printed:?}");
                }
            }
            Err(e) => assert!(text.is_char_boundary(e.position), "{text:?}: {e}"),
        }
    }
});
