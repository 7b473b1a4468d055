//! Table encodings shared by publishing and the demo-data generator: Parquet (zstd, fixed writer
//! settings, so the same batches always give the same bytes) and CSV for CRM imports.

use arrow::array::{make_array, ArrayRef, RecordBatch};
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
            .write(&without_empty_null_buffers(b)?)
            .map_err(|e| FlywheelError::internal(format!("parquet writer: {e}")))?;
    }
    writer
        .close()
        .map_err(|e| FlywheelError::internal(format!("parquet writer: {e}")))?;
    Ok(Bytes::from(buf))
}

/// `batch` with the null buffers that mark no null taken off. The Parquet writer cuts a nullable
/// column's pages differently when a batch carries a null buffer, even one without a null; and
/// whether an engine's batch carries one depends on the batches it was built from (a merge's
/// `interleave` gives one when any batch it draws from has a null), which can depend on timing.
/// Written without them, a file's bytes depend on its values and batch sizes only.
pub fn without_empty_null_buffers(batch: &RecordBatch) -> Result<RecordBatch> {
    let empty = |c: &ArrayRef| c.nulls().is_some_and(|n| n.null_count() == 0);
    if !batch.columns().iter().any(empty) {
        return Ok(batch.clone());
    }
    let columns = batch
        .columns()
        .iter()
        .map(|c| match empty(c) {
            true => Ok(make_array(c.to_data().into_builder().nulls(None).build()?)),
            false => Ok(c.clone()),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// Rows per row group of every Parquet file flywheel publishes or exports.
const ROW_GROUP_ROWS: usize = 1_048_576;

/// Batch sizes that the writer of [`parquet_props`] encodes into the same bytes as one batch of
/// all `rows` rows. The writer cuts each batch it is given into mini-batches (1024 rows; 20,000
/// for a column without nulls) from the batch's start, and decides page boundaries after each:
/// so every batch boundary must fall on a multiple of both sizes within its row group (pieces of
/// 640,000 rows), or on a row group's end.
pub fn one_batch_cuts(rows: usize) -> Vec<usize> {
    use parquet::file::properties::{
        DEFAULT_DATA_PAGE_ROW_COUNT_LIMIT as PAGE_ROWS, DEFAULT_WRITE_BATCH_SIZE as MINI_ROWS,
    };
    let gcd = |mut a: usize, mut b: usize| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    let piece = MINI_ROWS / gcd(MINI_ROWS, PAGE_ROWS) * PAGE_ROWS;
    let mut cuts = Vec::new();
    let mut left = rows;
    while left > 0 {
        let mut group = left.min(ROW_GROUP_ROWS);
        left -= group;
        while group > 0 {
            let n = group.min(piece);
            cuts.push(n);
            group -= n;
        }
    }
    cuts
}

/// The writer settings of every Parquet file flywheel publishes or exports.
pub fn parquet_props() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid zstd level"),
        ))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
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
            .write(&without_empty_null_buffers(batch)?)
            .await
            .map_err(|e| unwritable(shown, e))
    }

    /// Finish the file; returns its path below the root and its row count.
    pub async fn finish(self) -> Result<(String, u64)> {
        let (rel, rows, _) = self.finish_sized().await?;
        Ok((rel, rows))
    }

    /// Finish the file; returns its path below the root, its row count and its size in bytes.
    pub async fn finish_sized(mut self) -> Result<(String, u64, u64)> {
        let shown = &self.shown;
        self.writer
            .finish()
            .await
            .map_err(|e| unwritable(shown, e))?;
        let bytes = self.writer.bytes_written() as u64;
        Ok((self.rel, self.rows, bytes))
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Float64Array, Int32Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    /// The same values in the same batches give the same bytes whether or not a batch carries a
    /// null buffer without a null (a slice of a column with a null elsewhere carries one; the
    /// writer cut such a column's pages differently, and `referral_attribution`'s file changed
    /// between runs). Fails without `without_empty_null_buffers`.
    #[test]
    fn null_buffers_without_nulls_do_not_change_the_bytes() {
        use arrow::array::{Array, StringArray};
        let n: usize = 300_000;
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, true)]));
        let whole = StringArray::from_iter(
            (0..n).map(|i| (i != 250_000).then(|| format!("SC{:02}", (i * 7919) % 40))),
        );
        let batches = |with_buffers: bool| -> Vec<RecordBatch> {
            (0..n.div_ceil(8192))
                .map(|k| {
                    let s = whole.slice(k * 8192, 8192.min(n - k * 8192));
                    let a: ArrayRef = if with_buffers || s.null_count() > 0 {
                        Arc::new(s)
                    } else {
                        Arc::new(StringArray::from_iter_values(s.iter().flatten()))
                    };
                    RecordBatch::try_new(schema.clone(), vec![a]).unwrap()
                })
                .collect()
        };
        let (with, without) = (batches(true), batches(false));
        assert!(with[0].column(0).nulls().is_some());
        assert!(without[0].column(0).nulls().is_none());
        assert_eq!(
            parquet_bytes(&schema, &with).unwrap(),
            parquet_bytes(&schema, &without).unwrap()
        );
    }

    #[test]
    fn batches_cut_by_one_batch_cuts_encode_as_one_batch() {
        let n = 2_300_000;
        let schema = Arc::new(Schema::new(vec![
            Field::new("dense", DataType::Float64, true),
            Field::new("sparse", DataType::Int32, true),
        ]));
        let dense: ArrayRef = Arc::new(Float64Array::from_iter_values(
            (0..n).map(|i| ((i * 7919) % 100_003) as f64 / 3.0),
        ));
        let sparse: ArrayRef = Arc::new(Int32Array::from_iter(
            (0..n).map(|i| (i % 3 != 0).then_some((i % 5000) as i32)),
        ));
        let whole = RecordBatch::try_new(schema.clone(), vec![dense, sparse]).unwrap();
        let cuts = one_batch_cuts(n);
        assert_eq!(cuts.iter().sum::<usize>(), n);
        assert_eq!(&cuts[..3], &[640_000, 408_576, 640_000]);
        let mut at = 0;
        let pieces: Vec<RecordBatch> = cuts
            .iter()
            .map(|c| {
                at += c;
                whole.slice(at - c, *c)
            })
            .collect();
        let one = parquet_bytes(&schema, std::slice::from_ref(&whole)).unwrap();
        assert_eq!(parquet_bytes(&schema, &pieces).unwrap(), one);
        // Batches of 8192 rows do not: pages of columns without nulls follow the batches.
        let small: Vec<RecordBatch> = (0..n.div_ceil(8192))
            .map(|k| whole.slice(k * 8192, 8192.min(n - k * 8192)))
            .collect();
        assert_ne!(parquet_bytes(&schema, &small).unwrap(), one);
    }
}
