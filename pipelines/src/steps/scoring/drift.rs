//! The nightly drift figures: for each champion with a drift reference (recorded at training),
//! the PSI of every feature it reads and of its score, over the model's own population at the run
//! date (refer: delivered customers; churn: customers with a visit in the last 365 days), against
//! the champion's training snapshot. A score whose PSI passes 0.25 is a warning in the log.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use flywheel_models::drift::{column_values, reading, Value};
use flywheel_models::ModelFile;
use serde::Serialize;
use tracing::warn;

use super::target::Target;
use super::train::SCORE_VARIABLE;
use crate::engine::Table;
use crate::error::Result;

/// The published table of the drift figures.
pub const DRIFT: &str = "model_drift";

/// One drift figure.
#[derive(Debug, Clone, Serialize)]
pub struct Drift {
    pub target: String,
    pub model_version: String,
    pub variable: String,
    pub kind: String,
    pub psi: f64,
    pub reading: String,
    pub bins: i32,
    pub rows: i64,
}

/// The drift figures of the run: `features` is customer_features at the run date, `scores` the
/// scoring step's table (rows in the same order).
pub fn measure(
    features: &Table,
    scores: &Table,
    models: &BTreeMap<Target, ModelFile>,
) -> Result<Vec<Drift>> {
    let mut out = Vec::new();
    for (target, model) in models {
        if model.drift_reference.is_empty() {
            warn!(
                target = target.name(),
                version = %model.version,
                "the champion has no drift reference (trained before drift figures existed); retrain to get them"
            );
            continue;
        }
        let mask: Vec<bool> = features
            .batches
            .iter()
            .map(|b| target.population(b))
            .collect::<Result<Vec<_>>>()?
            .concat();
        let rows = mask.iter().filter(|m| **m).count() as i64;
        let score_column = match target {
            Target::Refer => "p_refer",
            Target::Churn => "p_churn",
        };
        for reference in &model.drift_reference {
            let is_score = reference.variable == SCORE_VARIABLE;
            let values = if is_score {
                column_values(&scores.batches, score_column)?
            } else {
                column_values(&features.batches, &reference.variable)?
            };
            let values: Vec<Option<Value>> = values
                .into_iter()
                .zip(&mask)
                .filter(|(_, m)| **m)
                .map(|(v, _)| v)
                .collect();
            let psi = reference.psi(&values);
            if is_score && psi > 0.25 {
                warn!(
                    target = target.name(),
                    version = %model.version,
                    psi,
                    "the {} score has drifted from the champion's training snapshot (PSI {psi:.3} > 0.25): retrain",
                    target.name()
                );
            }
            out.push(Drift {
                target: target.name().to_string(),
                model_version: model.version.clone(),
                variable: reference.variable.clone(),
                kind: if is_score { "score" } else { "feature" }.to_string(),
                psi,
                reading: reading(psi).to_string(),
                bins: reference.shares.len() as i32,
                rows,
            });
        }
    }
    Ok(out)
}

/// The figures as the published table (its contract's schema).
pub fn table(drift: &[Drift]) -> Result<Table> {
    let schema = crate::contracts::contract(DRIFT)?.schema();
    let text = |f: fn(&Drift) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(drift.iter().map(f)))
    };
    let columns: Vec<ArrayRef> = vec![
        text(|d| &d.target),
        text(|d| &d.model_version),
        text(|d| &d.variable),
        text(|d| &d.kind),
        Arc::new(Float64Array::from_iter_values(drift.iter().map(|d| d.psi))),
        text(|d| &d.reading),
        Arc::new(Int32Array::from_iter_values(drift.iter().map(|d| d.bins))),
        Arc::new(Int64Array::from_iter_values(drift.iter().map(|d| d.rows))),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Table {
        schema,
        batches: vec![batch],
    })
}
