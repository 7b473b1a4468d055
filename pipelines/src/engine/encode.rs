//! Table encodings shared by publishing and the demo-data generator: Parquet (zstd, fixed writer
//! settings, so the same batches always give the same bytes) and CSV for CRM imports.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use parquet::arrow::{ArrowWriter, AsyncArrowWriter};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::error::{FlywheelError, Result};
use crate::storage::{ObjectWriter, Root};

/// Parquet bytes of a table: one file, zstd, fixed writer settings so that the same batches give
/// the same bytes.
pub fn parquet_bytes(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Bytes> {
    let mut buf = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buf, schema.clone(), Some(parquet_props()))
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

/// The writer settings of every Parquet file flywheel publishes or exports.
pub fn parquet_props() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid zstd level"),
        ))
        .set_max_row_group_row_count(Some(1_048_576))
        .set_created_by(format!("flywheel {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// A Parquet file written as its batches come (streamed to storage, a row group at a time), for
/// tables too large to hold: the same settings give the same row groups as [`parquet_bytes`].
pub struct ParquetSink {
    writer: AsyncArrowWriter<ObjectWriter>,
    rel: String,
    shown: String,
    rows: u64,
}

impl ParquetSink {
    pub fn create(
        root: &Root,
        rel: &str,
        schema: SchemaRef,
        props: WriterProperties,
    ) -> Result<ParquetSink> {
        let shown = root.display(rel);
        let writer = AsyncArrowWriter::try_new(root.writer(rel), schema, Some(props))
            .map_err(|e| unwritable(&shown, e))?;
        Ok(ParquetSink {
            writer,
            rel: rel.to_string(),
            shown,
            rows: 0,
        })
    }

    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        let shown = &self.shown;
        self.writer
            .write(batch)
            .await
            .map_err(|e| unwritable(shown, e))
    }

    /// Finish the file; returns its path below the root and its row count.
    pub async fn finish(mut self) -> Result<(String, u64)> {
        let shown = &self.shown;
        self.writer
            .finish()
            .await
            .map_err(|e| unwritable(shown, e))?;
        Ok((self.rel, self.rows))
    }
}

fn unwritable(shown: &str, e: impl std::fmt::Display) -> FlywheelError {
    FlywheelError::storage(
        shown,
        format!("cannot write this Parquet file ({e}); is the location writable and not full?"),
    )
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
