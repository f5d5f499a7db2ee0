//! Groups continuation lines (a Java stack trace) with the record they
//! belong to: a line matching the start pattern opens a record, other lines
//! are appended to the open one. A record is complete when the next one
//! starts, when it reaches `max_lines`, or when no line came for a while
//! (the caller decides when, through `take_open`).

use regex::Regex;

/// A complete record and the file offset just after its last line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub text: String,
    pub end: u64,
    /// Lines or bytes were cut off to respect the limits.
    pub truncated: bool,
}

#[derive(Debug)]
pub struct Grouper {
    start: Option<Regex>,
    max_lines: usize,
    max_bytes: usize,
    open: Option<Open>,
}

#[derive(Debug)]
struct Open {
    /// Offset of the record's first line: what a checkpoint may not pass
    /// while the record is still open.
    begin: u64,
    record: Record,
    lines: usize,
}

impl Grouper {
    /// Without a start pattern every line is its own record.
    pub fn new(start: Option<Regex>, max_lines: usize, max_bytes: usize) -> Self {
        Grouper {
            start,
            max_lines: max_lines.max(1),
            max_bytes: max_bytes.max(1),
            open: None,
        }
    }

    /// Feeds one line (without its newline) spanning `[begin, end)` in the
    /// file; returns a record that became complete.
    pub fn push(&mut self, line: &str, begin: u64, end: u64, truncated: bool) -> Option<Record> {
        let Some(start) = &self.start else {
            return Some(Record {
                text: line.to_string(),
                end,
                truncated,
            });
        };
        let opens = start.is_match(line);
        if let Some(open) = self.open.as_mut().filter(|_| !opens) {
            if open.lines >= self.max_lines || open.record.text.len() >= self.max_bytes {
                open.record.truncated = true;
            } else {
                open.record.text.push('\n');
                let room = self.max_bytes.saturating_sub(open.record.text.len());
                let cut = floor_char_boundary(line, room);
                open.record.text.push_str(&line[..cut]);
                open.record.truncated |= truncated || cut < line.len();
            }
            open.record.end = end;
            open.lines += 1;
            return None;
        }
        let done = self.open.take().map(|o| o.record);
        self.open = Some(Open {
            begin,
            record: Record {
                text: line.to_string(),
                end,
                truncated,
            },
            lines: 1,
        });
        done
    }

    /// Where the open record begins (None when nothing is open).
    pub fn open_begin(&self) -> Option<u64> {
        self.open.as_ref().map(|o| o.begin)
    }

    /// Closes the open record (timeout, end of a rotated file, truncation).
    pub fn take_open(&mut self) -> Option<Record> {
        self.open.take().map(|o| o.record)
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn java() -> Grouper {
        Grouper::new(Some(Regex::new(r"^\d{4}-").unwrap()), 3, 1000)
    }

    #[test]
    fn stack_traces_join_their_record() {
        let mut g = java();
        let mut out = Vec::new();
        let lines = [
            "2024-01-01 a",
            "java.lang.NullPointerException",
            "\tat x.y(Z.java:1)",
            "2024-01-01 b",
        ];
        let mut at = 0u64;
        for l in lines {
            let end = at + l.len() as u64 + 1;
            out.extend(g.push(l, at, end, false));
            at = end;
        }
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].text,
            "2024-01-01 a\njava.lang.NullPointerException\n\tat x.y(Z.java:1)"
        );
        assert_eq!(out[0].end, 13 + 31 + 18);
        assert_eq!(g.open_begin(), Some(out[0].end));
        assert_eq!(g.take_open().unwrap().text, "2024-01-01 b");
        assert_eq!(g.open_begin(), None);
    }

    #[test]
    fn limits_truncate_and_orphans_stand_alone() {
        let mut g = java();
        // A continuation with nothing open becomes a record of its own.
        assert_eq!(g.push("\tat orphan", 0, 11, false), None);
        assert_eq!(g.push("2024-x", 11, 18, false).unwrap().text, "\tat orphan");
        for i in 0..5 {
            g.push("\tat more", 18 + i * 9, 27 + i * 9, false);
        }
        let r = g.take_open().unwrap();
        assert_eq!(r.text.lines().count(), 3);
        assert!(r.truncated);
        assert_eq!(r.end, 27 + 4 * 9);
        let mut plain = Grouper::new(None, 1, 10);
        assert_eq!(plain.push("one", 0, 4, false).unwrap().end, 4);
        let mut small = Grouper::new(Some(Regex::new("^S").unwrap()), 10, 6);
        small.push("S1", 0, 3, false);
        small.push("ünïcode", 3, 13, false);
        let r = small.take_open().unwrap();
        assert_eq!(r.text, "S1\nün");
        assert!(r.truncated);
    }
}
