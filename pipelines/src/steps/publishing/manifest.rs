//! The run manifest, `_runs/dt=D/manifest.json`, the last file a commit moves in (only the
//! completion marker `_SUCCESS` comes after it): what was read (files, sizes,
//! contract results), what was published (tables, files, rows), the configuration, model
//! versions, warnings and stage timings.

use std::collections::BTreeMap;

use serde::Serialize;

use super::publisher::PublishedFile;
use crate::config::Config;
use crate::engine::stages::Stage;
use crate::error::{FlywheelError, Result};
use crate::steps::ingest::{InputCheck, InputFile};

#[derive(Debug, Serialize)]
pub struct Manifest {
    /// The layout version of this file (`ledger::SCHEMA_VERSION`).
    pub schema_version: u32,
    pub flywheel_version: String,
    /// `<run date>-<start in ns>`: also the name of the run's staging folder.
    pub run_id: String,
    pub run_date: String,
    pub as_of: String,
    pub started_at: String,
    pub input: String,
    pub output: String,
    pub inputs: BTreeMap<String, Vec<InputFile>>,
    pub contract_checks: Vec<InputCheck>,
    pub tables: Vec<PublishedTable>,
    pub files: Vec<PublishedFile>,
    pub warnings: Vec<String>,
    pub config: Config,
    pub model_versions: BTreeMap<String, String>,
    pub stages: Vec<Stage>,
    /// The drift figures of the champions (PSI per feature and score; README, Drift).
    pub drift: Vec<crate::steps::scoring::drift::Drift>,
    /// How the scores of the latest earlier run date a horizon old turned out, per target
    /// (realised ROC AUC against the training holdout's; README, Drift).
    pub outcomes: Vec<crate::steps::scoring::outcome::Outcome>,
}

#[derive(Debug, Serialize)]
pub struct PublishedTable {
    pub table: String,
    pub path: String,
    pub rows: u64,
    pub contract: String,
}

/// Where the manifest of `date` is published, below the output root.
pub fn path(date: &str) -> String {
    format!("_runs/dt={date}/manifest.json")
}

/// The manifest as published (pretty JSON).
pub fn to_json(manifest: &Manifest) -> Result<bytes::Bytes> {
    Ok(serde_json::to_vec_pretty(manifest)
        .map_err(FlywheelError::internal)?
        .into())
}
