//! The nightly drift figures: for each champion with a drift reference (recorded at training),
//! the PSI of every feature it reads and of its score, over the model's own population at the run
//! date (refer: delivered customers; churn: customers with a visit in the last 365 days), against
//! the champion's training snapshot, counted batch by batch as scoring reads the features. A
//! score whose PSI passes 0.25 is a warning in the log.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use flywheel_models::drift::{reading, Values};
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

/// The drift figures of the run, counted batch by batch while scoring: each batch of
/// customer_features at the run date with its scores ([`count_batch`], [`DriftCounts::add`]),
/// then the PSI of every count against the champion's reference ([`DriftCounts::finish`]).
pub struct DriftCounts<'m> {
    models: Vec<Counted<'m>>,
}

/// One champion's counts: rows of its population, and per reference variable the rows per bin.
struct Counted<'m> {
    target: Target,
    model: &'m ModelFile,
    rows: i64,
    counts: Vec<Vec<u64>>,
}

impl<'m> DriftCounts<'m> {
    pub fn new(models: &'m BTreeMap<Target, ModelFile>) -> Self {
        let mut counted = Vec::new();
        for (target, model) in models {
            if model.drift_reference.is_empty() {
                warn!(
                    target = target.name(),
                    version = %model.version,
                    "the champion has no drift reference (trained before drift figures existed); retrain to get them"
                );
                continue;
            }
            counted.push(Counted {
                target: *target,
                model,
                rows: 0,
                counts: model
                    .drift_reference
                    .iter()
                    .map(|r| r.no_counts())
                    .collect(),
            });
        }
        DriftCounts { models: counted }
    }

    /// Add the counts of one batch ([`count_batch`]; batches may be counted on other threads and
    /// added in any order: the counts are sums).
    pub fn add(&mut self, batch: BatchCounts) {
        for (target, rows, counts) in batch.0 {
            let Some(m) = self.models.iter_mut().find(|m| m.target == target) else {
                continue;
            };
            m.rows += rows;
            for (total, part) in m.counts.iter_mut().zip(counts) {
                total.iter_mut().zip(part).for_each(|(t, p)| *t += p);
            }
        }
    }

    /// The figures, per champion and reference variable; a drifted score is a warning.
    pub fn finish(self) -> Vec<Drift> {
        let mut out = Vec::new();
        for m in self.models {
            let (target, model) = (m.target, m.model);
            for (reference, counts) in model.drift_reference.iter().zip(&m.counts) {
                let is_score = reference.variable == SCORE_VARIABLE;
                let psi = reference.psi_of_counts(counts);
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
                    rows: m.rows,
                });
            }
        }
        out
    }
}

/// The drift counts of one batch: per champion with a drift reference, its population's rows
/// and, per reference variable, the rows per bin.
pub struct BatchCounts(Vec<(Target, i64, Vec<Vec<u64>>)>);

/// Count one batch of customer_features and its scores (`p_refer`, `p_churn`: one per row) for
/// every champion in `models` with a drift reference.
pub fn count_batch(
    models: &BTreeMap<Target, ModelFile>,
    features: &RecordBatch,
    p_refer: &[Option<f64>],
    p_churn: &[Option<f64>],
) -> Result<BatchCounts> {
    let mut out = Vec::new();
    for (target, model) in models {
        if model.drift_reference.is_empty() {
            continue;
        }
        let mask = target.population(features)?;
        let rows = mask.iter().filter(|k| **k).count() as i64;
        let scores = match target {
            Target::Refer => p_refer,
            Target::Churn => p_churn,
        };
        let mut all = Vec::with_capacity(model.drift_reference.len());
        for reference in &model.drift_reference {
            let values = if reference.variable == SCORE_VARIABLE {
                Values::Numbers(scores.iter().copied().collect())
            } else {
                Values::of_column(features, &reference.variable)?
            };
            let mut counts = reference.no_counts();
            reference.count_values(&values, Some(&mask), &mut counts);
            all.push(counts);
        }
        out.push((*target, rows, all));
    }
    Ok(BatchCounts(out))
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
