//! Token filters of log files: for each row group of an hour file, a binary
//! fuse filter (9 bits per token, 0.4 % false positives) of the words of its
//! messages, kept in the file itself. A search term matches
//! whole words, so a row group whose filter lacks one of the term's words
//! cannot hold a match and is not read: a rare token is found without
//! scanning every message (ClickHouse's `tokenbf_v1` works the same way).
//!
//! The filters are raw bytes in the file's body, after its row groups (what
//! Parquet's `write_all` is for: readers skip bytes no footer points at),
//! and the metadata key `carbonio.tokens.range` says where. Files written
//! before that keep them base64-encoded under `carbonio.tokens`, a third
//! larger; both are read.
//!
//! Words are runs of letters, digits and `_`; they are indexed lower-cased,
//! so case-sensitive and case-insensitive searches both use the filter.
//! Words shorter than 3 bytes and all-digit words (pids, ports, counters)
//! are left out: they are in nearly every row group, so they would only
//! make filters larger.

use base64::Engine;
use parquet::file::metadata::{FooterTail, KeyValue, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::FOOTER_SIZE;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex};
use twox_hash::XxHash3_64;
use xorf::{BinaryFuse8, Filter};

/// The metadata key of a file's filters as raw bytes: "OFFSET LEN".
pub const RANGE_KEY: &str = "carbonio.tokens.range";
/// The metadata key of older files' filters, base64-encoded.
pub const BASE64_KEY: &str = "carbonio.tokens";
const MAGIC: &[u8; 4] = b"CMT1";
/// A binary fuse filter's descriptor: seed, segment length, its mask and
/// the segments' total length.
const DESCRIPTOR_LEN: usize = 20;
/// Slots of the recently-seen-keys cache while a filter is built.
const RECENT_KEYS: usize = 4096;

/// A character that belongs to a word (the same rule as a search's).
pub fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The ASCII bytes that belong to a word (as `is_word_char` says).
const WORD_BYTES: [bool; 128] = {
    let mut table = [false; 128];
    let mut b = 0;
    while b < 128 {
        table[b] = (b as u8).is_ascii_alphanumeric() || b as u8 == b'_';
        b += 1;
    }
    table
};

/// Calls `f` with every word of `text`, in order.
pub fn for_each_word(text: &str, mut f: impl FnMut(&str)) {
    let bytes = text.as_bytes();
    let mut start = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let (word, len) = if b < 0x80 {
            (WORD_BYTES[usize::from(b)], 1)
        } else {
            // `i` is always on a character boundary.
            match text[i..].chars().next() {
                Some(c) => (is_word_char(c), c.len_utf8()),
                None => (false, 1),
            }
        };
        match (word, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                f(&text[s..i]);
                start = None;
            }
            _ => {}
        }
        i += len;
    }
    if let Some(s) = start {
        f(&text[s..]);
    }
}

/// Whether a word goes into the filters.
pub fn indexed(word: &str) -> bool {
    indexed_bytes(word.as_bytes())
}

// Inlined: it runs for every word of every message a flush writes.
#[inline]
fn indexed_bytes(word: &[u8]) -> bool {
    word.len() >= 3 && !word.iter().all(u8::is_ascii_digit)
}

/// The filter key of a word: a hash of its lower-case form.
pub fn key(word: &str) -> u64 {
    if word.is_ascii() {
        let mut buf = [0u8; 64];
        if word.len() <= buf.len() {
            let lower = &mut buf[..word.len()];
            lower.copy_from_slice(word.as_bytes());
            lower.make_ascii_lowercase();
            return XxHash3_64::oneshot(lower);
        }
        return XxHash3_64::oneshot(word.to_ascii_lowercase().as_bytes());
    }
    XxHash3_64::oneshot(word.to_lowercase().as_bytes())
}

/// The keys a search text needs: the indexed words it contains.
pub fn keys_of(text: &str) -> Vec<u64> {
    let mut keys = Vec::new();
    for_each_word(text, |w| {
        if indexed(w) {
            keys.push(key(w));
        }
    });
    keys
}

/// What one row group may contain.
#[derive(Debug, Clone)]
pub enum RowGroupFilter {
    /// Not known (no filter was stored, or building it failed): anything.
    Unknown,
    /// No indexed word at all.
    Empty,
    Words(BinaryFuse8),
}

impl RowGroupFilter {
    /// Built from the messages of one row group.
    pub fn of<'a>(messages: impl Iterator<Item = &'a str>) -> RowGroupFilter {
        // Keys are hashes already: a fast hasher is enough.
        let mut keys: HashSet<u64, foldhash::fast::FixedState> =
            HashSet::with_capacity_and_hasher(1 << 14, Default::default());
        // The keys seen last, by their low bits: common words repeat from
        // line to line, and this skips most of the set's lookups.
        let mut recent = [0u64; RECENT_KEYS];
        let mut add = |key: u64| {
            let slot = &mut recent[key as usize % RECENT_KEYS];
            if *slot != key || key == 0 {
                *slot = key;
                keys.insert(key);
            }
        };
        let mut lower = String::new();
        for m in messages {
            if m.is_ascii() {
                // Lower-cased once per line rather than word by word; ASCII
                // case does not move word boundaries.
                lower.clear();
                lower.push_str(m);
                lower.make_ascii_lowercase();
                // ASCII words are the runs of word bytes, as for_each_word finds them.
                for w in lower
                    .as_bytes()
                    .split(|b| !WORD_BYTES[usize::from(*b & 0x7f)])
                {
                    if indexed_bytes(w) {
                        add(XxHash3_64::oneshot(w));
                    }
                }
                continue;
            }
            for_each_word(m, |w| {
                if indexed(w) {
                    add(key(w));
                }
            });
        }
        if keys.is_empty() {
            return RowGroupFilter::Empty;
        }
        let keys: Vec<u64> = keys.into_iter().collect();
        match BinaryFuse8::try_from(&keys) {
            Ok(f) => RowGroupFilter::Words(f),
            Err(_) => RowGroupFilter::Unknown,
        }
    }

    /// False only when the row group holds none of the word `key`.
    pub fn may_contain(&self, key: u64) -> bool {
        match self {
            RowGroupFilter::Unknown => true,
            RowGroupFilter::Empty => false,
            RowGroupFilter::Words(f) => f.contains(&key),
        }
    }

    /// Bytes the filter takes in a file.
    pub fn encoded_len(&self) -> usize {
        match self {
            RowGroupFilter::Words(f) => 1 + DESCRIPTOR_LEN + 4 + f.fingerprints.len(),
            _ => 1,
        }
    }
}

/// Where a file keeps its filters, as its metadata says.
enum Stored<'a> {
    Range { offset: u64, len: usize },
    Base64(&'a str),
}

fn stored(meta: &ParquetMetaData) -> Option<Stored<'_>> {
    let kv = meta.file_metadata().key_value_metadata()?;
    let value = |key| kv.iter().find(|e| e.key == key)?.value.as_deref();
    if let Some(range) = value(RANGE_KEY) {
        let (offset, len) = range.split_once(' ')?;
        return Some(Stored::Range {
            offset: offset.parse().ok()?,
            len: len.parse().ok()?,
        });
    }
    value(BASE64_KEY).map(Stored::Base64)
}

/// A file's row-group token filters, `read` giving a byte range of the
/// file's `size` bytes: `Unknown` for each row group when it has none that
/// fit (written before filters existed, or damaged); None when reading
/// failed, which may pass.
pub fn of_file(
    meta: &ParquetMetaData,
    size: u64,
    read: impl FnOnce(u64, usize) -> std::io::Result<Vec<u8>>,
) -> Option<Vec<RowGroupFilter>> {
    let decoded = match stored(meta) {
        Some(Stored::Range { offset, len }) => {
            let inside = offset
                .checked_add(len as u64)
                .is_some_and(|end| end <= size);
            if inside {
                decode(&read(offset, len).ok()?).ok()
            } else {
                None
            }
        }
        Some(Stored::Base64(value)) => decode_base64(value).ok(),
        None => None,
    };
    Some(match decoded {
        Some(f) if f.len() == meta.num_row_groups() => f,
        _ => vec![RowGroupFilter::Unknown; meta.num_row_groups()],
    })
}

/// Reads `len` bytes at `offset` of a local file.
pub fn read_range(file: &std::fs::File, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0; len];
    file.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

/// Writes filters into a file being written, `at` being how many bytes it
/// has so far, and returns the metadata entry that locates them.
pub fn embed(
    filters: &[RowGroupFilter],
    at: usize,
    write_all: impl FnOnce(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<KeyValue> {
    let bytes = encode(filters);
    write_all(&bytes)?;
    Ok(KeyValue::new(
        RANGE_KEY.to_string(),
        format!("{at} {}", bytes.len()),
    ))
}

/// Filters read from files, kept so a search does not parse footers again:
/// files never change once written (compaction writes new ones).
struct FilterCache {
    files: HashMap<(String, u64), Arc<Vec<RowGroupFilter>>>,
    bytes: usize,
}

/// What the cache may hold: filters take ~1 MB per million lines.
const CACHE_BYTES: usize = 256 << 20;

static CACHE: LazyLock<Mutex<FilterCache>> = LazyLock::new(|| {
    Mutex::new(FilterCache {
        files: HashMap::new(),
        bytes: 0,
    })
});

/// The filters of a local hour file (`size` tells rewritten files apart).
pub fn of_local(path: &Path, size: u64) -> Arc<Vec<RowGroupFilter>> {
    cached(&path.display().to_string(), size, || {
        let file = std::fs::File::open(path).ok()?;
        let meta = ParquetMetaDataReader::new().parse_and_finish(&file).ok()?;
        of_file(&meta, size, |offset, len| read_range(&file, offset, len))
    })
}

/// The filters of an hour file in object storage, its footer and filter
/// bytes read through the tier's chunk cache.
pub fn of_remote(key: &str, size: u64) -> Arc<Vec<RowGroupFilter>> {
    cached(key, size, || {
        let tier = super::tier::installed()?;
        let tail_at = size.checked_sub(FOOTER_SIZE as u64)?;
        let tail = tier.read_key(key, size, tail_at, FOOTER_SIZE).ok()?;
        let len = FooterTail::try_from(tail.as_ref()).ok()?.metadata_length();
        let start = tail_at.checked_sub(len as u64)?;
        let footer = tier.read_key(key, size, start, len).ok()?;
        let meta = ParquetMetaDataReader::decode_metadata(&footer).ok()?;
        of_file(&meta, size, |offset, len| {
            Ok(tier.read_key(key, size, offset, len)?.to_vec())
        })
    })
}

/// A file whose footer or filters cannot be read gets no entry (and no
/// pruning this time): the scan itself then reports what is wrong with it.
fn cached(
    name: &str,
    size: u64,
    read: impl FnOnce() -> Option<Vec<RowGroupFilter>>,
) -> Arc<Vec<RowGroupFilter>> {
    let id = (name.to_string(), size);
    if let Some(f) = lock().files.get(&id) {
        return f.clone();
    }
    let Some(filters) = read() else {
        return Arc::new(Vec::new());
    };
    let filters = Arc::new(filters);
    let bytes = weight(name, &filters);
    let mut cache = lock();
    while cache.bytes + bytes > CACHE_BYTES {
        let Some(k) = cache.files.keys().next().cloned() else {
            break;
        };
        if let Some(old) = cache.files.remove(&k) {
            cache.bytes = cache.bytes.saturating_sub(weight(&k.0, &old));
        }
    }
    if cache.files.insert(id, filters.clone()).is_none() {
        cache.bytes += bytes;
    }
    filters
}

/// What a cache entry counts against `CACHE_BYTES`.
fn weight(name: &str, filters: &[RowGroupFilter]) -> usize {
    filters
        .iter()
        .map(RowGroupFilter::encoded_len)
        .sum::<usize>()
        + name.len()
}

fn lock() -> std::sync::MutexGuard<'static, FilterCache> {
    CACHE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Filters of a file's row groups, as stored bytes.
pub fn encode(filters: &[RowGroupFilter]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + filters.iter().map(|f| f.encoded_len()).sum::<usize>());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(filters.len() as u32).to_le_bytes());
    for f in filters {
        match f {
            RowGroupFilter::Unknown => out.push(0),
            RowGroupFilter::Empty => out.push(1),
            RowGroupFilter::Words(f) => {
                out.push(2);
                let d = &f.descriptor;
                out.extend_from_slice(&d.seed.to_le_bytes());
                out.extend_from_slice(&d.segment_length.to_le_bytes());
                out.extend_from_slice(&d.segment_length_mask.to_le_bytes());
                out.extend_from_slice(&d.segment_count_length.to_le_bytes());
                out.extend_from_slice(&(f.fingerprints.len() as u32).to_le_bytes());
                out.extend_from_slice(&f.fingerprints);
            }
        }
    }
    out
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenFilterError {
    #[error("token filters: not base64")]
    Base64,
    #[error("token filters: {0}")]
    Malformed(&'static str),
}

/// Older files' filters: what [`encode`] writes, in base64.
pub fn decode_base64(value: &str) -> Result<Vec<RowGroupFilter>, TokenFilterError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value)
        .map_err(|_| TokenFilterError::Base64)?;
    decode(&bytes)
}

/// Reads what [`encode`] wrote. A filter whose numbers could make a lookup
/// read past its fingerprints is refused, so lookups never panic.
pub fn decode(bytes: &[u8]) -> Result<Vec<RowGroupFilter>, TokenFilterError> {
    let mut r = Reader(bytes);
    if r.take(4)? != MAGIC {
        return Err(TokenFilterError::Malformed("unknown format"));
    }
    let count = r.u32()? as usize;
    let mut filters = Vec::with_capacity(count.min(bytes.len()));
    for _ in 0..count {
        filters.push(match r.take(1)?[0] {
            0 => RowGroupFilter::Unknown,
            1 => RowGroupFilter::Empty,
            2 => {
                let descriptor = xorf::Descriptor {
                    seed: u64::from_le_bytes(r.array()?),
                    segment_length: r.u32()?,
                    segment_length_mask: r.u32()?,
                    segment_count_length: r.u32()?,
                };
                let len = r.u32()? as usize;
                let fingerprints: Box<[u8]> = r.take(len)?.into();
                check(&descriptor, fingerprints.len())?;
                RowGroupFilter::Words(BinaryFuse8 {
                    descriptor,
                    fingerprints,
                })
            }
            _ => return Err(TokenFilterError::Malformed("unknown filter kind")),
        });
    }
    if !r.0.is_empty() {
        return Err(TokenFilterError::Malformed("trailing bytes"));
    }
    Ok(filters)
}

/// A lookup reads indices below `segment_count_length + 2 * segment_length`
/// when the segment length is a power of two and the mask matches it.
fn check(d: &xorf::Descriptor, len: usize) -> Result<(), TokenFilterError> {
    let bad = Err(TokenFilterError::Malformed("inconsistent filter"));
    let sl = d.segment_length;
    if sl == 0 || !sl.is_power_of_two() || d.segment_length_mask != sl - 1 {
        return bad;
    }
    if d.segment_count_length % sl != 0 {
        return bad;
    }
    let end = d.segment_count_length as u64 + 2 * sl as u64;
    if end > u32::MAX as u64 || end > len as u64 {
        return bad;
    }
    Ok(())
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TokenFilterError> {
        if self.0.len() < n {
            return Err(TokenFilterError::Malformed("cut short"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], TokenFilterError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u32(&mut self) -> Result<u32, TokenFilterError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        let mut v = Vec::new();
        for_each_word(s, |w| v.push(w.to_string()));
        v
    }

    #[test]
    fn words_are_runs_of_letters_digits_and_underscores() {
        assert_eq!(
            words("NOQUEUE: reject from x.example[10.0.0.1]: 554 5.7.1 <a_b@c.de>"),
            [
                "NOQUEUE", "reject", "from", "x", "example", "10", "0", "0", "1", "554", "5", "7",
                "1", "a_b", "c", "de"
            ]
        );
        assert_eq!(words("échec: Größe—ok"), ["échec", "Größe", "ok"]);
        assert_eq!(words(""), Vec::<String>::new());
        assert!(indexed("abc") && indexed("a1b") && !indexed("ab") && !indexed("12345"));
        assert_eq!(key("8478BEA8D4"), key("8478bea8d4"));
        assert_eq!(key("ÉCHEC"), key("échec"));
        assert_eq!(keys_of("connect from"), [key("connect"), key("from")]);
    }

    #[test]
    fn filters_find_their_words_and_round_trip() {
        let lines: Vec<String> = (0..5000)
            .map(|i| format!("queue id {:X} status=sent relay=mx{i}", i * 7919))
            .collect();
        let f = RowGroupFilter::of(lines.iter().map(String::as_str));
        let filters = vec![
            f,
            RowGroupFilter::Empty,
            RowGroupFilter::Unknown,
            RowGroupFilter::of(["only ONE word here", "Échec de Connexion"].into_iter()),
        ];
        let back = decode(&encode(&filters)).unwrap();
        let base64 = base64::engine::general_purpose::STANDARD.encode(encode(&filters));
        assert_eq!(decode_base64(&base64).unwrap().len(), 4);
        assert_eq!(back.len(), 4);
        for i in 0..5000 {
            let id = format!("{:X}", i * 7919);
            if indexed(&id) {
                assert!(back[0].may_contain(key(&id)), "{id}");
            }
        }
        let absent = (0..10_000)
            .filter(|i| back[0].may_contain(key(&format!("absent{i}"))))
            .count();
        assert!(absent < 200, "{absent} false positives in 10000");
        assert!(!back[1].may_contain(key("status")));
        assert!(back[2].may_contain(key("anything")));
        for word in ["only", "one", "ONE", "here", "échec", "ÉCHEC", "connexion"] {
            assert!(back[3].may_contain(key(word)), "{word}");
        }
    }

    proptest::proptest! {
        #[test]
        fn a_filter_holds_every_indexed_word_of_its_lines(
            lines in proptest::collection::vec("[ -~]{0,40}|\\PC{0,20}", 1..20),
        ) {
            let filter = RowGroupFilter::of(lines.iter().map(String::as_str));
            for line in &lines {
                for_each_word(line, |w| {
                    if indexed(w) {
                        assert!(filter.may_contain(key(w)), "{w:?} of {line:?}");
                    }
                });
            }
        }
    }

    /// A one-column, one-row-group file carrying `kv` in its metadata.
    fn file_with(kv: impl FnOnce(usize, &mut Vec<u8>) -> KeyValue) -> tempfile::NamedTempFile {
        use arrow_array::{ArrayRef, Int32Array, RecordBatch};
        let out = tempfile::NamedTempFile::new().unwrap();
        let column: ArrayRef = std::sync::Arc::new(Int32Array::from(vec![1, 2]));
        let batch = RecordBatch::try_from_iter([("n", column)]).unwrap();
        let file = out.reopen().unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.flush().unwrap();
        let mut body = Vec::new();
        let entry = kv(w.bytes_written(), &mut body);
        w.write_all(&body).unwrap();
        w.append_key_value_metadata(entry);
        w.close().unwrap();
        out
    }

    #[test]
    fn filters_are_read_from_the_body_or_older_base64_metadata() {
        let filters = [RowGroupFilter::of(["postfix queued it"].into_iter())];
        let embedded = file_with(|at, body| {
            embed(&filters, at, |b| {
                body.extend_from_slice(b);
                Ok(())
            })
            .unwrap()
        });
        let older = file_with(|_, _| {
            let value = base64::engine::general_purpose::STANDARD.encode(encode(&filters));
            KeyValue::new(BASE64_KEY.to_string(), value)
        });
        let past_end =
            file_with(|_, _| KeyValue::new(RANGE_KEY.to_string(), "4 999999".to_string()));
        for (file, found) in [(&embedded, true), (&older, true), (&past_end, false)] {
            let size = file.as_file().metadata().unwrap().len();
            let read = of_local(file.path(), size);
            assert_eq!(read.len(), 1);
            assert!(read[0].may_contain(key("queued")));
            // Unknown (nothing stored that fits) matches every word.
            assert_eq!(read[0].may_contain(key("absent")), !found, "{file:?}");
        }
        // A read that fails is no answer (so not one to keep).
        let size = embedded.as_file().metadata().unwrap().len();
        let meta = ParquetMetaDataReader::new()
            .parse_and_finish(embedded.as_file())
            .unwrap();
        let failing = |_, _| Err(std::io::Error::other("connection reset"));
        assert!(of_file(&meta, size, failing).is_none());
    }

    #[test]
    fn damaged_values_are_errors() {
        let raw = encode(&[RowGroupFilter::of(["some words here"].into_iter())]);
        assert!(matches!(decode_base64("%%"), Err(TokenFilterError::Base64)));
        for cut in 0..raw.len() {
            assert!(decode(&raw[..cut]).is_err(), "cut at {cut}");
        }
        // A segment length that would index past the fingerprints.
        let mut bad = raw.clone();
        bad[17..21].copy_from_slice(&(1u32 << 20).to_le_bytes());
        bad[21..25].copy_from_slice(&((1u32 << 20) - 1).to_le_bytes());
        assert!(decode(&bad).is_err());
    }
}
