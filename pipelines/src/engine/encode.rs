//! Table encodings shared by publishing and the demo-data generator: Parquet (zstd, fixed writer
//! settings, so the same batches always give the same bytes) and CSV for CRM imports.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::error::{FlywheelError, Result};

/// Parquet bytes of a table: one file, zstd, fixed writer settings so that the same batches give
/// the same bytes.
pub fn parquet_bytes(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Bytes> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid zstd level"),
        ))
        .set_max_row_group_row_count(Some(1_048_576))
        .set_created_by(format!("flywheel {}", env!("CARGO_PKG_VERSION")))
        .build();
    let mut buf = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buf, schema.clone(), Some(props))
        .map_err(|e| FlywheelError::internal(format!("parquet writer: {e}")))?;
    for b in batches {
        writer
            .write(b)
            .map_err(|e| FlywheelError::internal(format!("parquet writer: {e}")))?;
    }
    writer
        .close()
        .map_err(|e| FlywheelError::internal(format!("parquet writer: {e}")))?;
    Ok(Bytes::from(buf))
}

/// Parquet bytes of several tables, encoded on `workers` threads, in input order.
pub fn parquet_bytes_parallel(
    tables: Vec<(&SchemaRef, &[RecordBatch])>,
    workers: usize,
) -> Result<Vec<Bytes>> {
    crate::parallel::map_ordered(&tables, workers, |(schema, batches)| {
        parquet_bytes(schema, batches)
    })
}

/// CSV bytes of a table for CRM imports: UTF-8, comma-separated, header row, RFC 4180 quoting,
/// ISO-8601 dates, `.` decimals.
pub fn csv_bytes(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Bytes> {
    let mut buf = Vec::new();
    {
        let mut writer = arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut buf);
        if batches.is_empty() {
            writer.write(&RecordBatch::new_empty(schema.clone()))?;
        }
        for b in batches {
            writer.write(b)?;
        }
    }
    Ok(Bytes::from(buf))
}
