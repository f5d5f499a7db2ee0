//! A parsed search as a DataFusion filter over the `logs` table. Words and
//! phrases in the message match whole words (`word_match`, which the logs
//! table also uses to skip row groups by their token filters); other
//! fields' text is compared whole; wildcards become LIKE patterns (in the
//! message, anywhere), regexes `regexp_like`.

use super::syntax::{Cmp, Expr as Search, Field, Matcher, Pattern};
use datafusion::functions::regex::expr_fn::regexp_like;
use datafusion::logical_expr::{col, lit, Expr};
use datafusion::scalar::ScalarValue;

pub fn filter(search: &Search) -> Expr {
    match search {
        Search::All => lit(true),
        Search::And(parts) => parts
            .iter()
            .map(filter)
            .reduce(Expr::and)
            .unwrap_or(lit(true)),
        Search::Or(parts) => parts
            .iter()
            .map(filter)
            .reduce(Expr::or)
            .unwrap_or(lit(false)),
        Search::Not(inner) => !filter(inner),
        Search::Match(m) => matcher(m),
    }
}

fn matcher(m: &Matcher) -> Expr {
    let column = col(m.field.name());
    let on_message = m.field == Field::Message;
    match &m.pattern {
        Pattern::Text {
            text,
            case_sensitive,
        } if on_message => super::words::word_match(column, text, *case_sensitive),
        Pattern::Text {
            text,
            case_sensitive: true,
        } => column.eq(lit(text.as_str())),
        Pattern::Text { text, .. } => like(column, escape_like(text), false),
        Pattern::Wildcard {
            pattern,
            case_sensitive,
        } => {
            let p = wildcard_to_like(pattern);
            let p = if on_message { format!("%{p}%") } else { p };
            like(column, p, *case_sensitive)
        }
        Pattern::Regex(re) => regexp_like(column, lit(re.as_str()), None),
        Pattern::Number { op, value } => {
            let v = lit(ScalarValue::UInt8(Some(*value)));
            match op {
                Cmp::Eq => column.eq(v),
                Cmp::Lt => column.lt(v),
                Cmp::Le => column.lt_eq(v),
                Cmp::Gt => column.gt(v),
                Cmp::Ge => column.gt_eq(v),
            }
        }
    }
}

fn like(column: Expr, pattern: String, case_sensitive: bool) -> Expr {
    if case_sensitive {
        column.like(lit(pattern))
    } else {
        column.ilike(lit(pattern))
    }
}

/// LIKE's own wildcards and escape character taken literally.
fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn wildcard_to_like(p: &str) -> String {
    escape_like(p).replace('*', "%").replace('?', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_and_escapes() {
        assert_eq!(wildcard_to_like("postfix/*"), "postfix/%");
        assert_eq!(wildcard_to_like("a_b?%"), "a\\_b_\\%");
        assert_eq!(escape_like("100%"), "100\\%");
    }
}
