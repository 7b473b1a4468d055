//! Holdout evaluation: ROC AUC (ties averaged), PR AUC (average precision), log loss, Brier
//! score, base rate, lift in the top decile, a 10-bin calibration table.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CalibrationBin {
    pub bin: usize,
    pub rows: u64,
    pub mean_predicted: Option<f64>,
    pub observed_rate: Option<f64>,
}

/// One tenth of the holdout ranked by score (decile 1 = the highest scores).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LiftDecile {
    pub decile: usize,
    pub rows: u64,
    pub positives: u64,
    /// Positive rate in this decile over the base rate.
    pub lift: Option<f64>,
    /// Positive rate in deciles 1..=decile over the base rate.
    pub cumulative_lift: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Metrics {
    pub rows: u64,
    pub positives: u64,
    pub base_rate: f64,
    pub roc_auc: f64,
    pub pr_auc: f64,
    pub log_loss: f64,
    pub brier: f64,
    pub lift_top_decile: f64,
    /// ROC curve at up to 50 thresholds: (false positive rate, true positive rate).
    pub roc_curve: Vec<(f64, f64)>,
    pub calibration: Vec<CalibrationBin>,
    /// Lift by score decile, for the lift chart (absent in model files of earlier versions).
    #[serde(default)]
    pub lift_by_decile: Vec<LiftDecile>,
}

pub fn evaluate(p: &[f64], y: &[bool]) -> Metrics {
    let n = p.len();
    let positives = y.iter().filter(|v| **v).count();
    let base_rate = if n == 0 {
        0.0
    } else {
        positives as f64 / n as f64
    };
    // Sort by score descending; ties grouped.
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|a, b| p[*b].total_cmp(&p[*a]).then(a.cmp(b)));
    let ranking = ranking_metrics(p, y, &idx, positives);
    let top = (n as f64 / 10.0).ceil() as usize;
    let top_rate = if top == 0 {
        0.0
    } else {
        idx[..top].iter().filter(|i| y[**i]).count() as f64 / top as f64
    };
    let lift_top_decile = if base_rate > 0.0 {
        top_rate / base_rate
    } else {
        f64::NAN
    };
    Metrics {
        rows: n as u64,
        positives: positives as u64,
        base_rate,
        roc_auc: ranking.roc_auc,
        pr_auc: ranking.pr_auc,
        log_loss: log_loss(p, y),
        brier: brier(p, y),
        lift_top_decile,
        roc_curve: ranking.roc_curve,
        calibration: calibration(p, y),
        lift_by_decile: lift_by_decile(y, &idx, base_rate),
    }
}

/// ROC AUC, average precision and the ROC curve (at most about 50 points) of the ranking `idx`
/// (rows by score descending).
struct Ranking {
    roc_auc: f64,
    pr_auc: f64,
    roc_curve: Vec<(f64, f64)>,
}

fn ranking_metrics(p: &[f64], y: &[bool], idx: &[usize], positives: usize) -> Ranking {
    let n = p.len();
    let negatives = n - positives;
    let (mut tp, mut fp) = (0usize, 0usize);
    let (mut auc, mut ap) = (0.0, 0.0);
    let mut curve = vec![(0.0, 0.0)];
    let mut i = 0;
    while i < n {
        let mut j = i;
        let (mut tp_g, mut fp_g) = (0, 0);
        while j < n && p[idx[j]] == p[idx[i]] {
            if y[idx[j]] {
                tp_g += 1
            } else {
                fp_g += 1
            }
            j += 1;
        }
        // Trapezoid over the tie group.
        auc += fp_g as f64 * (tp as f64 + tp_g as f64 / 2.0);
        tp += tp_g;
        fp += fp_g;
        if tp_g > 0 {
            ap += tp_g as f64 * (tp as f64 / (tp + fp) as f64);
        }
        let share = |k: usize, of: usize| if of > 0 { k as f64 / of as f64 } else { 0.0 };
        curve.push((share(fp, negatives), share(tp, positives)));
        i = j;
    }
    let roc_auc = if positives > 0 && negatives > 0 {
        auc / (positives as f64 * negatives as f64)
    } else {
        f64::NAN
    };
    let pr_auc = if positives > 0 {
        ap / positives as f64
    } else {
        f64::NAN
    };
    // Thin the curve to at most 50 points for the report.
    let step = (curve.len() / 50).max(1);
    let mut roc_curve: Vec<(f64, f64)> = curve.iter().step_by(step).copied().collect();
    if roc_curve.last() != curve.last() {
        roc_curve.push(*curve.last().expect("curve has its origin"));
    }
    Ranking {
        roc_auc,
        pr_auc,
        roc_curve,
    }
}

/// Mean log loss with probabilities clipped to [1e-15, 1 - 1e-15] (NaN for no rows).
fn log_loss(p: &[f64], y: &[bool]) -> f64 {
    if p.is_empty() {
        return f64::NAN;
    }
    let eps = 1e-15;
    -p.iter()
        .zip(y)
        .map(|(p, y)| {
            let p = p.clamp(eps, 1.0 - eps);
            if *y {
                p.ln()
            } else {
                (1.0 - p).ln()
            }
        })
        .sum::<f64>()
        / p.len() as f64
}

/// Mean squared error of the probabilities (NaN for no rows).
fn brier(p: &[f64], y: &[bool]) -> f64 {
    if p.is_empty() {
        return f64::NAN;
    }
    p.iter()
        .zip(y)
        .map(|(p, y)| (p - if *y { 1.0 } else { 0.0 }).powi(2))
        .sum::<f64>()
        / p.len() as f64
}

/// Ten bins of predicted probability [0, 0.1), ..., [0.9, 1]: rows, mean predicted, observed.
fn calibration(p: &[f64], y: &[bool]) -> Vec<CalibrationBin> {
    let n = p.len();
    let mut calibration = Vec::new();
    for bin in 0..10 {
        let lo = bin as f64 / 10.0;
        let hi = lo + 0.1;
        let members: Vec<usize> = (0..n)
            .filter(|i| p[*i] >= lo && (p[*i] < hi || (bin == 9 && p[*i] <= 1.0)))
            .collect();
        let rows = members.len();
        calibration.push(CalibrationBin {
            bin,
            rows: rows as u64,
            mean_predicted: (rows > 0)
                .then(|| members.iter().map(|i| p[*i]).sum::<f64>() / rows as f64),
            observed_rate: (rows > 0)
                .then(|| members.iter().filter(|i| y[**i]).count() as f64 / rows as f64),
        });
    }
    calibration
}

/// Deciles of the ranking: decile d holds ranks [d*n/10, (d+1)*n/10) (sizes differ by one at
/// most); ties across a boundary fall where the stable order puts them.
fn lift_by_decile(y: &[bool], idx: &[usize], base_rate: f64) -> Vec<LiftDecile> {
    let n = idx.len();
    let mut out = Vec::new();
    let (mut cum_rows, mut cum_pos) = (0u64, 0u64);
    for d in 0..10 {
        let (lo, hi) = (d * n / 10, (d + 1) * n / 10);
        let rows = (hi - lo) as u64;
        let pos = idx[lo..hi].iter().filter(|i| y[**i]).count() as u64;
        cum_rows += rows;
        cum_pos += pos;
        let lift = |pos: u64, rows: u64| {
            (rows > 0 && base_rate > 0.0).then(|| pos as f64 / rows as f64 / base_rate)
        };
        out.push(LiftDecile {
            decile: d + 1,
            rows,
            positives: pos,
            lift: lift(pos, rows),
            cumulative_lift: lift(cum_pos, cum_rows),
        });
    }
    out
}
