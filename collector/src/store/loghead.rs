//! The log store's unflushed lines, kept column by column as they arrive:
//! names (host, app, procid, msgid, source) interned once per head, texts
//! in one buffer each. A flush sorts row numbers, not records, and copies
//! each column once; a head of records spent most of a flush chasing the
//! records' scattered strings (`bench logs`).

use super::logs::schema;
use crate::logs::{facility_name, severity_name, LineRef, LogRecord};
use arrow_array::builder::StringBuilder;
use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, DictionaryArray, Int32Array, RecordBatch, StringArray, TimestampNanosecondArray,
    UInt8Array,
};
use arrow_schema::ArrowError;
use std::sync::Arc;

const HOUR_NS: i64 = super::logs::HOUR_NS;
/// Facility or severity absent.
const NONE: u8 = 0xff;
/// Most text bytes in one batch: Arrow string offsets are 32-bit.
const BATCH_TEXT_BYTES: usize = 1 << 30;

#[derive(Debug, Default)]
pub struct LogHead {
    timestamp: Vec<i64>,
    received: Vec<i64>,
    facility: Vec<u8>,
    severity: Vec<u8>,
    host: Names,
    app: Names,
    procid: Names,
    msgid: Names,
    source: Names,
    message: Text,
    structured_data: Text,
}

impl LogHead {
    pub fn len(&self) -> usize {
        self.timestamp.len()
    }

    pub fn is_empty(&self) -> bool {
        self.timestamp.is_empty()
    }

    pub fn push(&mut self, r: &LogRecord) {
        self.push_line(&r.as_line());
    }

    pub fn push_line(&mut self, l: &LineRef) {
        self.timestamp.push(l.timestamp_ns);
        self.received.push(l.received_ns);
        self.facility.push(l.facility.unwrap_or(NONE));
        self.severity.push(l.severity.unwrap_or(NONE));
        self.host.push(l.host);
        self.app.push(l.app);
        self.procid.push(l.procid);
        self.msgid.push(l.msgid);
        self.source.push(l.source);
        self.message.push(l.message);
        self.structured_data.push(l.structured_data);
    }

    pub fn extend<'a>(&mut self, records: impl IntoIterator<Item = &'a LogRecord>) {
        for r in records {
            self.push(r);
        }
    }

    /// Appends every line of `other` after this head's, column by column:
    /// each of its names is looked up once, its texts copied in one go.
    pub fn append(&mut self, other: &LogHead) {
        self.timestamp.extend_from_slice(&other.timestamp);
        self.received.extend_from_slice(&other.received);
        self.facility.extend_from_slice(&other.facility);
        self.severity.extend_from_slice(&other.severity);
        self.host.append(&other.host);
        self.app.append(&other.app);
        self.procid.append(&other.procid);
        self.msgid.append(&other.msgid);
        self.source.append(&other.source);
        self.message.append(&other.message);
        self.structured_data.append(&other.structured_data);
    }

    /// Empties the head, keeping its buffers.
    pub fn clear(&mut self) {
        self.clear_within(usize::MAX, usize::MAX);
    }

    /// Empties the head, keeping buffers with room for at most `lines`
    /// lines and `text` bytes of each text column: a refilled buffer costs
    /// no page faults, but a backlog's would pin its memory.
    pub fn clear_within(&mut self, lines: usize, text: usize) {
        self.timestamp.clear();
        self.timestamp.shrink_to(lines);
        self.received.clear();
        self.received.shrink_to(lines);
        self.facility.clear();
        self.facility.shrink_to(lines);
        self.severity.clear();
        self.severity.shrink_to(lines);
        for names in [
            &mut self.host,
            &mut self.app,
            &mut self.procid,
            &mut self.msgid,
            &mut self.source,
        ] {
            names.clear_within(lines);
        }
        for column in [&mut self.message, &mut self.structured_data] {
            column.clear_within(lines, text);
        }
    }

    /// Bytes of the text fields of every row.
    pub fn text_len(&self) -> usize {
        [
            &self.host,
            &self.app,
            &self.procid,
            &self.msgid,
            &self.source,
        ]
        .iter()
        .map(|n| n.text_len())
        .sum::<usize>()
            + self.message.bytes.len()
            + self.structured_data.bytes.len()
    }

    /// Row `i`, its fields borrowed from the head.
    pub fn line(&self, i: usize) -> LineRef<'_> {
        let opt = |v: u8| (v != NONE).then_some(v);
        LineRef {
            timestamp_ns: self.timestamp[i],
            received_ns: self.received[i],
            host: self.host.get(i),
            app: self.app.get(i),
            procid: self.procid.get(i),
            msgid: self.msgid.get(i),
            facility: opt(self.facility[i]),
            severity: opt(self.severity[i]),
            message: self.message.get(i),
            structured_data: self.structured_data.get(i),
            source: self.source.get(i),
        }
    }

    /// Every row, in arrival order.
    pub fn lines(&self) -> impl Iterator<Item = LineRef<'_>> + Clone {
        (0..self.len()).map(|i| self.line(i))
    }

    /// Row `i` as a record.
    pub fn record(&self, i: usize) -> LogRecord {
        self.line(i).to_record()
    }

    /// Rows with event time in [start_ns, end_ns], in arrival order.
    pub fn rows_between(&self, start_ns: i64, end_ns: i64) -> Vec<u32> {
        (0..self.len() as u32)
            .filter(|&i| (start_ns..=end_ns).contains(&self.timestamp[i as usize]))
            .collect()
    }

    /// Every row in file order: hour, app, host, time, then arrival.
    pub fn file_order(&self) -> Vec<u32> {
        let (apps, hosts) = (self.app.ranks(), self.host.ranks());
        self.packed_order(&apps, &hosts)
            .unwrap_or_else(|| self.tuple_order(&apps, &hosts))
    }

    /// File order sorting one 128-bit key per row (hour, app, host, time in
    /// the hour, row): half the bytes of a tuple and one comparison each.
    /// None when a field does not fit its bits (over 65,536 hours, apps or
    /// hosts in one head).
    fn packed_order(&self, apps: &[u32], hosts: &[u32]) -> Option<Vec<u32>> {
        const FIELD: usize = 1 << 16;
        let first_hour = self.timestamp.iter().map(|t| t.div_euclid(HOUR_NS)).min()?;
        let last_hour = self.timestamp.iter().map(|t| t.div_euclid(HOUR_NS)).max()?;
        let span = usize::try_from(last_hour - first_hour).ok()?;
        if span >= FIELD || apps.len() > FIELD || hosts.len() > FIELD {
            return None;
        }
        let mut keys: Vec<u128> = (0..self.len())
            .map(|i| {
                let ts = self.timestamp[i];
                let hour = (ts.div_euclid(HOUR_NS) - first_hour) as u128;
                let app = u128::from(apps[self.app.keys[i] as usize]);
                let host = u128::from(hosts[self.host.keys[i] as usize]);
                // Below 2^42: an hour has 3.6e12 ns.
                let in_hour = ts.rem_euclid(HOUR_NS) as u128;
                hour << 106 | app << 90 | host << 74 | in_hour << 32 | i as u128
            })
            .collect();
        keys.sort_unstable();
        Some(keys.into_iter().map(|k| k as u32).collect())
    }

    fn tuple_order(&self, apps: &[u32], hosts: &[u32]) -> Vec<u32> {
        let mut keyed: Vec<(i64, u32, u32, i64, u32)> = (0..self.len())
            .map(|i| {
                let ts = self.timestamp[i];
                (
                    ts.div_euclid(HOUR_NS),
                    apps[self.app.keys[i] as usize],
                    hosts[self.host.keys[i] as usize],
                    ts,
                    i as u32,
                )
            })
            .collect();
        keyed.sort_unstable();
        keyed.into_iter().map(|k| k.4).collect()
    }

    /// The hour (start, ns) of a row's event time.
    pub fn hour_of(&self, row: u32) -> i64 {
        self.timestamp[row as usize].div_euclid(HOUR_NS)
    }

    /// The given rows, in that order, as batches of the `logs` schema of at
    /// most `max_rows` rows each (fewer when their texts are very long).
    /// Each batch is built when the iterator reaches it, so a flush holds
    /// one row group's arrays at a time rather than a copy of the head.
    pub fn batches<'a>(
        &'a self,
        rows: &'a [u32],
        max_rows: usize,
    ) -> impl Iterator<Item = Result<RecordBatch, ArrowError>> + 'a {
        self.batches_within(rows, max_rows, BATCH_TEXT_BYTES)
    }

    fn batches_within<'a>(
        &'a self,
        rows: &'a [u32],
        max_rows: usize,
        max_text_bytes: usize,
    ) -> impl Iterator<Item = Result<RecordBatch, ArrowError>> + 'a {
        let mut start = 0;
        std::iter::from_fn(move || {
            if start >= rows.len() {
                return None;
            }
            let mut end = start;
            let mut bytes = 0;
            while end < rows.len() && end - start < max_rows.max(1) {
                let r = rows[end] as usize;
                bytes += self.message.len_of(r).max(self.structured_data.len_of(r));
                if bytes > max_text_bytes && end > start {
                    break;
                }
                end += 1;
            }
            let batch = self.batch(&rows[start..end]);
            start = end;
            Some(batch)
        })
    }

    /// The earliest and latest event time of the given rows.
    pub fn time_range(&self, rows: &[u32]) -> Option<(i64, i64)> {
        let times = || rows.iter().map(|&r| self.timestamp[r as usize]);
        Some((times().min()?, times().max()?))
    }

    fn batch(&self, rows: &[u32]) -> Result<RecordBatch, ArrowError> {
        let ts = |values: &[i64]| -> ArrayRef {
            Arc::new(
                TimestampNanosecondArray::from_iter_values(
                    rows.iter().map(|&r| values[r as usize]),
                )
                .with_timezone("UTC"),
            )
        };
        let num = |values: &[u8]| -> ArrayRef {
            Arc::new(UInt8Array::from_iter(rows.iter().map(|&r| {
                let v = values[r as usize];
                (v != NONE).then_some(v)
            })))
        };
        // Named numbers (facility, severity) as a dictionary keyed by the number.
        let named = |values: &[u8], name: fn(u8) -> Option<&'static str>| -> ArrayRef {
            let names: Vec<&str> = (0..=NONE).map_while(name).collect();
            let keys = Int32Array::from_iter(rows.iter().map(|&r| {
                let v = values[r as usize] as usize;
                (v < names.len()).then_some(v as i32)
            }));
            Arc::new(DictionaryArray::<Int32Type>::new(
                keys,
                Arc::new(StringArray::from_iter_values(names)),
            ))
        };
        RecordBatch::try_new(
            schema(),
            vec![
                ts(&self.timestamp),
                ts(&self.received),
                Arc::new(self.host.array(rows)),
                Arc::new(self.app.array(rows)),
                Arc::new(self.procid.array(rows)),
                Arc::new(self.msgid.array(rows)),
                num(&self.facility),
                named(&self.facility, facility_name),
                num(&self.severity),
                named(&self.severity, severity_name),
                Arc::new(self.message.array(rows)),
                Arc::new(self.structured_data.array(rows)),
                Arc::new(self.source.array(rows)),
            ],
        )
    }
}

/// One column of names: a key per row into the distinct names.
#[derive(Debug, Default)]
struct Names {
    keys: Vec<u32>,
    values: Vec<String>,
    /// Keys by their name's hash, compared by `same`.
    index: hashbrown::HashTable<u32>,
}

impl Names {
    fn push(&mut self, v: &str) {
        // Lines of one sender come in runs: most repeat the previous name.
        let key = match self.keys.last() {
            Some(&k) if same(&self.values[k as usize], v) => k,
            _ => self.intern(v),
        };
        self.keys.push(key);
    }

    fn intern(&mut self, v: &str) -> u32 {
        let hash = name_hash(v);
        let Names { values, index, .. } = self;
        if let Some(&k) = index.find(hash, |&k| same(&values[k as usize], v)) {
            return k;
        }
        let k = values.len() as u32;
        values.push(v.to_string());
        index.insert_unique(hash, k, |&k| name_hash(&values[k as usize]));
        k
    }

    /// Empties the column, keeping room for at most `lines` keys.
    fn clear_within(&mut self, lines: usize) {
        self.keys.clear();
        self.keys.shrink_to(lines);
        self.values.clear();
        self.index.clear();
    }

    fn text_len(&self) -> usize {
        self.keys
            .iter()
            .map(|&k| self.values[k as usize].len())
            .sum()
    }

    fn append(&mut self, other: &Names) {
        let keys: Vec<u32> = other.values.iter().map(|v| self.intern(v)).collect();
        self.keys
            .extend(other.keys.iter().map(|&k| keys[k as usize]));
    }

    fn get(&self, row: usize) -> &str {
        &self.values[self.keys[row] as usize]
    }

    /// Each key's rank in the sorted names.
    fn ranks(&self) -> Vec<u32> {
        let mut sorted: Vec<u32> = (0..self.values.len() as u32).collect();
        sorted.sort_unstable_by(|a, b| self.values[*a as usize].cmp(&self.values[*b as usize]));
        let mut ranks = vec![0; sorted.len()];
        for (rank, key) in (0..).zip(sorted) {
            ranks[key as usize] = rank;
        }
        ranks
    }

    fn array(&self, rows: &[u32]) -> DictionaryArray<Int32Type> {
        let keys = Int32Array::from_iter_values(rows.iter().map(|&r| self.keys[r as usize] as i32));
        let values = StringArray::from_iter_values(&self.values);
        DictionaryArray::new(keys, Arc::new(values))
    }
}

fn name_hash(name: &str) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::default().hash_one(name)
}

/// Whether two names are equal, compared inline: names are short, and a
/// library call per name per line showed in profiles.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let (mut x, mut y) = (a.chunks_exact(8), b.chunks_exact(8));
    let word = |c: &[u8]| c.try_into().map_or(0, u64::from_ne_bytes);
    (&mut x).zip(&mut y).all(|(p, q)| word(p) == word(q))
        && x.remainder().iter().zip(y.remainder()).all(|(p, q)| p == q)
}

/// One column of free text, all rows in one buffer.
#[derive(Debug, Default)]
struct Text {
    bytes: String,
    ends: Vec<usize>,
}

impl Text {
    fn push(&mut self, s: &str) {
        self.bytes.push_str(s);
        self.ends.push(self.bytes.len());
    }

    /// Empties the column, keeping room for at most `lines` rows and
    /// `bytes` bytes.
    fn clear_within(&mut self, lines: usize, bytes: usize) {
        self.bytes.clear();
        self.bytes.shrink_to(bytes);
        self.ends.clear();
        self.ends.shrink_to(lines);
    }

    fn append(&mut self, other: &Text) {
        let offset = self.bytes.len();
        self.bytes.push_str(&other.bytes);
        self.ends.extend(other.ends.iter().map(|e| e + offset));
    }

    fn start(&self, row: usize) -> usize {
        row.checked_sub(1).map_or(0, |p| self.ends[p])
    }

    fn get(&self, row: usize) -> &str {
        &self.bytes[self.start(row)..self.ends[row]]
    }

    fn len_of(&self, row: usize) -> usize {
        self.ends[row] - self.start(row)
    }

    fn array(&self, rows: &[u32]) -> StringArray {
        let bytes = rows.iter().map(|&r| self.len_of(r as usize)).sum();
        let mut b = StringBuilder::with_capacity(rows.len(), bytes);
        for &r in rows {
            b.append_value(self.get(r as usize));
        }
        b.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(ts_s: i64, host: &str, app: &str, msg: &str) -> LogRecord {
        LogRecord {
            timestamp_ns: ts_s * 1_000_000_000,
            received_ns: 7,
            host: host.into(),
            app: app.into(),
            procid: "12".into(),
            facility: Some(3),
            severity: None,
            message: msg.into(),
            source: "tcp://127.0.0.1:1".into(),
            ..LogRecord::default()
        }
    }

    #[test]
    fn records_round_trip_and_batches_keep_every_field() {
        let lines = vec![
            line(10, "b", "postfix", "one"),
            line(5, "a", "postfix", "twö"),
            LogRecord {
                structured_data: r#"{"x":{"y":"z"}}"#.into(),
                msgid: "ID1".into(),
                severity: Some(6),
                ..line(7, "a", "sshd", "")
            },
        ];
        let mut head = LogHead::default();
        head.extend(&lines);
        assert_eq!((0..3).map(|i| head.record(i)).collect::<Vec<_>>(), lines);
        let batches = head
            .batches(&[0, 1, 2], 2)
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        assert_eq!(
            batches.iter().map(|b| b.num_rows()).collect::<Vec<_>>(),
            [2, 1]
        );
        let back: Vec<LogRecord> = batches
            .iter()
            .flat_map(super::super::logs::from_batch)
            .collect();
        assert_eq!(back, lines);
    }

    #[test]
    fn file_order_is_hour_app_host_time_arrival() {
        let mut head = LogHead::default();
        head.extend(&[
            line(3600 + 1, "a", "a", "next hour"),
            line(9, "b", "sshd", "4"),
            line(8, "b", "postfix", "3"),
            line(9, "a", "postfix", "1"),
            line(9, "a", "postfix", "2"),
        ]);
        let order = head.file_order();
        let messages: Vec<String> = order
            .iter()
            .map(|&r| head.record(r as usize).message)
            .collect();
        assert_eq!(messages, ["1", "2", "3", "4", "next hour"]);
        assert_eq!(
            head.rows_between(8_000_000_000, 9_000_000_000),
            [1, 2, 3, 4]
        );
    }

    #[test]
    fn batches_are_cut_before_too_much_text() {
        let mut head = LogHead::default();
        for msg in [
            "0123456789",
            "0123456789",
            "0123456789",
            &"x".repeat(40),
            "0",
        ] {
            head.push(&line(1, "h", "a", msg));
        }
        let rows: Vec<u32> = (0..5).collect();
        let sizes: Vec<usize> = head
            .batches_within(&rows, 100, 25)
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
            .iter()
            .map(RecordBatch::num_rows)
            .collect();
        // A line longer than the limit still goes out, alone.
        assert_eq!(sizes, [2, 1, 1, 1]);
    }

    proptest::proptest! {
        #[test]
        fn any_lines_come_back_whole_through_batches(
            lines in proptest::collection::vec(
                (any_text(), any_text(), any_text(), proptest::option::of(0u8..24), proptest::option::of(0u8..8), -1_000_000i64..1_000_000),
                0..40,
            ),
            max_rows in 1usize..8,
            split in 0usize..40,
        ) {
            let records: Vec<LogRecord> = lines
                .into_iter()
                .map(|(host, app, message, facility, severity, ts)| LogRecord {
                    timestamp_ns: ts,
                    received_ns: ts / 2,
                    host,
                    app,
                    facility,
                    severity,
                    message,
                    ..LogRecord::default()
                })
                .collect();
            // The head as a listener builds it: earlier lines, then a batch appended.
            let split = split.min(records.len());
            let mut head = LogHead::default();
            head.extend(&records[..split]);
            let mut batch = LogHead::default();
            batch.extend(&records[split..]);
            head.append(&batch);
            let order = head.file_order();
            let back: Vec<LogRecord> = head
                .batches(&order, max_rows)
                .collect::<Result<Vec<_>, _>>()
                .unwrap()
                .iter()
                .flat_map(super::super::logs::from_batch)
                .collect();
            let expected: Vec<LogRecord> = order.iter().map(|&r| records[r as usize].clone()).collect();
            proptest::prop_assert_eq!(back, expected);
            let mut sorted = order.clone();
            sorted.sort_unstable();
            proptest::prop_assert_eq!(sorted, (0..records.len() as u32).collect::<Vec<_>>());
        }
    }

    proptest::proptest! {
        #[test]
        fn packed_file_order_is_the_tuple_order(
            lines in proptest::collection::vec(
                ("[abc]{0,2}", "[abc]{0,2}", -3 * HOUR_NS..3 * HOUR_NS, 0i64..3),
                0..60,
            ),
        ) {
            let mut head = LogHead::default();
            for (host, app, ts, tie) in lines {
                // Equal times, too: arrival breaks the tie.
                let ts = if tie == 0 { 0 } else { ts };
                head.push(&line(0, &host, &app, "m"));
                if let Some(t) = head.timestamp.last_mut() {
                    *t = ts;
                }
            }
            let (apps, hosts) = (head.app.ranks(), head.host.ranks());
            let packed = head.packed_order(&apps, &hosts);
            proptest::prop_assert_eq!(packed, (!head.is_empty()).then(|| head.tuple_order(&apps, &hosts)));
        }
    }

    #[test]
    fn heads_spanning_too_many_hours_sort_as_tuples() {
        let mut head = LogHead::default();
        head.push(&line(0, "h", "a", "early"));
        head.push(&line(HOUR_NS / 1_000_000_000 * (1 << 16), "h", "a", "late"));
        head.push(&line(5, "h", "a", "early too"));
        let (apps, hosts) = (head.app.ranks(), head.host.ranks());
        assert_eq!(head.packed_order(&apps, &hosts), None);
        assert_eq!(head.file_order(), [0, 2, 1]);
    }

    proptest::proptest! {
        #[test]
        fn same_is_string_equality(a in "[ab]{0,20}", b in "[ab]{0,20}") {
            proptest::prop_assert_eq!(same(&a, &b), a == b);
            proptest::prop_assert!(same(&a, &a.clone()));
        }
    }

    fn any_text() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::prop_oneof![
            proptest::string::string_regex("[ab]{0,3}").unwrap(),
            proptest::string::string_regex("\\PC{0,12}").unwrap(),
        ]
    }

    #[test]
    fn append_keeps_both_heads_lines_in_order() {
        let (mut a, mut b) = (LogHead::default(), LogHead::default());
        a.push(&line(1, "h", "x", "first"));
        b.push(&line(2, "g", "y", "second"));
        a.append(&b);
        assert_eq!(a.len(), 2);
        assert_eq!(a.record(1), line(2, "g", "y", "second"));
        assert_eq!(a.text_len(), a.lines().map(|l| l.text_len()).sum::<usize>());
    }

    #[test]
    fn a_cleared_head_holds_only_what_comes_after() {
        let mut head = LogHead::default();
        head.push(&line(1, "h", "x", "before"));
        head.push(&line(2, "g", "y", "before too"));
        // Room for text and for lines.
        let room = |h: &LogHead| {
            (
                h.message.bytes.capacity() + h.structured_data.bytes.capacity(),
                h.timestamp.capacity().min(h.message.ends.capacity()),
            )
        };
        let before = room(&head);
        head.clear();
        assert!(head.is_empty());
        assert_eq!(room(&head), before);
        head.clear_within(0, 0);
        assert_eq!(room(&head), (0, 0));
        head.push(&line(3, "g", "z", "after"));
        let back: Vec<LogRecord> = head
            .batches(&head.file_order(), 10)
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
            .iter()
            .flat_map(super::super::logs::from_batch)
            .collect();
        assert_eq!(back, vec![line(3, "g", "z", "after")]);
    }
}
