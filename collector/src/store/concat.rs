//! Joins Parquet files of the same schema into one by copying their row
//! groups' column chunks as they are (what `parquet-concat` does): no
//! decoding, no recompression. Compaction uses it for an hour whose files
//! follow each other in time, so the result stays sorted. Their token
//! filters are joined and written after the row groups.

use super::tokens::{self, RowGroupFilter};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::ParquetError;
use parquet::file::metadata::{KeyValue, ParquetMetaDataReader};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

/// Writes `inputs`' row groups, in order, to `out`; returns the row count.
/// The first input's key-value metadata (the Arrow schema) is kept, and
/// the inputs' token filters are joined in the same order; fsynced.
pub fn concat(inputs: &[&Path], out: &Path) -> Result<usize, ParquetError> {
    let files = inputs
        .iter()
        .map(|p| {
            let f = File::open(p)?;
            let meta = ParquetMetaDataReader::new().parse_and_finish(&f)?;
            Ok((f, meta))
        })
        .collect::<Result<Vec<_>, ParquetError>>()?;
    let Some((_, first)) = files.first() else {
        return Err(ParquetError::General("nothing to concatenate".into()));
    };
    let schema = first.file_metadata().schema();
    if let Some((_, other)) = files
        .iter()
        .find(|(_, m)| m.file_metadata().schema() != schema)
    {
        return Err(ParquetError::General(format!(
            "schemas differ: {schema:?} vs {:?}",
            other.file_metadata().schema()
        )));
    }
    let root = first.file_metadata().schema_descr().root_schema_ptr();
    let mut kv: Vec<KeyValue> = first
        .file_metadata()
        .key_value_metadata()
        .into_iter()
        .flatten()
        .filter(|e| e.key != tokens::RANGE_KEY && e.key != tokens::BASE64_KEY)
        .cloned()
        .collect();
    let filters: Vec<RowGroupFilter> = files
        .iter()
        .map(|(f, m)| {
            let size = f.metadata()?.len();
            let read = |offset, len| tokens::read_range(f, offset, len);
            let unknown = || vec![RowGroupFilter::Unknown; m.num_row_groups()];
            Ok(tokens::of_file(m, size, read).unwrap_or_else(unknown))
        })
        .collect::<Result<Vec<_>, ParquetError>>()?
        .into_iter()
        .flatten()
        .collect();
    let mut writer = SerializedFileWriter::new(
        File::create(out)?,
        root,
        Arc::new(WriterProperties::builder().build()),
    )?;
    let mut rows = 0;
    for (file, meta) in &files {
        for rg in meta.row_groups() {
            let mut out_rg = writer.next_row_group()?;
            for column in rg.columns() {
                out_rg.append_column(
                    file,
                    ColumnCloseResult {
                        bytes_written: column.compressed_size() as u64,
                        rows_written: rg.num_rows() as u64,
                        metadata: column.clone(),
                        bloom_filter: None,
                        column_index: None,
                        offset_index: None,
                    },
                )?;
            }
            out_rg.close()?;
            rows += rg.num_rows() as usize;
        }
    }
    let at = writer.bytes_written();
    kv.push(tokens::embed(&filters, at, |b| writer.write_all(b))?);
    for entry in kv {
        writer.append_key_value_metadata(entry);
    }
    // Durable before the compaction deletes its inputs.
    writer.into_inner()?.sync_all()?;
    Ok(rows)
}
