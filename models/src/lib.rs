//! # flywheel models
//!
//! Logistic scoring models. This crate knows nothing of SQL, query engines or storage: it turns Arrow
//! record batches of features into a design matrix ([`Preprocessor`]), fits an L2-regularised
//! logistic regression with `linfa-logistic` ([`fit`]), evaluates it ([`evaluate`]) and scores
//! batches as they stream ([`Model::score`]), explaining each score by the features that push it
//! up most (coefficient × standardised value). It also holds what is pure about a model version:
//! the model file format with its content-addressed version, the promotion rule and deciles
//! ([`ModelFile`], [`promotion_decision`], [`deciles`]).
//!
//! Two traps of linfa-logistic 0.8.1 are handled here: it takes the *more frequent* label as its
//! positive class (so [`fit`] flips the coefficients when `true` is the rarer label, and `p` is
//! always P(label = true)), and it silently returns the last iterate at `max_iterations` (so
//! [`fit`] measures the gradient at the solution and reports convergence itself).

mod design;
pub mod drift;
mod metrics;
mod model_file;

pub use design::{FeatureSpec, Preprocessor};
pub use metrics::{evaluate, CalibrationBin, LiftDecile, Metrics};
pub use model_file::{deciles, deciles_by, fnv1a, promotion_decision, ModelFile, FORMAT};
pub use ndarray;

use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2, ShapeBuilder};
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ModelError {
    #[error("{0}")]
    Invalid(String),
    #[error("the features do not fit the model: {0}")]
    Schema(String),
    #[error("training failed: {0}")]
    Training(String),
}

pub type Result<T> = std::result::Result<T, ModelError>;

/// Fit settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FitSettings {
    /// L2 strength: the objective is sum of log-losses + alpha/2 ‖w‖² (intercept not penalised),
    /// the same as scikit-learn's `LogisticRegression(C = 1/alpha)`.
    pub alpha: f64,
    pub max_iterations: u64,
    pub gradient_tolerance: f64,
}

/// What came out of the optimiser.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Convergence {
    pub converged: bool,
    /// Largest absolute gradient component of the objective at the solution, divided by rows.
    pub max_gradient_per_row: f64,
}

/// A fitted model: preprocessing plus coefficients in design-matrix order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Model {
    pub preprocessor: Preprocessor,
    pub intercept: f64,
    /// (design column name, coefficient)
    pub coefficients: Vec<(String, f64)>,
    pub convergence: Convergence,
}

/// Fit a logistic model of `y` (true = positive) on the design matrix `x`.
pub fn fit(
    preprocessor: Preprocessor,
    x: &Array2<f64>,
    y: &[bool],
    settings: &FitSettings,
) -> Result<Model> {
    let n = x.nrows();
    if n == 0 {
        return Err(ModelError::Training(
            "the training population is empty".into(),
        ));
    }
    let positives = y.iter().filter(|v| **v).count();
    if positives == 0 || positives == n {
        return Err(ModelError::Training(format!(
            "the label has one class only ({positives} positives of {n} rows); pick another snapshot or a longer horizon"
        )));
    }
    // Large sets start from the optimum of an evenly spaced subsample (same regularisation per
    // row): the full fit then needs a few iterations instead of a cold start's hundreds. The
    // subsample is fixed by the row order, so the result is as deterministic as before, and
    // the full problem is still solved to the same tolerance.
    let warm = if n >= 2 * WARM_START_ROWS {
        let step = n / WARM_START_ROWS;
        let idx: Vec<usize> = (0..n).step_by(step).collect();
        let xs = x.select(ndarray::Axis(0), &idx);
        let ys: Vec<bool> = idx.iter().map(|i| y[*i]).collect();
        let share = idx.len() as f64 / n as f64;
        let sub = FitSettings {
            alpha: settings.alpha * share,
            max_iterations: settings.max_iterations,
            gradient_tolerance: settings.gradient_tolerance * share,
        };
        linfa_fit(&xs, &ys, &sub, None).ok()
    } else {
        None
    };
    let (w, intercept) = linfa_fit(x, y, settings, warm.as_ref())?;
    let convergence = check_convergence(x, y, &w, intercept, settings);
    let names = preprocessor.column_names();
    if names.len() != w.len() {
        return Err(ModelError::Training(format!(
            "{} design columns but {} coefficients",
            names.len(),
            w.len()
        )));
    }
    Ok(Model {
        preprocessor,
        intercept,
        coefficients: names.into_iter().zip(w).collect(),
        convergence,
    })
}

/// Rows of the warm-start subsample (fits of at least twice as many rows use one).
const WARM_START_ROWS: usize = 100_000;

/// One linfa fit; returns (w, intercept) with p = P(label = true), whatever class linfa took
/// as positive. `initial` is a starting point in the same convention.
fn linfa_fit(
    x: &Array2<f64>,
    y: &[bool],
    settings: &FitSettings,
    initial: Option<&(Vec<f64>, f64)>,
) -> Result<(Vec<f64>, f64)> {
    // linfa 0.8.1 takes the more frequent label as positive (ties: the first seen).
    let trues = y.iter().filter(|v| **v).count();
    let linfa_pos_is_true =
        trues * 2 > y.len() || (trues * 2 == y.len() && y.first() == Some(&true));
    let to_linfa = if linfa_pos_is_true { 1.0 } else { -1.0 };
    let targets = Array1::from_iter(y.iter().copied());
    // Column-major copy: linfa's gradient is xᵀ·r, which walks x by columns; on a row-major
    // matrix (without BLAS) every column is a strided pass over all rows, several times slower.
    let mut columns = Array2::<f64>::zeros(x.raw_dim().f());
    columns.assign(x);
    let dataset = DatasetBase::new(columns.view(), targets);
    let mut params = LogisticRegression::default()
        .alpha(settings.alpha)
        .max_iterations(settings.max_iterations)
        .gradient_tolerance(settings.gradient_tolerance);
    if let Some((w, b)) = initial {
        params = params.initial_params(Array1::from_iter(
            w.iter().chain(std::iter::once(b)).map(|v| v * to_linfa),
        ));
    }
    let fitted = params
        .fit(&dataset)
        .map_err(|e| ModelError::Training(e.to_string()))?;
    // Make p = P(true) (linfa's own labels are the authority on which class it took).
    let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
    let w: Vec<f64> = fitted.params().iter().map(|v| v * sign).collect();
    Ok((w, fitted.intercept() * sign))
}

fn check_convergence(
    x: &Array2<f64>,
    y: &[bool],
    w: &[f64],
    b: f64,
    s: &FitSettings,
) -> Convergence {
    let n = x.nrows() as f64;
    let w_arr = Array1::from_vec(w.to_vec());
    let z = x.dot(&w_arr) + b;
    let resid: Array1<f64> = z
        .iter()
        .zip(y)
        .map(|(z, y)| sigmoid(*z) - if *y { 1.0 } else { 0.0 })
        .collect();
    let grad_w = x.t().dot(&resid) + &w_arr * s.alpha;
    let grad_b = resid.sum();
    let max = grad_w
        .iter()
        .chain(std::iter::once(&grad_b))
        .fold(0.0f64, |m, g| m.max(g.abs()))
        / n;
    Convergence {
        converged: max.is_finite() && max <= 1e-3,
        max_gradient_per_row: max,
    }
}

pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// One customer's score and the features that push it up most (their names borrowed from the
/// model: a million customers' scores allocate no text).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score<'m> {
    pub p: f64,
    top: [(&'m str, f64); TOP_FEATURES],
    len: usize,
}

/// How many features a score's reasons name at most.
pub const TOP_FEATURES: usize = 3;

impl<'m> Score<'m> {
    /// A score with the features `top` (the first [`TOP_FEATURES`] of them).
    pub fn new(p: f64, top: &[(&'m str, f64)]) -> Score<'m> {
        let mut out = Score {
            p,
            top: [("", 0.0); TOP_FEATURES],
            len: top.len().min(TOP_FEATURES),
        };
        out.top[..out.len].copy_from_slice(&top[..out.len]);
        out
    }

    /// Up to three (feature, contribution) with positive contribution, largest first.
    pub fn top_features(&self) -> &[(&'m str, f64)] {
        &self.top[..self.len]
    }
}

impl Model {
    /// Probabilities for a design matrix.
    pub fn predict(&self, x: &Array2<f64>) -> Vec<f64> {
        let w = Array1::from_iter(self.coefficients.iter().map(|(_, c)| *c));
        (x.dot(&w) + self.intercept)
            .iter()
            .map(|z| sigmoid(*z))
            .collect()
    }

    /// The probability of every row of a batch of features (what [`Model::score`] gives as
    /// `p`, without the reasons).
    pub fn probabilities(&self, batch: &arrow::array::RecordBatch) -> Result<Vec<f64>> {
        Ok(self.predict(&self.preprocessor.transform(batch)?))
    }

    /// Score a batch of features.
    pub fn score(&self, batch: &arrow::array::RecordBatch) -> Result<Vec<Score<'_>>> {
        let x = self.preprocessor.transform(batch)?;
        let p = self.predict(&x);
        // Design columns grouped by source feature (one-hot levels and missing indicators add up).
        let mut sources: Vec<&str> = Vec::new();
        let source_of: Vec<usize> = self
            .coefficients
            .iter()
            .map(|(name, _)| {
                let s = self.preprocessor.source_of(name);
                match sources.iter().position(|x| *x == s) {
                    Some(k) => k,
                    None => {
                        sources.push(s);
                        sources.len() - 1
                    }
                }
            })
            .collect();
        let mut sums = vec![0.0f64; sources.len()];
        let mut order: Vec<usize> = Vec::with_capacity(sources.len());
        let mut out = Vec::with_capacity(p.len());
        for (i, p) in p.into_iter().enumerate() {
            sums.iter_mut().for_each(|v| *v = 0.0);
            for (j, (_, c)) in self.coefficients.iter().enumerate() {
                sums[source_of[j]] += c * x[[i, j]];
            }
            order.clear();
            order.extend((0..sources.len()).filter(|k| sums[*k] > 0.0));
            order.sort_by(|a, b| {
                sums[*b]
                    .total_cmp(&sums[*a])
                    .then_with(|| sources[*a].cmp(sources[*b]))
            });
            let mut top = [("", 0.0); TOP_FEATURES];
            let len = order.len().min(TOP_FEATURES);
            for (slot, k) in top.iter_mut().zip(&order) {
                *slot = (sources[*k], sums[*k]);
            }
            out.push(Score { p, top, len });
        }
        Ok(out)
    }

    /// Check a model read from a file: one finite coefficient per design column, in order, and
    /// usable preprocessing (finite means, positive deviations).
    pub fn check(&self) -> Result<()> {
        let names = self.preprocessor.column_names();
        let got: Vec<&str> = self.coefficients.iter().map(|(n, _)| n.as_str()).collect();
        if names.iter().map(String::as_str).ne(got.iter().copied()) {
            return Err(ModelError::Invalid(format!(
                "the coefficients ({}) do not match the design columns of the preprocessing ({})",
                got.join(", "),
                names.join(", ")
            )));
        }
        if !self.intercept.is_finite() || self.coefficients.iter().any(|(_, c)| !c.is_finite()) {
            return Err(ModelError::Invalid(
                "a coefficient is not a finite number".into(),
            ));
        }
        for c in &self.preprocessor.numeric {
            if !(c.mean.is_finite() && c.impute.is_finite() && c.std.is_finite() && c.std > 0.0) {
                return Err(ModelError::Invalid(format!(
                    "the preprocessing of {} is unusable (mean {}, std {}, impute {})",
                    c.name, c.mean, c.std, c.impute
                )));
            }
        }
        Ok(())
    }

    /// Coefficient of a design column, for tests and reports.
    pub fn coefficient(&self, name: &str) -> Option<f64> {
        self.coefficients
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| *c)
    }
}

#[cfg(test)]
mod tests;
