//! Atomic-per-run publishing. Every output file is first written under
//! `<output>/_staging/<run id>/`, and only when all of them are there is each output folder
//! `<table>/dt=D/` replaced by its staged files; the run manifest is written last. A run that
//! fails before the commit leaves the previous outputs of the date untouched.

use bytes::Bytes;
use serde::Serialize;

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
    /// The folder it is published to, below the output root.
    folder: String,
    file: String,
    rows: Option<u64>,
    bytes: u64,
}

pub struct Publisher {
    root: Root,
    staging: String,
    staged: Vec<Staged>,
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
        self.staged.push(Staged {
            folder: folder.to_string(),
            file: file.to_string(),
            rows,
            bytes: len,
        });
        Ok(())
    }

    /// Replace each staged folder's published files with the staged ones.
    pub async fn commit(self) -> Result<Vec<PublishedFile>> {
        let mut folders: Vec<&String> = self.staged.iter().map(|s| &s.folder).collect();
        folders.sort();
        folders.dedup();
        for folder in folders {
            self.root.delete_prefix(&format!("{folder}/")).await?;
        }
        let mut out = Vec::new();
        for s in &self.staged {
            let (folder, file) = (&s.folder, &s.file);
            self.root
                .rename(
                    &format!("{}/{folder}/{file}", self.staging),
                    &format!("{folder}/{file}"),
                )
                .await?;
            out.push(PublishedFile {
                path: format!("{folder}/{file}"),
                bytes: s.bytes,
                rows: s.rows,
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
