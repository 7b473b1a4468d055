//! A score's reasons in words: the features that push it up most, each described with the
//! customer's own value ("no visit for 120 days", "last NPS 4").

use std::collections::HashMap;
use std::fmt::Write;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, RecordBatch};
use arrow::datatypes::DataType;

/// A batch's feature columns, looked up by name once, and those that are not text cast to
/// numbers once, for the reasons columns.
pub struct Described<'a> {
    columns: HashMap<&'a str, Column<'a>>,
    rows: usize,
}

struct Column<'a> {
    array: &'a ArrayRef,
    /// The column as numbers (None for text, whose reasons quote it as it is).
    numbers: Option<Float64Array>,
}

impl Column<'_> {
    fn num(&self, row: usize) -> f64 {
        self.numbers
            .as_ref()
            .map(|a| a.value(row))
            .unwrap_or(f64::NAN)
    }

    fn text(&self, row: usize) -> &str {
        if let Some(s) = self.array.as_string_opt::<i32>() {
            return s.value(row);
        }
        if let Some(b) = self.array.as_boolean_opt() {
            return if b.value(row) { "true" } else { "false" };
        }
        ""
    }
}

impl<'a> Described<'a> {
    pub fn new(batch: &'a RecordBatch) -> Described<'a> {
        let columns = batch
            .schema_ref()
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(f, array)| {
                let text = matches!(
                    array.data_type(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                );
                let numbers = (!text)
                    .then(|| arrow::compute::cast(array, &DataType::Float64).ok())
                    .flatten()
                    .and_then(|a| {
                        a.as_primitive_opt::<arrow::datatypes::Float64Type>()
                            .cloned()
                    });
                (f.name().as_str(), Column { array, numbers })
            })
            .collect();
        Described {
            columns,
            rows: batch.num_rows(),
        }
    }

    /// The batch's row count.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// A feature's value in words, appended to `out`.
    fn describe_into(&self, out: &mut String, feature: &str, row: usize) {
        let Some(col) = self.columns.get(feature) else {
            out.push_str(feature);
            return;
        };
        if col.array.is_null(row) {
            match feature {
                "nps_last" | "nps_mean_365d" => out.push_str("no NPS answer"),
                "days_since_last_visit" => out.push_str("never visited"),
                "avg_wait_minutes_365d" => out.push_str("no recorded wait"),
                _ => {
                    let _ = write!(out, "{feature} unknown");
                }
            }
            return;
        }
        let num = || col.num(row);
        let text = || col.text(row);
        // Writing to a String cannot fail.
        let _ = match feature {
            "days_since_last_visit" => write!(out, "no visit for {} days", num()),
            "nps_last" => write!(out, "last NPS {}", num()),
            "nps_mean_365d" => write!(out, "mean NPS {:.1} in the last year", num()),
            "avg_wait_minutes_365d" => write!(out, "average wait {:.0} min", num()),
            "repair_visits_365d" => {
                write!(out, "{} repair or warranty visits in the last year", num())
            }
            "roadside_365d" => write!(
                out,
                "{} roadside or mobile-service calls in the last year",
                num()
            ),
            "visits_90d" => write!(out, "{} visits in the last 90 days", num()),
            "visits_365d" => write!(out, "{} visits in the last year", num()),
            "revenue_365d" => write!(out, "spent {:.0} in the last year", num()),
            "value_added_revenue_365d" => {
                write!(out, "value-added spend {:.0} in the last year", num())
            }
            "value_added_visits_365d" => {
                write!(out, "{} value-added purchases in the last year", num())
            }
            "tenure_days" => write!(out, "customer for {:.0} days", num()),
            "nps_responses_365d" => write!(out, "{} NPS answers in the last year", num()),
            "shares_365d" => write!(out, "{} referral shares in the last year", num()),
            "referrals_converted_total" => write!(out, "{} successful referrals so far", num()),
            "referrals_converted_365d" => {
                write!(out, "{} successful referrals in the last year", num())
            }
            "social_shares_90d" => write!(out, "{} service stories shared in 90 days", num()),
            "community_member" => out.write_str(if text() == "true" {
                "owners' community member"
            } else {
                "not in the owners' community"
            }),
            "acquired_by_referral" => out.write_str(if text() == "true" {
                "came by referral"
            } else {
                "did not come by referral"
            }),
            "segment" => write!(out, "segment {}", text()),
            "vehicle_model" => write!(out, "drives a {}", text()),
            other => write!(out, "{other} {}", text()),
        };
    }
}

/// A score's reasons: its top features in words, joined by "; ", written into `out` (cleared
/// first) so that a batch reuses one buffer.
pub fn reasons_into(out: &mut String, s: &flywheel_models::Score, d: &Described, i: usize) {
    out.clear();
    for (k, (f, _)) in s.top_features().iter().enumerate() {
        if k > 0 {
            out.push_str("; ");
        }
        d.describe_into(out, f, i);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{BooleanArray, Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn score<'f>(features: &[&'f str]) -> flywheel_models::Score<'f> {
        let top: Vec<(&str, f64)> = features.iter().map(|f| (*f, 1.0)).collect();
        flywheel_models::Score::new(0.5, &top)
    }

    #[test]
    fn reasons_quote_each_customers_own_values_and_say_what_is_missing() {
        let schema = Schema::new(vec![
            Field::new("days_since_last_visit", DataType::Int64, true),
            Field::new("nps_mean_365d", DataType::Float64, true),
            Field::new("community_member", DataType::Boolean, true),
            Field::new("segment", DataType::Utf8, true),
            Field::new("shares_365d", DataType::Int64, true),
        ]);
        let batch = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int64Array::from(vec![Some(120), None])),
                Arc::new(Float64Array::from(vec![Some(8.25), None])),
                Arc::new(BooleanArray::from(vec![Some(true), Some(false)])),
                Arc::new(StringArray::from(vec![Some("fleet"), Some("private")])),
                Arc::new(Int64Array::from(vec![Some(3), None])),
            ],
        )
        .unwrap();
        let d = Described::new(&batch);
        let s = score(&["days_since_last_visit", "nps_mean_365d", "community_member"]);
        let mut out = String::from("left over from the last row");
        reasons_into(&mut out, &s, &d, 0);
        assert_eq!(
            out,
            "no visit for 120 days; mean NPS 8.2 in the last year; owners' community member"
        );
        reasons_into(&mut out, &s, &d, 1);
        assert_eq!(
            out,
            "never visited; no NPS answer; not in the owners' community"
        );
        let s = score(&["segment", "shares_365d", "not_a_column"]);
        reasons_into(&mut out, &s, &d, 0);
        assert_eq!(
            out,
            "segment fleet; 3 referral shares in the last year; not_a_column"
        );
        reasons_into(&mut out, &s, &d, 1);
        assert_eq!(out, "segment private; shares_365d unknown; not_a_column");
        reasons_into(&mut out, &score(&[]), &d, 0);
        assert_eq!(out, "");
    }
}
