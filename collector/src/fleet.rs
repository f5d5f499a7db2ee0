//! What a collector tells a stateless query node (`fleet:` in the query's
//! configuration): the data only it holds — its head and the blocks and
//! log parts not yet in object storage — as Arrow IPC streams, and its
//! external labels. The query node names the blocks and parts it already
//! reads from the bucket; everything else the collector has is sent, so a
//! block uploaded between the node's listing and its request is sent too.

use crate::relabel::Labels;
use crate::store::head::{Matcher, Selected};
use crate::store::record::MetricMeta;
use arrow_array::builder::{ArrayBuilder, Float64Builder, Int64Builder, StringDictionaryBuilder};
use arrow_array::types::Int32Type;
use arrow_array::{Array, Float64Array, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// The IPC stream's media type.
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";
/// Schema metadata key of a log stream: JSON `[[part, [replaced parts]]]`.
const PARTS_KEY: &str = "carbonio.parts";

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("Arrow IPC: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("bad matcher {name}{op}{value:?}: {msg}")]
    Matcher {
        name: String,
        op: String,
        value: String,
        msg: String,
    },
    #[error("bad stream: {0}")]
    Stream(String),
}

/// A label matcher as sent: `op` is one of `=`, `!=`, `=~`, `!~`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WireMatcher {
    pub name: String,
    pub op: String,
    pub value: String,
}

impl WireMatcher {
    pub fn of(m: &Matcher) -> WireMatcher {
        let (name, op, value) = match m {
            Matcher::Equal(n, v) => (n, "=", v.clone()),
            Matcher::NotEqual(n, v) => (n, "!=", v.clone()),
            Matcher::Re(n, re) => (n, "=~", unanchored(re.as_str())),
            Matcher::NotRe(n, re) => (n, "!~", unanchored(re.as_str())),
        };
        WireMatcher {
            name: name.clone(),
            op: op.into(),
            value,
        }
    }

    pub fn to_matcher(&self) -> Result<Matcher, FleetError> {
        let bad = |msg: String| FleetError::Matcher {
            name: self.name.clone(),
            op: self.op.clone(),
            value: self.value.clone(),
            msg,
        };
        match self.op.as_str() {
            "=" => Ok(Matcher::Equal(self.name.clone(), self.value.clone())),
            "!=" => Ok(Matcher::NotEqual(self.name.clone(), self.value.clone())),
            "=~" | "!~" => Matcher::regex(&self.name, &self.value, self.op == "!~")
                .map_err(|e| bad(e.to_string())),
            _ => Err(bad("unknown operator".into())),
        }
    }
}

/// `Matcher::regex` anchors patterns as `^(?:...)$`; this is the pattern.
fn unanchored(anchored: &str) -> String {
    anchored
        .strip_prefix("^(?:")
        .and_then(|s| s.strip_suffix(")$"))
        .unwrap_or(anchored)
        .to_string()
}

/// `POST /api/v1/fleet/select` and `/series`: matchers, a time range in
/// milliseconds, and the blocks the query node reads itself.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct SelectRequest {
    pub matchers: Vec<WireMatcher>,
    pub start: i64,
    pub end: i64,
    #[serde(default)]
    pub known_blocks: Vec<String>,
}

/// `POST /api/v1/fleet/logs`: a time range in nanoseconds and the parts the
/// query node reads itself.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct LogsRequest {
    pub start_ns: i64,
    pub end_ns: i64,
    #[serde(default)]
    pub known_parts: Vec<String>,
}

/// `GET /api/v1/fleet/info`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Info {
    pub external_labels: Labels,
}

/// `GET /api/v1/fleet/metadata`.
pub type Metadata = BTreeMap<String, BTreeSet<MetricMeta>>;

fn samples_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new(
            "labels",
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            false,
        ),
        Field::new("t", DataType::Int64, false),
        Field::new("v", DataType::Float64, false),
    ]))
}

/// Rows per batch of a samples stream.
const BATCH_ROWS: usize = 65_536;

/// Series and their samples as an IPC stream: one row per sample, the
/// series' labels as a dictionary-encoded JSON object.
pub fn encode_selected(selected: &[Selected]) -> Result<Vec<u8>, FleetError> {
    let schema = samples_schema();
    let mut out = Vec::new();
    let mut writer = arrow_ipc::writer::StreamWriter::try_new(&mut out, &schema)?;
    let mut labels = StringDictionaryBuilder::<Int32Type>::new();
    let mut t = Int64Builder::new();
    let mut v = Float64Builder::new();
    for (series, samples) in selected {
        let json = serde_json::to_string(series).unwrap_or_default();
        for (ts, value) in samples {
            labels.append_value(&json);
            t.append_value(*ts);
            v.append_value(*value);
            if t.len() >= BATCH_ROWS {
                writer.write(&samples_batch(&schema, &mut labels, &mut t, &mut v)?)?;
            }
        }
    }
    if !t.is_empty() {
        writer.write(&samples_batch(&schema, &mut labels, &mut t, &mut v)?)?;
    }
    writer.finish()?;
    drop(writer);
    Ok(out)
}

fn samples_batch(
    schema: &Arc<Schema>,
    labels: &mut StringDictionaryBuilder<Int32Type>,
    t: &mut Int64Builder,
    v: &mut Float64Builder,
) -> Result<RecordBatch, FleetError> {
    Ok(RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(labels.finish()),
            Arc::new(t.finish()),
            Arc::new(v.finish()),
        ],
    )?)
}

/// The series of an `encode_selected` stream, in stream order.
pub fn decode_selected(bytes: &[u8]) -> Result<Vec<Selected>, FleetError> {
    let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
    let mut out: Vec<Selected> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for batch in reader {
        let batch = batch?;
        let bad = || FleetError::Stream("not a samples stream".into());
        let dict = batch
            .column(0)
            .as_any()
            .downcast_ref::<arrow_array::DictionaryArray<Int32Type>>()
            .ok_or_else(bad)?;
        let names = dict
            .values()
            .as_any()
            .downcast_ref::<arrow_array::StringArray>()
            .ok_or_else(bad)?;
        let t = batch
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(bad)?;
        let v = batch
            .column(2)
            .as_any()
            .downcast_ref::<Float64Array>()
            .ok_or_else(bad)?;
        for (row, key) in dict.keys().iter().enumerate() {
            let key = key.ok_or_else(bad)?;
            let json = names.value(usize::try_from(key).map_err(|_| bad())?);
            let pos = match index.get(json) {
                Some(p) => *p,
                None => {
                    let labels: Labels = serde_json::from_str(json)
                        .map_err(|e| FleetError::Stream(format!("labels: {e}")))?;
                    out.push((labels, Vec::new()));
                    index.insert(json.to_string(), out.len() - 1);
                    out.len() - 1
                }
            };
            out[pos].1.push((t.value(row), v.value(row)));
        }
    }
    Ok(out)
}

/// Log rows as an IPC stream, with the parts they came from.
pub fn encode_logs(
    batches: &[RecordBatch],
    parts: &crate::store::logs::PartNames,
) -> Result<Vec<u8>, FleetError> {
    let schema = crate::store::logs::schema();
    let mut meta = HashMap::new();
    meta.insert(
        PARTS_KEY.to_string(),
        serde_json::to_string(parts).unwrap_or_default(),
    );
    let schema = Arc::new(schema.as_ref().clone().with_metadata(meta));
    let mut out = Vec::new();
    let mut writer = arrow_ipc::writer::StreamWriter::try_new(&mut out, &schema)?;
    for b in batches {
        writer.write(&RecordBatch::try_new(schema.clone(), b.columns().to_vec())?)?;
    }
    writer.finish()?;
    drop(writer);
    Ok(out)
}

/// The rows and parts of an `encode_logs` stream; batches carry the plain
/// logs schema.
pub fn decode_logs(bytes: &[u8]) -> Result<LogsReply, FleetError> {
    let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
    let parts = match reader.schema().metadata().get(PARTS_KEY) {
        Some(json) => serde_json::from_str(json)
            .map_err(|e| FleetError::Stream(format!("{PARTS_KEY}: {e}")))?,
        None => Vec::new(),
    };
    let plain = crate::store::logs::schema();
    let mut batches = Vec::new();
    for b in reader {
        batches.push(RecordBatch::try_new(plain.clone(), b?.columns().to_vec())?);
    }
    Ok(LogsReply { batches, parts })
}

#[derive(Debug, Default)]
pub struct LogsReply {
    pub batches: Vec<RecordBatch>,
    /// The parts the rows came from.
    pub parts: crate::store::logs::PartNames,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relabel::labels_of as l;

    #[test]
    fn samples_round_trip_through_ipc() {
        let selected: Vec<Selected> = vec![
            (
                l(&[("__name__", "up"), ("job", "a")]),
                vec![(1, 1.0), (2, f64::NAN)],
            ),
            (l(&[("__name__", "up"), ("job", "b\"q")]), vec![(3, -0.5)]),
        ];
        let back = decode_selected(&encode_selected(&selected).unwrap()).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].0, selected[0].0);
        assert_eq!(back[0].1[0], (1, 1.0));
        assert!(back[0].1[1].1.is_nan());
        assert_eq!(back[1], selected[1]);
        assert!(decode_selected(b"not arrow").is_err());
    }

    #[test]
    fn matchers_round_trip() {
        for m in [
            Matcher::Equal("a".into(), "x".into()),
            Matcher::NotEqual("a".into(), "".into()),
            Matcher::regex("a", "x|y.*", false).unwrap(),
            Matcher::regex("a", "(z)", true).unwrap(),
        ] {
            let w = WireMatcher::of(&m);
            let back = WireMatcher::of(&w.to_matcher().unwrap());
            assert_eq!(w, back);
        }
        assert_eq!(
            WireMatcher::of(&Matcher::regex("a", "x|y", false).unwrap()).value,
            "x|y"
        );
        let bad = WireMatcher {
            name: "a".into(),
            op: "=~".into(),
            value: "(".into(),
        };
        assert!(bad.to_matcher().is_err());
    }
}
