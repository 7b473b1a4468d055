//! Object storage: the only module that turns a URL into bytes. A root URL is a local path, a
//! `file://` URL or an `s3://bucket/prefix` URL (credentials, region, endpoint and allow-http
//! from the usual `AWS_*` environment variables). Every data path in flywheel goes through here.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    ClientOptions, ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};

use datafusion::datasource::listing::ListingTableUrl;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::prelude::SessionContext;

use crate::error::{FlywheelError, Result};

/// How long a clean-up call after a failure (removing staging, releasing a lock, writing the
/// ledger record) may wait for a store that does not answer, so that a failed run exits soon.
pub const CLEANUP_DEADLINE: Duration = Duration::from_secs(5);

/// An object found by [`Root::list`]: its path relative to the root, size and modification time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub path: String,
    pub size: u64,
    /// RFC 3339.
    pub last_modified: String,
}

/// A reader of one object for the Parquet decoder (which fetches the footer and only the byte
/// ranges of the row groups and columns it needs).
#[allow(deprecated)] // ParquetObjectReader: the object_store reader parquet 59 still ships
pub type ParquetReader = parquet::arrow::async_reader::ParquetObjectReader;

/// A root in object storage: a store plus the prefix all relative keys live under.
#[derive(Clone, Debug)]
pub struct Root {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    /// The URL of the store itself (`file://` or `s3://<bucket>`), under which the query
    /// engine finds it when a table is registered by location.
    store_url: String,
    /// What the user gave, for messages and the manifest.
    pub url: String,
}

/// An async writer of one object (a multipart upload on object storage), for the streaming
/// Parquet writer.
pub type ObjectWriter = object_store::buffered::BufWriter;

impl Root {
    /// Parse a root URL. Local paths are made absolute; nothing is created until something is
    /// written below them.
    pub fn parse(url: &str) -> Result<Root> {
        let url = url.trim();
        if url.is_empty() {
            return Err(FlywheelError::Config(
                "an empty storage URL was given".into(),
            ));
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(FlywheelError::Config(format!(
                    "{url}: the s3 URL names no bucket"
                )));
            }
            let retry = RetryConfig {
                max_retries: env_number("FLYWHEEL_S3_MAX_RETRIES", 3),
                retry_timeout: Duration::from_secs(env_number("FLYWHEEL_S3_RETRY_TIMEOUT_S", 20)),
                ..RetryConfig::default()
            };
            let client = ClientOptions::new()
                .with_connect_timeout(Duration::from_secs(5))
                .with_timeout(Duration::from_secs(env_number("FLYWHEEL_S3_TIMEOUT_S", 15)));
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_retry(retry)
                .with_client_options(client);
            // object_store reads AWS_ENDPOINT; accept the SDKs' AWS_ENDPOINT_URL too.
            if std::env::var_os("AWS_ENDPOINT").is_none() {
                if let Ok(ep) = std::env::var("AWS_ENDPOINT_URL") {
                    builder = builder.with_endpoint(ep);
                }
            }
            if std::env::var("AWS_ALLOW_HTTP")
                .is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
            {
                builder = builder.with_allow_http(true);
            }
            if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err()
            {
                builder = builder.with_region("us-east-1");
            }
            let store = builder
                .build()
                .map_err(|e| FlywheelError::Config(format!("{url}: cannot configure S3: {e}")))?;
            return Ok(Root {
                store: Arc::new(store),
                store_url: format!("s3://{bucket}"),
                prefix: Path::from(prefix.trim_matches('/')),
                url: url.trim_end_matches('/').to_string(),
            });
        }
        let local = match url.strip_prefix("file://") {
            Some(p) => std::path::PathBuf::from(p),
            None if url.contains("://") => {
                return Err(FlywheelError::Config(format!(
                    "{url}: unsupported storage scheme; use a local path, file:// or s3://"
                )))
            }
            None => std::path::PathBuf::from(url),
        };
        let abs = if local.is_absolute() {
            local
        } else {
            std::env::current_dir()
                .map_err(|e| FlywheelError::Config(format!("cannot resolve {url}: {e}")))?
                .join(local)
        };
        let prefix = Path::from_absolute_path(&abs)
            .map_err(|e| FlywheelError::Config(format!("{url}: not a usable path: {e}")))?;
        Ok(Root {
            // Deleting a file removes the folders it leaves empty, as on object storage where
            // folders do not exist (a finished run leaves no empty staging tree behind).
            store: Arc::new(LocalFileSystem::new().with_automatic_cleanup(true)),
            store_url: "file://".to_string(),
            prefix,
            url: url.trim_end_matches('/').to_string(),
        })
    }

    /// A child root (`<root>/<rel>`).
    pub fn child(&self, rel: &str) -> Root {
        Root {
            store: self.store.clone(),
            store_url: self.store_url.clone(),
            prefix: self.key(rel),
            url: format!("{}/{}", self.url, rel.trim_matches('/')),
        }
    }

    /// The absolute object key of a path relative to this root.
    fn key(&self, rel: &str) -> Path {
        let mut parts: Vec<String> = self
            .prefix
            .parts()
            .map(|p| p.as_ref().to_string())
            .collect();
        parts.extend(rel.split('/').filter(|s| !s.is_empty()).map(str::to_string));
        Path::from_iter(parts)
    }

    /// The path of a key relative to this root.
    fn relative(&self, key: &Path) -> String {
        key.prefix_match(&self.prefix)
            .map(|parts| {
                parts
                    .map(|p| p.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .unwrap_or_else(|| key.to_string())
    }

    /// How OpenLineage names the dataset at `rel`: namespace `file` and the absolute path on a
    /// local disk; `s3://<bucket>` and the object key on S3.
    pub fn dataset_name(&self, rel: &str) -> (String, String) {
        let key = self.key(rel).to_string();
        match self.url.strip_prefix("s3://") {
            Some(rest) => {
                let bucket = rest.split('/').next().unwrap_or_default();
                (format!("s3://{bucket}"), key)
            }
            None => ("file".to_string(), format!("/{key}")),
        }
    }

    /// Display form of a relative path, for messages.
    pub fn display(&self, rel: &str) -> String {
        format!("{}/{}", self.url, rel.trim_start_matches('/'))
    }

    /// A streaming writer of the object at `rel`; the object appears when the writer is shut down.
    pub fn writer(&self, rel: &str) -> ObjectWriter {
        object_store::buffered::BufWriter::new(self.store.clone(), self.key(rel))
    }

    /// Make this root's store known to the query engine of `ctx` and return the URL under which
    /// the engine reads the object at `rel` (a table registered by location), or every object
    /// below it when `rel` ends with `/` (a table of several files).
    pub fn engine_url(&self, ctx: &SessionContext, rel: &str) -> Result<ListingTableUrl> {
        let store_url = ObjectStoreUrl::parse(&self.store_url)?;
        ctx.register_object_store(store_url.as_ref(), self.store.clone());
        let folder = if rel.ends_with('/') { "/" } else { "" };
        Ok(ListingTableUrl::parse(format!(
            "{}/{}{folder}",
            self.store_url,
            self.key(rel)
        ))?)
    }

    /// Every object below `rel`, sorted by path (listing order differs between stores).
    pub async fn list(&self, rel: &str) -> Result<Vec<Listed>> {
        let prefix = self.key(rel);
        let mut found: Vec<ObjectMeta> = match self.store.list(Some(&prefix)).try_collect().await {
            Ok(v) => v,
            Err(object_store::Error::NotFound { .. }) => vec![],
            Err(e) => return Err(FlywheelError::storage(self.display(rel), e)),
        };
        found.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(found
            .into_iter()
            .map(|m| Listed {
                path: self.relative(&m.location),
                size: m.size,
                last_modified: m.last_modified.to_rfc3339(),
            })
            .collect())
    }

    /// A Parquet reader of the object at `rel` whose size is `size` (from [`Root::list`]).
    #[allow(deprecated)]
    pub fn parquet_reader(&self, rel: &str, size: u64) -> ParquetReader {
        ParquetReader::new(self.store.clone(), self.key(rel)).with_file_size(size)
    }

    pub async fn get(&self, rel: &str) -> Result<Option<Bytes>> {
        match self.store.get(&self.key(rel)).await {
            Ok(r) => {
                Ok(Some(r.bytes().await.map_err(|e| {
                    FlywheelError::storage(self.display(rel), e)
                })?))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(FlywheelError::storage(self.display(rel), e)),
        }
    }

    pub async fn put(&self, rel: &str, bytes: Bytes) -> Result<()> {
        self.store
            .put(&self.key(rel), PutPayload::from(bytes))
            .await
            .map_err(|e| FlywheelError::storage(self.display(rel), e))?;
        Ok(())
    }

    /// Create the object at `rel` only when there is none (object storage's conditional create):
    /// true when created, false when it already exists.
    pub async fn create(&self, rel: &str, bytes: Bytes) -> Result<bool> {
        let opts = object_store::PutOptions::from(object_store::PutMode::Create);
        match self
            .store
            .put_opts(&self.key(rel), PutPayload::from(bytes), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(FlywheelError::storage(self.display(rel), e)),
        }
    }

    /// The size in bytes of the object at `rel` (None when there is none).
    pub async fn size(&self, rel: &str) -> Result<Option<u64>> {
        match self.store.head(&self.key(rel)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(FlywheelError::storage(self.display(rel), e)),
        }
    }

    /// Whether an object exists at `rel`.
    pub async fn exists(&self, rel: &str) -> Result<bool> {
        match self.store.head(&self.key(rel)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(FlywheelError::storage(self.display(rel), e)),
        }
    }

    /// Delete the object at `rel` (nothing when it is absent).
    pub async fn delete(&self, rel: &str) -> Result<()> {
        match self.store.delete(&self.key(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(FlywheelError::storage(self.display(rel), e)),
        }
    }

    /// Move `from` over `to` (replacing it) when `from` exists: true when moved, false when
    /// there is no `from` (e.g. an interrupted commit that had already moved it).
    pub async fn rename_if_present(&self, from: &str, to: &str) -> Result<bool> {
        match self.store.rename(&self.key(from), &self.key(to)).await {
            Ok(()) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(FlywheelError::storage(
                format!("{} -> {}", self.display(from), self.display(to)),
                e,
            )),
        }
    }

    /// Delete everything below `rel`.
    pub async fn delete_prefix(&self, rel: &str) -> Result<()> {
        for listed in self.list(rel).await? {
            self.delete(&listed.path).await?;
        }
        Ok(())
    }
}

/// Write one file given by its full URL (a local path, `file://` or `s3://` URL): e.g. the
/// metrics and lineage files a scheduler asks for. Replaced whole (object_store writes a local
/// file to a temporary name and renames it into place).
pub async fn write_file(url: &str, bytes: Bytes) -> Result<()> {
    let url = url.trim();
    let (dir, name) = match url.rsplit_once('/') {
        Some((dir, name)) if !name.is_empty() => (if dir.is_empty() { "/" } else { dir }, name),
        Some(_) => {
            return Err(FlywheelError::Config(format!(
                "{url}: names a folder, not a file"
            )))
        }
        None => (".", url),
    };
    Root::parse(dir)?.put(name, bytes).await
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
