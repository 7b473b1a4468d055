//! Business rules that several SQL jobs share, written once and registered in every session as
//! small scalar functions (domain.md, "KPI definitions and bands" and "Reward ladder"):
//!
//! - `nps_point(score)`: +1 for a promoter (9–10), −1 for a detractor (0–6), 0 for a passive;
//!   NPS = 100 × (promoters − detractors) / answers = 100 × SUM(nps_point) / COUNT(*).
//! - `nps_tenths(net_promoters, answers)`: NPS × 10 rounded half away from zero, in integers
//!   (so 66.65 is 66.7 and −66.65 is −66.7); null without answers. KPIs show it divided by 10
//!   and band it on this rounded value.
//! - `meets_edge(kind, numerator, denominator, edge)`: whether a KPI reaches a band edge,
//!   compared exactly: a `ratio` when numerator × 100 ≥ edge × denominator (edges in
//!   hundredths), an `nps` when its rounded tenths ≥ edge × 10 (edges in NPS points).
//! - `reward_tier(conversions)` and `conversions_to_next_tier(conversions)`: the referrer tiers
//!   by eligible conversions: gold from 3, ambassador from 5, super_ambassador from 10, `none`
//!   below 3; the conversions missing to the next tier (null at the top).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int32Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::prelude::SessionContext;

/// The tier edges: (first conversion count of the tier, tier), ascending.
pub const TIERS: [(i64, &str); 3] = [(3, "gold"), (5, "ambassador"), (10, "super_ambassador")];

/// +1 promoter, −1 detractor, 0 passive.
pub fn nps_point(score: i64) -> i64 {
    if score >= 9 {
        1
    } else if score <= 6 {
        -1
    } else {
        0
    }
}

/// NPS × 10, rounded half away from zero, from net promoters and answers (None without answers).
pub fn nps_tenths(net_promoters: i64, answers: i64) -> Option<i64> {
    (answers > 0)
        .then(|| net_promoters.signum() * ((2000 * net_promoters.abs() + answers) / (2 * answers)))
}

/// Whether a KPI of `kind` reaches `edge` (see the module docs); None when it has no value.
pub fn meets_edge(kind: &str, numerator: i64, denominator: i64, edge: i64) -> Option<bool> {
    if denominator == 0 {
        return None;
    }
    match kind {
        "nps" => nps_tenths(numerator, denominator).map(|t| t >= edge * 10),
        _ => Some(numerator as i128 * 100 >= edge as i128 * denominator as i128),
    }
}

/// The referrer tier of `conversions` eligible conversions.
pub fn reward_tier(conversions: i64) -> &'static str {
    TIERS
        .iter()
        .rev()
        .find(|(from, _)| conversions >= *from)
        .map_or("none", |(_, tier)| tier)
}

/// Conversions missing to the next tier (None at the top tier).
pub fn conversions_to_next_tier(conversions: i64) -> Option<i64> {
    TIERS
        .iter()
        .find(|(from, _)| conversions < *from)
        .map(|(from, _)| from - conversions)
}

fn int64(a: &ArrayRef) -> DfResult<Int64Array> {
    Ok(arrow::compute::cast(a, &DataType::Int64)?
        .as_primitive::<Int64Type>()
        .clone())
}

/// The shared rules as SQL functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Rule {
    NpsPoint,
    NpsTenths,
    MeetsEdge,
    RewardTier,
    ConversionsToNextTier,
}

impl Rule {
    const ALL: [Rule; 5] = [
        Rule::NpsPoint,
        Rule::NpsTenths,
        Rule::MeetsEdge,
        Rule::RewardTier,
        Rule::ConversionsToNextTier,
    ];

    fn name(self) -> &'static str {
        match self {
            Rule::NpsPoint => "nps_point",
            Rule::NpsTenths => "nps_tenths",
            Rule::MeetsEdge => "meets_edge",
            Rule::RewardTier => "reward_tier",
            Rule::ConversionsToNextTier => "conversions_to_next_tier",
        }
    }

    fn inputs(self) -> Vec<DataType> {
        match self {
            Rule::NpsPoint | Rule::RewardTier | Rule::ConversionsToNextTier => {
                vec![DataType::Int64]
            }
            Rule::NpsTenths => vec![DataType::Int64; 2],
            Rule::MeetsEdge => vec![
                DataType::Utf8,
                DataType::Int64,
                DataType::Int64,
                DataType::Int64,
            ],
        }
    }

    fn output(self) -> DataType {
        match self {
            Rule::NpsPoint | Rule::NpsTenths => DataType::Int64,
            Rule::MeetsEdge => DataType::Boolean,
            Rule::RewardTier => DataType::Utf8,
            Rule::ConversionsToNextTier => DataType::Int32,
        }
    }

    /// Row `i` of the arguments: the text of a Utf8 first argument (meets_edge's kind) and the
    /// integers; None when any argument is null.
    fn eval(self, kind: Option<&str>, ints: &[i64]) -> Value {
        match self {
            Rule::NpsPoint => Value::Int(Some(nps_point(ints[0]))),
            Rule::NpsTenths => Value::Int(nps_tenths(ints[0], ints[1])),
            Rule::MeetsEdge => {
                Value::Bool(kind.and_then(|k| meets_edge(k, ints[0], ints[1], ints[2])))
            }
            Rule::RewardTier => Value::Text(Some(reward_tier(ints[0]))),
            Rule::ConversionsToNextTier => Value::Int(conversions_to_next_tier(ints[0])),
        }
    }

    /// The value for a row with a null argument: a null, except that a null number of
    /// conversions is below every tier (`none`), as `CASE WHEN n >= 3 ... ELSE 'none'` says.
    fn on_null(self) -> Value {
        match self {
            Rule::RewardTier => Value::Text(Some("none")),
            Rule::MeetsEdge => Value::Bool(None),
            _ => Value::Int(None),
        }
    }
}

enum Value {
    Int(Option<i64>),
    Bool(Option<bool>),
    Text(Option<&'static str>),
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct RuleUdf {
    rule: Rule,
    signature: Signature,
}

impl ScalarUDFImpl for RuleUdf {
    fn name(&self) -> &str {
        self.rule.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(self.rule.output())
    }

    /// Null out only for a null in (reward_tier is never null).
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let nullable = self.rule != Rule::RewardTier
            && args.arg_fields.iter().any(|f| f.is_nullable())
            || matches!(
                self.rule,
                Rule::NpsTenths | Rule::MeetsEdge | Rule::ConversionsToNextTier
            );
        Ok(Arc::new(Field::new(
            self.rule.name(),
            self.rule.output(),
            nullable,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let text_first = self.rule == Rule::MeetsEdge;
        let kind = if text_first {
            Some(arrow::compute::cast(&arrays[0], &DataType::Utf8)?)
        } else {
            None
        };
        let kind = kind.as_ref().map(|k| k.as_string::<i32>());
        let ints = arrays[usize::from(text_first)..]
            .iter()
            .map(int64)
            .collect::<DfResult<Vec<_>>>()?;
        let rows = args.number_rows;
        let mut row = vec![0i64; ints.len()];
        let mut values = Vec::with_capacity(rows);
        for i in 0..rows {
            let null = ints.iter().any(|a| a.is_null(i)) || kind.is_some_and(|k| k.is_null(i));
            if null {
                values.push(self.rule.on_null());
                continue;
            }
            for (k, a) in ints.iter().enumerate() {
                row[k] = a.value(i);
            }
            values.push(self.rule.eval(kind.map(|k| k.value(i)), &row));
        }
        Ok(ColumnarValue::Array(collect(self.rule.output(), values)))
    }
}

/// An Arrow array of `ty` from row values.
fn collect(ty: DataType, values: Vec<Value>) -> ArrayRef {
    let ints = || {
        values.iter().map(|v| match v {
            Value::Int(x) => *x,
            _ => None,
        })
    };
    match ty {
        DataType::Int64 => Arc::new(ints().collect::<Int64Array>()),
        DataType::Int32 => Arc::new(ints().map(|x| x.map(|x| x as i32)).collect::<Int32Array>()),
        DataType::Boolean => Arc::new(
            values
                .iter()
                .map(|v| match v {
                    Value::Bool(x) => *x,
                    _ => None,
                })
                .collect::<BooleanArray>(),
        ),
        _ => Arc::new(
            values
                .iter()
                .map(|v| match v {
                    Value::Text(x) => *x,
                    _ => None,
                })
                .collect::<StringArray>(),
        ),
    }
}

/// Register the shared rules in `ctx`.
pub fn register(ctx: &SessionContext) {
    for rule in Rule::ALL {
        ctx.register_udf(ScalarUDF::new_from_impl(RuleUdf {
            rule,
            signature: Signature::exact(rule.inputs(), Volatility::Immutable),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nps_points_and_rounding_half_away_from_zero() {
        let points: Vec<i64> = (0..=10).map(nps_point).collect();
        assert_eq!(points, [-1, -1, -1, -1, -1, -1, -1, 0, 0, 1, 1]);
        // 2 promoters, 1 detractor of 3 answers: NPS 33.33 -> 33.3.
        assert_eq!(nps_tenths(1, 3), Some(333));
        // 66.666... -> 66.7; -66.666... -> -66.7.
        assert_eq!(nps_tenths(2, 3), Some(667));
        assert_eq!(nps_tenths(-2, 3), Some(-667));
        // Exactly half a tenth: 1 of 16 = 6.25 -> 6.3 and -6.3 (away from zero).
        assert_eq!(nps_tenths(1, 16), Some(63));
        assert_eq!(nps_tenths(-1, 16), Some(-63));
        assert_eq!(nps_tenths(0, 5), Some(0));
        assert_eq!(nps_tenths(0, 0), None);
    }

    #[test]
    fn band_edges_are_exact() {
        // 30 of 100 reaches 30 %; 29 of 100 does not; no denominator, no band.
        assert_eq!(meets_edge("ratio", 30, 100, 30), Some(true));
        assert_eq!(meets_edge("ratio", 29, 100, 30), Some(false));
        assert_eq!(meets_edge("ratio", 1, 0, 30), None);
        // NPS 85.0 reaches 85; 84.96 rounds to 85.0 and reaches it; 84.94 -> 84.9 does not.
        assert_eq!(meets_edge("nps", 85, 100, 85), Some(true));
        assert_eq!(meets_edge("nps", 2124, 2500, 85), Some(true));
        assert_eq!(meets_edge("nps", 4247, 5000, 85), Some(false));
    }

    #[test]
    fn tiers_and_the_way_to_the_next() {
        let tiers: Vec<&str> = [0, 2, 3, 4, 5, 9, 10, 50].map(reward_tier).to_vec();
        assert_eq!(
            tiers,
            [
                "none",
                "none",
                "gold",
                "gold",
                "ambassador",
                "ambassador",
                "super_ambassador",
                "super_ambassador"
            ]
        );
        let next: Vec<Option<i64>> = [0, 2, 3, 4, 5, 9, 10]
            .map(conversions_to_next_tier)
            .to_vec();
        assert_eq!(
            next,
            [Some(3), Some(1), Some(2), Some(1), Some(5), Some(1), None]
        );
    }
}
