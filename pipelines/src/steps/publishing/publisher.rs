//! Staging of one run's files. Every output file is first written to the run's staging folder,
//! `<output>/_staging/<run id>/` (flat: `<n>-<file name>`), while the published folders stay as
//! they are. Only when every file, the manifest included, is staged does [`Publisher::commit`]
//! hand the moves to the commit journal ([`super::commit`]), which replaces each published file
//! by moving the staged one over it. A run that fails before that leaves the previous outputs of
//! the date untouched and removes its staging ([`Publisher::abort`]).

use bytes::Bytes;
use serde::Serialize;

use super::commit::{self, Journal, Move};
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
        let staged = format!(
            "{}/{:03}-{file}",
            commit::staging(&self.run_id),
            self.staged.len()
        );
        let len = bytes.len() as u64;
        self.root.put(&staged, bytes).await?;
        self.staged.push(Staged {
            staged,
            target: format!("{folder}/{file}"),
            rows,
            bytes: len,
        });
        Ok(())
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

    /// Remove whatever was staged (a run that fails before its commit publishes nothing). Bounded
    /// in time: a store that does not answer leaves the staging to the next run's clean-up.
    pub async fn abort(self) {
        let staging = commit::staging(&self.run_id);
        let removal = self.root.delete_prefix(&staging);
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
}
