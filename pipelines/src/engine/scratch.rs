//! The scratch area of one run (or one training, one backfill): validated inputs are streamed
//! into it once as Parquet and registered in the query session by their location, so that no
//! job holds an input in memory and every scan reads only the columns and row groups it needs.
//! It lives below `scratch` (default: the operating system's temporary directory), in a folder
//! of its own that is removed when the work ends, whether it succeeded or not.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use arrow::array::{AsArray, RecordBatch, StringArray, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig};
use datafusion::prelude::SessionContext;
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::encode::ParquetSink;
use crate::config::Config;
use crate::error::{FlywheelError, Result};
use crate::storage::{Root, CLEANUP_DEADLINE};

/// Rows per row group of a scratch file: small enough that the engine splits a file between
/// its partitions and skips row groups by their statistics.
const ROW_GROUP_ROWS: usize = 65_536;

#[derive(Clone)]
pub struct Scratch {
    root: Root,
}

impl Scratch {
    /// The scratch folder `id` below the configured scratch root.
    pub fn open(cfg: &Config, id: &str) -> Result<Scratch> {
        Ok(Scratch {
            root: Root::parse(&base_url(cfg))?.child(id),
        })
    }

    /// Remove the folders that work which died left behind (a crash or a kill cannot remove its
    /// own): every folder below the scratch root whose newest file is older than
    /// `lock_stale_after_minutes`, the age after which a run's lock is taken to be a dead run's.
    async fn sweep(cfg: &Config) {
        let Ok(base) = Root::parse(&base_url(cfg)) else {
            return;
        };
        let Ok(Ok(listed)) = tokio::time::timeout(CLEANUP_DEADLINE, base.list("")).await else {
            return;
        };
        let mut newest: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
        for file in listed {
            let (Some(folder), Ok(at)) = (
                file.path.split('/').next(),
                DateTime::parse_from_rfc3339(&file.last_modified),
            ) else {
                continue;
            };
            let at = at.with_timezone(&Utc);
            let entry = newest.entry(folder.to_string()).or_insert(at);
            *entry = (*entry).max(at);
        }
        let stale = Utc::now() - chrono::Duration::minutes(cfg.lock_stale_after_minutes);
        for (folder, at) in newest.into_iter().filter(|(_, at)| *at < stale) {
            let removed = base.delete_prefix(&folder).await;
            tracing::info!(scratch = %base.display(&folder), last_written = %at, removed = removed.is_ok(), "removed the scratch folder of work that died");
        }
    }

    /// Run `work` with the scratch folder `id` (made unique with the process id and the clock
    /// when `unique`), and remove the folder after it, whatever it returned.
    pub async fn within<T, F, Fut>(cfg: &Config, id: &str, unique: bool, work: F) -> Result<T>
    where
        F: FnOnce(Scratch) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let id = if unique {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            format!("{id}-{}-{nanos}", std::process::id())
        } else {
            id.to_string()
        };
        Scratch::sweep(cfg).await;
        let scratch = Scratch::open(cfg, &id)?;
        tracing::info!(scratch = %scratch.display(), "scratch area of this work");
        let result = work(scratch.clone()).await;
        scratch.remove().await;
        result
    }

    /// The folder `rel` of this scratch area, as a scratch area of its own (e.g. one training
    /// snapshot's intermediate tables, which must not replace the run date's).
    pub fn child(&self, rel: &str) -> Scratch {
        Scratch {
            root: self.root.child(rel),
        }
    }

    /// Where the scratch area is, for messages.
    pub fn display(&self) -> String {
        self.root.url.clone()
    }

    /// A streaming Parquet writer of the scratch file `rel`: LZ4 and no dictionaries (building
    /// them was a fifth of validating the inputs), quick to write and to read.
    pub fn writer(&self, rel: &str, schema: SchemaRef) -> Result<ParquetSink> {
        self.writer_with_text_statistics(rel, schema, &[])
    }

    /// [`Scratch::writer`], with statistics of the text columns `kept` only: computing them
    /// compares every value (a tenth of validating the inputs), and only a column that a scan
    /// filters and whose values a file sets apart (the files of a [`ClusteredSink`]: the
    /// clustering column, and a column null on every row of some values) prunes by them.
    /// Numbers and timestamps keep theirs (cheap, and the as_of filter prunes by them).
    fn writer_with_text_statistics(
        &self,
        rel: &str,
        schema: SchemaRef,
        kept: &[&str],
    ) -> Result<ParquetSink> {
        let mut props = WriterProperties::builder()
            .set_compression(Compression::LZ4_RAW)
            .set_dictionary_enabled(false)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
        for field in schema.fields() {
            if matches!(field.data_type(), DataType::Utf8 | DataType::LargeUtf8)
                && !kept.contains(&field.name().as_str())
            {
                props = props.set_column_statistics_enabled(
                    ColumnPath::from(field.name().as_str()),
                    EnabledStatistics::None,
                );
            }
        }
        ParquetSink::create(&self.root, rel, schema, props.build())
    }

    /// A writer of the scratch folder `dir` (a table of several files, registered by the
    /// folder) that puts the rows of each value of the text column `column` into a file of
    /// their own, in the order they come: a scan filtered on that column skips the other files
    /// by their statistics instead of decoding every row. The text columns `also_pruned` keep
    /// their statistics too (min/max and null counts), for a scan that filters on them: a file
    /// of a value whose rows all have them null is skipped by `IS NOT NULL`.
    pub fn clustered_writer(
        &self,
        dir: &str,
        schema: SchemaRef,
        column: &str,
        also_pruned: &[&str],
    ) -> Result<ClusteredSink> {
        let index = schema.index_of(column)?;
        let mut kept = vec![column.to_string()];
        for name in also_pruned {
            schema.index_of(name)?;
            kept.push(name.to_string());
        }
        Ok(ClusteredSink {
            scratch: self.clone(),
            dir: dir.trim_end_matches('/').to_string(),
            schema,
            index,
            kept,
            files: BTreeMap::new(),
        })
    }

    /// A Parquet reader of the scratch file `rel`.
    pub async fn read(&self, rel: &str) -> Result<crate::storage::ParquetReader> {
        let size = self.root.size(rel).await?.ok_or_else(|| {
            crate::error::FlywheelError::storage(
                self.root.display(rel),
                "this scratch file is gone; was the scratch area removed during the run?",
            )
        })?;
        Ok(self.root.parquet_reader(rel, size))
    }

    /// Where the scratch file `rel` is, for messages.
    pub fn display_file(&self, rel: &str) -> String {
        self.root.display(rel)
    }

    /// Register the scratch file `rel` (written by [`Scratch::writer`] with `schema`), or the
    /// folder `rel` ending in `/` (written by [`Scratch::clustered_writer`]), under `name`, read
    /// by the engine's Parquet scan from its location.
    pub fn register(
        &self,
        ctx: &SessionContext,
        name: &str,
        rel: &str,
        schema: SchemaRef,
    ) -> Result<()> {
        let url = self.root.engine_url(ctx, rel)?;
        let format =
            ParquetFormat::default().with_options(ctx.state().table_options().parquet.clone());
        let options = ListingOptions::new(Arc::new(format)).with_file_extension(".parquet");
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .with_schema(schema);
        ctx.deregister_table(name)?;
        ctx.register_table(name, Arc::new(ListingTable::try_new(config)?))?;
        Ok(())
    }

    /// Remove the whole scratch folder (best effort, bounded in time: a leftover folder is
    /// only disk space, and the next run uses a folder of its own).
    pub async fn remove(&self) {
        let removed = tokio::time::timeout(CLEANUP_DEADLINE * 6, self.root.delete_prefix("")).await;
        if !matches!(removed, Ok(Ok(()))) {
            tracing::warn!(scratch = %self.root.url, "the scratch folder could not be removed; delete it by hand");
        }
    }
}

/// The scratch root: `scratch`, or the operating system's temporary directory.
fn base_url(cfg: &Config) -> String {
    match &cfg.scratch {
        Some(url) => url.clone(),
        None => std::env::temp_dir()
            .join("flywheel-scratch")
            .to_string_lossy()
            .into_owned(),
    }
}

/// The scratch table written by [`Scratch::clustered_writer`]: one file per value of a column.
pub struct ClusteredSink {
    scratch: Scratch,
    dir: String,
    schema: SchemaRef,
    index: usize,
    /// The text columns whose statistics are kept: the clustering column and the others pruned.
    kept: Vec<String>,
    files: BTreeMap<Option<String>, ParquetSink>,
}

impl ClusteredSink {
    /// Append `batch`: each value's rows, in the order they come, to that value's file.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let column = batch.column(self.index);
        let values = column.as_string_opt::<i32>().ok_or_else(|| {
            FlywheelError::internal(format!("the clustering column of {} is not text", self.dir))
        })?;
        for (value, rows) in rows_by_value(values) {
            let part = if rows.len() == batch.num_rows() {
                batch.clone()
            } else {
                take_record_batch(batch, &UInt32Array::from(rows))?
            };
            let key = value.map(str::to_string);
            if !self.files.contains_key(&key) {
                let sink = self.open(&file_stem(value))?;
                self.files.insert(key.clone(), sink);
            }
            if let Some(sink) = self.files.get_mut(&key) {
                sink.write(&part).await?;
            }
        }
        Ok(())
    }

    /// The file `stem` of the folder, with the statistics of the clustering column and of the
    /// other columns pruned.
    fn open(&self, stem: &str) -> Result<ParquetSink> {
        let rel = format!("{}/{stem}.parquet", self.dir);
        let kept: Vec<&str> = self.kept.iter().map(String::as_str).collect();
        self.scratch
            .writer_with_text_statistics(&rel, self.schema.clone(), &kept)
    }

    /// Finish every file; returns the folder (with a trailing `/`, as [`Scratch::register`]
    /// expects of a folder) and the row count. A table without rows is one empty file.
    pub async fn finish(mut self) -> Result<(String, u64)> {
        if self.files.is_empty() {
            let sink = self.open("empty")?;
            self.files.insert(None, sink);
        }
        let mut rows = 0;
        for (_, sink) in self.files {
            rows += sink.finish().await?.1;
        }
        Ok((format!("{}/", self.dir), rows))
    }
}

/// The row numbers of each value of `values` (null included), in row order, in the order the
/// values first come: one pass, each row compared with the previous row's value and then with
/// the few values seen (the enumerations this is used for have a handful); a comparison of every
/// row with every value, or a sorted set of every row's value, cost a tenth of validating the
/// referral events.
fn rows_by_value(values: &StringArray) -> Vec<(Option<&str>, Vec<u32>)> {
    let mut groups: Vec<(Option<&str>, Vec<u32>)> = Vec::new();
    let mut last: Option<(Option<&str>, usize)> = None;
    for (row, value) in values.iter().enumerate() {
        let group = match last {
            Some((seen, group)) if seen == value => group,
            _ => {
                let group = match groups.iter().position(|(v, _)| *v == value) {
                    Some(group) => group,
                    None => {
                        groups.push((value, Vec::new()));
                        groups.len() - 1
                    }
                };
                last = Some((value, group));
                group
            }
        };
        groups[group].1.push(row as u32);
    }
    groups
}

/// A file name for the rows of one value: the value itself when it is a plain word (the
/// enumerations this is used for), its bytes in hex otherwise; the prefixes keep them apart.
fn file_stem(value: Option<&str>) -> String {
    match value {
        None => "null".to_string(),
        Some(v)
            if !v.is_empty()
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
        {
            format!("v-{v}")
        }
        Some(v) => format!(
            "h-{}",
            v.bytes().map(|b| format!("{b:02x}")).collect::<String>()
        ),
    }
}

#[cfg(test)]
impl Scratch {
    /// For tests: a scratch area in the folder `flywheel-{name}-{pid}` of the system's temporary
    /// folder, and that folder (for the test to remove).
    pub(crate) fn in_temp_dir(name: &str) -> (std::path::PathBuf, Scratch) {
        let dir = std::env::temp_dir().join(format!("flywheel-{name}-{}", std::process::id()));
        let cfg = Config {
            scratch: Some(dir.display().to_string()),
            ..Config::default()
        };
        (dir, Scratch::open(&cfg, "t").unwrap())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{Field, Schema};

    fn batch(schema: &SchemaRef, kinds: &[Option<&str>], ids: &[i64]) -> RecordBatch {
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(kinds.to_vec())),
                Arc::new(Int64Array::from(ids.to_vec())),
            ],
        )
        .unwrap()
    }

    /// Every row once, under its value (null a value of its own), in row order; the values in
    /// the order they first come, runs of one value and values that come back alike.
    #[test]
    fn rows_are_grouped_by_value_in_one_pass() {
        let values = StringArray::from(vec![
            Some("signup"),
            Some("signup"),
            None,
            Some("share"),
            Some("signup"),
            Some("sign"),
            None,
            Some("share"),
            Some(""),
        ]);
        let groups = rows_by_value(&values);
        let expected: Vec<(Option<&str>, Vec<u32>)> = vec![
            (Some("signup"), vec![0, 1, 4]),
            (None, vec![2, 6]),
            (Some("share"), vec![3, 7]),
            (Some("sign"), vec![5]),
            (Some(""), vec![8]),
        ];
        assert_eq!(groups, expected);
        assert!(rows_by_value(&StringArray::from(Vec::<&str>::new())).is_empty());
    }

    /// Each value's rows land in a file of their own, in the order they came, and the folder
    /// reads back as one table: every row once, and a filter on the column sees only its file.
    #[tokio::test]
    async fn a_clustered_table_keeps_every_row_and_each_value_in_its_own_file() {
        let (dir, scratch) = Scratch::in_temp_dir("clustered");
        let schema = Arc::new(Schema::new(vec![
            Field::new("kind", DataType::Utf8, true),
            Field::new("id", DataType::Int64, false),
        ]));
        let mut sink = scratch
            .clustered_writer("x", schema.clone(), "kind", &[])
            .unwrap();
        let b1 = batch(
            &schema,
            &[Some("share"), Some("a b"), None, Some("share")],
            &[1, 2, 3, 4],
        );
        let b2 = batch(&schema, &[Some("signup"), Some("share")], &[5, 6]);
        sink.write(&b1).await.unwrap();
        sink.write(&b2).await.unwrap();
        let (rel, rows) = sink.finish().await.unwrap();
        assert_eq!((rel.as_str(), rows), ("x/", 6));
        let names: Vec<String> = scratch
            .root
            .list("x")
            .await
            .unwrap()
            .into_iter()
            .map(|f| f.path)
            .collect();
        assert_eq!(
            names,
            [
                "x/h-612062.parquet",
                "x/null.parquet",
                "x/v-share.parquet",
                "x/v-signup.parquet"
            ]
        );

        let ctx = SessionContext::new();
        scratch.register(&ctx, "x", &rel, schema.clone()).unwrap();
        let ids = |sql: &'static str| {
            let ctx = ctx.clone();
            async move {
                let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
                batches
                    .iter()
                    .flat_map(|b| {
                        b.column(0)
                            .as_primitive::<arrow::datatypes::Int64Type>()
                            .values()
                            .to_vec()
                    })
                    .collect::<Vec<i64>>()
            }
        };
        assert_eq!(
            ids("SELECT id FROM x ORDER BY id").await,
            [1, 2, 3, 4, 5, 6]
        );
        assert_eq!(
            ids("SELECT id FROM x WHERE kind = 'share'").await,
            [1, 4, 6]
        );

        let empty = scratch
            .clustered_writer("y", schema.clone(), "kind", &[])
            .unwrap();
        assert_eq!(empty.finish().await.unwrap(), ("y/".to_string(), 0));
        scratch.register(&ctx, "y", "y/", schema).unwrap();
        assert!(ids("SELECT id FROM y").await.is_empty());
        scratch.remove().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    /// The files of a clustered table keep the statistics (min/max and null counts) of the
    /// clustering column and of the columns named as pruned too, and of no other text column:
    /// the null counts let `IS NOT NULL` skip a value's file where the column is always null.
    #[tokio::test]
    async fn a_clustered_table_keeps_the_statistics_of_the_pruned_columns_only() {
        let (dir, scratch) = Scratch::in_temp_dir("pruned");
        let schema = Arc::new(Schema::new(vec![
            Field::new("kind", DataType::Utf8, true),
            Field::new("referee", DataType::Utf8, true),
            Field::new("note", DataType::Utf8, true),
            Field::new("id", DataType::Int64, false),
        ]));
        let rows = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["share", "reward", "share"])),
                Arc::new(StringArray::from(vec![None, Some("c9"), None])),
                Arc::new(StringArray::from(vec!["a", "b", "c"])),
                Arc::new(Int64Array::from(vec![1, 2, 3])),
            ],
        )
        .unwrap();
        let mut sink = scratch
            .clustered_writer("z", schema.clone(), "kind", &["referee"])
            .unwrap();
        sink.write(&rows).await.unwrap();
        sink.finish().await.unwrap();
        assert!(scratch
            .clustered_writer("w", schema.clone(), "kind", &["absent"])
            .is_err());

        // The files of the folder, sorted by path (the rewards', then the shares').
        let mut seen = vec![];
        for file in scratch.root.list("z").await.unwrap().iter().rev() {
            let bytes = scratch.root.get(&file.path).await.unwrap().unwrap();
            seen.push(column_statistics(bytes));
        }
        let column =
            |name: &str, min_max: bool, nulls: Option<u64>| (name.to_string(), min_max, nulls);
        assert_eq!(
            seen,
            [
                vec![
                    column("kind", true, Some(0)),
                    column("referee", false, Some(2)),
                    column("note", false, None),
                    column("id", true, Some(0)),
                ],
                vec![
                    column("kind", true, Some(0)),
                    column("referee", true, Some(0)),
                    column("note", false, None),
                    column("id", true, Some(0)),
                ],
            ]
        );
        scratch.remove().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    /// (column, has min/max, null count) of each column of the first row group of the Parquet
    /// file `bytes`.
    fn column_statistics(bytes: bytes::Bytes) -> Vec<(String, bool, Option<u64>)> {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let reader = SerializedFileReader::new(bytes).unwrap();
        let group = reader.metadata().row_group(0);
        group
            .columns()
            .iter()
            .map(|c| {
                let stats = c.statistics();
                (
                    c.column_path().string(),
                    stats.is_some_and(|s| s.min_bytes_opt().is_some()),
                    stats.and_then(|s| s.null_count_opt()),
                )
            })
            .collect()
    }
}
