//! The log search syntax operators type in the log explorer, parsed into a
//! small typed AST ([`Expr`]) that the query service compiles to a DataFusion
//! plan. Errors carry the byte offset of the offending token.
//!
//! ```text
//! query = [or]                          empty or blank: every record
//! or    = and { "OR" and }              precedence: NOT > AND > OR
//! and   = unary { ["AND"] unary }       adjacent terms are ANDed
//! unary = ("-" | "NOT") unary | "(" or ")" | term
//! term  = [field ":"] value             no field: the message
//! value = word | "phrase" | /regex/     severity/facility: [op] name or number
//! ```
//!
//! A word runs to whitespace, `(`, `)` or `"`; with `*` or `?` it is a
//! wildcard. Message words and phrases match whole words (`logs::words`).
//! In phrases `\"` and `\\` are the only escapes; in regexes `\/` is a
//! `/`. `AND`, `OR`, `NOT` are keywords only in upper case. A word
//! starting `name:` (letters, digits, `_`) is a field term, so `12:30` and
//! `::1` stay text but `error:timeout` is an unknown field (quote it).

use std::fmt;

/// Longer queries are refused before parsing.
pub const MAX_QUERY_LEN: usize = 4096;
/// Nesting of `(` and `NOT`/`-`; bounds the recursion of the parser and of
/// everything that walks the AST.
pub const MAX_DEPTH: usize = 32;
/// Terms (matchers) per query.
pub const MAX_TERMS: usize = 256;
/// The `regex` crate's compiled `size_limit` for `/regex/`: the compiler
/// should build its regexes with the same cap.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// `/regex/` terms per query: one near the size cap takes ~10 ms to
/// compile, so 256 of them would make a 4 KiB query cost seconds of CPU.
pub const MAX_REGEXES: usize = 16;

/// A parsed query. The parser only builds `And`/`Or` with two or more
/// children, and `All` only for the whole (empty) query.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// The empty query: every record.
    All,
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Match(Matcher),
}

/// One term: a field and what its value must match.
#[derive(Debug, Clone, PartialEq)]
pub struct Matcher {
    pub field: Field,
    pub pattern: Pattern,
}

/// The searchable columns of the `logs` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Message,
    Host,
    App,
    Procid,
    Msgid,
    /// The peer or file the line came from (`udp://…`, `file:///…`).
    Source,
    Severity,
    Facility,
}

/// What a field's value must match. `Severity` and `Facility` always get
/// `Number`; the other fields get `Text`, `Wildcard` or `Regex`.
#[derive(Debug, Clone, PartialEq)]
pub enum Pattern {
    /// Message: contains `text`. Other fields: equals `text`.
    /// `case_sensitive` is smart case on the message (true iff `text` has an
    /// upper-case letter) and always true on other fields.
    Text { text: String, case_sensitive: bool },
    /// A glob: `*` any run of characters, `?` exactly one; no escapes. Message:
    /// matched anywhere in the line (like `Text`); other fields: the whole
    /// value. `case_sensitive` as for `Text`.
    Wildcard {
        pattern: String,
        case_sensitive: bool,
    },
    /// A pattern for the `regex` crate, already validated; unanchored (like
    /// `regexp_like`) and case-sensitive unless it says `(?i)`.
    Regex(String),
    /// The column compared with `value` as written: `severity:<=warning` is
    /// `severity <= 4`, i.e. warning or more severe. Severity 0–7 with any
    /// `op`; facility 0–23 with `Eq` only.
    Number { op: Cmp, value: u8 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message} at position {position}")]
pub struct SyntaxError {
    /// Byte offset into the query, always on a character boundary.
    pub position: usize,
    pub message: String,
}

/// Severity names by number; the first is canonical (as in the collector).
const SEVERITIES: [&[&str]; 8] = [
    &["emerg", "panic", "emergency"],
    &["alert"],
    &["crit", "critical"],
    &["err", "error"],
    &["warning", "warn"],
    &["notice"],
    &["info", "informational", "information"],
    &["debug"],
];

/// Facility names by number (RFC 5424 §6.2.1), as the collector stores them.
use carbonio_collector::logs::FACILITY_NAMES as FACILITIES;

const FIELD_HELP: &str = "fields are message, host, app (or program, appname), \
    severity (or level), facility, procid, msgid, source";

impl Field {
    /// The column name, also how the field is written in canonical queries.
    pub fn name(self) -> &'static str {
        match self {
            Field::Message => "message",
            Field::Host => "host",
            Field::App => "app",
            Field::Procid => "procid",
            Field::Msgid => "msgid",
            Field::Source => "source",
            Field::Severity => "severity",
            Field::Facility => "facility",
        }
    }

    fn from_name(name: &str) -> Option<Field> {
        Some(match name.to_ascii_lowercase().as_str() {
            "message" => Field::Message,
            "host" => Field::Host,
            "app" | "program" | "appname" => Field::App,
            "procid" => Field::Procid,
            "msgid" => Field::Msgid,
            "source" => Field::Source,
            "severity" | "level" => Field::Severity,
            "facility" => Field::Facility,
            _ => return None,
        })
    }
}

/// Parses a log search query; blank means [`Expr::All`].
pub fn parse(input: &str) -> Result<Expr, SyntaxError> {
    if input.len() > MAX_QUERY_LEN {
        let mut at = MAX_QUERY_LEN;
        while !input.is_char_boundary(at) {
            at -= 1;
        }
        return Err(err(at, format!("query longer than {MAX_QUERY_LEN} bytes")));
    }
    let mut p = Parser {
        toks: lex(input)?.into_iter().peekable(),
        end: input.len(),
    };
    if p.toks.peek().is_none() {
        return Ok(Expr::All);
    }
    let expr = p.or(0)?;
    match p.toks.next() {
        None => Ok(expr),
        // `or` stops only at `)` or the end.
        Some((at, _)) => Err(err(at, "')' without a matching '('")),
    }
}

fn err(position: usize, message: impl Into<String>) -> SyntaxError {
    SyntaxError {
        position,
        message: message.into(),
    }
}

enum Tok {
    LParen,
    RParen,
    /// `-` or `NOT`, as written (for messages).
    Not(&'static str),
    And,
    Or,
    Term(Matcher),
}

/// A term's value before the field gives it a meaning.
enum Value<'a> {
    Word(&'a str),
    Phrase(String),
    Regex(String),
}

fn ends_word(c: char) -> bool {
    c.is_whitespace() || matches!(c, '(' | ')' | '"')
}

fn word_end(s: &str, start: usize) -> usize {
    s[start..].find(ends_word).map_or(s.len(), |n| start + n)
}

fn lex(s: &str) -> Result<Vec<(usize, Tok)>, SyntaxError> {
    let mut toks = Vec::new();
    let (mut terms, mut regexes) = (0, 0);
    let mut i = 0;
    while let Some(c) = s[i..].chars().next() {
        let start = i;
        let tok = match c {
            c if c.is_whitespace() => {
                i += c.len_utf8();
                continue;
            }
            '(' => {
                i += 1;
                Tok::LParen
            }
            ')' => {
                i += 1;
                Tok::RParen
            }
            '-' => {
                i += 1;
                // A detached `-` is more likely a typo than a search for dashes.
                match s[i..].chars().next() {
                    Some(c) if !c.is_whitespace() && c != ')' => Tok::Not("'-'"),
                    _ => {
                        return Err(err(
                            start,
                            "'-' must be directly followed by the term it negates \
                             (quote it to search for \"-\")",
                        ))
                    }
                }
            }
            _ => {
                let (tok, end) = term(s, i)?;
                i = end;
                tok
            }
        };
        if let Tok::Term(m) = &tok {
            terms += 1;
            if terms > MAX_TERMS {
                return Err(err(start, format!("more than {MAX_TERMS} terms")));
            }
            if matches!(m.pattern, Pattern::Regex(_)) {
                regexes += 1;
                if regexes > MAX_REGEXES {
                    return Err(err(start, format!("more than {MAX_REGEXES} regexes")));
                }
            }
        }
        toks.push((start, tok));
    }
    Ok(toks)
}

/// A keyword or a term starting at `start`.
fn term(s: &str, start: usize) -> Result<(Tok, usize), SyntaxError> {
    let rest = &s[start..];
    let ident = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    let field_like =
        rest.starts_with(|c: char| c.is_ascii_alphabetic()) && rest[ident..].starts_with(':');
    if !field_like {
        let (value, end) = value(s, start)?;
        let tok = match value {
            Value::Word("AND") => Tok::And,
            Value::Word("OR") => Tok::Or,
            Value::Word("NOT") => Tok::Not("NOT"),
            v => Tok::Term(matcher(Field::Message, v, start)?),
        };
        return Ok((tok, end));
    }
    let name = &rest[..ident];
    let Some(field) = Field::from_name(name) else {
        let word = &s[start..word_end(s, start)];
        return Err(err(
            start,
            format!(
                "unknown field '{name}'; {FIELD_HELP}; to search for the text, quote it: {}",
                quoted(word)
            ),
        ));
    };
    let at = start + ident + 1;
    match s[at..].chars().next() {
        Some(c) if c == '"' || !ends_word(c) => {
            let (value, end) = value(s, at)?;
            Ok((Tok::Term(matcher(field, value, at)?), end))
        }
        _ => Err(err(at, format!("missing value after '{name}:'"))),
    }
}

/// A word, phrase or regex starting at `start` (not at whitespace or a paren).
fn value(s: &str, start: usize) -> Result<(Value<'_>, usize), SyntaxError> {
    if s[start..].starts_with('"') {
        return phrase(s, start);
    }
    if s[start..].starts_with('/') {
        return regex(s, start);
    }
    let end = word_end(s, start);
    Ok((Value::Word(&s[start..end]), end))
}

fn phrase(s: &str, start: usize) -> Result<(Value<'_>, usize), SyntaxError> {
    let mut text = String::new();
    let mut chars = s[start + 1..].char_indices();
    while let Some((j, c)) = chars.next() {
        match c {
            '"' => return Ok((Value::Phrase(text), start + 1 + j + 1)),
            '\\' => match chars.next() {
                Some((_, e @ ('"' | '\\'))) => text.push(e),
                Some(_) => {
                    return Err(err(
                        start + 1 + j,
                        r#"in quotes '\' only escapes '"' and '\' (write '\\' for a backslash)"#,
                    ))
                }
                None => break,
            },
            c => text.push(c),
        }
    }
    Err(err(start, "unclosed quote"))
}

fn regex(s: &str, start: usize) -> Result<(Value<'_>, usize), SyntaxError> {
    let unclosed = || {
        err(
            start,
            "unclosed regex: end it with '/' (or quote a path to search for it as text)",
        )
    };
    let mut re = String::new();
    let mut chars = s[start + 1..].char_indices();
    let end = loop {
        match chars.next().ok_or_else(unclosed)? {
            (j, '/') => break start + 1 + j + 1,
            // Other escapes are the regex's own: keep them as written.
            (_, '\\') => match chars.next().ok_or_else(unclosed)? {
                (_, '/') => re.push('/'),
                (_, c) => {
                    re.push('\\');
                    re.push(c);
                }
            },
            (_, c) => re.push(c),
        }
    };
    // `/var/log/messages` would otherwise be a regex followed by a word.
    if s[end..].starts_with(|c: char| !c.is_whitespace() && c != ')') {
        return Err(err(
            end,
            "expected a space or ')' after a /regex/ (quote a path to search for it as text)",
        ));
    }
    if re.is_empty() {
        return Err(err(start, "empty regex"));
    }
    regex::RegexBuilder::new(&re)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| err(start, format!("invalid regex: {}", regex_error(&e))))?;
    Ok((Value::Regex(re), end))
}

/// The regex crate's syntax errors are a multi-line diagram; keep the reason.
fn regex_error(e: &regex::Error) -> String {
    match e {
        regex::Error::Syntax(m) => m
            .lines()
            .find_map(|l| l.strip_prefix("error: "))
            .unwrap_or(m.as_str())
            .to_string(),
        regex::Error::CompiledTooBig(n) => format!("compiled size exceeds {n} bytes"),
        e => e.to_string(),
    }
}

/// Gives a value its meaning for `field`; `at` is where the value starts.
fn matcher(field: Field, value: Value<'_>, at: usize) -> Result<Matcher, SyntaxError> {
    // Smart case on the message only: other fields are exact.
    let case = |t: &str| field != Field::Message || t.chars().any(char::is_uppercase);
    let pattern = match (field, value) {
        (Field::Severity | Field::Facility, Value::Regex(_)) => {
            return Err(err(
                at,
                format!("{} takes a name or a number, not a regex", field.name()),
            ))
        }
        (Field::Severity | Field::Facility, Value::Word(t)) => number(field, t, at)?,
        (Field::Severity | Field::Facility, Value::Phrase(t)) => number(field, &t, at)?,
        (_, Value::Regex(re)) => Pattern::Regex(re),
        (_, Value::Word(w)) if w.contains(['*', '?']) => Pattern::Wildcard {
            pattern: w.to_string(),
            case_sensitive: case(w),
        },
        (_, Value::Word(w)) => Pattern::Text {
            text: w.to_string(),
            case_sensitive: case(w),
        },
        (_, Value::Phrase(text)) => Pattern::Text {
            case_sensitive: case(&text),
            text,
        },
    };
    Ok(Matcher { field, pattern })
}

fn number(field: Field, text: &str, at: usize) -> Result<Pattern, SyntaxError> {
    const OPS: [(&str, Cmp); 5] = [
        ("<=", Cmp::Le),
        (">=", Cmp::Ge),
        ("<", Cmp::Lt),
        (">", Cmp::Gt),
        ("=", Cmp::Eq),
    ];
    let (op, name) = OPS
        .iter()
        .find_map(|(sym, op)| text.strip_prefix(sym).map(|rest| (*op, rest)))
        .unwrap_or((Cmp::Eq, text));
    let (value, help) = if field == Field::Severity {
        let names = SEVERITIES.map(|n| n[0]).join(", ");
        (lookup(name, &SEVERITIES), format!("{names} or 0-7"))
    } else {
        if op != Cmp::Eq {
            return Err(err(at, "facility can only be matched exactly (no <, >)"));
        }
        let names = FACILITIES.map(|n| [n]);
        (
            lookup(name, &names),
            "a name such as mail or local0, or 0-23".into(),
        )
    };
    match value {
        Some(value) => Ok(Pattern::Number { op, value }),
        None if name.is_empty() => Err(err(at, format!("missing {} value", field.name()))),
        None => Err(err(
            at,
            format!("unknown {} '{name}': use {help}", field.name()),
        )),
    }
}

/// The number of `name`, a decimal index or a case-insensitive name.
fn lookup<T: AsRef<[&'static str]>>(name: &str, names: &[T]) -> Option<u8> {
    let n = if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
        name.parse::<usize>().ok().filter(|n| *n < names.len())?
    } else {
        names
            .iter()
            .position(|ns| ns.as_ref().iter().any(|n| n.eq_ignore_ascii_case(name)))?
    };
    u8::try_from(n).ok()
}

struct Parser {
    toks: std::iter::Peekable<std::vec::IntoIter<(usize, Tok)>>,
    /// The input's length: where "end of query" errors point.
    end: usize,
}

impl Parser {
    fn or(&mut self, depth: usize) -> Result<Expr, SyntaxError> {
        let mut items = vec![self.and(depth, None)?];
        while let Some((_, Tok::Or)) = self.toks.peek() {
            self.toks.next();
            items.push(self.and(depth, Some("OR"))?);
        }
        Ok(one_or_many(items, Expr::Or))
    }

    /// `after` names the operator that asked for a term, for errors.
    fn and(&mut self, depth: usize, after: Option<&str>) -> Result<Expr, SyntaxError> {
        let mut items = vec![self.unary(depth, after)?];
        loop {
            match self.toks.peek() {
                None | Some((_, Tok::Or | Tok::RParen)) => break,
                Some((_, Tok::And)) => {
                    self.toks.next();
                    items.push(self.unary(depth, Some("AND"))?);
                }
                Some(_) => items.push(self.unary(depth, None)?),
            }
        }
        Ok(one_or_many(items, Expr::And))
    }

    fn unary(&mut self, depth: usize, after: Option<&str>) -> Result<Expr, SyntaxError> {
        let expected = |found: &str| match after {
            Some(op) => format!("expected a term after {op}, found {found}"),
            None => format!("expected a term, found {found}"),
        };
        let Some((at, tok)) = self.toks.next() else {
            return Err(err(self.end, expected("the end of the query")));
        };
        let deeper = |at| {
            (depth < MAX_DEPTH)
                .then_some(depth + 1)
                .ok_or_else(|| err(at, format!("nesting deeper than {MAX_DEPTH} levels")))
        };
        match tok {
            Tok::Term(m) => Ok(Expr::Match(m)),
            Tok::Not(op) => Ok(Expr::Not(Box::new(self.unary(deeper(at)?, Some(op))?))),
            Tok::LParen => {
                let depth = deeper(at)?;
                if let Some((_, Tok::RParen)) = self.toks.peek() {
                    return Err(err(at, "empty group '()'"));
                }
                let inner = self.or(depth)?;
                match self.toks.next() {
                    Some((_, Tok::RParen)) => Ok(inner),
                    _ => Err(err(at, "'(' without a matching ')'")),
                }
            }
            Tok::RParen => Err(err(at, expected("')'"))),
            Tok::And => Err(err(at, expected("AND"))),
            Tok::Or => Err(err(at, expected("OR"))),
        }
    }
}

fn one_or_many(mut items: Vec<Expr>, many: fn(Vec<Expr>) -> Expr) -> Expr {
    match items.pop() {
        Some(only) if items.is_empty() => only,
        Some(last) => {
            items.push(last);
            many(items)
        }
        None => Expr::All,
    }
}

/// `s` in double quotes, escaped so the lexer reads back `s`.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Whether `s` reads back whole as a bare value after `field:`.
fn bare_value(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('/') && !s.contains(ends_word)
}

/// Whether `s` reads back as itself as a bare term without a field name.
fn bare_term(s: &str) -> bool {
    bare_value(s)
        && !s.starts_with('-')
        // Conservative: only `name:` makes a field, but `:` is rare enough.
        && !s.contains(':')
        && !matches!(s, "AND" | "OR" | "NOT")
}

/// Prints the canonical query, which parses back to the same AST (for ASTs
/// the parser can build; see the invariants on [`Expr`] and [`Pattern`]).
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Parenthesise a child only where the grammar needs it.
        let child = |f: &mut fmt::Formatter<'_>, e: &Expr, paren: bool| {
            if paren {
                write!(f, "({e})")
            } else {
                write!(f, "{e}")
            }
        };
        match self {
            Expr::All => Ok(()),
            Expr::And(items) | Expr::Or(items) => {
                let and = matches!(self, Expr::And(_));
                for (i, e) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(if and { " " } else { " OR " })?;
                    }
                    let nested = matches!(e, Expr::Or(_)) || (and && matches!(e, Expr::And(_)));
                    child(f, e, nested)?;
                }
                Ok(())
            }
            Expr::Not(e) => {
                f.write_str("-")?;
                child(f, e, matches!(**e, Expr::And(_) | Expr::Or(_)))
            }
            Expr::Match(m) => write!(f, "{m}"),
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = self.field == Field::Message;
        match &self.pattern {
            Pattern::Regex(re) => {
                if !message {
                    write!(f, "{}:", self.field.name())?;
                }
                f.write_str("/")?;
                let mut chars = re.chars();
                while let Some(c) = chars.next() {
                    match c {
                        // Keep escape pairs whole so `\\/` stays `\\` + `\/`.
                        '\\' => {
                            f.write_str("\\")?;
                            if let Some(c) = chars.next() {
                                write!(f, "{c}")?;
                            }
                        }
                        '/' => f.write_str("\\/")?,
                        c => write!(f, "{c}")?,
                    }
                }
                f.write_str("/")
            }
            Pattern::Text { text, .. } if message => {
                if bare_term(text) && !text.contains(['*', '?']) {
                    f.write_str(text)
                } else {
                    f.write_str(&quoted(text))
                }
            }
            Pattern::Wildcard { pattern, .. } if message && bare_term(pattern) => {
                f.write_str(pattern)
            }
            Pattern::Text { text, .. } => {
                write!(f, "{}:", self.field.name())?;
                if bare_value(text) && !text.contains(['*', '?']) {
                    f.write_str(text)
                } else {
                    f.write_str(&quoted(text))
                }
            }
            Pattern::Wildcard { pattern, .. } => write!(f, "{}:{pattern}", self.field.name()),
            Pattern::Number { op, value } => {
                let op = match op {
                    Cmp::Eq => "",
                    Cmp::Lt => "<",
                    Cmp::Le => "<=",
                    Cmp::Gt => ">",
                    Cmp::Ge => ">=",
                };
                let v = usize::from(*value);
                let name = match self.field {
                    Field::Severity => SEVERITIES.get(v).map(|n| n[0]),
                    _ => FACILITIES.get(v).copied(),
                };
                write!(f, "{}:{op}", self.field.name())?;
                match name {
                    Some(name) => f.write_str(name),
                    None => write!(f, "{value}"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(field: Field, pattern: Pattern) -> Expr {
        Expr::Match(Matcher { field, pattern })
    }
    fn text(field: Field, t: &str, case_sensitive: bool) -> Expr {
        let text = t.to_string();
        m(
            field,
            Pattern::Text {
                text,
                case_sensitive,
            },
        )
    }
    /// A message term with smart case.
    fn w(t: &str) -> Expr {
        text(Field::Message, t, t.chars().any(char::is_uppercase))
    }
    fn exact(field: Field, t: &str) -> Expr {
        text(field, t, true)
    }
    fn glob(field: Field, p: &str, case_sensitive: bool) -> Expr {
        let pattern = p.to_string();
        m(
            field,
            Pattern::Wildcard {
                pattern,
                case_sensitive,
            },
        )
    }
    fn re(field: Field, r: &str) -> Expr {
        m(field, Pattern::Regex(r.to_string()))
    }
    fn num(field: Field, op: Cmp, value: u8) -> Expr {
        m(field, Pattern::Number { op, value })
    }
    fn not(e: Expr) -> Expr {
        Expr::Not(Box::new(e))
    }
    fn ok(q: &str) -> Expr {
        parse(q).unwrap_or_else(|e| panic!("{q:?}: {e}"))
    }
    /// The error's position, checking its message mentions `needle`.
    fn fails(q: &str, needle: &str) -> usize {
        let e = parse(q).expect_err(q);
        assert!(e.message.contains(needle), "{q:?}: {e}");
        e.position
    }

    #[test]
    fn empty_is_all() {
        assert_eq!(ok(""), Expr::All);
        assert_eq!(ok(" \t\n "), Expr::All);
        assert_eq!(Expr::All.to_string(), "");
    }

    #[test]
    fn words_and_phrases_smart_case() {
        assert_eq!(ok("timeout"), text(Field::Message, "timeout", false));
        assert_eq!(ok("Timeout"), text(Field::Message, "Timeout", true));
        assert_eq!(ok("ÉCHEC"), text(Field::Message, "ÉCHEC", true));
        assert_eq!(
            ok(r#""disk full""#),
            text(Field::Message, "disk full", false)
        );
        assert_eq!(
            ok(r#""Disk full""#),
            text(Field::Message, "Disk full", true)
        );
        assert_eq!(ok(r#""say \"hi\" \\ ok""#), w(r#"say "hi" \ ok"#));
        assert_eq!(ok(r#""""#), w(""));
        // Only a leading `-`, `/`, `"` or `name:` is special.
        assert_eq!(ok(r"a-b a\b 12:30 ::1 a.b:c"), {
            Expr::And(vec![w("a-b"), w(r"a\b"), w("12:30"), w("::1"), w("a.b:c")])
        });
        assert_eq!(ok(r#"message:"A b""#), w("A b"));
        assert_eq!(ok("Message:x"), w("x"));
    }

    #[test]
    fn boolean_operators_and_precedence() {
        let (a, b, c) = (w("a"), w("b"), w("c"));
        let and = |v: &[&Expr]| Expr::And(v.iter().map(|e| (*e).clone()).collect());
        let or = |v: &[&Expr]| Expr::Or(v.iter().map(|e| (*e).clone()).collect());
        assert_eq!(ok("a b c"), and(&[&a, &b, &c]));
        assert_eq!(ok("a AND b c"), and(&[&a, &b, &c]));
        assert_eq!(ok("a OR b"), or(&[&a, &b]));
        assert_eq!(ok("a b OR c"), or(&[&and(&[&a, &b]), &c]));
        assert_eq!(ok("a OR b AND c"), or(&[&a, &and(&[&b, &c])]));
        assert_eq!(ok("NOT a b"), and(&[&not(a.clone()), &b]));
        assert_eq!(ok("-a OR b"), or(&[&not(a.clone()), &b]));
        assert_eq!(ok("-(a OR b)"), not(or(&[&a, &b])));
        assert_eq!(ok("NOT(a)"), not(a.clone()));
        assert_eq!(ok("--a"), not(not(a.clone())));
        assert_eq!(ok("NOT -a"), not(not(a.clone())));
        assert_eq!(ok("((a))"), a);
        // Groups are kept, so printing can restore them.
        assert_eq!(ok("(a b) c"), and(&[&and(&[&a, &b]), &c]));
        assert_eq!(ok("(a OR b) OR c"), or(&[&or(&[&a, &b]), &c]));
        // Keywords are upper case only; adjacent tokens need no space.
        assert_eq!(
            ok("a and b or c"),
            Expr::And(vec![a.clone(), w("and"), b.clone(), w("or"), c])
        );
        assert_eq!(ok(r#"a(b)"c""#), Expr::And(vec![a, b, w("c")]));
        assert_eq!(ok(r#""AND""#), w("AND"));
    }

    #[test]
    fn fields_and_aliases() {
        assert_eq!(ok("host:Mail-01"), exact(Field::Host, "Mail-01"));
        assert_eq!(ok("host:mail"), exact(Field::Host, "mail"));
        assert_eq!(ok("HOST:x"), exact(Field::Host, "x"));
        assert_eq!(ok("app:postfix"), exact(Field::App, "postfix"));
        assert_eq!(ok("program:sshd"), exact(Field::App, "sshd"));
        assert_eq!(ok("appname:sshd"), exact(Field::App, "sshd"));
        assert_eq!(ok("procid:1234"), exact(Field::Procid, "1234"));
        assert_eq!(ok("msgid:ID47"), exact(Field::Msgid, "ID47"));
        assert_eq!(
            ok("source:udp://10.0.0.1:514"),
            exact(Field::Source, "udp://10.0.0.1:514")
        );
        assert_eq!(
            ok(r#"source:"file:///var/log/a b""#),
            exact(Field::Source, "file:///var/log/a b")
        );
        assert_eq!(ok("host:-x"), exact(Field::Host, "-x"));
        assert_eq!(ok("app:OR"), exact(Field::App, "OR"));
        assert_eq!(ok("-host:a"), not(exact(Field::Host, "a")));
        assert_eq!(ok(r#"host:"a*""#), exact(Field::Host, "a*"));
    }

    #[test]
    fn severity_and_facility() {
        use Cmp::*;
        use Field::{Facility, Severity};
        assert_eq!(ok("severity:err"), num(Severity, Eq, 3));
        assert_eq!(ok("level:ERROR"), num(Severity, Eq, 3));
        assert_eq!(ok("severity:<=warning"), num(Severity, Le, 4));
        assert_eq!(ok("severity:<=warn"), num(Severity, Le, 4));
        assert_eq!(ok("severity:>=info"), num(Severity, Ge, 6));
        assert_eq!(ok("severity:<3"), num(Severity, Lt, 3));
        assert_eq!(ok("severity:>critical"), num(Severity, Gt, 2));
        assert_eq!(ok("severity:=7"), num(Severity, Eq, 7));
        assert_eq!(ok("severity:panic"), num(Severity, Eq, 0));
        assert_eq!(ok("severity:informational"), num(Severity, Eq, 6));
        assert_eq!(ok(r#"severity:"<=notice""#), num(Severity, Le, 5));
        assert_eq!(ok("facility:kern"), num(Facility, Eq, 0));
        assert_eq!(ok("facility:mail"), num(Facility, Eq, 2));
        assert_eq!(ok("facility:solaris-cron"), num(Facility, Eq, 15));
        assert_eq!(ok("facility:LOCAL7"), num(Facility, Eq, 23));
        assert_eq!(ok("facility:=16"), num(Facility, Eq, 16));
        assert_eq!(ok("facility:023"), num(Facility, Eq, 23));
    }

    #[test]
    fn wildcards() {
        assert_eq!(ok("app:postfix/*"), glob(Field::App, "postfix/*", true));
        assert_eq!(ok("host:mail-0?"), glob(Field::Host, "mail-0?", true));
        assert_eq!(ok("fail*"), glob(Field::Message, "fail*", false));
        assert_eq!(ok("Fail*"), glob(Field::Message, "Fail*", true));
        assert_eq!(ok("message:-x*"), glob(Field::Message, "-x*", false));
        assert_eq!(ok("*"), glob(Field::Message, "*", false));
    }

    #[test]
    fn regexes() {
        assert_eq!(ok("/time(d|out)/"), re(Field::Message, "time(d|out)"));
        assert_eq!(ok(r"/a\/b\d/"), re(Field::Message, r"a/b\d"));
        assert_eq!(ok(r"/a\\/"), re(Field::Message, r"a\\"));
        assert_eq!(ok("/a b/"), re(Field::Message, "a b"));
        assert_eq!(ok(r"host:/^mail-\d+$/"), re(Field::Host, r"^mail-\d+$"));
        assert_eq!(ok("message:/x/"), re(Field::Message, "x"));
        assert_eq!(ok("(/x/)"), re(Field::Message, "x"));
        assert_eq!(ok("-/x/"), not(re(Field::Message, "x")));
    }

    #[test]
    fn errors_with_positions() {
        let e = parse("a error:timeout").expect_err("unknown field");
        assert_eq!(e.position, 2);
        assert!(e.message.contains("unknown field 'error'"), "{e}");
        assert!(e.message.contains("host, app"), "{e}");
        assert!(e.message.contains(r#"quote it: "error:timeout""#), "{e}");
        assert_eq!(fails("http://x", "unknown field 'http'"), 0);
        assert_eq!(fails(r#"a "b"#, "unclosed quote"), 2);
        assert_eq!(fails(r#""a\nb""#, "only escapes"), 2);
        assert_eq!(fails(r#""a\"#, "unclosed quote"), 0);
        assert_eq!(fails("/abc", "unclosed regex"), 0);
        assert_eq!(fails(r"/abc\/", "unclosed regex"), 0);
        assert_eq!(fails("x /a(/", "invalid regex: unclosed group"), 2);
        assert_eq!(
            fails(r"/\w{1000}{1000}/", "invalid regex: compiled size"),
            0
        );
        assert_eq!(fails("//", "empty regex"), 0);
        assert_eq!(fails("/var/log/messages", "after a /regex/"), 5);
        assert_eq!(fails("host:", "missing value after 'host:'"), 5);
        assert_eq!(fails("a host: b", "missing value"), 7);
        assert_eq!(fails("host:(a)", "missing value"), 5);
        assert_eq!(fails("severity:loud", "unknown severity 'loud'"), 9);
        assert_eq!(fails("severity:8", "unknown severity '8'"), 9);
        assert_eq!(fails("severity:<=", "missing severity"), 9);
        assert_eq!(fails("severity:/x/", "not a regex"), 9);
        assert_eq!(fails("level:warn*", "unknown severity"), 6);
        assert_eq!(fails("facility:<3", "only be matched exactly"), 9);
        assert_eq!(fails("facility:24", "unknown facility '24'"), 9);
        assert_eq!(fails("facility:local8", "unknown facility"), 9);
        assert_eq!(fails("a -", "'-' must be directly followed"), 2);
        assert_eq!(fails("- a", "'-'"), 0);
        assert_eq!(fails("(-)", "'-'"), 1);
        assert_eq!(fails("a AND", "after AND, found the end"), 5);
        assert_eq!(fails("NOT", "after NOT, found the end"), 3);
        assert_eq!(fails("-AND", "after '-', found AND"), 1);
        assert_eq!(fails("OR a", "expected a term, found OR"), 0);
        assert_eq!(fails("a OR OR b", "after OR, found OR"), 5);
        assert_eq!(fails("a AND )", "after AND, found ')'"), 6);
        assert_eq!(fails("(a", "'(' without a matching ')'"), 0);
        assert_eq!(fails("(a OR (b)", "'(' without"), 0);
        assert_eq!(fails("a)", "')' without a matching '('"), 1);
        assert_eq!(fails("()", "empty group"), 0);
    }

    #[test]
    fn limits() {
        let nest = |n: usize| format!("{}a{}", "(".repeat(n), ")".repeat(n));
        assert_eq!(ok(&nest(MAX_DEPTH)), w("a"));
        assert_eq!(fails(&nest(MAX_DEPTH + 1), "nesting deeper than 32"), 32);
        assert_eq!(fails(&"(".repeat(4000), "nesting"), 32);
        assert_eq!(
            ok(&format!("{}a", "-".repeat(MAX_DEPTH))).to_string().len(),
            33
        );
        assert_eq!(
            fails(&format!("{}a", "-".repeat(MAX_DEPTH + 1)), "nesting"),
            32
        );
        assert_eq!(fails(&"NOT ".repeat(1000), "nesting"), 128);
        assert_eq!(fails(&"-(".repeat(1000), "nesting"), 32);
        assert!(matches!(ok(&"a ".repeat(MAX_TERMS)), Expr::And(v) if v.len() == MAX_TERMS));
        assert_eq!(
            fails(&"a ".repeat(MAX_TERMS + 1), "more than 256 terms"),
            512
        );
        assert!(matches!(ok(&"/a/ ".repeat(MAX_REGEXES)), Expr::And(v) if v.len() == 16));
        assert_eq!(
            fails(&"/a/ ".repeat(MAX_REGEXES + 1), "more than 16 regexes"),
            64
        );
        assert_eq!(
            ok(&"a".repeat(MAX_QUERY_LEN)),
            w(&"a".repeat(MAX_QUERY_LEN))
        );
        assert_eq!(
            fails(&"a".repeat(MAX_QUERY_LEN + 1), "longer than 4096"),
            4096
        );
        // The position stays on a character boundary.
        let long = format!("a{}", "é".repeat(MAX_QUERY_LEN));
        assert_eq!(fails(&long, "longer"), 4095);
    }

    #[test]
    fn canonical_form() {
        let cases = [
            (
                "level:<=4 program:x NOT (a OR b)",
                "severity:<=warning app:x -(a OR b)",
            ),
            ("a AND (b AND c) OR d", "a (b c) OR d"),
            (
                r#""a" "b c" "A:b" "-x" "x*" "OR""#,
                r#"a "b c" "A:b" "-x" "x*" "OR""#,
            ),
            (
                "message:ab:c* message:-x* facility:13",
                "message:ab:c* message:-x* facility:security",
            ),
            (
                r#"host:"" host:"a b" host:"/x" host:a\b"#,
                r#"host:"" host:"a b" host:"/x" host:a\b"#,
            ),
            (
                r"/a\/b/ /a\\\/b/ severity:=0",
                r"/a\/b/ /a\\\/b/ severity:emerg",
            ),
            ("NOT NOT a", "--a"),
        ];
        for (q, want) in cases {
            let e = ok(q);
            assert_eq!(e.to_string(), want, "{q:?}");
            assert_eq!(ok(want), e, "{want:?}");
        }
    }

    fn smart(field: Field, s: &str) -> bool {
        field != Field::Message || s.chars().any(char::is_uppercase)
    }

    /// Matchers as the parser builds them (see the invariants on `Pattern`).
    fn matcher_strategy() -> impl Strategy<Value = Expr> {
        use Field::*;
        let field = prop::sample::select(vec![Message, Host, App, Procid, Msgid, Source]);
        let texts = (field.clone(), r#"[a-zA-Z0-9 :*?"\\()/<=É-]{0,8}"#).prop_map(|(f, t)| {
            let case_sensitive = smart(f, &t);
            m(
                f,
                Pattern::Text {
                    text: t,
                    case_sensitive,
                },
            )
        });
        let globs = (
            field.clone(),
            "[a-zA-Z0-9:.<=É-]{0,3}[*?][a-zA-Z0-9:./*?-]{0,3}",
        )
            .prop_map(|(f, p)| {
                let case_sensitive = smart(f, &p);
                m(
                    f,
                    Pattern::Wildcard {
                        pattern: p,
                        case_sensitive,
                    },
                )
            });
        let regexes = (
            field,
            prop_oneof![
                "[a-zA-Z/ .]{1,6}",
                Just("(?i)err(or)?".to_string()),
                Just(r"\d+/\w".to_string()),
                Just(r"a\\/b".to_string()),
            ],
        )
            .prop_map(|(f, r)| re(f, &r));
        let cmp = prop::sample::select(vec![Cmp::Eq, Cmp::Lt, Cmp::Le, Cmp::Gt, Cmp::Ge]);
        let severities = (cmp, 0u8..8).prop_map(|(op, v)| num(Severity, op, v));
        let facilities = (0u8..24).prop_map(|v| num(Facility, Cmp::Eq, v));
        prop_oneof![texts, globs, regexes, severities, facilities]
    }

    fn regex_count(e: &Expr) -> usize {
        match e {
            Expr::And(v) | Expr::Or(v) => v.iter().map(regex_count).sum(),
            Expr::Not(e) => regex_count(e),
            Expr::Match(m) => usize::from(matches!(m.pattern, Pattern::Regex(_))),
            Expr::All => 0,
        }
    }

    fn expr_strategy() -> impl Strategy<Value = Expr> {
        matcher_strategy()
            .prop_recursive(4, 32, 3, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
                    prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::Or),
                    inner.prop_map(not),
                ]
            })
            .prop_filter("within MAX_REGEXES", |e| regex_count(e) <= MAX_REGEXES)
    }

    /// Syntax-heavy noise: the interesting inputs for "never panics".
    fn noise() -> impl Strategy<Value = String> {
        let piece = prop::sample::select(vec![
            " ",
            "(",
            ")",
            "-",
            "\"",
            "\\",
            "/",
            ":",
            "*",
            "?",
            "AND",
            "OR",
            "NOT",
            "a",
            "B",
            "é",
            "host:",
            "level:<=",
            "facility:",
            "x:",
            "<",
            "=",
            "4",
        ]);
        prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
    }

    fn reparses(q: &str) -> Result<(), TestCaseError> {
        match parse(q) {
            Ok(e) => {
                let printed = e.to_string();
                prop_assert_eq!(parse(&printed), Ok(e), "{:?} printed as {:?}", q, printed);
            }
            Err(e) => {
                prop_assert!(q.is_char_boundary(e.position) && e.position <= q.len());
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn printed_ast_parses_back(e in expr_strategy()) {
            let printed = e.to_string();
            prop_assert_eq!(parse(&printed), Ok(e), "printed as {:?}", printed);
        }

        #[test]
        fn any_string_parses_or_errs(q in any::<String>()) {
            reparses(&q)?;
        }

        #[test]
        fn syntax_noise_parses_or_errs(q in noise()) {
            reparses(&q)?;
        }
    }
}
