//! Staging of one run's files. Every output file is first written to the run's staging folder,
//! `<output>/_staging/<run id>/` (flat: `<n>-<file name>`), while the published folders stay as
//! they are. Only when every file, the manifest included, is staged does [`Publisher::commit`]
//! hand the moves to the commit journal ([`super::commit`]), which replaces each published file
//! by moving the staged one over it. A run that fails before that leaves the previous outputs of
//! the date untouched and removes its staging ([`Publisher::abort`]).

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::Serialize;

use super::commit::{self, Journal, Move};
use crate::engine::encode::{self, ParquetSink};
use crate::engine::RunDate;
use crate::error::Result;
use crate::storage::Root;

#[derive(Debug, Clone, Serialize)]
pub struct PublishedFile {
    pub path: String,
    pub bytes: u64,
    pub rows: Option<u64>,
}

/// A file written to staging, waiting for the commit.
struct Staged {
    /// Where it is staged, below the output root.
    staged: String,
    /// Where it is published, below the output root.
    target: String,
    rows: Option<u64>,
    bytes: u64,
}

pub struct Publisher {
    root: Root,
    run_id: String,
    date: RunDate,
    staged: Vec<Staged>,
}

impl Publisher {
    pub fn new(root: Root, run_id: &str, date: &RunDate) -> Publisher {
        Publisher {
            root,
            run_id: run_id.to_string(),
            date: *date,
            staged: Vec::new(),
        }
    }

    /// Stage `bytes` as `<folder>/<file>` of the output.
    pub async fn stage(
        &mut self,
        folder: &str,
        file: &str,
        bytes: Bytes,
        rows: Option<u64>,
    ) -> Result<()> {
        let staged = self.next_staged(file);
        let len = bytes.len() as u64;
        self.root.put(&staged, bytes).await?;
        self.record(staged, (folder, file), rows, len);
        Ok(())
    }

    /// Record the file another writer staged at `staged` (below the run's staging folder) as
    /// `<folder>/<file>`, after the files staged so far.
    pub fn adopt(&mut self, target: (&str, &str), staged: String, rows: u64, bytes: u64) {
        self.record(staged, target, Some(rows), bytes);
    }

    /// The output root the files are staged in.
    pub fn root(&self) -> &Root {
        &self.root
    }

    /// Remember the file staged at `staged`, to be published as `<folder>/<file>`.
    fn record(
        &mut self,
        staged: String,
        (folder, file): (&str, &str),
        rows: Option<u64>,
        bytes: u64,
    ) {
        self.staged.push(Staged {
            staged,
            target: format!("{folder}/{file}"),
            rows,
            bytes,
        });
    }

    /// Where the next staged file goes.
    fn next_staged(&self, file: &str) -> String {
        format!(
            "{}/{:03}-{file}",
            commit::staging(&self.run_id),
            self.staged.len()
        )
    }

    /// The files staged so far as they will be published (for the manifest).
    pub fn files(&self) -> Vec<PublishedFile> {
        self.staged
            .iter()
            .map(|s| PublishedFile {
                path: s.target.clone(),
                bytes: s.bytes,
                rows: s.rows,
            })
            .collect()
    }

    /// Stage the manifest (published last, at `manifest_path`), write the commit journal and
    /// carry it out. Files of the published folders that the new version no longer has are
    /// removed after the moves. Once the journal is written the commit is decided: if this
    /// process dies or the store fails on the way, the next command on the output finishes it.
    pub async fn commit(mut self, manifest_path: &str, manifest: Bytes) -> Result<()> {
        let folders: std::collections::BTreeSet<String> = self
            .staged
            .iter()
            .filter_map(|s| s.target.rsplit_once('/').map(|(f, _)| format!("{f}/")))
            .collect();
        let (folder, file) = manifest_path
            .rsplit_once('/')
            .unwrap_or(("", manifest_path));
        self.stage(folder, file, manifest, None).await?;
        let targets: std::collections::BTreeSet<&str> =
            self.staged.iter().map(|s| s.target.as_str()).collect();
        let mut deletes = Vec::new();
        for folder in &folders {
            for listed in self.root.list(folder).await? {
                if !targets.contains(listed.path.as_str()) {
                    deletes.push(listed.path);
                }
            }
        }
        let journal = Journal::new(
            &self.run_id,
            &self.date,
            self.staged
                .iter()
                .map(|s| Move {
                    from: s.staged.clone(),
                    to: s.target.clone(),
                })
                .collect(),
            deletes,
        );
        commit::execute(&self.root, &journal).await
    }

    /// Remove whatever was staged (a run that fails before its commit publishes nothing).
    pub async fn abort(self) {
        remove_staging(&self.root, &self.run_id).await;
    }
}

/// Remove the staging folder of the run `run_id` below `root`. Bounded in time: a store that
/// does not answer leaves the staging to the next run's clean-up.
pub async fn remove_staging(root: &Root, run_id: &str) {
    let staging = commit::staging(run_id);
    let removal = root.delete_prefix(&staging);
    match tokio::time::timeout(crate::storage::CLEANUP_DEADLINE, removal).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not remove the staging folder of a failed run; the next run removes it")
        }
        Err(_) => {
            tracing::warn!(staging = %staging, "the store did not answer while removing the staging folder of a failed run; the next run removes it")
        }
    }
}

/// Write a Parquet file at `staged` below `root` from `batches` as they come (the same settings
/// and bytes as [`encode::parquet_bytes`] of the same batches); returns its rows and bytes.
pub async fn write_parquet(
    root: &Root,
    staged: &str,
    schema: SchemaRef,
    mut batches: impl Stream<Item = Result<RecordBatch>> + Unpin,
) -> Result<(u64, u64)> {
    let mut sink = ParquetSink::create(root, staged, schema, encode::parquet_props())?;
    while let Some(b) = batches.next().await {
        sink.write(&b?).await?;
    }
    let (_, rows, bytes) = sink.finish_sized().await?;
    Ok((rows, bytes))
}

/// Write a CRM CSV file at `staged` below `root` from `batches` as they come (the same bytes as
/// [`encode::csv_bytes`] of the same batches); returns its rows and bytes.
pub async fn write_csv(
    root: &Root,
    staged: &str,
    schema: SchemaRef,
    mut batches: impl Stream<Item = Result<RecordBatch>> + Unpin,
) -> Result<(u64, u64)> {
    use tokio::io::AsyncWriteExt;
    let shown = root.display(staged);
    let fail = |e: std::io::Error| crate::error::FlywheelError::storage(&shown, e);
    let mut out = root.writer(staged);
    // One writer per batch, the header with the first (the bytes of one writer for all).
    let csv = |b: &RecordBatch, header: bool| -> Result<Vec<u8>> {
        let mut w = arrow::csv::WriterBuilder::new()
            .with_header(header)
            .build(Vec::new());
        w.write(b)?;
        Ok(w.into_inner())
    };
    let (mut rows, mut bytes) = (0u64, 0u64);
    while let Some(b) = batches.next().await {
        let b = b?;
        if b.num_rows() == 0 {
            continue;
        }
        let buf = csv(&b, rows == 0)?;
        rows += b.num_rows() as u64;
        bytes += buf.len() as u64;
        out.write_all(&buf).await.map_err(fail)?;
    }
    if rows == 0 {
        let buf = csv(&RecordBatch::new_empty(schema), true)?;
        bytes += buf.len() as u64;
        out.write_all(&buf).await.map_err(fail)?;
    }
    out.shutdown().await.map_err(fail)?;
    Ok((rows, bytes))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int32Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::engine::encode::{csv_bytes, parquet_bytes};

    /// Streamed staging writes the bytes the in-memory encodings give, for a table with rows
    /// (several batches, an empty one among them) and for an empty table.
    #[tokio::test]
    async fn streamed_files_hold_the_bytes_of_the_held_encodings() {
        let dir = std::env::temp_dir().join(format!("flywheel-publisher-{}", std::process::id()));
        let root = Root::parse(dir.to_str().unwrap()).unwrap();
        let date = RunDate::new(
            chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap(),
            &crate::config::Config::default(),
        )
        .unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("n", DataType::Int32, true),
        ]));
        let batch = |ids: &[&str], n: Vec<Option<i32>>| {
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from(ids.to_vec())),
                Arc::new(Int32Array::from(n)),
            ];
            RecordBatch::try_new(schema.clone(), columns).unwrap()
        };
        let batches = vec![
            batch(&["a", "b, \"quoted\""], vec![Some(1), None]),
            batch(&[], vec![]),
            batch(&["c"], vec![Some(3)]),
        ];
        let mut publisher = Publisher::new(root.clone(), "test-run", &date);
        for (k, table) in [batches.clone(), vec![]].into_iter().enumerate() {
            let stream = || futures::stream::iter(table.clone().into_iter().map(Ok));
            let file = format!("t{k}");
            let staged = format!("{}/early-{file}.csv", commit::staging("test-run"));
            let (rows, bytes) = write_csv(&root, &staged, schema.clone(), stream())
                .await
                .unwrap();
            publisher.adopt(("f", &format!("{file}.csv")), staged, rows, bytes);
            let staged = format!("{}/early-{file}.parquet", commit::staging("test-run"));
            let (rows, bytes) = write_parquet(&root, &staged, schema.clone(), stream())
                .await
                .unwrap();
            publisher.adopt(("f", &format!("{file}.parquet")), staged, rows, bytes);
            let csv = csv_bytes(&schema, &table).unwrap();
            let parquet = parquet_bytes(&schema, &table).unwrap();
            let staged: Vec<String> = publisher.staged.iter().map(|s| s.staged.clone()).collect();
            let n = staged.len();
            assert_eq!(root.get(&staged[n - 2]).await.unwrap().unwrap(), csv);
            assert_eq!(root.get(&staged[n - 1]).await.unwrap().unwrap(), parquet);
            assert_eq!(publisher.staged[n - 2].bytes, csv.len() as u64);
            assert_eq!(publisher.staged[n - 1].bytes, parquet.len() as u64);
        }
        publisher.abort().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
