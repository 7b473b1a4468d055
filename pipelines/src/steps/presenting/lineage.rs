//! The run as OpenLineage run events (`flywheel run --lineage-file PATH`, JSON lines): a START
//! event when the run begins, then COMPLETE or FAIL when it ends, each with the job
//! (`flywheel/nightly_run`), the run (its id as a UUID derived from flywheel's run id, the
//! nominal time = the run date's as_of), the input datasets (one per input export) and output
//! datasets (one per published table folder) with their schemas from the data contracts; the end
//! event adds row counts (inputs: `dataQualityMetrics.rowCount`; outputs:
//! `outputStatistics.rowCount` and `size`) and, on failure, the error message.

use serde_json::{json, Value};

use crate::contracts::{self, Contract, Role};
use crate::error::Result;
use crate::steps::publishing::Manifest;
use crate::storage::Root;

const PRODUCER: &str = concat!(
    "https://github.com/flywheel/flywheel/tree/v",
    env!("CARGO_PKG_VERSION")
);
const RUN_EVENT: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";

/// Who the events are about.
pub struct RunInfo {
    pub run_id: String,
    pub as_of: String,
    pub input: Root,
    pub output: Root,
}

/// How the run ended.
pub enum End<'a> {
    Complete(&'a Manifest),
    Fail(&'a str),
}

/// The START event.
pub fn start(run: &RunInfo, at: &str) -> Result<Value> {
    event("START", run, at, None)
}

/// The COMPLETE or FAIL event.
pub fn end(run: &RunInfo, at: &str, how: &End) -> Result<Value> {
    match how {
        End::Complete(m) => event("COMPLETE", run, at, Some(*m)),
        End::Fail(error) => {
            let mut e = event("FAIL", run, at, None)?;
            e["run"]["facets"]["errorMessage"] = facet(
                "1-0-1",
                "ErrorMessageRunFacet",
                json!({ "message": error, "programmingLanguage": "Rust" }),
            );
            Ok(e)
        }
    }
}

fn event(kind: &str, run: &RunInfo, at: &str, done: Option<&Manifest>) -> Result<Value> {
    let inputs = input_datasets(run, done)?;
    let outputs = output_datasets(run, done)?;
    Ok(json!({
        "eventType": kind,
        "eventTime": at,
        "producer": PRODUCER,
        "schemaURL": RUN_EVENT,
        "run": {
            "runId": uuid(&run.run_id),
            "facets": { "nominalTime": facet("1-0-1", "NominalTimeRunFacet", json!({
                "nominalStartTime": run.as_of,
            }))},
        },
        "job": {
            "namespace": "flywheel",
            "name": "nightly_run",
            "facets": { "jobType": facet("2-0-3", "JobTypeJobFacet", json!({
                "processingType": "BATCH",
                "integration": "FLYWHEEL",
                "jobType": "JOB",
            }))},
        },
        "inputs": inputs,
        "outputs": outputs,
    }))
}

/// One dataset per input export, with its row count once the run is done.
fn input_datasets(run: &RunInfo, done: Option<&Manifest>) -> Result<Vec<Value>> {
    let mut inputs = Vec::new();
    for name in contracts::inputs() {
        let c = contracts::contract(name)?;
        let mut d = dataset(&run.input, name, &c);
        if let Some(check) = done.and_then(|m| m.contract_checks.iter().find(|k| k.input == *name))
        {
            d["inputFacets"] = json!({ "dataQualityMetrics": facet("1-0-2", "DataQualityMetricsInputDatasetFacet", json!({
                "rowCount": check.rows,
                "columnMetrics": {},
            }))});
        }
        inputs.push(d);
    }
    Ok(inputs)
}

/// One dataset per published table folder, with rows and bytes once the run is done.
fn output_datasets(run: &RunInfo, done: Option<&Manifest>) -> Result<Vec<Value>> {
    let mut outputs = Vec::new();
    for c in contracts::published()? {
        let Role::Published(p) = &c.role else {
            continue;
        };
        let folders: Vec<String> = if p.folder.contains("{input}") {
            contracts::inputs()
                .iter()
                .map(|i| p.folder.replace("{input}", i))
                .collect()
        } else {
            vec![p.folder.clone()]
        };
        for folder in folders {
            let mut d = dataset(&run.output, &folder, &c);
            if let Some(m) = done {
                let prefix = format!("{folder}/");
                let rows: u64 = m
                    .tables
                    .iter()
                    .filter(|t| t.path.starts_with(&prefix))
                    .map(|t| t.rows)
                    .sum();
                let size: u64 = m
                    .files
                    .iter()
                    .filter(|f| f.path.starts_with(&prefix))
                    .map(|f| f.bytes)
                    .sum();
                d["outputFacets"] = json!({ "outputStatistics": facet("1-0-2", "OutputStatisticsOutputDatasetFacet", json!({
                    "rowCount": rows,
                    "size": size,
                }))});
            }
            outputs.push(d);
        }
    }
    Ok(outputs)
}

/// A facet: `body` with the `_producer` and the `_schemaURL` of facet `name` at spec `version`.
fn facet(version: &str, name: &str, mut body: Value) -> Value {
    body["_producer"] = json!(PRODUCER);
    body["_schemaURL"] = json!(format!(
        "https://openlineage.io/spec/facets/{version}/{name}.json#/$defs/{name}"
    ));
    body
}

/// A dataset: the folder `rel` of `root`, named as OpenLineage names files and objects
/// (namespace `file` and the absolute path, or `s3://bucket` and the key), with the contract's
/// schema.
fn dataset(root: &Root, rel: &str, c: &Contract) -> Value {
    let (namespace, name) = root.dataset_name(rel);
    let fields: Vec<Value> = c
        .columns
        .iter()
        .map(|col| json!({ "name": col.name, "type": col.ty.name() }))
        .collect();
    json!({
        "namespace": namespace,
        "name": name,
        "facets": { "schema": facet("1-1-1", "SchemaDatasetFacet", json!({
            "fields": fields,
        }))},
    })
}

/// A UUID (version 8, "custom") derived from flywheel's run id, so that the START and end events
/// of a run share it and a rerun gets another.
pub fn uuid(run_id: &str) -> String {
    let a = flywheel_models::fnv1a(run_id.as_bytes());
    let b = flywheel_models::fnv1a(format!("{run_id}/openlineage").as_bytes());
    let hex = format!("{a:016x}{b:016x}");
    let variant = ["8", "9", "a", "b"][(b >> 60) as usize & 3];
    format!(
        "{}-{}-8{}-{}{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        variant,
        &hex[17..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::uuid;

    #[test]
    fn the_run_uuid_is_a_version_8_uuid_of_the_run_id() {
        let u = uuid("2026-06-01-1796226512017686519");
        assert_eq!(u.len(), 36);
        let parts: Vec<&str> = u.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('8'));
        assert!("89ab".contains(&parts[3][..1]));
        assert_eq!(u, uuid("2026-06-01-1796226512017686519"));
        assert_ne!(u, uuid("2026-06-01-1796226512017686520"));
    }
}
