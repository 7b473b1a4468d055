//! The realised quality of past scores. The scores a run published on date P can be judged once
//! P + horizon has passed: the inputs of a later run then hold every event of the label's window.
//! Labels are those of training (`sql/train_labels_<target>.sql` at snapshot P, over P's
//! published customer_features), so the figure is the holdout AUC a model was chosen on, measured
//! on the scores the CRM actually received. A realised AUC well below the version's training
//! holdout AUC is a model decaying in use.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Date32Array, Float64Array, Int64Array, RecordBatch,
};
use arrow::array::{AsArray, StringArray};
use arrow::datatypes::{DataType, Float64Type};
use datafusion::prelude::SessionContext;
use flywheel_models::{evaluate, ModelFile};
use serde::Serialize;

use super::target::Target;
use super::training_set;
use crate::config::Config;
use crate::engine::{RunDate, Table};
use crate::error::{FlywheelError, Result};

/// The published table of the outcomes.
pub const OUTCOMES: &str = "model_outcomes";

/// The tables the label jobs read besides the features: the run keeps them until the outcomes
/// are measured.
pub const LABEL_TABLES: [&str; 2] = ["int_referral_signups", "visits"];

/// The columns of published customer_features the label jobs read.
pub const FEATURE_COLUMNS: [&str; 3] = ["customer_id", "delivered", "visits_365d"];

/// How one target's scores of an earlier run date turned out.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub target: String,
    pub scored_date: String,
    pub horizon_days: i64,
    pub model_version: Option<String>,
    pub is_champion: bool,
    pub rows: i64,
    pub positives: i64,
    pub realised_auc: Option<f64>,
    pub training_auc: Option<f64>,
    pub auc_change: Option<f64>,
}

/// The published score columns of `target` (its probability and the version that gave it).
pub fn score_columns(target: Target) -> [String; 3] {
    let name = target.name();
    [
        "customer_id".to_string(),
        format!("p_{name}"),
        format!("{name}_model_version"),
    ]
}

/// What an earlier run published on `scored`, read back: its customer_features (at least
/// [`FEATURE_COLUMNS`]) and its customer_scores (at least [`score_columns`]).
pub struct Published {
    pub scored: RunDate,
    pub features: Table,
    pub scores: Table,
}

impl Published {
    /// The model version that gave `target`'s scores (the first one found; a run scores with one).
    pub fn version(&self, target: Target) -> Option<String> {
        let [_, _, version_col] = score_columns(target);
        self.scores.batches.iter().find_map(|b| {
            text_column(b, &version_col)
                .ok()?
                .into_iter()
                .flatten()
                .next()
        })
    }
}

/// The outcome of `target`'s scores of `published.scored`. `ctx` holds this run's inputs and
/// `int_referral_signups`; `version_file` is the model file of the version that scored them
/// (None when it is gone from the registry), `champion` this run's champion version.
pub async fn measure(
    ctx: &SessionContext,
    cfg: &Config,
    target: Target,
    published: &Published,
    version_file: Option<&ModelFile>,
    champion: Option<&str>,
) -> Result<Outcome> {
    let (batches, labels) =
        training_set::labelled(ctx, cfg, target, &published.scored, &published.features).await?;
    let label_of: BTreeMap<String, bool> = ids(&batches)?.into_iter().zip(labels).collect();
    let [_, score_col, _] = score_columns(target);
    let (mut p, mut y) = (Vec::new(), Vec::new());
    for b in &published.scores.batches {
        let ids = text_column(b, "customer_id")?;
        let scores = arrow::compute::cast(column(b, &score_col)?, &DataType::Float64)?;
        let scores = scores.as_primitive::<Float64Type>();
        for (i, id) in ids.iter().enumerate() {
            let label = id.as_ref().and_then(|id| label_of.get(id));
            if let (Some(label), true) = (label, scores.is_valid(i)) {
                p.push(scores.value(i));
                y.push(*label);
            }
        }
    }
    let version = published.version(target);
    let positives = y.iter().filter(|l| **l).count();
    let realised_auc = (positives > 0 && positives < y.len()).then(|| evaluate(&p, &y).roc_auc);
    let training_auc = version_file
        .filter(|f| Some(&f.version) == version.as_ref())
        .map(|f| f.holdout_metrics.roc_auc);
    Ok(Outcome {
        target: target.name().to_string(),
        scored_date: published.scored.to_string(),
        horizon_days: target.horizon_days(cfg),
        is_champion: version.is_some() && version.as_deref() == champion,
        model_version: version,
        rows: y.len() as i64,
        positives: positives as i64,
        realised_auc,
        training_auc,
        auc_change: realised_auc.zip(training_auc).map(|(r, t)| r - t),
    })
}

fn column<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    b.column_by_name(name).ok_or_else(|| {
        FlywheelError::internal(format!("a published table read back has no {name} column"))
    })
}

fn text_column(b: &RecordBatch, name: &str) -> Result<Vec<Option<String>>> {
    let c = arrow::compute::cast(column(b, name)?, &DataType::Utf8)?;
    Ok(c.as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect())
}

fn ids(batches: &[RecordBatch]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for b in batches {
        out.extend(
            text_column(b, "customer_id")?
                .into_iter()
                .map(Option::unwrap_or_default),
        );
    }
    Ok(out)
}

/// The outcomes as the published table (its contract's schema).
pub fn table(outcomes: &[Outcome]) -> Result<Table> {
    let schema = crate::contracts::contract(OUTCOMES)?.schema();
    let days = |d: &str| {
        chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .map(|d| RunDate::epoch_days_of(d) as i32)
            .map_err(|e| FlywheelError::internal(format!("scored date {d}: {e}")))
    };
    let float = |f: fn(&Outcome) -> Option<f64>| -> ArrayRef {
        Arc::new(Float64Array::from_iter(outcomes.iter().map(f)))
    };
    let int = |f: fn(&Outcome) -> i64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(outcomes.iter().map(f)))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            outcomes.iter().map(|o| &o.target),
        )),
        Arc::new(Date32Array::from(
            outcomes
                .iter()
                .map(|o| days(&o.scored_date))
                .collect::<Result<Vec<_>>>()?,
        )),
        int(|o| o.horizon_days),
        Arc::new(StringArray::from_iter(
            outcomes.iter().map(|o| o.model_version.as_deref()),
        )),
        Arc::new(BooleanArray::from_iter(
            outcomes.iter().map(|o| Some(o.is_champion)),
        )),
        int(|o| o.rows),
        int(|o| o.positives),
        float(|o| o.realised_auc),
        float(|o| o.training_auc),
        float(|o| o.auc_change),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Table {
        schema,
        batches: vec![batch],
    })
}
