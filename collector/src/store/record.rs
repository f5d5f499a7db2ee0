//! WAL record encoding: a new series (its reference and labels) and a batch
//! of samples referring to series by reference, as Prometheus's WAL does.

use crate::relabel::Labels;

const SERIES: u8 = 1;
const SAMPLES: u8 = 2;
const METADATA: u8 = 3;

#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Series {
        id: u64,
        labels: Labels,
    },
    Samples(Vec<(u64, i64, f64)>),
    /// What a scrape said about a metric family (TYPE, HELP, UNIT).
    Metadata {
        metric: String,
        meta: MetricMeta,
    },
}

/// A metric family's metadata as `/api/v1/metadata` reports it: `kind` is
/// the type name (`counter`, `gauge`, ..., `unknown`).
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct MetricMeta {
    #[serde(rename = "type")]
    pub kind: String,
    pub help: String,
    pub unit: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("WAL record: {0}")]
pub struct DecodeError(pub String);

impl Record {
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Record::Series { id, labels } => {
                out.push(SERIES);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&(labels.len() as u32).to_le_bytes());
                for (k, v) in labels {
                    put_str(out, k);
                    put_str(out, v);
                }
            }
            Record::Metadata { metric, meta } => {
                out.push(METADATA);
                for field in [metric, &meta.kind, &meta.help, &meta.unit] {
                    put_str(out, field);
                }
            }
            Record::Samples(samples) => {
                out.push(SAMPLES);
                out.extend_from_slice(&(samples.len() as u32).to_le_bytes());
                for (id, ts, v) in samples {
                    out.extend_from_slice(&id.to_le_bytes());
                    out.extend_from_slice(&ts.to_le_bytes());
                    out.extend_from_slice(&v.to_bits().to_le_bytes());
                }
            }
        }
    }

    pub fn decode(mut b: &[u8]) -> Result<Record, DecodeError> {
        let tag = take(&mut b, 1)?[0];
        let rec = match tag {
            SERIES => {
                let id = u64_le(take(&mut b, 8)?);
                let n = u32_le(take(&mut b, 4)?) as usize;
                let mut labels = Labels::new();
                for _ in 0..n {
                    let k = get_str(&mut b)?;
                    let v = get_str(&mut b)?;
                    labels.insert(k, v);
                }
                Record::Series { id, labels }
            }
            SAMPLES => {
                let n = u32_le(take(&mut b, 4)?) as usize;
                if b.len() != n.saturating_mul(24) {
                    return Err(DecodeError(format!(
                        "{n} samples need {} bytes, {} present",
                        n.saturating_mul(24),
                        b.len()
                    )));
                }
                let samples = b
                    .chunks_exact(24)
                    .map(|c| {
                        (
                            u64_le(&c[0..8]),
                            u64_le(&c[8..16]) as i64,
                            f64::from_bits(u64_le(&c[16..24])),
                        )
                    })
                    .collect();
                b = &[];
                Record::Samples(samples)
            }
            METADATA => Record::Metadata {
                metric: get_str(&mut b)?,
                meta: MetricMeta {
                    kind: get_str(&mut b)?,
                    help: get_str(&mut b)?,
                    unit: get_str(&mut b)?,
                },
            },
            other => return Err(DecodeError(format!("unknown record type {other}"))),
        };
        if !b.is_empty() {
            return Err(DecodeError(format!("{} trailing bytes", b.len())));
        }
        Ok(rec)
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], DecodeError> {
    if b.len() < n {
        return Err(DecodeError(format!(
            "truncated: needed {n} bytes, {} left",
            b.len()
        )));
    }
    let (head, rest) = b.split_at(n);
    *b = rest;
    Ok(head)
}

fn get_str(b: &mut &[u8]) -> Result<String, DecodeError> {
    let n = u32_le(take(b, 4)?) as usize;
    String::from_utf8(take(b, n)?.to_vec()).map_err(|_| DecodeError("string is not UTF-8".into()))
}

fn u32_le(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn u64_le(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let labels: Labels = [("__name__", "up"), ("job", "node")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for rec in [
            Record::Series { id: 7, labels },
            Record::Samples(vec![(7, 1000, 1.0), (8, -5, f64::INFINITY)]),
            Record::Metadata {
                metric: "node_cpu_seconds".into(),
                meta: MetricMeta {
                    kind: "counter".into(),
                    help: "Seconds the CPUs spent in each mode.".into(),
                    unit: "seconds".into(),
                },
            },
        ] {
            let mut buf = Vec::new();
            rec.encode(&mut buf);
            assert_eq!(Record::decode(&buf), Ok(rec));
        }
    }

    proptest! {
        #[test]
        fn decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Record::decode(&b);
        }
    }
}
