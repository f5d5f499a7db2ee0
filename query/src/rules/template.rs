//! The part of Go's text/template that Prometheus rule labels and
//! annotations use: `{{ $labels.x }}`, `{{ $value }}`, `{{ .Labels.x }}`,
//! `$externalLabels`, pipelines (`{{ $value | humanize }}`), function
//! calls (`printf`, `humanize*`, `toUpper`, `toLower`, `title`,
//! `reReplaceAll`, `match`), comparisons (`eq`, `ne`, `lt`, `le`, `gt`,
//! `ge`), `and`/`or`/`not`, `if`/`else if`/`else`/`end`, and `{{-`/`-}}`
//! trimming. Output formatting follows Go (`%v` of a float, `%.4g`).

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("template: {0}")]
pub struct TemplateError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, TemplateError> {
    Err(TemplateError(msg.into()))
}

/// What a template sees.
pub struct Data<'a> {
    pub labels: &'a BTreeMap<String, String>,
    pub external_labels: &'a BTreeMap<String, String>,
    pub external_url: &'a str,
    pub value: f64,
}

#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Print(Pipeline),
    If(Vec<(Pipeline, Vec<Node>)>, Vec<Node>),
}

type Pipeline = Vec<Command>;

#[derive(Debug, Clone)]
struct Command {
    head: Operand,
    args: Vec<Operand>,
}

#[derive(Debug, Clone)]
enum Operand {
    Func(String),
    Var(String, Vec<String>),
    Dot(Vec<String>),
    Str(String),
    Num(f64),
    Bool(bool),
    Paren(Pipeline),
}

#[derive(Debug, Clone, PartialEq)]
enum Val {
    Str(String),
    Num(f64),
    Bool(bool),
    Map(BTreeMap<String, String>),
    Nil,
}

const MAX_TEMPLATE_BYTES: usize = 64 * 1024;

impl Template {
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        if src.len() > MAX_TEMPLATE_BYTES {
            return err("template longer than 64 KiB");
        }
        let pieces = split(src)?;
        let mut at = 0;
        let nodes = parse_nodes(&pieces, &mut at, false)?;
        if at != pieces.len() {
            return err("unexpected {{end}} or {{else}}");
        }
        Ok(Template { nodes })
    }

    pub fn render(&self, data: &Data) -> Result<String, TemplateError> {
        let mut out = String::new();
        render_nodes(&self.nodes, data, &mut out)?;
        Ok(out)
    }
}

/// Expands `src` once: the convenience every rule uses.
pub fn expand(src: &str, data: &Data) -> Result<String, TemplateError> {
    if !src.contains("{{") {
        return Ok(src.to_string());
    }
    Template::parse(src)?.render(data)
}

enum Piece {
    Text(String),
    Action(String),
}

/// Text and `{{ actions }}`, with `{{-` and `-}}` trimming applied.
fn split(src: &str) -> Result<Vec<Piece>, TemplateError> {
    let mut pieces = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while let Some(open) = rest.find("{{") {
        let mut text = &rest[..open];
        if trim_next {
            text = text.trim_start();
        }
        let after = &rest[open + 2..];
        let trim_before = after.starts_with("- ") || after.starts_with("-\t") || after == "-";
        if trim_before {
            text = text.trim_end();
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text.to_string()));
        }
        let Some(close) = after.find("}}") else {
            return err("unclosed action");
        };
        let mut body = &after[..close];
        if trim_before {
            body = &body[1..];
        }
        trim_next = body.ends_with(" -") || body.ends_with("\t-");
        if trim_next {
            body = &body[..body.len() - 1];
        }
        pieces.push(Piece::Action(body.trim().to_string()));
        rest = &after[close + 2..];
    }
    let text = if trim_next { rest.trim_start() } else { rest };
    if !text.is_empty() {
        pieces.push(Piece::Text(text.to_string()));
    }
    Ok(pieces)
}

fn parse_nodes(pieces: &[Piece], at: &mut usize, in_if: bool) -> Result<Vec<Node>, TemplateError> {
    let mut nodes = Vec::new();
    while *at < pieces.len() {
        match &pieces[*at] {
            Piece::Text(t) => {
                nodes.push(Node::Text(t.clone()));
                *at += 1;
            }
            Piece::Action(a) if a.starts_with("/*") => *at += 1,
            Piece::Action(a) if a == "end" || a == "else" || a.starts_with("else ") => {
                if !in_if {
                    return err(format!("unexpected {{{{{a}}}}}"));
                }
                return Ok(nodes);
            }
            Piece::Action(a) if a.starts_with("if ") => {
                *at += 1;
                let mut branches = vec![(parse_pipeline(&a[3..])?, Vec::new())];
                let mut otherwise = Vec::new();
                loop {
                    let body = parse_nodes(pieces, at, true)?;
                    let Some(Piece::Action(end)) = pieces.get(*at) else {
                        return err("missing {{end}}");
                    };
                    *at += 1;
                    if let Some(cond) = end.strip_prefix("else if ") {
                        if let Some(last) = branches.last_mut() {
                            last.1 = body;
                        }
                        branches.push((parse_pipeline(cond)?, Vec::new()));
                    } else if end == "else" {
                        if let Some(last) = branches.last_mut() {
                            last.1 = body;
                        }
                        otherwise = parse_nodes(pieces, at, true)?;
                        match pieces.get(*at) {
                            Some(Piece::Action(e)) if e == "end" => *at += 1,
                            _ => return err("missing {{end}} after {{else}}"),
                        }
                        break;
                    } else {
                        if let Some(last) = branches.last_mut() {
                            last.1 = body;
                        }
                        break;
                    }
                }
                nodes.push(Node::If(branches, otherwise));
            }
            Piece::Action(a) => {
                for word in ["range", "with", "define", "template", "block"] {
                    if a == word || a.starts_with(&format!("{word} ")) {
                        return err(format!("{{{{{word}}}}} is not supported"));
                    }
                }
                nodes.push(Node::Print(parse_pipeline(a)?));
                *at += 1;
            }
        }
    }
    if in_if {
        return err("missing {{end}}");
    }
    Ok(nodes)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Str(String),
    Num(f64),
    Pipe,
    Open,
    Close,
}

fn tokens(s: &str) -> Result<Vec<Token>, TemplateError> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '|' => {
                out.push(Token::Pipe);
                i += 1;
            }
            '(' => {
                out.push(Token::Open);
                i += 1;
            }
            ')' => {
                out.push(Token::Close);
                i += 1;
            }
            '"' => {
                let mut text = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return err("unterminated string"),
                        Some('"') => break,
                        Some('\\') => {
                            i += 1;
                            match chars.get(i) {
                                Some('n') => text.push('\n'),
                                Some('t') => text.push('\t'),
                                Some(c) => text.push(*c),
                                None => return err("unterminated string"),
                            }
                        }
                        Some(c) => text.push(*c),
                    }
                    i += 1;
                }
                i += 1;
                out.push(Token::Str(text));
            }
            '`' => {
                let start = i + 1;
                let Some(len) = chars[start..].iter().position(|c| *c == '`') else {
                    return err("unterminated raw string");
                };
                out.push(Token::Str(chars[start..start + len].iter().collect()));
                i = start + len + 1;
            }
            _ => {
                let start = i;
                while i < chars.len() && !" \t\n\r|()".contains(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let numeric =
                    word.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+');
                match word.parse::<f64>() {
                    Ok(n) if numeric => out.push(Token::Num(n)),
                    _ => out.push(Token::Word(word)),
                }
            }
        }
    }
    Ok(out)
}

fn parse_pipeline(s: &str) -> Result<Pipeline, TemplateError> {
    let toks = tokens(s)?;
    let mut at = 0;
    let p = pipeline(&toks, &mut at)?;
    if at != toks.len() {
        return err(format!("unexpected {:?} in {s:?}", toks[at]));
    }
    Ok(p)
}

fn pipeline(toks: &[Token], at: &mut usize) -> Result<Pipeline, TemplateError> {
    let mut commands = Vec::new();
    loop {
        let head = operand(toks, at)?;
        let mut args = Vec::new();
        while *at < toks.len() && !matches!(toks[*at], Token::Pipe | Token::Close) {
            args.push(operand(toks, at)?);
        }
        commands.push(Command { head, args });
        if toks.get(*at) == Some(&Token::Pipe) {
            *at += 1;
        } else {
            return Ok(commands);
        }
    }
}

fn operand(toks: &[Token], at: &mut usize) -> Result<Operand, TemplateError> {
    let Some(t) = toks.get(*at) else {
        return err("missing value");
    };
    *at += 1;
    Ok(match t {
        Token::Str(s) => Operand::Str(s.clone()),
        Token::Num(n) => Operand::Num(*n),
        Token::Open => {
            let p = pipeline(toks, at)?;
            if toks.get(*at) != Some(&Token::Close) {
                return err("missing )");
            }
            *at += 1;
            Operand::Paren(p)
        }
        Token::Word(w) if w == "true" || w == "false" => Operand::Bool(w == "true"),
        Token::Word(w) if w.starts_with('$') => {
            let mut parts = w.split('.');
            let name = parts.next().unwrap_or_default().to_string();
            Operand::Var(name, parts.map(str::to_string).collect())
        }
        Token::Word(w) if w.starts_with('.') => Operand::Dot(
            w.split('.')
                .skip(1)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
        ),
        Token::Word(w) if FUNCTIONS.contains(&w.as_str()) => Operand::Func(w.clone()),
        Token::Word(w) => return err(format!("function {w:?} not defined")),
        Token::Pipe | Token::Close => return err("missing value"),
    })
}

const FUNCTIONS: &[&str] = &[
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "humanizeTimestamp",
    "printf",
    "toUpper",
    "toLower",
    "title",
    "reReplaceAll",
    "match",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "and",
    "or",
    "not",
    "len",
    "index",
    "print",
];

fn render_nodes(nodes: &[Node], data: &Data, out: &mut String) -> Result<(), TemplateError> {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Print(p) => out.push_str(&show(&run(p, data)?)),
            Node::If(branches, otherwise) => {
                let mut taken = false;
                for (cond, body) in branches {
                    if truthy(&run(cond, data)?) {
                        render_nodes(body, data, out)?;
                        taken = true;
                        break;
                    }
                }
                if !taken {
                    render_nodes(otherwise, data, out)?;
                }
            }
        }
    }
    Ok(())
}

fn run(p: &Pipeline, data: &Data) -> Result<Val, TemplateError> {
    let mut last: Option<Val> = None;
    for c in p {
        let mut args = c
            .args
            .iter()
            .map(|a| value(a, data))
            .collect::<Result<Vec<_>, _>>()?;
        args.extend(last.take());
        last = Some(match &c.head {
            Operand::Func(f) => call(f, args)?,
            other if args.is_empty() => value(other, data)?,
            _ => return err("can't give arguments to a non-function"),
        });
    }
    Ok(last.unwrap_or(Val::Nil))
}

fn value(o: &Operand, data: &Data) -> Result<Val, TemplateError> {
    let field = |v: Val, path: &[String]| -> Val {
        match (v, path) {
            (v, []) => v,
            (Val::Map(m), [key]) => m.get(key).map_or(Val::Nil, |s| Val::Str(s.clone())),
            _ => Val::Nil,
        }
    };
    Ok(match o {
        Operand::Str(s) => Val::Str(s.clone()),
        Operand::Num(n) => Val::Num(*n),
        Operand::Bool(b) => Val::Bool(*b),
        Operand::Paren(p) => run(p, data)?,
        Operand::Func(f) => call(f, Vec::new())?,
        Operand::Var(name, path) => {
            let v = match name.as_str() {
                "$labels" => Val::Map(data.labels.clone()),
                "$externalLabels" => Val::Map(data.external_labels.clone()),
                "$value" => Val::Num(data.value),
                "$externalURL" => Val::Str(data.external_url.to_string()),
                "$" => dot(&[], data),
                _ => return err(format!("undefined variable {name:?}")),
            };
            field(v, path)
        }
        Operand::Dot(path) => dot(path, data),
    })
}

fn dot(path: &[String], data: &Data) -> Val {
    match path {
        [] => Val::Map(data.labels.clone()),
        [first, rest @ ..] => {
            let v = match first.as_str() {
                "Labels" => Val::Map(data.labels.clone()),
                "ExternalLabels" => Val::Map(data.external_labels.clone()),
                "Value" => Val::Num(data.value),
                "ExternalURL" => Val::Str(data.external_url.to_string()),
                _ => Val::Nil,
            };
            match (v, rest) {
                (v, []) => v,
                (Val::Map(m), [key]) => m.get(key).map_or(Val::Nil, |s| Val::Str(s.clone())),
                _ => Val::Nil,
            }
        }
    }
}

fn truthy(v: &Val) -> bool {
    match v {
        Val::Str(s) => !s.is_empty(),
        Val::Num(n) => *n != 0.0,
        Val::Bool(b) => *b,
        Val::Map(m) => !m.is_empty(),
        Val::Nil => false,
    }
}

/// Go's `%v`.
fn show(v: &Val) -> String {
    match v {
        Val::Str(s) => s.clone(),
        Val::Num(n) => go_float(*n, None),
        Val::Bool(b) => b.to_string(),
        Val::Map(m) => {
            let inner: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            format!("map[{}]", inner.join(" "))
        }
        Val::Nil => "<no value>".into(),
    }
}

fn number(v: &Val) -> Result<f64, TemplateError> {
    match v {
        Val::Num(n) => Ok(*n),
        Val::Str(s) => s
            .trim()
            .parse()
            .or_else(|_| err(format!("can't convert {s:?} to float"))),
        Val::Bool(_) | Val::Map(_) | Val::Nil => err("can't convert to float"),
    }
}

fn text(v: &Val) -> String {
    show(v)
}

fn call(f: &str, args: Vec<Val>) -> Result<Val, TemplateError> {
    let one = |args: &[Val]| -> Result<Val, TemplateError> {
        match args {
            [a] => Ok(a.clone()),
            _ => err(format!("{f} takes one argument, got {}", args.len())),
        }
    };
    let two = |args: &[Val]| -> Result<(Val, Val), TemplateError> {
        match args {
            [a, b] => Ok((a.clone(), b.clone())),
            _ => err(format!("{f} takes two arguments, got {}", args.len())),
        }
    };
    Ok(match f {
        "humanize" => Val::Str(humanize(number(&one(&args)?)?)),
        "humanize1024" => Val::Str(humanize1024(number(&one(&args)?)?)),
        "humanizeDuration" => Val::Str(humanize_duration(number(&one(&args)?)?)),
        "humanizePercentage" => Val::Str(format!(
            "{}%",
            go_float(number(&one(&args)?)? * 100.0, Some(4))
        )),
        "humanizeTimestamp" => Val::Str(humanize_timestamp(number(&one(&args)?)?)),
        "toUpper" => Val::Str(text(&one(&args)?).to_uppercase()),
        "toLower" => Val::Str(text(&one(&args)?).to_lowercase()),
        "title" => Val::Str(title(&text(&one(&args)?))),
        "print" => Val::Str(args.iter().map(show).collect()),
        "len" => Val::Num(match one(&args)? {
            Val::Str(s) => s.len() as f64,
            Val::Map(m) => m.len() as f64,
            _ => return err("len of a non-collection"),
        }),
        "index" => {
            let (m, k) = two(&args)?;
            match m {
                Val::Map(m) => m.get(&text(&k)).map_or(Val::Nil, |s| Val::Str(s.clone())),
                _ => return err("index of a non-map"),
            }
        }
        "not" => Val::Bool(!truthy(&one(&args)?)),
        "and" => args
            .iter()
            .find(|a| !truthy(a))
            .or(args.last())
            .cloned()
            .unwrap_or(Val::Nil),
        "or" => args
            .iter()
            .find(|a| truthy(a))
            .or(args.last())
            .cloned()
            .unwrap_or(Val::Nil),
        "eq" | "ne" | "lt" | "le" | "gt" | "ge" => {
            let (a, b) = two(&args)?;
            let ord = match (&a, &b) {
                (Val::Str(x), Val::Str(y)) => x.partial_cmp(y),
                _ => number(&a)?.partial_cmp(&number(&b)?),
            };
            use std::cmp::Ordering::*;
            Val::Bool(match f {
                "eq" => ord == Some(Equal),
                "ne" => ord != Some(Equal),
                "lt" => ord == Some(Less),
                "le" => matches!(ord, Some(Less | Equal)),
                "gt" => ord == Some(Greater),
                _ => matches!(ord, Some(Greater | Equal)),
            })
        }
        "match" => {
            let (re, s) = two(&args)?;
            let re = regex::Regex::new(&text(&re)).or_else(|e| err(e.to_string()))?;
            Val::Bool(re.is_match(&text(&s)))
        }
        "reReplaceAll" => {
            let [re, repl, s] = &args[..] else {
                return err("reReplaceAll takes three arguments");
            };
            let re = regex::Regex::new(&text(re)).or_else(|e| err(e.to_string()))?;
            Val::Str(re.replace_all(&text(s), text(repl).as_str()).into_owned())
        }
        "printf" => {
            let Some((format, rest)) = args.split_first() else {
                return err("printf needs a format");
            };
            Val::Str(printf(&text(format), rest)?)
        }
        _ => return err(format!("function {f:?} not defined")),
    })
}

fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric();
    }
    out
}

/// Go's fmt verbs that rule annotations use: %s %v %d %f %g %e %q %% with
/// width and precision.
fn printf(format: &str, args: &[Val]) -> Result<String, TemplateError> {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = String::new();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_digit() || n == '.' || n == '-' || n == '+' || n == ' ' {
                spec.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.next() else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        let (width, precision) = match spec.split_once('.') {
            Some((w, p)) => (w.to_string(), p.parse::<usize>().ok()),
            None => (spec.clone(), None),
        };
        let left = width.contains('-');
        let width: usize = width
            .trim_matches(|c| c == '-' || c == '+' || c == ' ')
            .parse()
            .unwrap_or(0);
        let body = match verb {
            's' | 'v' => show(arg),
            'q' => format!("{:?}", show(arg)),
            'd' => format!("{}", number(arg)?.trunc() as i64),
            'f' | 'F' => format!("{:.*}", precision.unwrap_or(6), number(arg)?),
            'e' => go_exp(number(arg)?, precision.unwrap_or(6)),
            'g' => go_float(number(arg)?, precision),
            _ => format!("%!{verb}({})", show(arg)),
        };
        if body.chars().count() < width {
            let pad = " ".repeat(width - body.chars().count());
            if left {
                out.push_str(&body);
                out.push_str(&pad);
            } else {
                out.push_str(&pad);
                out.push_str(&body);
            }
        } else {
            out.push_str(&body);
        }
    }
    Ok(out)
}

/// Go's `%e` with `precision` digits after the point: `1.500000e+06`.
pub fn go_exp(v: f64, precision: usize) -> String {
    if !v.is_finite() {
        return go_special(v);
    }
    let s = format!("{v:.precision$e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    format!(
        "{mantissa}e{}{:02}",
        if exp < 0 { '-' } else { '+' },
        exp.abs()
    )
}

fn go_special(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v > 0.0 {
        "+Inf".into()
    } else {
        "-Inf".into()
    }
}

/// Go's `%g` (`None`: shortest, as `%v` prints a float64) or `%.Ng`.
pub fn go_float(v: f64, precision: Option<usize>) -> String {
    if !v.is_finite() {
        return go_special(v);
    }
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    // Significant digits and decimal exponent, rounded as asked.
    let sci = match precision {
        Some(p) => format!("{:.*e}", p.max(1) - 1, v),
        None => format!("{v:e}"),
    };
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let digits = digits.trim_end_matches('0');
    let nd = digits.len().max(1) as i32;
    let eprec = match precision {
        None => 6,
        Some(p) => {
            let p = p.max(1) as i32;
            if p > nd && nd > exp {
                nd
            } else {
                p
            }
        }
    };
    let negative = v < 0.0;
    let digits = if digits.is_empty() { "0" } else { digits };
    let body = if exp < -4 || exp >= eprec {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        format!(
            "{first}{frac}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        )
    } else if exp < 0 {
        format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
    } else {
        let int_len = (exp + 1) as usize;
        if digits.len() <= int_len {
            format!("{digits}{}", "0".repeat(int_len - digits.len()))
        } else {
            format!("{}.{}", &digits[..int_len], &digits[int_len..])
        }
    };
    if negative {
        format!("-{body}")
    } else {
        body
    }
}

fn humanize(mut v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return go_float(v, Some(4));
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", go_float(v, Some(4)))
}

fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return go_float(v, Some(4));
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", go_float(v, Some(4)))
}

fn humanize_duration(mut v: f64) -> String {
    if !v.is_finite() {
        return go_float(v, Some(4));
    }
    if v == 0.0 {
        return format!("{}s", go_float(v, Some(4)));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        let d = v as i64;
        let (s, m, h, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86400);
        return if days != 0 {
            format!("{sign}{days}d {h}h {m}m {s}s")
        } else if h != 0 {
            format!("{sign}{h}h {m}m {s}s")
        } else if m != 0 {
            format!("{sign}{m}m {s}s")
        } else {
            format!("{sign}{}s", go_float(v, Some(4)))
        };
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", go_float(v, Some(4)))
}

/// Go's `time.Time.String()` of a UTC time.
fn humanize_timestamp(v: f64) -> String {
    if !v.is_finite() {
        return go_float(v, Some(4));
    }
    let ns = (v * 1e9) as i64;
    let t = chrono::DateTime::from_timestamp_nanos(ns);
    let frac = t.format("%.9f").to_string();
    let frac = frac.trim_end_matches('0');
    let frac = if frac == "." { "" } else { frac };
    format!("{}{frac} +0000 UTC", t.format("%Y-%m-%d %H:%M:%S"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(src: &str, value: f64) -> String {
        let labels: BTreeMap<String, String> = [
            ("instance".to_string(), "mta1:9100".to_string()),
            ("job".into(), "node".into()),
        ]
        .into();
        let external = BTreeMap::from([("site".to_string(), "rome".to_string())]);
        expand(
            src,
            &Data {
                labels: &labels,
                external_labels: &external,
                external_url: "http://mon:9090",
                value,
            },
        )
        .unwrap()
    }

    #[test]
    fn labels_values_and_pipelines() {
        assert_eq!(
            render("{{ $labels.instance }} is {{ $value }}", 0.5),
            "mta1:9100 is 0.5"
        );
        assert_eq!(render("{{ .Labels.job }}/{{ .Value }}", 3.0), "node/3");
        assert_eq!(render("{{$externalLabels.site}}", 0.0), "rome");
        assert_eq!(render("{{ $labels.missing }}", 0.0), "<no value>");
        assert_eq!(render("{{ $value | humanize }}", 1234567.0), "1.235M");
        assert_eq!(render("{{ humanize1024 $value }}", 1048576.0), "1Mi");
        assert_eq!(
            render("{{ $value | humanizePercentage }}", 0.12345),
            "12.35%"
        );
        assert_eq!(
            render("{{ $value | humanizeDuration }}", 90061.0),
            "1d 1h 1m 1s"
        );
        assert_eq!(render("{{ $value | humanizeDuration }}", 0.25), "250ms");
        assert_eq!(render("{{ printf \"%.2f\" $value }}", 2.0 / 3.0), "0.67");
        assert_eq!(render("{{ $value | printf \"%.1f%%\" }}", 12.34), "12.3%");
        assert_eq!(
            render("{{ humanizeTimestamp 1700000000 }}", 0.0),
            "2023-11-14 22:13:20 +0000 UTC"
        );
        assert_eq!(render("{{ $labels.job | toUpper }}", 0.0), "NODE");
        assert_eq!(
            render("{{ reReplaceAll \":.*\" \"\" $labels.instance }}", 0.0),
            "mta1"
        );
    }

    #[test]
    fn go_float_formatting() {
        assert_eq!(go_float(1e6, None), "1e+06");
        assert_eq!(go_float(123456.0, None), "123456");
        assert_eq!(go_float(1234567.0, None), "1.234567e+06");
        assert_eq!(go_float(0.0001, None), "0.0001");
        assert_eq!(go_float(0.00001, None), "1e-05");
        assert_eq!(go_float(100.0, Some(4)), "100");
        assert_eq!(go_float(12345.0, Some(4)), "1.234e+04");
        assert_eq!(go_float(1234.5, Some(4)), "1234");
        assert_eq!(go_float(f64::NAN, None), "NaN");
    }

    #[test]
    fn conditions_and_trimming() {
        let src =
            "{{ if gt $value 80.0 -}} high {{- else if gt $value 50.0 }}mid{{ else }}low{{ end }}";
        assert_eq!(render(src, 90.0), "high");
        assert_eq!(render(src, 60.0), "mid");
        assert_eq!(render(src, 10.0), "low");
        assert_eq!(
            render("{{ if eq $labels.job \"node\" }}yes{{ end }}", 0.0),
            "yes"
        );
    }

    #[test]
    fn errors_are_reported_not_panicked() {
        for bad in [
            "{{ $labels.x",
            "{{ nosuchfunc 1 }}",
            "{{ if 1 }}x",
            "{{ end }}",
            "{{ \"unterminated }}",
            "{{ range $labels }}{{ end }}",
            "{{ $nope }}",
        ] {
            let labels = BTreeMap::new();
            let r = Template::parse(bad).and_then(|t| {
                t.render(&Data {
                    labels: &labels,
                    external_labels: &labels,
                    external_url: "",
                    value: 0.0,
                })
            });
            assert!(r.is_err(), "{bad} should fail");
        }
    }
}
