//! A table computed into the scratch area instead of memory: where its Parquet file is, its
//! schema, and the row counts of the batches that produced it. Large tables (customer_features,
//! the scores, the attribution) are stored so that a run's memory does not grow with them; they
//! are read back batch by batch, in the order they were written, by the steps that need them
//! (scoring, checking, publishing).

use std::collections::VecDeque;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::stream::BoxStream;
use futures::StreamExt;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};

use super::encode::ParquetSink;
use super::scratch::Scratch;
use crate::error::{FlywheelError, Result};

#[derive(Clone)]
pub struct Stored {
    scratch: Scratch,
    /// The file, below the scratch folder.
    pub rel: String,
    pub schema: SchemaRef,
    /// Rows of each batch as it was written: [`Stored::batches`] cuts the file's batches back to
    /// these, so a writer fed with them sees what it would have seen from the producer.
    pub batch_rows: Vec<usize>,
    /// Per batch as written, per column: whether it carried a validity buffer. Parquet does not
    /// keep that (a column read back without nulls has none), but the Parquet writer encodes a
    /// column with a validity buffer in other pages than one without, so reading back restores
    /// it. Empty when the batches are cut anew ([`Stored::cut_as`]).
    validity: std::sync::Arc<Vec<Vec<bool>>>,
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stored")
            .field("rel", &self.rel)
            .field("rows", &self.rows())
            .finish()
    }
}

/// Batches read back from a stored table.
pub type Batches = BoxStream<'static, Result<RecordBatch>>;

impl Stored {
    pub fn rows(&self) -> u64 {
        self.batch_rows.iter().map(|n| *n as u64).sum()
    }

    /// Register the table in `ctx` under `name`, read by the engine from its location.
    pub fn register(&self, ctx: &datafusion::prelude::SessionContext, name: &str) -> Result<()> {
        self.scratch
            .register(ctx, name, &self.rel, self.schema.clone())
    }

    /// The same table, read back in batches of the sizes `cuts` (they add up to its rows).
    pub fn cut_as(mut self, cuts: Vec<usize>) -> Result<Stored> {
        if cuts.iter().sum::<usize>() as u64 != self.rows() {
            return Err(FlywheelError::internal(
                "the new batch sizes of a stored table do not add up to its rows",
            ));
        }
        self.batch_rows = cuts;
        self.validity = Default::default();
        Ok(self)
    }

    /// The table's batches in the order they were written, cut to the batches that produced it
    /// (`columns`: only those, in the table's order; None: all).
    pub async fn batches(&self, columns: Option<&[&str]>) -> Result<Batches> {
        let schema = match columns {
            None => self.schema.clone(),
            Some(names) => {
                let mut keep = Vec::with_capacity(names.len());
                for (i, f) in self.schema.fields().iter().enumerate() {
                    if names.contains(&f.name().as_str()) {
                        keep.push(i);
                    }
                }
                std::sync::Arc::new(self.schema.project(&keep)?)
            }
        };
        let file = self.scratch.read(&self.rel).await?;
        let shown = self.scratch.display_file(&self.rel);
        let unreadable = move |e: &dyn std::fmt::Display| {
            FlywheelError::storage(
                &shown,
                format!("a scratch file cannot be read back ({e}); is the scratch area intact?"),
            )
        };
        let builder = ParquetRecordBatchStreamBuilder::new(file)
            .await
            .map_err(|e| unreadable(&e))?;
        let roots: Vec<usize> = schema
            .fields()
            .iter()
            .filter_map(|f| self.schema.index_of(f.name()).ok())
            .collect();
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots.clone());
        let stream = builder
            .with_projection(mask)
            .build()
            .map_err(|e| unreadable(&e))?;
        let mut cut = Rechunk::new(&self.batch_rows);
        let (validity, mut written) = (self.validity.clone(), 0usize);
        let mut restore = move |b: RecordBatch| -> Result<RecordBatch> {
            let Some(had) = validity.get(written) else {
                return Ok(b);
            };
            written += 1;
            with_validity(b, roots.iter().map(|&i| had[i]))
        };
        let stream = stream
            .map(move |b| {
                let b = b.map_err(|e| unreadable(&e))?;
                Ok(RecordBatch::try_new(schema.clone(), b.columns().to_vec())?)
            })
            .map(move |b: Result<RecordBatch>| match b {
                Ok(b) => cut.push(b),
                Err(e) => Err(e),
            })
            .flat_map(move |out: Result<Vec<RecordBatch>>| {
                let items: Vec<Result<RecordBatch>> = match out {
                    Ok(v) => v.into_iter().map(&mut restore).collect(),
                    Err(e) => vec![Err(e)],
                };
                futures::stream::iter(items)
            });
        Ok(stream.boxed())
    }
}

/// The result of `df` streamed into the scratch file `rel` as the engine produces it; `each` sees
/// every batch on the way (e.g. to keep a column in memory).
///
/// The plan's last operator (a sort's merge, a projection) runs on a task of its own
/// ([`read_ahead`]) and this one encodes: at a job's end, when its partitions are done and one
/// merge is left, the merge and the encoding run on two threads instead of taking turns on one.
pub async fn compute(
    ctx: &datafusion::prelude::SessionContext,
    df: datafusion::prelude::DataFrame,
    (scratch, rel): (&Scratch, &str),
    mut each: impl FnMut(&RecordBatch) -> Result<()>,
) -> Result<Stored> {
    let plan = df.create_physical_plan().await?;
    let mut file = StoredWriter::create(scratch, rel, plan.schema())?;
    let batches = datafusion::physical_plan::execute_stream(plan, ctx.task_ctx())?;
    let mut batches = read_ahead(batches.map(|b| b.map_err(FlywheelError::from)).boxed(), 4);
    while let Some(b) = batches.next().await {
        let b = b?;
        each(&b)?;
        file.write(&b).await?;
    }
    file.finish().await
}

/// `batches` pulled on a task of their own, at most `ahead` batches before they are taken: the
/// work that produces them (decoding, a plan's last operator) runs beside the work that takes
/// them instead of between its steps. Dropping the stream stops the task; a task that panicked
/// ends the stream with an error, never early as if the batches were all there; an error ends
/// it once the task is over.
pub fn read_ahead(mut batches: Batches, ahead: usize) -> Batches {
    let (tx, rx) = tokio::sync::mpsc::channel(ahead.max(1));
    let task = AbortOnDrop(Some(tokio::spawn(async move {
        while let Some(b) = batches.next().await {
            let failed = b.is_err();
            if tx.send(b).await.is_err() || failed {
                break;
            }
        }
    })));
    futures::stream::unfold(Some((rx, task)), |state| async move {
        let (mut rx, task) = state?;
        match rx.recv().await {
            // The producer stops at an error: wait until it has let go of what produced the
            // batches (a plan's memory, which a job run again after ResourcesExhausted needs).
            Some(Err(e)) => {
                let _ = task.finished().await;
                Some((Err(e), None))
            }
            Some(b) => Some((b, Some((rx, task)))),
            None => match task.finished().await {
                Ok(()) => None,
                Err(e) => Some((Err(e), None)),
            },
        }
    })
    .fuse()
    .boxed()
}

/// A task stopped when its handle is dropped (an error of the consumer stops the producer).
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl AbortOnDrop {
    /// Wait for the task's end: a task that panicked ended the channel early, which must not
    /// pass for the end of the batches.
    async fn finished(mut self) -> Result<()> {
        match self.0.take() {
            Some(task) => task
                .await
                .map_err(|e| FlywheelError::internal(format!("the batches stopped coming: {e}"))),
            None => Ok(()),
        }
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// Batches per thread in a group of [`next_group`].
pub const BATCHES_PER_THREAD: usize = 4;

/// The next batches of `stream`, [`BATCHES_PER_THREAD`] per thread of `threads` (None at its
/// end): the unit of work that ordered parallel steps (scoring, predicting) take from a stored
/// table.
pub async fn next_group(stream: &mut Batches, threads: usize) -> Result<Option<Vec<RecordBatch>>> {
    let mut group = Vec::new();
    while group.len() < threads.max(1) * BATCHES_PER_THREAD {
        match stream.next().await {
            Some(b) => group.push(b?),
            None => break,
        }
    }
    Ok((!group.is_empty()).then_some(group))
}

/// Writes a stored table batch by batch, remembering the batch sizes.
pub struct StoredWriter {
    scratch: Scratch,
    rel: String,
    schema: SchemaRef,
    sink: ParquetSink,
    batch_rows: Vec<usize>,
    validity: Vec<Vec<bool>>,
}

impl StoredWriter {
    pub fn create(scratch: &Scratch, rel: &str, schema: SchemaRef) -> Result<StoredWriter> {
        Ok(StoredWriter {
            scratch: scratch.clone(),
            rel: rel.to_string(),
            sink: scratch.writer(rel, schema.clone())?,
            schema,
            batch_rows: Vec::new(),
            validity: Vec::new(),
        })
    }

    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.batch_rows.push(batch.num_rows());
        let had = batch
            .columns()
            .iter()
            .map(|c| c.nulls().is_some())
            .collect();
        self.validity.push(had);
        self.sink.write(batch).await
    }

    pub async fn finish(self) -> Result<Stored> {
        self.sink.finish().await?;
        Ok(Stored {
            scratch: self.scratch,
            rel: self.rel,
            schema: self.schema,
            batch_rows: self.batch_rows,
            validity: std::sync::Arc::new(self.validity),
        })
    }
}

/// `b` with a validity buffer on exactly the columns `had` says (one without nulls gains an
/// all-valid buffer or loses its buffer; a column with nulls always has one).
fn with_validity(b: RecordBatch, had: impl Iterator<Item = bool>) -> Result<RecordBatch> {
    use arrow::array::Array;
    use arrow::buffer::NullBuffer;
    let mut columns = Vec::with_capacity(b.num_columns());
    for (c, had) in b.columns().iter().zip(had) {
        columns.push(match (c.nulls(), had) {
            (None, true) => replace_nulls(c, Some(NullBuffer::new_valid(c.len())))?,
            (Some(n), false) if n.null_count() == 0 => replace_nulls(c, None)?,
            _ => c.clone(),
        });
    }
    Ok(RecordBatch::try_new(b.schema(), columns)?)
}

/// `c` with the validity buffer `nulls`, built with the typed constructors (going through
/// `ArrayData` drops a buffer without nulls).
fn replace_nulls(
    c: &arrow::array::ArrayRef,
    nulls: Option<arrow::buffer::NullBuffer>,
) -> Result<arrow::array::ArrayRef> {
    use arrow::array::{downcast_primitive_array, AsArray, BooleanArray, StringArray};
    use arrow::datatypes::DataType;
    use std::sync::Arc;
    Ok(downcast_primitive_array!(
        c => primitive(c, nulls)?,
        DataType::Utf8 => {
            let (offsets, values, _) = c.as_string::<i32>().clone().into_parts();
            Arc::new(StringArray::try_new(offsets, values, nulls)?)
        }
        DataType::Boolean => {
            let (values, _) = c.as_boolean().clone().into_parts();
            Arc::new(BooleanArray::new(values, nulls))
        }
        other => {
            return Err(FlywheelError::internal(format!(
                "a stored table has a column of type {other}, which reading back does not restore"
            )))
        }
    ))
}

fn primitive<T: arrow::datatypes::ArrowPrimitiveType>(
    c: &arrow::array::PrimitiveArray<T>,
    nulls: Option<arrow::buffer::NullBuffer>,
) -> Result<arrow::array::ArrayRef> {
    let (ty, values, _) = c.clone().into_parts();
    let typed = arrow::array::PrimitiveArray::<T>::try_new(values, nulls)?.with_data_type(ty);
    Ok(std::sync::Arc::new(typed))
}

/// Cuts a stream of batches into batches of given sizes (the sizes must add up to its rows).
struct Rechunk {
    sizes: VecDeque<usize>,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
}

impl Rechunk {
    fn new(sizes: &[usize]) -> Rechunk {
        Rechunk {
            sizes: sizes.iter().copied().collect(),
            pending: Vec::new(),
            pending_rows: 0,
        }
    }

    /// Take `batch`; return the batches now complete.
    fn push(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>> {
        let schema = batch.schema();
        self.pending_rows += batch.num_rows();
        self.pending.push(batch);
        let mut out = Vec::new();
        while let Some(&want) = self.sizes.front() {
            if self.pending_rows < want {
                break;
            }
            self.sizes.pop_front();
            out.push(self.take(&schema, want)?);
        }
        if self.sizes.is_empty() && self.pending_rows > 0 {
            return Err(FlywheelError::internal(
                "a stored table holds more rows than were written",
            ));
        }
        Ok(out)
    }

    /// The first `want` pending rows as one batch (no copy when a pending batch is that size).
    fn take(&mut self, schema: &SchemaRef, want: usize) -> Result<RecordBatch> {
        let (mut parts, mut have) = (Vec::new(), 0);
        while have < want {
            let b = self.pending.remove(0);
            let need = want - have;
            if b.num_rows() > need {
                parts.push(b.slice(0, need));
                self.pending.insert(0, b.slice(need, b.num_rows() - need));
                have += need;
            } else {
                have += b.num_rows();
                parts.push(b);
            }
        }
        self.pending_rows -= want;
        if parts.len() == 1 {
            return Ok(parts
                .pop()
                .unwrap_or_else(|| RecordBatch::new_empty(schema.clone())));
        }
        Ok(arrow::compute::concat_batches(schema, &parts)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int32Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch(values: std::ops::Range<i32>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int32, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int32Array::from_iter_values(values))]).unwrap()
    }

    #[test]
    fn batches_are_cut_back_to_the_sizes_they_were_written_in() {
        let mut cut = Rechunk::new(&[3, 5, 2]);
        let mut out = cut.push(batch(0..4)).unwrap();
        out.extend(cut.push(batch(4..8)).unwrap());
        out.extend(cut.push(batch(8..10)).unwrap());
        let sizes: Vec<usize> = out.iter().map(|b| b.num_rows()).collect();
        assert_eq!(sizes, [3, 5, 2]);
        let all = arrow::compute::concat_batches(&out[0].schema(), &out).unwrap();
        assert_eq!(all, batch(0..10));
        let mut over = Rechunk::new(&[2]);
        assert!(over.push(batch(0..3)).is_err());
    }

    /// Read ahead, the batches come in their order, an error comes through and ends them, the
    /// stream can be asked again after its end (as `next_group` does), and a producer that
    /// panics ends the stream with an error, not early as if every batch had come.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_read_ahead_come_in_order_and_a_failure_is_never_a_silent_end() {
        let ten: Batches =
            futures::stream::iter((0..10).map(|i| Ok(batch(i * 3..i * 3 + 3)))).boxed();
        let mut ahead = read_ahead(ten, 2);
        let mut got = Vec::new();
        while let Some(b) = ahead.next().await {
            got.push(b.unwrap());
        }
        assert!(ahead.next().await.is_none());
        let all = arrow::compute::concat_batches(&got[0].schema(), &got).unwrap();
        assert_eq!(all, batch(0..30));

        let failing: Batches = futures::stream::iter(vec![
            Ok(batch(0..1)),
            Err(FlywheelError::internal("broken")),
            Ok(batch(1..2)),
        ])
        .boxed();
        let out: Vec<Result<RecordBatch>> = read_ahead(failing, 4).collect().await;
        assert_eq!(out.len(), 2);
        assert!(out[1]
            .as_ref()
            .err()
            .unwrap()
            .to_string()
            .contains("broken"));

        let panicking: Batches = futures::stream::iter(0..3)
            .map(|i| {
                assert!(i < 2, "a producer's bug");
                Ok(batch(i..i + 1))
            })
            .boxed();
        let out: Vec<Result<RecordBatch>> = read_ahead(panicking, 4).collect().await;
        assert_eq!(out.len(), 3);
        assert!(out[..2].iter().all(|b| b.is_ok()));
        assert!(out[2]
            .as_ref()
            .err()
            .unwrap()
            .to_string()
            .contains("stopped coming"));
    }
}
