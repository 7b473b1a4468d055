//! Population stability: how far a variable's distribution at a run date has moved from the one a
//! model was trained on. At training, each feature (and the score) gets a [`Reference`]: for a
//! numeric variable the decile edges of the training snapshot (duplicates dropped, so a variable
//! with many ties has fewer bins), for a categorical one its levels; then the share of training
//! rows in each bin, with a last bin for nulls (and, for a categorical, one for unseen levels).
//! At a run date the same bins are counted and the population stability index is
//! `PSI = Σ (actual − expected) · ln(actual / expected)` over the bins, each share floored at
//! [`PSI_FLOOR`] so that an empty bin gives a large but finite term; a bin empty on both sides adds
//! nothing. The usual reading: below 0.1 stable, 0.1 to 0.25 watch, above 0.25 retrain.

use std::collections::BTreeSet;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, RecordBatch, StringArray};
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

impl Reference {
    /// The reference of a numeric variable from its training values.
    pub fn numeric(variable: &str, values: &[Option<f64>]) -> Reference {
        Reference::of_columns(
            variable,
            &[Values::Numbers(values.iter().copied().collect())],
        )
    }

    /// The reference of a categorical variable from its training values (levels sorted).
    pub fn categorical(variable: &str, values: &[Option<String>]) -> Reference {
        let text: StringArray = values.iter().map(|v| v.as_deref()).collect();
        Reference::of_columns(variable, &[Values::Text(text)])
    }

    /// The reference of a variable from its training values, given as the parts of its column
    /// ([`Values::of`] of each batch, so all of one kind): categorical when some part holds a
    /// text value, numeric otherwise (a text column with nothing but nulls has no edges, and
    /// every row in its null bin).
    pub fn of_columns(variable: &str, parts: &[Values]) -> Reference {
        let texts = || parts.iter().filter_map(Values::text);
        let mut r = Reference {
            variable: variable.to_string(),
            edges: vec![],
            levels: vec![],
            shares: vec![],
        };
        if texts().any(|t| t.null_count() < t.len()) {
            let seen: BTreeSet<&str> = texts().flat_map(|t| t.iter().flatten()).collect();
            r.levels = seen.into_iter().map(str::to_string).collect();
        } else {
            let mut sorted: Vec<f64> = parts
                .iter()
                .filter_map(Values::numbers)
                .flat_map(|n| n.iter().flatten())
                .filter(|v| v.is_finite())
                .collect();
            // Values equal under `total_cmp` have the same bits: any sort gives the same order.
            sorted.sort_unstable_by(f64::total_cmp);
            r.edges = decile_edges(&sorted);
        }
        let mut counts = r.no_counts();
        parts
            .iter()
            .for_each(|p| r.count_values(p, None, &mut counts));
        r.shares = shares(&counts);
        r
    }

    fn bins(&self) -> usize {
        if self.levels.is_empty() {
            self.edges.len() + 2
        } else {
            self.levels.len() + 2
        }
    }

    /// The bin of a number (NaN with the nulls).
    fn bin_number(&self, x: Option<f64>) -> usize {
        match x {
            Some(x) if !x.is_nan() => self.edges.partition_point(|e| *e < x),
            _ => self.bins() - 1,
        }
    }

    /// The bin of a level (one not seen in training: the bin after the levels).
    fn bin_level(&self, l: Option<&str>) -> usize {
        match l {
            Some(l) => self
                .levels
                .binary_search_by(|x| x.as_str().cmp(l))
                .unwrap_or(self.levels.len()),
            None => self.bins() - 1,
        }
    }

    /// Add the bins of a column's values to `counts` (one per bin; start from
    /// [`Reference::no_counts`]), only the rows where `keep` is true when it is given (one per
    /// value).
    pub fn count_values(&self, values: &Values, keep: Option<&[bool]>, counts: &mut [u64]) {
        let kept = |i: usize| keep.is_none_or(|k| k[i]);
        match values {
            Values::Numbers(n) => n
                .iter()
                .enumerate()
                .filter(|(i, _)| kept(*i))
                .for_each(|(_, x)| counts[self.bin_number(x)] += 1),
            Values::Text(t) => t
                .iter()
                .enumerate()
                .filter(|(i, _)| kept(*i))
                .for_each(|(_, l)| counts[self.bin_level(l)] += 1),
        }
    }

    /// The share of `values` in each bin (all zero when there are none).
    pub fn shares_of(&self, values: &Values) -> Vec<f64> {
        let mut counts = self.no_counts();
        self.count_values(values, None, &mut counts);
        shares(&counts)
    }

    /// A zero count per bin.
    pub fn no_counts(&self) -> Vec<u64> {
        vec![0; self.bins()]
    }

    /// The PSI of `values` against this reference.
    pub fn psi(&self, values: &Values) -> f64 {
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

/// The nearest-rank decile edges of finite values sorted by `total_cmp`, duplicates dropped
/// (none for no values).
fn decile_edges(sorted: &[f64]) -> Vec<f64> {
    let mut edges: Vec<f64> = Vec::new();
    if sorted.is_empty() {
        return edges;
    }
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
    edges
}

/// A column's values as the drift bins read them: text for string and dictionary columns,
/// numbers for every other type (cast to f64; booleans true = 1).
pub enum Values {
    Text(StringArray),
    Numbers(Float64Array),
}

impl Values {
    /// The values of an array.
    pub fn of(c: &ArrayRef) -> Result<Values> {
        let schema_error = |e: arrow::error::ArrowError| ModelError::Schema(e.to_string());
        Ok(match c.data_type() {
            DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Dictionary(_, _) => Values::Text(
                cast(c, &DataType::Utf8)
                    .map_err(schema_error)?
                    .as_string::<i32>()
                    .clone(),
            ),
            _ => Values::Numbers(
                cast(c, &DataType::Float64)
                    .map_err(schema_error)?
                    .as_primitive::<Float64Type>()
                    .clone(),
            ),
        })
    }

    /// The values when they are text.
    fn text(&self) -> Option<&StringArray> {
        match self {
            Values::Text(t) => Some(t),
            Values::Numbers(_) => None,
        }
    }

    /// The values when they are numbers.
    fn numbers(&self) -> Option<&Float64Array> {
        match self {
            Values::Numbers(n) => Some(n),
            Values::Text(_) => None,
        }
    }

    /// The values of column `name` of a batch.
    pub fn of_column(batch: &RecordBatch, name: &str) -> Result<Values> {
        let c = batch
            .column_by_name(name)
            .ok_or_else(|| ModelError::Schema(format!("feature column {name} is missing")))?;
        Values::of(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nums(v: &[f64]) -> Values {
        Values::Numbers(Float64Array::from(v.to_vec()))
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
        let with_null = Values::Numbers(vec![Some(0.0), None].into());
        assert_eq!(r.shares_of(&with_null), vec![0.5, 0.0, 0.0, 0.0, 0.5]);

        let c = Reference::categorical(
            "segment",
            &[Some("a".into()), Some("b".into()), Some("b".into()), None],
        );
        assert_eq!(c.levels, vec!["a", "b"]);
        assert_eq!(c.shares, vec![0.25, 0.5, 0.0, 0.25]);
        let unseen = Values::Text(vec![Some("z")].into());
        assert_eq!(c.shares_of(&unseen), vec![0.0, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn a_column_in_parts_gives_the_reference_and_counts_of_its_values_at_once() {
        // Ties, a NaN, infinities and nulls, split over two parts at an arbitrary row.
        let numbers: Vec<Option<f64>> = (0..997)
            .map(|i| match i % 13 {
                0 => None,
                1 => Some(f64::NAN),
                2 if i % 2 == 0 => Some(f64::INFINITY),
                2 => Some(f64::NEG_INFINITY),
                _ => Some(((i * 7919) % 101) as f64 / 4.0),
            })
            .collect();
        let whole = Reference::numeric("x", &numbers);
        let (a, b) = numbers.split_at(401);
        let parts = [
            Values::Numbers(a.iter().copied().collect()),
            Values::Numbers(b.iter().copied().collect()),
        ];
        assert_eq!(Reference::of_columns("x", &parts), whole);
        // The edges by hand: the nearest-rank deciles of the finite values.
        let mut finite: Vec<f64> = numbers
            .iter()
            .flatten()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        finite.sort_by(|x, y| x.partial_cmp(y).unwrap());
        let rank = |k: usize| finite[(k * finite.len()).div_ceil(10) - 1];
        let mut want: Vec<f64> = (1..10).map(rank).collect();
        want.dedup();
        if want.last() == finite.last() {
            want.pop();
        }
        assert_eq!(whole.edges, want);
        // Counting a column with a mask: the counts of the kept values (NaN with the nulls).
        let keep: Vec<bool> = (0..numbers.len()).map(|i| i % 3 != 0).collect();
        let kept = Values::Numbers(
            numbers
                .iter()
                .zip(&keep)
                .filter(|(_, k)| **k)
                .map(|(v, _)| *v)
                .collect(),
        );
        let (mut by_column, mut by_value) = (whole.no_counts(), whole.no_counts());
        whole.count_values(
            &Values::Numbers(numbers.iter().copied().collect()),
            Some(&keep),
            &mut by_column,
        );
        whole.count_values(&kept, None, &mut by_value);
        assert_eq!(by_column, by_value);
        let nans = numbers
            .iter()
            .zip(&keep)
            .filter(|(v, k)| **k && v.is_none_or(f64::is_nan))
            .count();
        assert_eq!(by_column[whole.no_counts().len() - 1], nans as u64);

        // Text: levels sorted, a null bin; a text column of nulls only is numeric with no edges.
        let text: Vec<Option<&str>> = vec![Some("b"), None, Some("a"), Some("b"), Some("c")];
        let parts = [
            Values::Text(text[..2].iter().copied().collect()),
            Values::Text(text[2..].iter().copied().collect()),
        ];
        let r = Reference::of_columns("segment", &parts);
        assert_eq!(r.levels, vec!["a", "b", "c"]);
        assert_eq!(r.shares, vec![0.2, 0.4, 0.2, 0.0, 0.2]);
        let unseen: StringArray = vec![Some("z"), Some("a"), None].into_iter().collect();
        let mut counts = r.no_counts();
        r.count_values(
            &Values::Text(unseen),
            Some(&[true, true, false]),
            &mut counts,
        );
        assert_eq!(counts, vec![1, 0, 0, 1, 0]);
        let nulls: StringArray = vec![None::<&str>, None].into_iter().collect();
        let empty = Reference::of_columns("segment", &[Values::Text(nulls)]);
        assert!(empty.edges.is_empty() && empty.levels.is_empty());
        assert_eq!(empty.shares, vec![0.0, 1.0]);
    }

    #[test]
    fn readings_at_the_edges() {
        assert_eq!(reading(0.0999), "stable");
        assert_eq!(reading(0.1), "watch");
        assert_eq!(reading(0.25), "watch");
        assert_eq!(reading(0.2501), "retrain");
    }
}
