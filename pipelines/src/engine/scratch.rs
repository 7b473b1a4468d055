//! The scratch area of one run (or one training, one backfill): validated inputs are streamed
//! into it once as Parquet and registered in the query session by their location, so that no
//! job holds an input in memory and every scan reads only the columns and row groups it needs.
//! It lives below `scratch` (default: the operating system's temporary directory), in a folder
//! of its own that is removed when the work ends, whether it succeeded or not.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use arrow::datatypes::SchemaRef;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig};
use datafusion::prelude::SessionContext;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::encode::ParquetSink;
use crate::config::Config;
use crate::error::Result;
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
        let props = WriterProperties::builder()
            .set_compression(Compression::LZ4_RAW)
            .set_dictionary_enabled(false)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .build();
        ParquetSink::create(&self.root, rel, schema, props)
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

    /// Register the scratch file `rel` (written by [`Scratch::writer`] with `schema`) under
    /// `name`, read by the engine's Parquet scan from its location.
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
