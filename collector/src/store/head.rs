//! The in-memory head: every series with its recent samples, and a label
//! index (name, value) → series ids for selecting by matchers.

use super::chunk::Chunk;
use super::record::MetricMeta;
use crate::relabel::Labels;
use regex::Regex;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub enum Matcher {
    Equal(String, String),
    NotEqual(String, String),
    /// Anchored, as PromQL's `=~`.
    Re(String, Regex),
    NotRe(String, Regex),
}

impl Matcher {
    pub fn regex(name: &str, pattern: &str, negate: bool) -> Result<Matcher, regex::Error> {
        let re = Regex::new(&format!("^(?:{pattern})$"))?;
        Ok(if negate {
            Matcher::NotRe(name.into(), re)
        } else {
            Matcher::Re(name.into(), re)
        })
    }

    fn name(&self) -> &str {
        match self {
            Matcher::Equal(n, _)
            | Matcher::NotEqual(n, _)
            | Matcher::Re(n, _)
            | Matcher::NotRe(n, _) => n,
        }
    }

    /// An absent label matches as the empty string, as in PromQL.
    pub fn matches(&self, labels: &Labels) -> bool {
        let v = labels.get(self.name()).map(String::as_str).unwrap_or("");
        match self {
            Matcher::Equal(_, want) => v == want,
            Matcher::NotEqual(_, want) => v != want,
            Matcher::Re(_, re) => re.is_match(v),
            Matcher::NotRe(_, re) => !re.is_match(v),
        }
    }
}

/// A series id with its labels.
pub type SeriesRef = (u64, Labels);
/// (series id, timestamp ms, value)
pub type SampleRef = (u64, i64, f64);
/// A selected series: labels and (timestamp ms, value) samples.
pub type Selected = (Labels, Vec<(i64, f64)>);

#[derive(Debug, Default)]
struct Series {
    /// Shared with `ids`: one copy of the labels per series.
    labels: Arc<Labels>,
    /// In append order (time order for one target).
    samples: Chunk,
}

#[derive(Debug, Default)]
pub struct Head {
    series: HashMap<u64, Series>,
    ids: HashMap<Arc<Labels>, u64>,
    postings: HashMap<(String, String), BTreeSet<u64>>,
    next_id: u64,
    metadata: BTreeMap<String, BTreeSet<MetricMeta>>,
}

impl Head {
    pub fn contains(&self, id: u64) -> bool {
        self.series.contains_key(&id)
    }

    pub fn id_of(&self, labels: &Labels) -> Option<u64> {
        self.ids.get(labels).copied()
    }

    /// A new id for labels not seen before.
    pub fn allocate(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn add_series(&mut self, id: u64, labels: Labels) {
        self.next_id = self.next_id.max(id);
        for (k, v) in &labels {
            self.postings
                .entry((k.clone(), v.clone()))
                .or_default()
                .insert(id);
        }
        let labels = Arc::new(labels);
        self.ids.insert(labels.clone(), id);
        self.series.entry(id).or_default().labels = labels;
    }

    /// Appends; a sample for an unknown id (its series record was lost) is dropped.
    pub fn append(&mut self, id: u64, ts: i64, v: f64) -> bool {
        match self.series.get_mut(&id) {
            Some(s) => {
                s.samples.push(ts, v);
                true
            }
            None => false,
        }
    }

    /// Takes every sample out (for a block), keeping the series and their ids.
    pub fn drain_samples(&mut self) -> (Vec<SeriesRef>, Vec<SampleRef>) {
        let mut series = Vec::with_capacity(self.series.len());
        let mut samples = Vec::new();
        for (id, s) in &mut self.series {
            if s.samples.is_empty() {
                continue;
            }
            series.push((*id, Labels::clone(&s.labels)));
            samples.extend(s.samples.take().into_iter().map(|(t, v)| (*id, t, v)));
        }
        (series, samples)
    }

    /// (id, labels) of every series, for re-declaring them in a new WAL segment.
    pub fn series_ids(&self) -> Vec<(u64, Labels)> {
        self.series
            .iter()
            .map(|(id, s)| (*id, Labels::clone(&s.labels)))
            .collect()
    }

    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    pub fn sample_count(&self) -> usize {
        self.series.values().map(|s| s.samples.len()).sum()
    }

    /// Series matching all matchers, with their samples in [start, end].
    pub fn select(&self, matchers: &[Matcher], start: i64, end: i64) -> Vec<Selected> {
        let mut out: Vec<Selected> = self
            .matching(matchers)
            .map(|s| {
                (
                    Labels::clone(&s.labels),
                    s.samples
                        .iter()
                        .filter(|(t, _)| *t >= start && *t <= end)
                        .collect(),
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Label sets of the series matching all matchers that have a sample in [start, end].
    pub fn series_in_range(&self, matchers: &[Matcher], start: i64, end: i64) -> Vec<Labels> {
        self.matching(matchers)
            .filter(|s| s.samples.iter().any(|(t, _)| t >= start && t <= end))
            .map(|s| Labels::clone(&s.labels))
            .collect()
    }

    /// Records a metric family's metadata; true when it was not known yet.
    pub fn add_metadata(&mut self, metric: &str, meta: &MetricMeta) -> bool {
        if self.metadata.get(metric).is_some_and(|m| m.contains(meta)) {
            return false;
        }
        self.metadata
            .entry(metric.to_string())
            .or_default()
            .insert(meta.clone());
        true
    }

    /// Every metric family's distinct metadata, by metric name.
    pub fn metadata(&self) -> &BTreeMap<String, BTreeSet<MetricMeta>> {
        &self.metadata
    }

    /// Series matching all matchers, narrowed by the equality matchers' postings first.
    fn matching<'a>(&'a self, matchers: &'a [Matcher]) -> impl Iterator<Item = &'a Series> + 'a {
        let mut candidates: Option<BTreeSet<u64>> = None;
        for m in matchers {
            if let Matcher::Equal(n, v) = m {
                if v.is_empty() {
                    continue;
                }
                let ids = self
                    .postings
                    .get(&(n.clone(), v.clone()))
                    .cloned()
                    .unwrap_or_default();
                candidates = Some(match candidates {
                    Some(c) => c.intersection(&ids).copied().collect(),
                    None => ids,
                });
            }
        }
        let ids: Vec<u64> = match candidates {
            Some(c) => c.into_iter().collect(),
            None => self.series.keys().copied().collect(),
        };
        ids.into_iter()
            .filter_map(|id| self.series.get(&id))
            .filter(|s| matchers.iter().all(|m| m.matches(&s.labels)))
    }

    pub fn label_names(&self) -> BTreeSet<String> {
        self.postings.keys().map(|(k, _)| k.clone()).collect()
    }

    pub fn label_values(&self, name: &str) -> BTreeSet<String> {
        self.postings
            .keys()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::relabel::labels_of as l;

    #[test]
    fn select_by_matchers() {
        let mut h = Head::default();
        for (i, (job, inst)) in [("node", "a"), ("node", "b"), ("process", "a")]
            .iter()
            .enumerate()
        {
            let id = h.allocate();
            h.add_series(
                id,
                l(&[("__name__", "up"), ("job", job), ("instance", inst)]),
            );
            h.append(id, 1000, i as f64);
            h.append(id, 2000, i as f64);
        }
        let up_node = h.select(
            &[
                Matcher::Equal("__name__".into(), "up".into()),
                Matcher::Equal("job".into(), "node".into()),
            ],
            0,
            1500,
        );
        assert_eq!(up_node.len(), 2);
        assert_eq!(up_node[0].1, vec![(1000, 0.0)]);
        let not_a = h.select(&[Matcher::regex("instance", "a|c", true).unwrap()], 0, 5000);
        assert_eq!(not_a.len(), 1);
        assert!(
            h.select(&[Matcher::Equal("missing".into(), "".into())], 0, 5000)
                .len()
                == 3
        );
        assert_eq!(
            h.label_values("job").into_iter().collect::<Vec<_>>(),
            ["node", "process"]
        );
        assert!(!h.append(999, 0, 0.0));
    }
}
