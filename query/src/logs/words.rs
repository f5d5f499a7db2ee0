//! `word_match(message, text, case_sensitive)`: whether `text` occurs in
//! the message as whole words, as `grep -w` finds it: where `text` starts
//! with a letter, digit or `_`, the character before the occurrence is
//! none of those, and likewise after its end. So `connect` does not match
//! `disconnect`, and `10.0.0.1` does not match `10.0.0.12`; every word of
//! `text` is then a whole word of the line, which is what lets the logs
//! table skip row groups by their token filters.
//!
//! Case-insensitive matching compares lower-cased text (as the token
//! filters store words), so the two always agree.

use carbonio_collector::store::tokens::is_word_char;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use memchr::memmem::Finder;
use std::sync::{Arc, LazyLock};

pub const NAME: &str = "word_match";

#[derive(Debug, PartialEq, Eq, Hash)]
struct WordMatch {
    signature: Signature,
}

static UDF: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| {
    Arc::new(ScalarUDF::new_from_impl(WordMatch {
        signature: Signature::any(3, Volatility::Immutable),
    }))
});

/// The filter `column` contains `text` as whole words.
pub fn word_match(column: Expr, text: &str, case_sensitive: bool) -> Expr {
    UDF.call(vec![
        column,
        datafusion::logical_expr::lit(text),
        datafusion::logical_expr::lit(case_sensitive),
    ])
}

/// The text of a `word_match` call on the message, for the scan's
/// row-group pruning.
pub fn matched_text(e: &Expr) -> Option<&str> {
    let Expr::ScalarFunction(f) = e else {
        return None;
    };
    if f.func.name() != NAME {
        return None;
    }
    match f.args.first() {
        Some(Expr::Column(c)) if c.name == "message" => {}
        _ => return None,
    }
    match f.args.get(1) {
        Some(Expr::Literal(ScalarValue::Utf8(Some(text)), _)) => Some(text),
        _ => None,
    }
}

impl ScalarUDFImpl for WordMatch {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [haystack, text, case] = args.args.as_slice() else {
            return exec_err!("{NAME} takes a column, a text and a boolean");
        };
        let (
            ColumnarValue::Scalar(ScalarValue::Utf8(Some(text))),
            ColumnarValue::Scalar(ScalarValue::Boolean(Some(case_sensitive))),
        ) = (text, case)
        else {
            return exec_err!("{NAME}: the text and the case flag must be constants");
        };
        let matcher = Matcher::new(text, *case_sensitive);
        let array: ArrayRef = match haystack {
            ColumnarValue::Array(a) => a.clone(),
            ColumnarValue::Scalar(s) => s.to_array()?,
        };
        let mut scratch = Vec::new();
        let mut is_match = |s: &str| matcher.is_match(s, &mut scratch);
        let result: BooleanArray = match array.data_type() {
            DataType::Utf8 => array
                .as_string::<i32>()
                .iter()
                .map(|v| v.map(&mut is_match))
                .collect(),
            DataType::LargeUtf8 => array
                .as_string::<i64>()
                .iter()
                .map(|v| v.map(&mut is_match))
                .collect(),
            DataType::Utf8View => array
                .as_string_view()
                .iter()
                .map(|v| v.map(&mut is_match))
                .collect(),
            other => return exec_err!("{NAME}: a string column is needed, not {other}"),
        };
        Ok(match haystack {
            ColumnarValue::Array(_) => ColumnarValue::Array(Arc::new(result)),
            ColumnarValue::Scalar(_) => {
                ColumnarValue::Scalar(ScalarValue::try_from_array(&result, 0)?)
            }
        })
    }
}

/// One text, ready to be looked for in many lines.
pub struct Matcher {
    finder: Finder<'static>,
    case_sensitive: bool,
    /// Whether the text starts / ends with a word character (the
    /// occurrence must then not continue a word).
    bounded_start: bool,
    bounded_end: bool,
}

impl Matcher {
    pub fn new(text: &str, case_sensitive: bool) -> Matcher {
        let text = if case_sensitive {
            text.to_string()
        } else {
            text.to_lowercase()
        };
        Matcher {
            bounded_start: text.chars().next().is_some_and(is_word_char),
            bounded_end: text.chars().next_back().is_some_and(is_word_char),
            finder: Finder::new(text.as_bytes()).into_owned(),
            case_sensitive,
        }
    }

    /// `scratch` holds lower-cased ASCII lines between calls, so the usual
    /// line costs no allocation.
    pub fn is_match(&self, line: &str, scratch: &mut Vec<u8>) -> bool {
        if self.case_sensitive {
            return self.find_in(line);
        }
        if line.is_ascii() {
            scratch.clear();
            scratch.extend(line.bytes().map(|b| b.to_ascii_lowercase()));
            // ASCII lower-cased is still ASCII, hence UTF-8.
            return std::str::from_utf8(scratch).is_ok_and(|l| self.find_in(l));
        }
        self.find_in(&line.to_lowercase())
    }

    fn find_in(&self, line: &str) -> bool {
        let len = self.finder.needle().len();
        self.finder.find_iter(line.as_bytes()).any(|at| {
            let before_ok = !self.bounded_start
                || !line
                    .get(..at)
                    .and_then(|s| s.chars().next_back())
                    .is_some_and(is_word_char);
            let after_ok = !self.bounded_end
                || !line
                    .get(at + len..)
                    .and_then(|s| s.chars().next())
                    .is_some_and(is_word_char);
            before_ok && after_ok
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(text: &str, case: bool, line: &str) -> bool {
        Matcher::new(text, case).is_match(line, &mut Vec::new())
    }

    #[test]
    fn whole_words_only() {
        assert!(m("connect from", false, "postfix: connect from x[1.2.3.4]"));
        assert!(!m("connect from", false, "postfix: disconnect from x"));
        assert!(m(
            "connect from",
            false,
            "disconnect from a; connect from b"
        ));
        assert!(m("connect", false, "connect"));
        assert!(!m("10.0.0.1", false, "client 10.0.0.12 refused"));
        assert!(m("10.0.0.1", false, "client=10.0.0.1:25"));
        assert!(m("8478BEA8D4", true, "8478BEA8D4: removed"));
        assert!(!m("8478BEA8D4", true, "8478bea8d4: removed"));
        assert!(m("8478bea8d4", false, "8478BEA8D4: removed"));
        assert!(!m("fail", false, "failed"));
        assert!(!m("fail", false, "x_fail"));
        // Non-word characters at the ends need no boundary.
        assert!(m("-x", false, "a-x b"));
        assert!(!m("user@", false, "xuser@example"));
        assert!(m("user@", false, "to=<user@example>"));
        // Letters outside ASCII are word characters too.
        assert!(!m("chec", false, "échec"));
        assert!(m("ÉCHEC", false, "l'échec total"));
        assert!(m("", false, "anything"));
    }
}
