//! Atomic-per-run publishing. Every output file is first written under
//! `<output>/_staging/<run id>/`, checked, and only when all of them are there is each output
//! folder `<table>/dt=D/` replaced by its staged files; the run manifest is written last. A run
//! that fails before the commit leaves the previous outputs of the date untouched.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::error::{FlywheelError, Result};
use crate::storage::Root;

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

#[derive(Debug, Clone, serde::Serialize)]
pub struct PublishedFile {
    pub path: String,
    pub bytes: u64,
    pub rows: Option<u64>,
}

pub struct Publisher {
    root: Root,
    staging: String,
    /// (final folder, file name, rows)
    staged: Vec<(String, String, Option<u64>, u64)>,
}

impl Publisher {
    pub fn new(root: Root, run_id: &str) -> Publisher {
        Publisher {
            root,
            staging: format!("_staging/{run_id}"),
            staged: Vec::new(),
        }
    }

    pub async fn stage(
        &mut self,
        folder: &str,
        file: &str,
        bytes: Bytes,
        rows: Option<u64>,
    ) -> Result<()> {
        let len = bytes.len() as u64;
        self.root
            .put(&format!("{}/{folder}/{file}", self.staging), bytes)
            .await?;
        self.staged
            .push((folder.to_string(), file.to_string(), rows, len));
        Ok(())
    }

    pub async fn stage_table(
        &mut self,
        folder: &str,
        schema: &SchemaRef,
        batches: &[RecordBatch],
    ) -> Result<()> {
        let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
        let bytes = parquet_bytes(schema, batches)?;
        self.stage(folder, "part-00000.parquet", bytes, Some(rows))
            .await
    }

    /// Replace each staged folder's published files with the staged ones.
    pub async fn commit(self) -> Result<Vec<PublishedFile>> {
        let mut folders: Vec<&String> = self.staged.iter().map(|(f, ..)| f).collect();
        folders.sort();
        folders.dedup();
        for folder in folders {
            self.root.delete_prefix(&format!("{folder}/")).await?;
        }
        let mut out = Vec::new();
        for (folder, file, rows, len) in &self.staged {
            let from = self.root.key(&format!("{}/{folder}/{file}", self.staging));
            let to = self.root.key(&format!("{folder}/{file}"));
            self.root.rename_key(&from, &to).await?;
            out.push(PublishedFile {
                path: format!("{folder}/{file}"),
                bytes: *len,
                rows: *rows,
            });
        }
        self.root.delete_prefix(&self.staging).await?;
        Ok(out)
    }

    /// Remove whatever was staged (a failed run publishes nothing).
    pub async fn abort(self) {
        if let Err(e) = self.root.delete_prefix(&self.staging).await {
            tracing::warn!(error = %e, "could not remove the staging folder of a failed run");
        }
    }
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
