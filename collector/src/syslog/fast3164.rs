//! The common RFC 3164 line, `<PRI>Mmm dd hh:mm:ss host app[pid]: message`
//! (what rsyslog forwards by default), read byte by byte instead of through
//! `syslog_loose`'s general parser, which took most of a listener's time.
//! Anything else, or anything this reader is unsure of, gives `None` and
//! goes to `syslog_loose`: the result must be the same either way, and the
//! test `parse::tests::fast_reader_agrees_with_syslog_loose` checks that on
//! generated lines.

/// The fields of a line this reader accepted, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub pri: u8,
    /// Month, day, hour, minute, second (no year, no zone).
    pub date: (u32, u32, u32, u32, u32),
    pub host: &'a str,
    pub app: &'a str,
    /// Digits only, without leading zeros (as `syslog_loose` prints a pid).
    pub procid: &'a str,
    pub message: &'a str,
}

/// Reads `text` (a frame, line ends already trimmed).
pub fn read(text: &str) -> Option<Header<'_>> {
    // syslog_loose trims the input before parsing.
    let input = text.trim_end();
    let b = input.as_bytes();
    let mut at = Cursor { b, i: 0 };
    at.byte(b'<')?;
    let pri = at.number(1, 3)?;
    at.byte(b'>')?;
    let pri = u8::try_from(pri).ok().filter(|p| *p <= 191)?;
    let month = month(b.get(at.i..at.i + 3)?)?;
    at.i += 3;
    at.byte(b' ')?;
    if b.get(at.i) == Some(&b' ') {
        at.i += 1;
    }
    let day = at.number(1, 2)?;
    at.byte(b' ')?;
    let hour = at.two_digits()?;
    at.byte(b':')?;
    let minute = at.two_digits()?;
    at.byte(b':')?;
    let second = at.two_digits()?;
    at.byte(b' ')?;
    let host = at.run(|c| c.is_ascii_graphic());
    if host.is_empty() || host == b"-" || host.ends_with(b":") {
        return None;
    }
    at.byte(b' ')?;
    let tag = at.run(|c| c.is_ascii_graphic() && c != b':');
    at.byte(b':')?;
    if tag.is_empty() || tag == b"-" {
        return None;
    }
    let (app, procid) = split_tag(tag)?;
    while matches!(b.get(at.i), Some(b' ' | b'\t')) {
        at.i += 1;
    }
    // A message opening like structured data (`[...]`, `-`) is syslog_loose's to read.
    if matches!(b.get(at.i), Some(b'[' | b'-')) {
        return None;
    }
    // Every index above is past an ASCII byte, so on a character boundary.
    Some(Header {
        pri,
        date: (month, day, hour, minute, second),
        host: ascii(host)?,
        app: ascii(app)?,
        procid: ascii(procid)?,
        message: input.get(at.i..)?,
    })
}

fn ascii(s: &[u8]) -> Option<&str> {
    std::str::from_utf8(s).ok()
}

/// `app` or `app[pid]`; `None` when brackets appear any other way.
fn split_tag(tag: &[u8]) -> Option<(&[u8], &[u8])> {
    let bracket = |c: &u8| *c == b'[' || *c == b']';
    let Some(open) = tag.iter().position(|c| *c == b'[') else {
        return (!tag.iter().any(bracket)).then_some((tag, &[][..]));
    };
    let (app, pid) = (&tag[..open], tag[open + 1..].strip_suffix(b"]")?);
    let canonical = !pid.is_empty()
        && pid.len() <= 9
        && pid.iter().all(u8::is_ascii_digit)
        && (pid.len() == 1 || pid[0] != b'0');
    (!app.is_empty() && !app.iter().any(bracket) && canonical).then_some((app, pid))
}

fn month(name: &[u8]) -> Option<u32> {
    const NAMES: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    (1..)
        .zip(NAMES)
        .find(|(_, n)| n[..] == *name)
        .map(|(m, _)| m)
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn byte(&mut self, want: u8) -> Option<()> {
        (self.b.get(self.i) == Some(&want)).then(|| self.i += 1)
    }

    fn run(&mut self, keep: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.i;
        while self.b.get(self.i).is_some_and(|c| keep(*c)) {
            self.i += 1;
        }
        &self.b[start..self.i]
    }

    /// `min..=max` digits, and nothing more.
    fn number(&mut self, min: usize, max: usize) -> Option<u32> {
        let digits = self.run(|c| c.is_ascii_digit());
        (min..=max)
            .contains(&digits.len())
            .then(|| digits.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
    }

    fn two_digits(&mut self) -> Option<u32> {
        let digits = self.run(|c| c.is_ascii_digit());
        (digits.len() == 2).then(|| u32::from(digits[0] - b'0') * 10 + u32::from(digits[1] - b'0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_usual_lines() {
        let h = read("<22>Dec  2 02:00:00 mta2 postfix/smtpd[37869]: connect from x[10.0.1.12]")
            .unwrap();
        assert_eq!(h.pri, 22);
        assert_eq!(h.date, (12, 2, 2, 0, 0));
        assert_eq!(
            (h.host, h.app, h.procid),
            ("mta2", "postfix/smtpd", "37869")
        );
        assert_eq!(h.message, "connect from x[10.0.1.12]");
        let h = read("<13>Nov 23 11:59:01 web1 nginx: GET / é  ").unwrap();
        assert_eq!((h.app, h.procid, h.message), ("nginx", "", "GET / é"));
    }

    #[test]
    fn leaves_the_unusual_to_syslog_loose() {
        for line in [
            "<22>Dec  2 02:00:00 mta2 app[0123]: leading zero pid",
            "<22>Dec  2 02:00:00 mta2 app[x]: named pid",
            "<22>Dec  2 02:00:00 mta2 app: [sd@1 a=\"b\"] message",
            "<22>Dec  2 02:00:00 mta2 app: - message",
            "<22>Dec  2 02:00:00 app[12]: no host",
            "<22>dec  2 02:00:00 mta2 app: lower-case month",
            "<0022>Dec  2 02:00:00 mta2 app: four-digit pri",
            "<192>Dec  2 02:00:00 mta2 app: pri out of range",
            "<22>Dec  2 02:00:00: mta2 app: colon after the time",
            "<22>1 2026-12-02T02:00:00Z mta2 app - - - rfc 5424",
        ] {
            assert_eq!(read(line), None, "{line}");
        }
    }
}
