//! Rule files in Prometheus's format, checked as `promtool check rules`
//! does, plus log rules (`log_alert:`): a log search whose match count over
//! a window crosses a threshold. Errors carry the file and line.

use super::template::Template;
use carbonio_collector::config::Dur;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum RuleFileError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Yaml { path: PathBuf, msg: String },
    #[error("{path}:{line}: {msg}")]
    Invalid {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    #[error("rule_files pattern {pattern:?}: {msg}")]
    Pattern { pattern: String, msg: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    groups: Vec<RawGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: String,
    interval: Option<Dur>,
    #[serde(default)]
    limit: usize,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    record: Option<String>,
    alert: Option<String>,
    log_alert: Option<String>,
    expr: Option<String>,
    search: Option<String>,
    #[serde(rename = "for")]
    for_: Option<Dur>,
    keep_firing_for: Option<Dur>,
    window: Option<Dur>,
    threshold: Option<f64>,
    #[serde(default)]
    group_by: Vec<String>,
    extract: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct RuleGroup {
    pub name: String,
    pub file: PathBuf,
    /// None: the global evaluation interval.
    pub interval: Option<Duration>,
    /// Series one rule may produce (0: no limit).
    pub limit: usize,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
pub enum Rule {
    Recording {
        name: String,
        expr: String,
        labels: BTreeMap<String, String>,
    },
    Alerting(AlertSpec),
}

/// What an alert is computed from.
#[derive(Debug, Clone)]
pub enum Condition {
    Promql(String),
    Logs(LogCondition),
}

#[derive(Debug, Clone)]
pub struct LogCondition {
    pub search: String,
    pub window: Duration,
    /// Fires for each group whose count is above this.
    pub threshold: f64,
    /// Line fields (host, app, …) counted separately; they become labels.
    pub group_by: Vec<String>,
    /// Named captures over the message (else the structured data), also
    /// counted separately and labels.
    pub extract: Option<regex::Regex>,
}

#[derive(Debug, Clone)]
pub struct AlertSpec {
    pub name: String,
    pub condition: Condition,
    pub hold: Duration,
    pub keep_firing_for: Duration,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

impl Rule {
    pub fn name(&self) -> &str {
        match self {
            Rule::Recording { name, .. } => name,
            Rule::Alerting(a) => &a.name,
        }
    }

    /// The expression as `/api/v1/rules` shows it.
    pub fn query(&self) -> String {
        match self {
            Rule::Recording { expr, .. } => expr.clone(),
            Rule::Alerting(a) => match &a.condition {
                Condition::Promql(e) => e.clone(),
                Condition::Logs(l) => format!(
                    "count_over_time({{search={:?}}}[{}]) > {}",
                    l.search,
                    carbonio_collector::discovery::format_duration(l.window),
                    l.threshold
                ),
            },
        }
    }
}

/// Field names a log rule may group by.
const LOG_FIELDS: &[&str] = &[
    "host", "app", "procid", "msgid", "severity", "facility", "source",
];

/// Loads the files the `rule_files` globs name (relative to `base`).
pub fn load_patterns(base: &Path, patterns: &[String]) -> Result<Vec<RuleGroup>, RuleFileError> {
    let mut groups = Vec::new();
    for pattern in patterns {
        let full = if Path::new(pattern).is_absolute() {
            pattern.clone()
        } else {
            base.join(pattern).display().to_string()
        };
        let mut paths = carbonio_collector::discovery::expand_pattern(&full);
        paths.sort();
        if paths.is_empty() && !full.contains(['*', '?', '[']) {
            return Err(RuleFileError::Pattern {
                pattern: pattern.clone(),
                msg: "no such file".into(),
            });
        }
        for path in paths {
            groups.extend(load(&path)?);
        }
    }
    Ok(groups)
}

pub fn load(path: &Path) -> Result<Vec<RuleGroup>, RuleFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| RuleFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Parses and checks one file.
pub fn parse(path: &Path, text: &str) -> Result<Vec<RuleGroup>, RuleFileError> {
    let raw: RawFile = if text.trim().is_empty() {
        RawFile { groups: Vec::new() }
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| RuleFileError::Yaml {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?
    };
    let lines = RuleLines::new(text);
    let mut seen = std::collections::BTreeSet::new();
    let mut groups = Vec::new();
    let mut rule_index = 0;
    for g in raw.groups {
        let group_line = lines.group(&g.name);
        let invalid = |line: usize, msg: String| RuleFileError::Invalid {
            path: path.to_path_buf(),
            line,
            msg,
        };
        if g.name.is_empty() {
            return Err(invalid(group_line, "group name must not be empty".into()));
        }
        if !seen.insert(g.name.clone()) {
            return Err(invalid(
                group_line,
                format!("groupname: \"{}\" is repeated in the same file", g.name),
            ));
        }
        if g.interval.is_some_and(|i| i.0.is_zero()) {
            return Err(invalid(
                group_line,
                format!("group {:?}: interval must be positive", g.name),
            ));
        }
        let mut rules = Vec::new();
        for (i, r) in g.rules.into_iter().enumerate() {
            let line = lines.rule(rule_index);
            rule_index += 1;
            let rule = check_rule(r).map_err(|msg| {
                invalid(line, format!("group {:?}, rule {}: {msg}", g.name, i + 1))
            })?;
            rules.push(rule);
        }
        groups.push(RuleGroup {
            name: g.name,
            file: path.to_path_buf(),
            interval: g.interval.map(|d| d.0),
            limit: g.limit,
            rules,
        });
    }
    Ok(groups)
}

fn check_rule(r: RawRule) -> Result<Rule, String> {
    let kinds = [&r.record, &r.alert, &r.log_alert]
        .iter()
        .filter(|k| k.is_some())
        .count();
    if kinds != 1 {
        return Err("one of 'record', 'alert' or 'log_alert' must be set".into());
    }
    for name in r.labels.keys() {
        if !valid_label_name(name) || name == "__name__" {
            return Err(format!("invalid label name: {name}"));
        }
    }
    for name in r.annotations.keys() {
        if !valid_label_name(name) {
            return Err(format!("invalid annotation name: {name}"));
        }
    }
    for (what, text) in r
        .labels
        .iter()
        .map(|(k, v)| ("label", (k, v)))
        .chain(r.annotations.iter().map(|(k, v)| ("annotation", (k, v))))
    {
        Template::parse(text.1).map_err(|e| format!("{what} {:?}: {e}", text.0))?;
    }
    if let Some(name) = r.record {
        if !valid_metric_name(&name) {
            return Err(format!("invalid recording rule name: {name}"));
        }
        if !r.annotations.is_empty() {
            return Err("invalid field 'annotations' in recording rule".into());
        }
        if r.for_.is_some() || r.keep_firing_for.is_some() {
            return Err("invalid field 'for' in recording rule".into());
        }
        let expr = promql_expr(r.expr, &r.search)?;
        return Ok(Rule::Recording {
            name,
            expr,
            labels: r.labels,
        });
    }
    let hold = r.for_.map_or(Duration::ZERO, |d| d.0);
    let keep_firing_for = r.keep_firing_for.map_or(Duration::ZERO, |d| d.0);
    if let Some(name) = r.alert {
        if r.window.is_some()
            || r.threshold.is_some()
            || !r.group_by.is_empty()
            || r.extract.is_some()
        {
            return Err(
                "'window', 'threshold', 'group_by' and 'extract' belong to log_alert rules".into(),
            );
        }
        let expr = promql_expr(r.expr, &r.search)?;
        return Ok(Rule::Alerting(AlertSpec {
            name,
            condition: Condition::Promql(expr),
            hold,
            keep_firing_for,
            labels: r.labels,
            annotations: r.annotations,
        }));
    }
    let name = r.log_alert.unwrap_or_default();
    if r.expr.is_some() {
        return Err("a log_alert takes 'search', not 'expr'".into());
    }
    let search = r.search.ok_or("a log_alert needs 'search'")?;
    crate::logs::syntax::parse(&search).map_err(|e| format!("could not parse search: {e}"))?;
    let window = r.window.ok_or("a log_alert needs 'window'")?.0;
    if window.is_zero() {
        return Err("'window' must be positive".into());
    }
    let threshold = r.threshold.unwrap_or(0.0);
    for f in &r.group_by {
        if !LOG_FIELDS.contains(&f.as_str()) {
            return Err(format!("group_by {f:?}: one of {}", LOG_FIELDS.join(", ")));
        }
    }
    let extract = match r.extract {
        None => None,
        Some(re) => {
            let re = regex::RegexBuilder::new(&re)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| format!("extract: {e}"))?;
            if re.capture_names().flatten().next().is_none() {
                return Err("extract: needs a named capture, like (?P<ip>[0-9.]+)".into());
            }
            Some(re)
        }
    };
    Ok(Rule::Alerting(AlertSpec {
        name,
        condition: Condition::Logs(LogCondition {
            search,
            window,
            threshold,
            group_by: r.group_by,
            extract,
        }),
        hold,
        keep_firing_for,
        labels: r.labels,
        annotations: r.annotations,
    }))
}

fn promql_expr(expr: Option<String>, search: &Option<String>) -> Result<String, String> {
    if search.is_some() {
        return Err("'search' belongs to log_alert rules".into());
    }
    let expr = expr
        .filter(|e| !e.trim().is_empty())
        .ok_or("field 'expr' must be set in rule")?;
    crate::promql::parse(&expr).map_err(|e| format!("could not parse expression: {e}"))?;
    Ok(expr)
}

fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn valid_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Where groups and rules start in the text (serde gives no positions):
/// `- name:` lines and `record:`/`alert:`/`log_alert:` keys, in order.
struct RuleLines {
    groups: Vec<(String, usize)>,
    rules: Vec<usize>,
}

impl RuleLines {
    fn new(text: &str) -> RuleLines {
        let mut groups = Vec::new();
        let mut rules = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let t = line.trim_start().trim_start_matches("- ").trim_start();
            if let Some(name) = t.strip_prefix("name:") {
                groups.push((name.trim().trim_matches(['"', '\'']).to_string(), i + 1));
            }
            if ["record:", "alert:", "log_alert:"]
                .iter()
                .any(|k| t.starts_with(k))
            {
                rules.push(i + 1);
            }
        }
        RuleLines { groups, rules }
    }

    fn group(&self, name: &str) -> usize {
        self.groups
            .iter()
            .find(|(n, _)| n == name)
            .map_or(1, |(_, l)| *l)
    }

    fn rule(&self, index: usize) -> usize {
        self.rules.get(index).copied().unwrap_or(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Vec<RuleGroup>, RuleFileError> {
        parse(Path::new("r.yml"), text)
    }

    #[test]
    fn good_file_with_all_rule_kinds() {
        let groups = check(
            r#"
groups:
  - name: node
    interval: 30s
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
      - alert: Down
        expr: up == 0
        for: 5m
        keep_firing_for: 1m
        labels: {severity: critical}
        annotations:
          summary: "{{ $labels.instance }} down"
      - log_alert: LoginFailures
        search: 'app:audit "authentication failed"'
        window: 5m
        threshold: 50
        group_by: [host]
        extract: 'oip=(?P<ip>[0-9.]+)'
"#,
        )
        .unwrap();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].rules.len(), 3);
        assert_eq!(groups[0].interval, Some(Duration::from_secs(30)));
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up ==\n", 4, "could not parse expression"),
            ("groups:\n  - name: g\n    rules:\n      - record: job:x\n        expr: up\n      - record: 'bad name'\n        expr: up\n", 6, "invalid recording rule name"),
            ("groups:\n  - name: g\n    rules: []\n  - name: g\n    rules: []\n", 2, "repeated"),
            ("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        annotations: {s: '{{ $labels.x '}\n", 4, "template"),
            ("groups:\n  - name: g\n    rules:\n      - log_alert: L\n        search: 'app:(x'\n        window: 5m\n", 4, "could not parse search"),
            ("groups:\n  - name: g\n    rules:\n      - alert: A\n        record: b\n        expr: up\n", 4, "must be set"),
        ];
        for (text, line, what) in cases {
            let e = check(text).unwrap_err().to_string();
            assert!(e.starts_with(&format!("r.yml:{line}:")), "{e}");
            assert!(e.contains(what), "{e}");
        }
        assert!(check("groups:\n  - name: g\n    bogus: 1\n")
            .unwrap_err()
            .to_string()
            .contains("bogus"));
    }
}
