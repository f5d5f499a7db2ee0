//! Prometheus remote write 1.0, receiving side (`POST /api/v1/write`): a
//! snappy-compressed protobuf `WriteRequest` of time series, each with
//! labels and samples. Exemplars, native histograms and metadata are not
//! stored (their fields are skipped).

pub mod send;

use crate::relabel::Labels;
use crate::scrape::parse::{valid_label_name, valid_metric_name};
use prost::Message;

#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WriteError {
    #[error("snappy: {0}")]
    Snappy(String),
    #[error("protobuf: {0}")]
    Protobuf(String),
    #[error("series {series}: {msg}")]
    Invalid { series: String, msg: String },
}

/// Largest request accepted, compressed and decompressed.
pub const MAX_BODY: usize = 32 << 20;
pub const MAX_DECOMPRESSED: usize = 128 << 20;

/// The samples of a request body: (labels with `__name__`, ms, value).
pub fn decode(body: &[u8]) -> Result<Vec<(Labels, i64, f64)>, WriteError> {
    let len = snap::raw::decompress_len(body).map_err(|e| WriteError::Snappy(e.to_string()))?;
    if len > MAX_DECOMPRESSED {
        return Err(WriteError::Snappy(format!(
            "decompresses to {len} bytes, more than {MAX_DECOMPRESSED}"
        )));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| WriteError::Snappy(e.to_string()))?;
    let req =
        WriteRequest::decode(raw.as_slice()).map_err(|e| WriteError::Protobuf(e.to_string()))?;
    let mut out = Vec::new();
    for ts in req.timeseries {
        let mut labels = Labels::new();
        for l in ts.labels {
            let problem = if !valid_label_name(&l.name) {
                Some(format!("invalid label name {:?}", l.name))
            } else if labels.contains_key(&l.name) {
                Some(format!("duplicate label name {:?}", l.name))
            } else {
                None
            };
            if let Some(msg) = problem {
                return Err(WriteError::Invalid {
                    series: describe(&labels),
                    msg,
                });
            }
            // As Prometheus: an empty value is the same as no label.
            if !l.value.is_empty() {
                labels.insert(l.name, l.value);
            }
        }
        match labels.get("__name__") {
            Some(n) if valid_metric_name(n) => {}
            Some(n) => {
                return Err(WriteError::Invalid {
                    series: describe(&labels),
                    msg: format!("invalid metric name {n:?}"),
                })
            }
            None => {
                return Err(WriteError::Invalid {
                    series: describe(&labels),
                    msg: "no __name__ label".into(),
                })
            }
        }
        for s in ts.samples {
            out.push((labels.clone(), s.timestamp, s.value));
        }
    }
    Ok(out)
}

/// A request body: the series in order, each with its samples, as
/// protobuf compressed with snappy's block format.
pub fn encode(timeseries: Vec<TimeSeries>) -> Vec<u8> {
    let raw = WriteRequest { timeseries }.encode_to_vec();
    // Compressing a buffer we own cannot fail but for impossible sizes,
    // which MAX_RECORD-bounded batches never reach.
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .unwrap_or_default()
}

fn describe(labels: &Labels) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(series: Vec<TimeSeries>) -> Vec<u8> {
        encode(series)
    }

    fn label(name: &str, value: &str) -> Label {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn samples_with_their_labels() {
        let got = decode(&body(vec![TimeSeries {
            labels: vec![
                label("__name__", "up"),
                label("job", "node"),
                label("empty", ""),
            ],
            samples: vec![
                Sample {
                    value: 1.0,
                    timestamp: 1000,
                },
                Sample {
                    value: 0.0,
                    timestamp: 2000,
                },
            ],
        }]))
        .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].0.len(), 2, "the empty label is dropped");
        assert_eq!((got[1].1, got[1].2), (2000, 0.0));
    }

    #[test]
    fn bad_bodies_are_errors() {
        assert!(matches!(decode(b"not snappy"), Err(WriteError::Snappy(_))));
        let garbage = snap::raw::Encoder::new()
            .compress_vec(&[0xff, 0xff, 0xff])
            .unwrap();
        assert!(matches!(decode(&garbage), Err(WriteError::Protobuf(_))));
        let no_name = body(vec![TimeSeries {
            labels: vec![label("job", "x")],
            samples: vec![],
        }]);
        assert!(decode(&no_name)
            .unwrap_err()
            .to_string()
            .contains("no __name__"));
        let dup = body(vec![TimeSeries {
            labels: vec![label("__name__", "x"), label("a", "1"), label("a", "2")],
            samples: vec![],
        }]);
        assert!(decode(&dup).unwrap_err().to_string().contains("duplicate"));
    }
}
