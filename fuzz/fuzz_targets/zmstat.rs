#![no_main]
//! zmstat CSV text (first line: the file's stem) read as the importer
//! reads it, and each line also as the syslog form of a row.
use carbonio_collector::zmstat::layout::Header;
use carbonio_collector::zmstat::{read_rows, series_labels, split_cells, stream, Event};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (stem, body) = text.split_once('\n').unwrap_or(("cpu", text));
    for line in body.lines() {
        if let Some((s, h, r)) = stream::split_stat(line) {
            let _ = Header::parse(s, h).accepts(split_cells(r).len());
        }
    }
    let base = Default::default();
    let _ = read_rows(stem, body, chrono_tz::Europe::Rome, |event| {
        match event {
            Event::Header(h) => drop(h.metadata()),
            Event::Row(h, _, row) => {
                let _ = row.entity_key();
                for (col, _) in &row.values {
                    let _ = series_labels(h, *col, &row.entity, &base);
                }
            }
            Event::Skip(_) => {}
        }
        Ok::<(), ()>(())
    });
});
