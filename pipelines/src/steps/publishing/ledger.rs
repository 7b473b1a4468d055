//! The run ledger: every `flywheel run`, failed and refused ones included, leaves one record,
//! `_runs/ledger/dt=D/<run id>.json`, written when the run ends. A rerun adds a record and never
//! replaces an earlier one (the run id holds the start in nanoseconds). `flywheel runs` lists
//! them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{FlywheelError, Result};
use crate::storage::Root;

/// Version of the record's layout (and of the manifest's), for readers of these files.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub schema_version: u32,
    pub run_id: String,
    pub run_date: String,
    /// `succeeded`, `failed`, or `abandoned`: the run ended without writing its record (killed,
    /// or the store stopped answering), as found by a later run or `flywheel recover`.
    pub status: String,
    /// None for an abandoned run (nobody saw it end).
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub started_at: String,
    /// For an abandoned run: when it was found.
    pub ended_at: String,
    pub flywheel_version: String,
    /// Per input: a fingerprint of its files (path, size, last-modified), when the run got as far
    /// as reading them.
    pub input_fingerprints: BTreeMap<String, String>,
}

const FOLDER: &str = "_runs/ledger";

fn path(date: &str, run_id: &str) -> String {
    format!("{FOLDER}/dt={date}/{run_id}.json")
}

/// Write `record` to the ledger; returns its location.
pub async fn write(output: &Root, record: &RunRecord) -> Result<String> {
    let path = path(&record.run_date, &record.run_id);
    let json = serde_json::to_vec_pretty(record).map_err(FlywheelError::internal)?;
    output.put(&path, json.into()).await?;
    Ok(output.display(&path))
}

/// Give run `run_id` of `date` an `abandoned` record unless it has one: it ended without writing
/// its own. `found_by`: the run (or recovery) that found it; `what`: what became of it.
pub async fn record_abandoned(
    output: &Root,
    run_id: &str,
    date: &str,
    found_by: &str,
    what: &str,
) -> Result<()> {
    if output.exists(&path(date, run_id)).await? {
        return Ok(());
    }
    // The run id holds the start in nanoseconds since the epoch.
    let started_at = run_id
        .get(11..)
        .and_then(|ns| ns.parse::<i64>().ok())
        .map(|ns| chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339())
        .unwrap_or_default();
    let record = RunRecord {
        schema_version: SCHEMA_VERSION,
        run_id: run_id.to_string(),
        run_date: date.to_string(),
        status: "abandoned".into(),
        exit_code: None,
        error: Some(format!(
            "the run ended without writing its record (killed, or its store stopped answering); {what}; found by {found_by}"
        )),
        started_at,
        ended_at: chrono::Utc::now().to_rfc3339(),
        flywheel_version: env!("CARGO_PKG_VERSION").to_string(),
        input_fingerprints: BTreeMap::new(),
    };
    write(output, &record).await.map(|_| ())
}

/// Every record of the ledger (of one run date when `date` is given), oldest first.
pub async fn list(output: &Root, date: Option<&str>) -> Result<Vec<RunRecord>> {
    let prefix = match date {
        Some(d) => format!("{FOLDER}/dt={d}/"),
        None => format!("{FOLDER}/"),
    };
    let mut out = Vec::new();
    for listed in output.list(&prefix).await? {
        if !listed.path.ends_with(".json") {
            continue;
        }
        let Some(bytes) = output.get(&listed.path).await? else {
            continue;
        };
        let record: RunRecord =
            serde_json::from_slice(&bytes).map_err(|e| FlywheelError::EarlierOutput {
                path: output.display(&listed.path),
                problem: format!("not a run record ({e})"),
            })?;
        out.push(record);
    }
    out.sort_by(|a, b| (&a.started_at, &a.run_id).cmp(&(&b.started_at, &b.run_id)));
    Ok(out)
}

/// A fingerprint of one input's files: FNV-1a over path, size and last-modified, in path order.
pub fn fingerprint<'a>(files: impl IntoIterator<Item = (&'a str, u64, &'a str)>) -> String {
    let mut parts: Vec<String> = files
        .into_iter()
        .map(|(p, size, modified)| format!("{p}\t{size}\t{modified}\n"))
        .collect();
    parts.sort();
    format!("{:016x}", flywheel_models::fnv1a(parts.concat().as_bytes()))
}
