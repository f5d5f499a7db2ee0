//! PromQL over the store: `promql-parser` for the syntax, a tree-walking
//! evaluator for the semantics (Prometheus 2.42's, the version our
//! compatibility test runs against). Queries are bounded before parsing
//! (the parser has no recursion limit), run on a thread with a large stack,
//! and stop at their deadline or sample limit.

mod aggregate;
mod binary;
mod call;
mod eval;
pub mod functions;
pub mod value;

pub use aggregate::valid_label_name;
use carbonio_collector::store::MetricRead;
use promql_parser::parser::Expr;
use std::time::{Duration, Instant};
pub use value::{Sample, Series, Value};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    /// The query text or its parameters are wrong (HTTP 400).
    #[error("{0}")]
    BadData(String),
    /// Evaluation failed (HTTP 422).
    #[error("{0}")]
    Execution(String),
    #[error("query timed out in {0}")]
    Timeout(&'static str),
}

impl QueryError {
    /// Prometheus's `errorType` for this error.
    pub fn error_type(&self) -> &'static str {
        match self {
            QueryError::BadData(_) => "bad_data",
            QueryError::Execution(_) => "execution",
            QueryError::Timeout(_) => "timeout",
        }
    }
}

#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample (Prometheus: 5m).
    pub lookback_delta_ms: i64,
    /// Subquery step when the query gives none (the evaluation interval).
    pub default_step_ms: i64,
    /// Samples a query may load before it fails.
    pub max_samples: usize,
    pub timeout: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta_ms: 5 * 60_000,
            default_step_ms: 60_000,
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
        }
    }
}

/// Queries longer, deeper or with more operators than this are refused
/// before the parser sees them.
const MAX_QUERY_BYTES: usize = 256 * 1024;
const MAX_NESTING: usize = 128;
const MAX_OPERATORS: usize = 2000;
/// Parsing and evaluation recurse over the tree; the bounds above keep the
/// depth within what this stack holds.
const STACK_BYTES: usize = 64 << 20;

/// Functions promql-parser knows from later Prometheus versions that 2.42,
/// our reference, does not have.
const NOT_IN_2_42: &[&str] = &[
    "first_over_time",
    "info",
    "double_exponential_smoothing",
    "mad_over_time",
    "ts_of_first_over_time",
    "ts_of_last_over_time",
    "ts_of_max_over_time",
    "ts_of_min_over_time",
    "sort_by_label",
    "sort_by_label_desc",
    "histogram_avg",
    "histogram_count",
    "histogram_sum",
    "histogram_fraction",
    "histogram_stddev",
    "histogram_stdvar",
];

/// Parses a query after checking its size and nesting.
pub fn parse(query: &str) -> Result<Expr, QueryError> {
    check_bounds(query)?;
    register_holt_winters();
    promql_parser::parser::parse(&raw_strings_quoted(query))
        .map_err(|e| QueryError::BadData(parse_error(&e)))
}

/// Rewrites `raw` strings as "quoted" ones: promql-parser reads escapes
/// inside backticks, where PromQL has none.
fn raw_strings_quoted(query: &str) -> std::borrow::Cow<'_, str> {
    if !query.contains('`') {
        return query.into();
    }
    let mut out = String::with_capacity(query.len() + 8);
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in query.chars() {
        match quote {
            Some('`') => match c {
                '`' => {
                    out.push('"');
                    quote = None;
                }
                '\\' | '"' => {
                    out.push('\\');
                    out.push(c);
                }
                _ => out.push(c),
            },
            Some(q) => {
                out.push(c);
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => {
                if c == '`' {
                    out.push('"');
                } else {
                    out.push(c);
                }
                if matches!(c, '"' | '\'' | '`') {
                    quote = Some(c);
                }
            }
        }
    }
    out.into()
}

fn parse_error(msg: &str) -> String {
    if msg.starts_with("parse error") || msg.contains(": parse error") {
        msg.to_string()
    } else {
        format!("parse error: {msg}")
    }
}

/// Prometheus 2.42 has `holt_winters` (renamed in 3.0); the parser's
/// function table is process-global, so register it once.
fn register_holt_winters() {
    use promql_parser::parser::value::ValueType;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let f = promql_parser::parser::Function::new(
            "holt_winters",
            vec![ValueType::Matrix, ValueType::Scalar, ValueType::Scalar],
            0,
            ValueType::Vector,
            false,
        );
        if let Err(e) = promql_parser::parser::register_extra_functions(vec![f]) {
            tracing::warn!(error = %e, "holt_winters not registered");
        }
    });
}

fn check_bounds(query: &str) -> Result<(), QueryError> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(QueryError::BadData(format!(
            "query is {} bytes long; the limit is {MAX_QUERY_BYTES}",
            query.len()
        )));
    }
    let (mut depth, mut max_depth, mut operators) = (0usize, 0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut word = String::new();
    for c in query.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' && q != '`' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if matches!(word.as_str(), "and" | "or" | "unless" | "atan2") {
            operators += 1;
        }
        word.clear();
        match c {
            '"' | '\'' | '`' => quote = Some(c),
            '(' | '[' | '{' => {
                depth += 1;
                max_depth = max_depth.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            '+' | '-' | '*' | '/' | '%' | '^' | '=' | '<' | '>' | '!' => operators += 1,
            _ => {}
        }
    }
    if max_depth > MAX_NESTING {
        return Err(QueryError::BadData(format!(
            "query nests {max_depth} levels deep; the limit is {MAX_NESTING}"
        )));
    }
    if operators > MAX_OPERATORS {
        return Err(QueryError::BadData(format!(
            "query has {operators} operators; the limit is {MAX_OPERATORS}"
        )));
    }
    Ok(())
}

/// What a query cost, for `stats=all`.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueryStats {
    pub samples_loaded: usize,
    pub eval_seconds: f64,
}

/// Evaluates queries against a store with the configured limits.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    pub options: EngineOptions,
}

impl Engine {
    pub fn new(options: EngineOptions) -> Self {
        Engine { options }
    }

    /// Evaluates `query` at `time_ms`.
    pub fn instant(
        &self,
        store: &(dyn MetricRead + Sync),
        query: &str,
        time_ms: i64,
    ) -> Result<(Value, QueryStats), QueryError> {
        self.on_big_stack(|| {
            let expr = parse(query)?;
            let mut ev = self.evaluator(store, time_ms, time_ms);
            ev.preload(&expr)?;
            let value = ev.instant(&expr, time_ms)?;
            Ok((value, ev.stats()))
        })
    }

    /// Evaluates `query` at every step from `start_ms` to `end_ms`.
    pub fn range(
        &self,
        store: &(dyn MetricRead + Sync),
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<(Vec<Series>, QueryStats), QueryError> {
        self.on_big_stack(|| {
            let expr = parse(query)?;
            use promql_parser::parser::value::ValueType;
            let kind = expr.value_type();
            if !matches!(kind, ValueType::Scalar | ValueType::Vector) {
                return Err(QueryError::BadData(format!(
                    "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                    match kind {
                        ValueType::Matrix => "range vector",
                        ValueType::String => "string",
                        _ => "unknown",
                    }
                )));
            }
            let mut ev = self.evaluator(store, start_ms, end_ms);
            ev.preload(&expr)?;
            let matrix = ev.range(&expr, start_ms, end_ms, step_ms)?;
            Ok((matrix, ev.stats()))
        })
    }

    fn evaluator<'a>(
        &'a self,
        store: &'a (dyn MetricRead + Sync),
        start_ms: i64,
        end_ms: i64,
    ) -> eval::Evaluator<'a> {
        eval::Evaluator::new(
            store,
            &self.options,
            start_ms,
            end_ms,
            Instant::now() + self.options.timeout,
        )
    }

    fn on_big_stack<T: Send>(
        &self,
        f: impl FnOnce() -> Result<T, QueryError> + Send,
    ) -> Result<T, QueryError> {
        std::thread::scope(|s| {
            let handle = std::thread::Builder::new()
                .name("promql".into())
                .stack_size(STACK_BYTES)
                .spawn_scoped(s, f)
                .map_err(|e| QueryError::Execution(format!("cannot start query thread: {e}")))?;
            handle
                .join()
                .map_err(|_| QueryError::Execution("query evaluation failed".into()))?
        })
    }
}

/// Query parameters as Prometheus spells them: durations like `1h30m`
/// or float seconds.
pub fn parse_duration_param(s: &str) -> Result<i64, QueryError> {
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs.abs() < 9.2e15 {
            return Ok((secs * 1000.0).round() as i64);
        }
    }
    promql_parser::util::parse_duration(s)
        .map(|d| d.as_millis() as i64)
        .map_err(|_| QueryError::BadData(format!("cannot parse {s:?} to a valid duration")))
}

/// Times as Prometheus takes them: RFC 3339 or float Unix seconds.
pub fn parse_time_param(s: &str) -> Result<i64, QueryError> {
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs.abs() < 9.2e15 {
            return Ok((secs * 1000.0).round() as i64);
        }
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|d| d.timestamp_millis())
        .map_err(|_| QueryError::BadData(format!("cannot parse {s:?} to a valid timestamp")))
}

#[cfg(test)]
mod tests;
