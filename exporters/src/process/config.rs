//! process-exporter's config format: `process_names` with `comm`, `exe` and
//! `cmdline` matchers and Go-template-style group names.

use regex::Regex;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Yaml {
        path: PathBuf,
        source: serde_yaml_ng::Error,
    },
    #[error("{path}: process_names[{index}]: {msg}")]
    Invalid {
        path: PathBuf,
        index: usize,
        msg: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    process_names: Vec<RawMatcher>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatcher {
    #[serde(default = "default_name")]
    name: String,
    #[serde(default)]
    comm: Vec<String>,
    #[serde(default)]
    exe: Vec<String>,
    #[serde(default)]
    cmdline: Vec<String>,
}

fn default_name() -> String {
    "{{.ExeBase}}".into()
}

/// What a matcher sees of a process.
#[derive(Debug, Clone, Default)]
pub struct ProcAttrs {
    pub pid: i32,
    pub comm: String,
    pub cmdline: Vec<String>,
    pub username: String,
    pub start_time: f64,
}

#[derive(Debug)]
pub struct Matcher {
    template: Vec<Part>,
    comm: Vec<String>,
    /// basename → required full path ("" = any path).
    exe: HashMap<String, String>,
    cmdline: Vec<Regex>,
}

#[derive(Debug)]
enum Part {
    Lit(String),
    Comm,
    ExeBase,
    ExeFull,
    Username,
    Pid,
    StartTime,
    Match(String),
}

#[derive(Debug)]
pub struct Config {
    pub matchers: Vec<Matcher>,
}

/// Carbonio's services, grouped the way operators talk about them.
pub const CARBONIO_DEFAULT: &str = include_str!("carbonio-default.yml");

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn carbonio_default() -> Result<Self, ConfigError> {
        Self::parse(Path::new("<built-in carbonio default>"), CARBONIO_DEFAULT)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = serde_yaml_ng::from_str(text).map_err(|source| ConfigError::Yaml {
            path: path.to_path_buf(),
            source,
        })?;
        let mut matchers = Vec::new();
        for (index, m) in raw.process_names.into_iter().enumerate() {
            let invalid = |msg: String| ConfigError::Invalid {
                path: path.to_path_buf(),
                index,
                msg,
            };
            if m.comm.is_empty() && m.exe.is_empty() && m.cmdline.is_empty() {
                return Err(invalid("no comm, exe or cmdline matcher".into()));
            }
            let cmdline = m
                .cmdline
                .iter()
                .map(|r| Regex::new(r).map_err(|e| invalid(format!("cmdline regex {r:?}: {e}"))))
                .collect::<Result<Vec<_>, _>>()?;
            let exe = m
                .exe
                .iter()
                .map(|e| match e.rsplit_once('/') {
                    Some((_, base)) => (base.to_string(), e.clone()),
                    None => (e.clone(), String::new()),
                })
                .collect();
            let template = parse_template(&m.name).map_err(invalid)?;
            matchers.push(Matcher {
                template,
                comm: m.comm,
                exe,
                cmdline,
            });
        }
        Ok(Config { matchers })
    }

    /// The group name of the first matcher that matches, as process-exporter does.
    pub fn group_of(&self, p: &ProcAttrs) -> Option<String> {
        self.matchers
            .iter()
            .find_map(|m| m.matches(p).map(|caps| m.render(p, &caps)))
    }
}

impl Matcher {
    /// All given matcher kinds must match (AND); any entry within a kind (OR).
    fn matches(&self, p: &ProcAttrs) -> Option<HashMap<String, String>> {
        if !self.comm.is_empty() && !self.comm.contains(&p.comm) {
            return None;
        }
        if !self.exe.is_empty() {
            let argv0 = p.cmdline.first()?;
            let base = argv0.rsplit('/').next().unwrap_or(argv0);
            match self.exe.get(base) {
                Some(full) if full.is_empty() || full == argv0 => {}
                _ => return None,
            }
        }
        let mut caps = HashMap::new();
        if !self.cmdline.is_empty() {
            let joined = p.cmdline.join(" ");
            for re in &self.cmdline {
                let c = re.captures(&joined)?;
                for name in re.capture_names().flatten() {
                    if let Some(v) = c.name(name) {
                        caps.insert(name.to_string(), v.as_str().to_string());
                    }
                }
            }
        }
        Some(caps)
    }

    fn render(&self, p: &ProcAttrs, caps: &HashMap<String, String>) -> String {
        let argv0 = p.cmdline.first().map(String::as_str).unwrap_or(&p.comm);
        let mut out = String::new();
        for part in &self.template {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Comm => out.push_str(&p.comm),
                Part::ExeBase => out.push_str(argv0.rsplit('/').next().unwrap_or(argv0)),
                Part::ExeFull => out.push_str(argv0),
                Part::Username => out.push_str(&p.username),
                Part::Pid => out.push_str(&p.pid.to_string()),
                Part::StartTime => out.push_str(&p.start_time.to_string()),
                Part::Match(k) => out.push_str(caps.get(k).map(String::as_str).unwrap_or("")),
            }
        }
        out
    }
}

fn parse_template(s: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            parts.push(Part::Lit(rest[..open].to_string()));
        }
        let close = rest[open..]
            .find("}}")
            .ok_or_else(|| format!("unclosed '{{{{' in name {s:?}"))?
            + open;
        let field = rest[open + 2..close].trim();
        parts.push(match field {
            ".Comm" => Part::Comm,
            ".ExeBase" => Part::ExeBase,
            ".ExeFull" => Part::ExeFull,
            ".Username" => Part::Username,
            ".PID" => Part::Pid,
            ".StartTime" => Part::StartTime,
            f => match f.strip_prefix(".Matches.") {
                Some(k) if !k.is_empty() => Part::Match(k.to_string()),
                _ => return Err(format!("unsupported template field {f:?} in name {s:?}")),
            },
        });
        rest = &rest[close + 2..];
    }
    if !rest.is_empty() {
        parts.push(Part::Lit(rest.to_string()));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc_(comm: &str, cmd: &[&str]) -> ProcAttrs {
        ProcAttrs {
            pid: 42,
            comm: comm.into(),
            cmdline: cmd.iter().map(|s| s.to_string()).collect(),
            username: "zextras".into(),
            start_time: 0.0,
        }
    }

    #[test]
    fn matching_and_templates() {
        let cfg = Config::parse(
            Path::new("t"),
            "process_names:\n  - name: \"{{.Comm}}\"\n    comm: [bash]\n  - name: \"java-{{.Matches.app}}\"\n    exe: [/usr/bin/java]\n    cmdline: ['-Dapp=(?P<app>\\w+)']\n  - exe: [postgres]\n",
        )
        .unwrap();
        assert_eq!(
            cfg.group_of(&proc_("bash", &["/bin/bash"])).as_deref(),
            Some("bash")
        );
        assert_eq!(
            cfg.group_of(&proc_("java", &["/usr/bin/java", "-Dapp=mailboxd"]))
                .as_deref(),
            Some("java-mailboxd")
        );
        assert_eq!(
            cfg.group_of(&proc_("java", &["/opt/java", "-Dapp=mailboxd"])),
            None
        );
        assert_eq!(
            cfg.group_of(&proc_("postgres", &["/usr/lib/postgresql/15/bin/postgres"]))
                .as_deref(),
            Some("postgres")
        );
        assert_eq!(cfg.group_of(&proc_("sh", &["sh"])), None);
    }

    #[test]
    fn bad_configs_are_errors() {
        for bad in [
            "process_names:\n  - name: x\n",
            "process_names:\n  - comm: [a]\n    name: \"{{.Nope}}\"\n",
            "process_names:\n  - cmdline: ['(']\n",
            "process_name: []\n",
            "process_names:\n  - comm: [a]\n    bogus: 1\n",
        ] {
            assert!(Config::parse(Path::new("t"), bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn builtin_default_parses() {
        assert!(Config::carbonio_default().unwrap().matchers.len() > 10);
        // deploy/ documents the built-in groups; keep them identical.
        assert_eq!(
            include_str!("../../../deploy/examples/process-exporter.yml"),
            CARBONIO_DEFAULT
        );
    }

    #[test]
    fn carbonio_services_are_grouped() {
        let cfg = Config::carbonio_default().unwrap();
        let java = proc_(
            "java",
            &[
                "/opt/zextras/common/lib/jvm/java/bin/java",
                "-Dzimbra.config=x",
                "com.zimbra.cs.mailbox.MailboxServer",
            ],
        );
        assert_eq!(cfg.group_of(&java).as_deref(), Some("mailboxd"));
        assert_eq!(
            cfg.group_of(&proc_("qmgr", &["qmgr", "-l", "-t", "unix"]))
                .as_deref(),
            Some("postfix-qmgr")
        );
        assert_eq!(
            cfg.group_of(&proc_("slapd", &["/opt/zextras/common/libexec/slapd"]))
                .as_deref(),
            Some("slapd")
        );
        assert_eq!(cfg.group_of(&proc_("bash", &["bash"])), None);
    }
}
