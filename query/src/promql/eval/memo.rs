//! Label sets of one query, shared by all its steps: interned so that
//! identity stands for equality in the per-step maps, and derived sets
//! (name dropped, group keys, match signatures) computed once per query.

use super::super::value::{Sample, Value};
use super::super::QueryError;
use super::{check_unique, duplicate_labelset};
use carbonio_collector::relabel::Labels;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// A hasher for pointer-sized keys (FxHash's step): the per-step maps
/// keyed by interned label sets need no DoS resistance.
#[derive(Default)]
pub struct PtrHasher(u64);

impl Hasher for PtrHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

pub type PtrMap<K, V> = HashMap<K, V, BuildHasherDefault<PtrHasher>>;

/// The address of an interned label set: equal to another's exactly when
/// the sets are equal.
pub fn ptr(labels: &Arc<Labels>) -> usize {
    Arc::as_ptr(labels) as usize
}

/// Equal sets get one Arc, so identity stands for equality; sets derived
/// from an interned one are computed once per query instead of once per
/// step. Interned Arcs live as long as the query, so their addresses are
/// never reused meanwhile.
#[derive(Default)]
pub struct LabelMemo {
    interned: HashSet<Arc<Labels>>,
    /// Address of each interned set → what was derived from it so far.
    canonical: PtrMap<usize, Derived>,
}

/// Sets derived from one interned set: without `__name__` (the most
/// frequent), and by kind.
#[derive(Default)]
struct Derived {
    dropped: Option<Arc<Labels>>,
    by_kind: Vec<(usize, Arc<Labels>)>,
}

/// `LabelMemo::derive` kinds are expression node addresses (plus a small
/// offset when one node derives several things), or these small numbers.
pub const DERIVE_HISTOGRAM: usize = 2;

impl LabelMemo {
    pub fn intern(&mut self, labels: Labels) -> Arc<Labels> {
        if let Some(a) = self.interned.get(&labels) {
            return a.clone();
        }
        let a = Arc::new(labels);
        self.canonical.insert(ptr(&a), Derived::default());
        self.interned.insert(a.clone());
        a
    }

    pub fn is_interned(&self, labels: &Arc<Labels>) -> bool {
        self.canonical.contains_key(&ptr(labels))
    }

    /// `labels` itself when interned, else its interned equal.
    pub fn intern_arc(&mut self, labels: Arc<Labels>) -> Arc<Labels> {
        if self.is_interned(&labels) {
            return labels;
        }
        self.intern(Arc::unwrap_or_clone(labels))
    }

    /// `f(labels)`, interned; remembered per `kind` for interned inputs.
    pub fn derive(
        &mut self,
        kind: usize,
        labels: &Arc<Labels>,
        f: impl FnOnce(&Labels) -> Labels,
    ) -> Arc<Labels> {
        let Some(known) = self.canonical.get(&ptr(labels)) else {
            return self.intern(f(labels));
        };
        if let Some((_, out)) = known.by_kind.iter().find(|(k, _)| *k == kind) {
            return out.clone();
        }
        let out = self.intern(f(labels));
        if let Some(known) = self.canonical.get_mut(&ptr(labels)) {
            known.by_kind.push((kind, out.clone()));
        }
        out
    }

    /// Labels without `__name__`.
    pub fn drop_name(&mut self, labels: &Arc<Labels>) -> Arc<Labels> {
        if let Some(Derived {
            dropped: Some(dropped),
            ..
        }) = self.canonical.get(&ptr(labels))
        {
            return dropped.clone();
        }
        let dropped = if labels.contains_key("__name__") {
            let mut l = Labels::clone(labels);
            l.remove("__name__");
            self.intern(l)
        } else {
            self.intern_arc(labels.clone())
        };
        if let Some(known) = self.canonical.get_mut(&ptr(labels)) {
            known.dropped = Some(dropped.clone());
        }
        dropped
    }

    /// `check_unique`, by identity when every label set is interned.
    pub fn check_unique(&self, samples: Vec<Sample>) -> Result<Value, QueryError> {
        if !samples.iter().all(|s| self.is_interned(&s.labels)) {
            return check_unique(samples);
        }
        let mut seen: HashSet<usize, BuildHasherDefault<PtrHasher>> =
            HashSet::with_capacity_and_hasher(samples.len(), Default::default());
        if samples.iter().all(|s| seen.insert(ptr(&s.labels))) {
            Ok(Value::Vector(samples))
        } else {
            Err(duplicate_labelset())
        }
    }
}
