//! A score's reasons in words: the features that push it up most, each described with the
//! customer's own value ("no visit for 120 days", "last NPS 4").

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, Float64Array, RecordBatch};
use arrow::datatypes::DataType;

/// A batch's feature columns as numbers and text, cast once, for the reasons columns.
pub struct Described<'a> {
    batch: &'a RecordBatch,
    numbers: BTreeMap<String, Option<Float64Array>>,
}

impl<'a> Described<'a> {
    pub fn new(batch: &'a RecordBatch) -> Described<'a> {
        let mut numbers = BTreeMap::new();
        for f in batch.schema().fields() {
            let cast = arrow::compute::cast(
                batch.column_by_name(f.name()).expect("own column"),
                &DataType::Float64,
            )
            .ok()
            .and_then(|a| {
                a.as_primitive_opt::<arrow::datatypes::Float64Type>()
                    .cloned()
            });
            numbers.insert(f.name().clone(), cast);
        }
        Described { batch, numbers }
    }

    fn num(&self, feature: &str, row: usize) -> f64 {
        self.numbers
            .get(feature)
            .and_then(|a| a.as_ref())
            .map(|a| a.value(row))
            .unwrap_or(f64::NAN)
    }

    fn text(&self, feature: &str, row: usize) -> String {
        let Some(col) = self.batch.column_by_name(feature) else {
            return String::new();
        };
        if let Some(s) = col.as_string_opt::<i32>() {
            return s.value(row).to_string();
        }
        if let Some(b) = col.as_boolean_opt() {
            return b.value(row).to_string();
        }
        String::new()
    }

    /// A feature's value in words.
    pub fn describe(&self, feature: &str, row: usize) -> String {
        let Some(col) = self.batch.column_by_name(feature) else {
            return feature.to_string();
        };
        if col.is_null(row) {
            return match feature {
                "nps_last" | "nps_mean_365d" => "no NPS answer".into(),
                "days_since_last_visit" => "never visited".into(),
                "avg_wait_minutes_365d" => "no recorded wait".into(),
                _ => format!("{feature} unknown"),
            };
        }
        let num = || self.num(feature, row);
        let text = || self.text(feature, row);
        match feature {
            "days_since_last_visit" => format!("no visit for {} days", num()),
            "nps_last" => format!("last NPS {}", num()),
            "nps_mean_365d" => format!("mean NPS {:.1} in the last year", num()),
            "avg_wait_minutes_365d" => format!("average wait {:.0} min", num()),
            "repair_visits_365d" => format!("{} repair or warranty visits in the last year", num()),
            "roadside_365d" => format!(
                "{} roadside or mobile-service calls in the last year",
                num()
            ),
            "visits_90d" => format!("{} visits in the last 90 days", num()),
            "visits_365d" => format!("{} visits in the last year", num()),
            "revenue_365d" => format!("spent {:.0} in the last year", num()),
            "value_added_revenue_365d" => {
                format!("value-added spend {:.0} in the last year", num())
            }
            "value_added_visits_365d" => {
                format!("{} value-added purchases in the last year", num())
            }
            "tenure_days" => format!("customer for {:.0} days", num()),
            "nps_responses_365d" => format!("{} NPS answers in the last year", num()),
            "shares_365d" => format!("{} referral shares in the last year", num()),
            "referrals_converted_total" => format!("{} successful referrals so far", num()),
            "referrals_converted_365d" => {
                format!("{} successful referrals in the last year", num())
            }
            "social_shares_90d" => format!("{} service stories shared in 90 days", num()),
            "community_member" => {
                if text() == "true" {
                    "owners' community member".into()
                } else {
                    "not in the owners' community".into()
                }
            }
            "acquired_by_referral" => {
                if text() == "true" {
                    "came by referral".into()
                } else {
                    "did not come by referral".into()
                }
            }
            "segment" => format!("segment {}", text()),
            "vehicle_model" => format!("drives a {}", text()),
            other => format!("{other} {}", text()),
        }
    }
}

pub fn reasons(s: &flywheel_models::Score, d: &Described, i: usize) -> String {
    s.top_features
        .iter()
        .map(|(f, _)| d.describe(f, i))
        .collect::<Vec<_>>()
        .join("; ")
}
