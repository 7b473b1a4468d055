//! What the models predict and from what: the two targets (refer, churn) with their horizons
//! and training-set jobs, the features both models use, and the fingerprint of the inputs a
//! model was trained on.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use flywheel_models::FeatureSpec;

use crate::config::Config;
use crate::error::{FlywheelError, Result};
use crate::steps::ingest::InputFile;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    Refer,
    Churn,
}

impl Target {
    pub const ALL: [Target; 2] = [Target::Refer, Target::Churn];

    pub fn name(&self) -> &'static str {
        match self {
            Target::Refer => "refer",
            Target::Churn => "churn",
        }
    }

    pub fn parse(s: &str) -> Result<Vec<Target>> {
        match s {
            "refer" => Ok(vec![Target::Refer]),
            "churn" => Ok(vec![Target::Churn]),
            "all" => Ok(Target::ALL.to_vec()),
            _ => Err(FlywheelError::Config(format!(
                "unknown target {s:?}: use refer, churn or all"
            ))),
        }
    }

    pub fn horizon_days(&self, cfg: &Config) -> i64 {
        match self {
            Target::Refer => cfg.refer_horizon_days,
            Target::Churn => cfg.churn_horizon_days,
        }
    }

    /// Which rows of a customer_features batch are in the target's population (domain.md,
    /// Scores): refer, delivered customers (its training population; every customer is scored);
    /// churn, customers with a visit in the last 365 days (the only ones with a p_churn).
    pub fn population(&self, b: &RecordBatch) -> Result<Vec<bool>> {
        let name = self.population_column();
        let column = b.column_by_name(name).ok_or_else(|| {
            FlywheelError::internal(format!("customer_features has no column {name}"))
        })?;
        Ok(match self {
            Target::Refer => {
                let d = column.as_boolean();
                (0..d.len()).map(|i| d.is_valid(i) && d.value(i)).collect()
            }
            Target::Churn => {
                let v = column.as_primitive::<arrow::datatypes::Int32Type>();
                (0..v.len())
                    .map(|i| v.is_valid(i) && v.value(i) > 0)
                    .collect()
            }
        })
    }

    /// The column of customer_features that [`Target::population`] reads.
    pub fn population_column(&self) -> &'static str {
        match self {
            Target::Refer => "delivered",
            Target::Churn => "visits_365d",
        }
    }

    /// The training-set job of the target (`sql/train_labels_<target>.sql`).
    pub fn labels_job(&self) -> String {
        format!("train_labels_{}", self.name())
    }
}

/// The features both models use (columns of customer_features).
pub fn feature_spec() -> FeatureSpec {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    FeatureSpec {
        numeric: s(&[
            "tenure_days",
            "days_since_last_visit",
            "visits_90d",
            "visits_365d",
            "revenue_365d",
            "value_added_revenue_365d",
            "value_added_visits_365d",
            "repair_visits_365d",
            "roadside_365d",
            "avg_wait_minutes_365d",
            "nps_last",
            "nps_mean_365d",
            "nps_responses_365d",
            "shares_365d",
            "referrals_converted_total",
            "referrals_converted_365d",
            "social_shares_90d",
        ]),
        missing_indicator: s(&[
            "days_since_last_visit",
            "avg_wait_minutes_365d",
            "nps_last",
            "nps_mean_365d",
        ]),
        boolean: s(&["community_member", "acquired_by_referral"]),
        categorical: s(&["segment", "vehicle_model"]),
    }
}

/// The feature columns a model reads, in its preprocessor's order.
pub fn model_features(model: &flywheel_models::Model) -> Vec<String> {
    let p = &model.preprocessor;
    p.numeric
        .iter()
        .map(|c| c.name.clone())
        .chain(p.boolean.iter().cloned())
        .chain(p.categorical.iter().map(|c| c.name.clone()))
        .collect()
}

/// A short fingerprint of the input files (paths, sizes, rows), recorded in every model.
pub fn fingerprint(files: &BTreeMap<String, Vec<InputFile>>) -> String {
    let mut text = String::new();
    for (input, fs) in files {
        for f in fs {
            text.push_str(&format!("{input}/{}:{}:{};", f.path, f.size, f.rows));
        }
    }
    format!("{:016x}", flywheel_models::fnv1a(text.as_bytes()))
}
