//! Prometheus relabeling (`relabel_configs`, `metric_relabel_configs`), with
//! Prometheus's defaults and semantics: anchored regexes, `;` separator,
//! `$1` replacement, hashmod over the last 8 bytes of an MD5.

use md5::{Digest, Md5};
use regex::Regex;
use serde::Deserialize;
use std::collections::BTreeMap;

pub type Labels = BTreeMap<String, String>;

/// A label set from literal pairs (tests).
#[cfg(test)]
pub fn labels_of(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    #[default]
    Replace,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
}

/// One rule as written in the configuration file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelabelConfig {
    #[serde(default)]
    pub source_labels: Vec<String>,
    pub separator: Option<String>,
    pub target_label: Option<String>,
    pub regex: Option<String>,
    pub modulus: Option<u64>,
    pub replacement: Option<String>,
    #[serde(default)]
    pub action: Action,
}

/// A validated, compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    source_labels: Vec<String>,
    separator: String,
    target_label: String,
    regex: Regex,
    modulus: u64,
    replacement: String,
    action: Action,
}

impl RelabelConfig {
    pub fn compile(&self) -> Result<Rule, String> {
        let pattern = self.regex.as_deref().unwrap_or("(.*)");
        let regex = Regex::new(&format!("^(?:{pattern})$"))
            .map_err(|e| format!("invalid regex {pattern:?}: {e}"))?;
        let target = self.target_label.clone().unwrap_or_default();
        let a = self.action;
        let needs_target = matches!(
            a,
            Action::Replace
                | Action::HashMod
                | Action::Lowercase
                | Action::Uppercase
                | Action::KeepEqual
                | Action::DropEqual
        );
        if needs_target && target.is_empty() {
            return Err(format!("relabel action {a:?} requires a target_label").to_lowercase());
        }
        if matches!(
            a,
            Action::Replace | Action::HashMod | Action::Lowercase | Action::Uppercase
        ) && !target.contains('$')
            && !crate::scrape::parse::valid_label_name(&target)
        {
            return Err(format!("{target:?} is an invalid target_label"));
        }
        if a == Action::HashMod && self.modulus.unwrap_or(0) == 0 {
            return Err("relabel configuration for hashmod requires non-zero modulus".into());
        }
        if matches!(a, Action::LabelDrop | Action::LabelKeep)
            && (!self.source_labels.is_empty()
                || self.target_label.is_some()
                || self.modulus.is_some()
                || self.replacement.is_some())
        {
            return Err(format!(
                "{} action requires only 'regex', and no other fields",
                format!("{a:?}").to_lowercase()
            ));
        }
        Ok(Rule {
            source_labels: self.source_labels.clone(),
            separator: self.separator.clone().unwrap_or_else(|| ";".into()),
            target_label: target,
            regex,
            modulus: self.modulus.unwrap_or(0),
            replacement: self.replacement.clone().unwrap_or_else(|| "$1".into()),
            action: a,
        })
    }
}

/// Applies the rules in order; false means the target or series is dropped.
pub fn apply(rules: &[Rule], labels: &mut Labels) -> bool {
    for r in rules {
        let value: String = r
            .source_labels
            .iter()
            .map(|l| labels.get(l).map(String::as_str).unwrap_or(""))
            .collect::<Vec<_>>()
            .join(&r.separator);
        match r.action {
            Action::Keep => {
                if !r.regex.is_match(&value) {
                    return false;
                }
            }
            Action::Drop => {
                if r.regex.is_match(&value) {
                    return false;
                }
            }
            Action::KeepEqual => {
                if labels
                    .get(&r.target_label)
                    .map(String::as_str)
                    .unwrap_or("")
                    != value
                {
                    return false;
                }
            }
            Action::DropEqual => {
                if labels
                    .get(&r.target_label)
                    .map(String::as_str)
                    .unwrap_or("")
                    == value
                {
                    return false;
                }
            }
            Action::Replace => {
                let Some(caps) = r.regex.captures(&value) else {
                    continue;
                };
                let mut target = String::new();
                caps.expand(&r.target_label, &mut target);
                if !crate::scrape::parse::valid_label_name(&target) {
                    continue;
                }
                let mut res = String::new();
                caps.expand(&r.replacement, &mut res);
                if res.is_empty() {
                    labels.remove(&target);
                } else {
                    labels.insert(target, res);
                }
            }
            Action::Lowercase => {
                labels.insert(r.target_label.clone(), value.to_lowercase());
            }
            Action::Uppercase => {
                labels.insert(r.target_label.clone(), value.to_uppercase());
            }
            Action::HashMod => {
                let digest = Md5::digest(value.as_bytes());
                let mut last8 = [0u8; 8];
                last8.copy_from_slice(&digest[8..16]);
                let m = u64::from_be_bytes(last8) % r.modulus;
                labels.insert(r.target_label.clone(), m.to_string());
            }
            Action::LabelMap => {
                let mapped: Vec<(String, String)> = labels
                    .iter()
                    .filter_map(|(name, v)| {
                        let caps = r.regex.captures(name)?;
                        let mut new = String::new();
                        caps.expand(&r.replacement, &mut new);
                        Some((new, v.clone()))
                    })
                    .collect();
                labels.extend(mapped);
            }
            Action::LabelDrop => labels.retain(|name, _| !r.regex.is_match(name)),
            Action::LabelKeep => labels.retain(|name, _| r.regex.is_match(name)),
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(yaml: &str) -> Vec<Rule> {
        let cfgs: Vec<RelabelConfig> = serde_yaml_ng::from_str(yaml).unwrap();
        cfgs.iter().map(|c| c.compile().unwrap()).collect()
    }

    use crate::relabel::labels_of as labels;

    #[test]
    fn carbonio_mesh_node_names_to_fqdn() {
        // Carbonio Mesh names nodes (agent|server)-<host>-<domain-with-dashes>.
        let r = rules(
            "- source_labels: [__meta_consul_node]\n  regex: '(?:agent|server)-([^-]+)-(.+)'\n  target_label: instance\n  replacement: '$1.$2'\n",
        );
        let mut l = labels(&[("__meta_consul_node", "server-mail1-example-com")]);
        assert!(apply(&r, &mut l));
        assert_eq!(l["instance"], "mail1.example-com");
    }

    #[test]
    fn documented_actions() {
        let r = rules(
            "- source_labels: [job]\n  regex: node|process\n  action: keep\n\
             - source_labels: [__address__]\n  regex: '([^:]+):\\d+'\n  target_label: host\n\
             - source_labels: [host]\n  regex: db.*\n  action: drop\n\
             - regex: __meta_(.+)\n  action: labelmap\n\
             - regex: __meta_.*\n  action: labeldrop\n\
             - source_labels: [__address__]\n  modulus: 4\n  target_label: shard\n  action: hashmod\n\
             - source_labels: [missing]\n  target_label: job\n  replacement: ''\n",
        );
        let mut l = labels(&[
            ("job", "node"),
            ("__address__", "mta1:9100"),
            ("__meta_role", "mta"),
        ]);
        assert!(apply(&r, &mut l));
        assert_eq!(l.get("host").map(String::as_str), Some("mta1"));
        assert_eq!(l.get("role").map(String::as_str), Some("mta"));
        assert!(!l.contains_key("__meta_role"));
        assert!(
            !l.contains_key("job"),
            "empty replacement deletes the target"
        );
        let shard: u64 = l["shard"].parse().unwrap();
        assert!(shard < 4);
        assert!(!apply(&r, &mut labels(&[("job", "postgres")])));
        assert!(!apply(
            &r,
            &mut labels(&[("job", "node"), ("__address__", "db1:9100")])
        ));
    }

    #[test]
    fn invalid_rules_are_rejected() {
        for bad in [
            "action: replace\nsource_labels: [a]\n",
            "action: hashmod\nsource_labels: [a]\ntarget_label: b\n",
            "action: hashmod\nsource_labels: [a]\nmodulus: 2\n",
            "action: labeldrop\nregex: a\nsource_labels: [a]\n",
            "regex: '('\ntarget_label: a\n",
            "action: explode\n",
            "action: keep\nsource_labelz: [a]\n",
        ] {
            let parsed: Result<RelabelConfig, _> = serde_yaml_ng::from_str(bad);
            assert!(
                parsed
                    .map_err(|e| e.to_string())
                    .and_then(|c| c.compile().map(|_| ()))
                    .is_err(),
                "{bad}"
            );
        }
    }
}
