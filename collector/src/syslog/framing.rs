//! RFC 6587 framing of a syslog byte stream (TCP, TLS): octet-counting
//! (`LEN SP MSG`) or newline-terminated, decided by the connection's first
//! byte (a digit means octet-counting, as rsyslog and syslog-ng send it).
//! Frames longer than the maximum are truncated (the rest is skipped, the
//! stream stays in sync); a malformed length is read as a newline-framed
//! line instead, so no byte is ever discarded for bad framing.

/// Longest length prefix accepted (10 digits: up to 9,999,999,999).
const MAX_LEN_DIGITS: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    OctetCounting,
    Newline,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub data: Vec<u8>,
    /// The message was longer than the maximum and was cut.
    pub truncated: bool,
}

/// What one framing step found: the frame (its range in the rest of the
/// buffer, and whether it was truncated), if any, and the bytes it used.
type Step = (Option<(std::ops::Range<usize>, bool)>, usize);

#[derive(Debug)]
pub struct Framer {
    max: usize,
    mode: Option<Mode>,
    /// Bytes of an oversize octet-counted frame still to skip.
    skip: usize,
    /// Skipping the rest of an oversize newline-framed line.
    skip_line: bool,
}

impl Framer {
    pub fn new(max_message: usize) -> Framer {
        Framer {
            max: max_message.max(1),
            mode: None,
            skip: 0,
            skip_line: false,
        }
    }

    /// Takes every complete frame from the front of `buf`; with `eof`, a
    /// trailing unterminated line is a frame too.
    pub fn decode(&mut self, buf: &mut Vec<u8>, eof: bool) -> Vec<Frame> {
        let mut frames = Vec::new();
        self.decode_each(buf, eof, |data, truncated| {
            frames.push(Frame {
                data: data.to_vec(),
                truncated,
            })
        });
        frames
    }

    /// As `decode`, but hands each frame to `f` as a slice of `buf` (and
    /// whether it was truncated): no copy per frame.
    pub fn decode_each(&mut self, buf: &mut Vec<u8>, eof: bool, mut f: impl FnMut(&[u8], bool)) {
        let mut pos = 0;
        loop {
            let rest = &buf[pos..];
            if self.skip > 0 {
                let n = self.skip.min(rest.len());
                self.skip -= n;
                pos += n;
                if self.skip > 0 {
                    break;
                }
                continue;
            }
            if self.skip_line {
                match rest.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        pos += i + 1;
                        self.skip_line = false;
                        continue;
                    }
                    None => {
                        pos = buf.len();
                        break;
                    }
                }
            }
            // Blank separators between frames (some senders add LF after octet frames).
            let blank = rest
                .iter()
                .take_while(|&&b| b == b'\n' || b == b'\r' || b == b'\0')
                .count();
            if blank > 0 {
                pos += blank;
                continue;
            }
            if rest.is_empty() {
                break;
            }
            let mode = *self.mode.get_or_insert(if rest[0].is_ascii_digit() {
                Mode::OctetCounting
            } else {
                Mode::Newline
            });
            let step = match mode {
                Mode::OctetCounting => match octet_length(rest) {
                    // A frame cut short by the end of the stream is kept as it came.
                    Some(Ok((len, header))) => match self.octet_frame(rest, len, header) {
                        None if eof => self.line_frame(rest, eof),
                        step => step,
                    },
                    Some(Err(())) => self.line_frame(rest, eof),
                    None if eof => self.line_frame(rest, eof),
                    None => None,
                },
                Mode::Newline => self.line_frame(rest, eof),
            };
            match step {
                Some((frame, used)) => {
                    if let Some((range, truncated)) = frame {
                        f(&rest[range], truncated);
                    }
                    pos += used;
                }
                None => break,
            }
        }
        buf.drain(..pos);
    }

    /// An octet-counted frame of `len` bytes after a `header`-byte prefix.
    fn octet_frame(&mut self, rest: &[u8], len: usize, header: usize) -> Option<Step> {
        let keep = len.min(self.max);
        if rest.len() < header + keep {
            return None;
        }
        self.skip = len - keep;
        Some((Some((header..header + keep, len > keep)), header + keep))
    }

    /// A newline-terminated frame (without its LF).
    fn line_frame(&mut self, rest: &[u8], eof: bool) -> Option<Step> {
        match memchr::memchr(b'\n', &rest[..rest.len().min(self.max + 1)]) {
            Some(i) => Some((Some((0..i, false)), i + 1)),
            None if rest.len() > self.max => {
                self.skip_line = true;
                Some((Some((0..self.max, true)), self.max))
            }
            None if eof => Some((Some((0..rest.len(), false)), rest.len())),
            None => None,
        }
    }
}

/// `Some(Ok((len, prefix bytes)))` for a complete `DIGITS SP` prefix,
/// `Some(Err(()))` when it cannot be one, `None` when more bytes are needed.
fn octet_length(rest: &[u8]) -> Option<Result<(usize, usize), ()>> {
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > MAX_LEN_DIGITS {
        return Some(Err(()));
    }
    match rest.get(digits) {
        None => None,
        Some(b' ') => std::str::from_utf8(&rest[..digits])
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .map(|n| Ok((n, digits + 1)))
            .or(Some(Err(()))),
        Some(_) => Some(Err(())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frames(input: &[&[u8]], max: usize) -> Vec<(String, bool)> {
        let mut f = Framer::new(max);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for chunk in input {
            buf.extend_from_slice(chunk);
            out.extend(f.decode(&mut buf, false));
        }
        out.extend(f.decode(&mut buf, true));
        out.into_iter()
            .map(|fr| (String::from_utf8_lossy(&fr.data).into_owned(), fr.truncated))
            .collect()
    }

    #[test]
    fn octet_counting_across_reads_with_newlines_inside() {
        let got = frames(&[b"11 <13>1 a\nb c", b"d9 <13>hello"], 100);
        // The second frame starts with a non-digit: read as a newline-framed line.
        assert_eq!(
            got,
            [
                ("<13>1 a\nb c".to_string(), false),
                ("d9 <13>hello".to_string(), false)
            ]
        );
    }

    #[test]
    fn newline_framing_and_trailing_line_at_eof() {
        let got = frames(&[b"<13>a\n<13>b\r\n", b"<13>c"], 100);
        assert_eq!(
            got,
            [
                ("<13>a".to_string(), false),
                ("<13>b\r".to_string(), false),
                ("<13>c".to_string(), false)
            ]
        );
    }

    #[test]
    fn oversize_frames_are_truncated_and_the_stream_stays_in_sync() {
        let got = frames(&[b"10 0123456789", b"3 abc"], 4);
        assert_eq!(
            got,
            [("0123".to_string(), true), ("abc".to_string(), false)]
        );
        let got = frames(&[b"<13>0123456789", b"xyz\n<13>ok\n"], 6);
        assert_eq!(
            got,
            [("<13>01".to_string(), true), ("<13>ok".to_string(), false)]
        );
    }

    #[test]
    fn frame_cut_short_by_eof_is_kept() {
        // Found by the syslog_framing fuzz target.
        let got = frames(&[b"01\n1 "], 100);
        assert_eq!(got, [("01".to_string(), false), ("1 ".to_string(), false)]);
    }

    #[test]
    fn bad_length_prefix_is_kept_as_a_line() {
        let got = frames(&[b"5x <13>oops\n7 <13>abc"], 100);
        assert_eq!(
            got,
            [
                ("5x <13>oops".to_string(), false),
                ("<13>abc".to_string(), false)
            ]
        );
    }

    proptest! {
        #[test]
        fn bounded_buffer_and_drained_at_eof(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..8)) {
            let mut f = Framer::new(16);
            let mut buf = Vec::new();
            for c in &chunks {
                buf.extend_from_slice(c);
                let _ = f.decode(&mut buf, false);
                // Memory stays bounded by one maximal frame and its prefix.
                prop_assert!(buf.len() <= 16 + MAX_LEN_DIGITS + 1, "{} bytes buffered", buf.len());
            }
            let _ = f.decode(&mut buf, true);
            prop_assert!(buf.is_empty());
        }
    }
}
