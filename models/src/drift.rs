//! Population stability: how far a variable's distribution at a run date has moved from the one a
//! model was trained on. At training, each feature (and the score) gets a [`Reference`]: for a
//! numeric variable the decile edges of the training snapshot (duplicates dropped, so a variable
//! with many ties has fewer bins), for a categorical one its levels; then the share of training
//! rows in each bin, with a last bin for nulls (and, for a categorical, one for unseen levels).
//! At a run date the same bins are counted and the population stability index is
//! `PSI = Σ (actual − expected) · ln(actual / expected)` over the bins, each share floored at
//! [`PSI_FLOOR`] so that an empty bin gives a large but finite term; a bin empty on both sides adds
//! nothing. The usual reading: below 0.1 stable, 0.1 to 0.25 watch, above 0.25 retrain.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type};
use serde::{Deserialize, Serialize};

use crate::{ModelError, Result};

/// The smallest share a bin counts with in the PSI (an empty bin's share is raised to it).
pub const PSI_FLOOR: f64 = 1e-4;

/// A variable's bins and its training shares.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Reference {
    pub variable: String,
    /// Numeric: bin i holds values in (edges[i-1], edges[i]]; the last non-null bin values above
    /// the last edge. Empty for a categorical variable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edges: Vec<f64>,
    /// Categorical: one bin per level, then one for levels not seen in training.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub levels: Vec<String>,
    /// Training share of each bin; the last bin is the nulls.
    pub shares: Vec<f64>,
}

/// One value of a variable: a number or a category.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    Level(String),
}

impl Reference {
    /// The reference of a numeric variable from its training values.
    pub fn numeric(variable: &str, values: &[Option<f64>]) -> Reference {
        let mut sorted: Vec<f64> = values
            .iter()
            .flatten()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        sorted.sort_by(f64::total_cmp);
        let mut edges: Vec<f64> = Vec::new();
        if !sorted.is_empty() {
            for k in 1..10 {
                // Nearest-rank decile: the smallest value with at least k/10 of the rows at or below it.
                let rank = (k * sorted.len()).div_ceil(10).max(1);
                let e = sorted[rank - 1];
                if edges.last() != Some(&e) {
                    edges.push(e);
                }
            }
            // A top edge equal to the maximum would leave the last bin empty by construction.
            if edges.last() == sorted.last() && edges.len() > 1 {
                edges.pop();
            }
        }
        let mut r = Reference {
            variable: variable.to_string(),
            edges,
            levels: vec![],
            shares: vec![],
        };
        let numbers: Vec<Option<Value>> = values.iter().map(|v| v.map(Value::Number)).collect();
        r.shares = r.shares_of(&numbers);
        r
    }

    /// The reference of a categorical variable from its training values (levels sorted).
    pub fn categorical(variable: &str, values: &[Option<String>]) -> Reference {
        let mut levels: Vec<String> = values.iter().flatten().cloned().collect();
        levels.sort();
        levels.dedup();
        let mut r = Reference {
            variable: variable.to_string(),
            edges: vec![],
            levels,
            shares: vec![],
        };
        let cats: Vec<Option<Value>> = values.iter().map(|v| v.clone().map(Value::Level)).collect();
        r.shares = r.shares_of(&cats);
        r
    }

    fn bins(&self) -> usize {
        if self.levels.is_empty() {
            self.edges.len() + 2
        } else {
            self.levels.len() + 2
        }
    }

    fn bin(&self, v: &Option<Value>) -> usize {
        let nulls = self.bins() - 1;
        match v {
            None => nulls,
            Some(Value::Number(x)) if x.is_nan() => nulls,
            Some(Value::Number(x)) => self.edges.partition_point(|e| e < x),
            Some(Value::Level(l)) => self.levels.binary_search(l).unwrap_or(self.levels.len()),
        }
    }

    /// The share of `values` in each bin (all zero when there are none).
    pub fn shares_of(&self, values: &[Option<Value>]) -> Vec<f64> {
        let mut counts = vec![0u64; self.bins()];
        self.count(values, &mut counts);
        shares(&counts)
    }

    /// Add the bins of `values` to `counts` (one per bin; start from [`Reference::no_counts`]):
    /// the shares of values seen in parts, as [`Reference::psi_of_counts`] reads them.
    pub fn count(&self, values: &[Option<Value>], counts: &mut [u64]) {
        for v in values {
            counts[self.bin(v)] += 1;
        }
    }

    /// A zero count per bin.
    pub fn no_counts(&self) -> Vec<u64> {
        vec![0; self.bins()]
    }

    /// The PSI of `values` against this reference.
    pub fn psi(&self, values: &[Option<Value>]) -> f64 {
        psi(&self.shares, &self.shares_of(values))
    }

    /// The PSI of values counted per bin (by [`Reference::count`]) against this reference: the
    /// same figure as [`Reference::psi`] of all the values at once.
    pub fn psi_of_counts(&self, counts: &[u64]) -> f64 {
        psi(&self.shares, &shares(counts))
    }
}

/// Counts per bin as shares of their total (all zero when there are none).
fn shares(counts: &[u64]) -> Vec<f64> {
    let n = counts.iter().sum::<u64>().max(1) as f64;
    counts.iter().map(|c| *c as f64 / n).collect()
}

/// `Σ (a − e) · ln(a / e)` over the bins, shares floored at [`PSI_FLOOR`]; bins empty on both
/// sides add nothing.
pub fn psi(expected: &[f64], actual: &[f64]) -> f64 {
    expected
        .iter()
        .zip(actual)
        .filter(|(e, a)| **e > 0.0 || **a > 0.0)
        .map(|(e, a)| {
            let (e, a) = (e.max(PSI_FLOOR), a.max(PSI_FLOOR));
            (a - e) * (a / e).ln()
        })
        .sum()
}

/// The usual reading of a PSI.
pub fn reading(psi: f64) -> &'static str {
    if psi < 0.1 {
        "stable"
    } else if psi <= 0.25 {
        "watch"
    } else {
        "retrain"
    }
}

/// The values of column `name` of `batches`: numbers for numeric and boolean columns (true = 1),
/// levels for string columns.
pub fn column_values(batches: &[RecordBatch], name: &str) -> Result<Vec<Option<Value>>> {
    let mut out = Vec::new();
    for b in batches {
        let c = b
            .column_by_name(name)
            .ok_or_else(|| ModelError::Schema(format!("feature column {name} is missing")))?;
        match c.data_type() {
            DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Dictionary(_, _) => {
                let s = cast(c, &DataType::Utf8).map_err(|e| ModelError::Schema(e.to_string()))?;
                out.extend(
                    s.as_string::<i32>()
                        .iter()
                        .map(|v| v.map(|v| Value::Level(v.to_string()))),
                );
            }
            _ => {
                let f =
                    cast(c, &DataType::Float64).map_err(|e| ModelError::Schema(e.to_string()))?;
                out.extend(
                    f.as_primitive::<Float64Type>()
                        .iter()
                        .map(|v| v.map(Value::Number)),
                );
            }
        }
    }
    Ok(out)
}

/// The reference of a column, numeric or categorical by its values.
pub fn reference_of(name: &str, values: &[Option<Value>]) -> Reference {
    if values
        .iter()
        .flatten()
        .any(|v| matches!(v, Value::Level(_)))
    {
        let levels: Vec<Option<String>> = values
            .iter()
            .map(|v| match v {
                Some(Value::Level(l)) => Some(l.clone()),
                _ => None,
            })
            .collect();
        Reference::categorical(name, &levels)
    } else {
        let numbers: Vec<Option<f64>> = values
            .iter()
            .map(|v| match v {
                Some(Value::Number(x)) => Some(*x),
                _ => None,
            })
            .collect();
        Reference::numeric(name, &numbers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nums(v: &[f64]) -> Vec<Option<Value>> {
        v.iter().map(|x| Some(Value::Number(*x))).collect()
    }

    #[test]
    fn psi_by_hand_with_an_empty_bin() {
        // Training: 1..=10, one value per decile; edges 1..=9 (nine), bins (-inf,1], (1,2], ...,
        // (8,9], (9,inf), null: eleven, ten of them 0.1.
        let train: Vec<Option<f64>> = (1..=10).map(|v| Some(v as f64)).collect();
        let r = Reference::numeric("x", &train);
        assert_eq!(r.edges, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
        assert_eq!(r.shares.len(), 11);
        assert!(r.shares[..10].iter().all(|s| (s - 0.1).abs() < 1e-12));
        assert_eq!(r.shares[10], 0.0);
        // The same distribution: PSI 0.
        assert!(
            r.psi(&nums(&[1., 2., 3., 4., 5., 6., 7., 8., 9., 10.]))
                .abs()
                < 1e-12
        );
        // Actual: half the rows in the first bin, the other half in the second; the other eight
        // bins empty (floored at 1e-4), the null bin empty on both sides (nothing).
        //   2 × (0.5 − 0.1)·ln(0.5/0.1) = 0.8 · 1.6094379 = 1.2875503
        //   8 × (0.0001 − 0.1)·ln(0.0001/0.1) = 8 · 0.0999 · 6.9077553 = 5.5206780
        let actual = nums(&[1., 1., 1., 1., 1., 2., 2., 2., 2., 2.]);
        let expected_psi = 2.0 * 0.4 * 5f64.ln() + 8.0 * (0.0001 - 0.1) * (0.001f64).ln();
        assert!(
            (r.psi(&actual) - expected_psi).abs() < 1e-9,
            "{}",
            r.psi(&actual)
        );
        assert!((expected_psi - 6.8082283).abs() < 1e-6);
        assert_eq!(reading(r.psi(&actual)), "retrain");
    }

    #[test]
    fn ties_merge_bins_and_nulls_and_unseen_levels_have_their_own() {
        // 70% zeros: the first seven deciles are 0, then 1, 2, 3 (top edge = max dropped).
        let train: Vec<Option<f64>> = [0., 0., 0., 0., 0., 0., 0., 1., 2., 3.]
            .iter()
            .map(|v| Some(*v))
            .collect();
        let r = Reference::numeric("visits", &train);
        assert_eq!(r.edges, vec![0.0, 1.0, 2.0]);
        assert_eq!(r.shares, vec![0.7, 0.1, 0.1, 0.1, 0.0]);
        let with_null = vec![Some(Value::Number(0.0)), None];
        assert_eq!(r.shares_of(&with_null), vec![0.5, 0.0, 0.0, 0.0, 0.5]);

        let c = Reference::categorical(
            "segment",
            &[Some("a".into()), Some("b".into()), Some("b".into()), None],
        );
        assert_eq!(c.levels, vec!["a", "b"]);
        assert_eq!(c.shares, vec![0.25, 0.5, 0.0, 0.25]);
        let unseen = vec![Some(Value::Level("z".into()))];
        assert_eq!(c.shares_of(&unseen), vec![0.0, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn readings_at_the_edges() {
        assert_eq!(reading(0.0999), "stable");
        assert_eq!(reading(0.1), "watch");
        assert_eq!(reading(0.25), "watch");
        assert_eq!(reading(0.2501), "retrain");
    }
}
