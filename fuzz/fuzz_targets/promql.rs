//! PromQL text: the bounded parser returns a query or an error, never a
//! panic or a stack overflow (deep nesting and long operator chains are
//! refused before the parser sees them), and whatever parses evaluates
//! against an empty store without panicking.
#![no_main]
use carbonio_collector::relabel::Labels;
use carbonio_collector::store::head::{Matcher, Selected};
use carbonio_collector::store::record::MetricMeta;
use carbonio_collector::store::{MetricRead, StoreError};
use carbonio_query::promql::Engine;
use libfuzzer_sys::fuzz_target;
use std::collections::{BTreeMap, BTreeSet};

struct Empty;

impl MetricRead for Empty {
    fn select(&self, _: &[Matcher], _: i64, _: i64) -> Result<Vec<Selected>, StoreError> {
        Ok(Vec::new())
    }
    fn series(&self, _: &[Matcher], _: i64, _: i64) -> Result<Vec<Labels>, StoreError> {
        Ok(Vec::new())
    }
    fn metadata(&self) -> BTreeMap<String, BTreeSet<MetricMeta>> {
        BTreeMap::new()
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Engine::default().instant(&Empty, text, 1_700_000_000_000);
    }
});
