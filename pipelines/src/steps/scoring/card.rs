//! The model card of a model version, `models/<target>/<version>/card.md`, written beside the
//! model file when it is trained: what it predicts and for whom, the snapshots and rows, the
//! holdout metrics with the calibration table, the ten strongest coefficients in words, the
//! features it cannot be used without, and its known limits. A function of the model file only,
//! so the same model gives the same card.

use std::fmt::Write;

use flywheel_models::ModelFile;

use super::target::Target;

/// What a target predicts, for whom it is trained, and whom the nightly run scores.
fn purpose(target: Target, horizon: i64) -> (String, String, String) {
    match target {
        Target::Refer => (
            format!("p_refer: the probability that the customer refers at least one new customer (a signup with no fraud or eligibility flag) within {horizon} days"),
            "customers delivered before the snapshot date".into(),
            "every accepted CRM customer (`customer_scores.p_refer`); ambassador candidates are drawn from the top of it".into(),
        ),
        Target::Churn => (
            format!("p_churn: the probability that the customer makes no visit within {horizon} days"),
            "customers with at least one visit in the 365 days before the snapshot date (the churn population)".into(),
            "the churn population only (`customer_scores.p_churn`, null for everyone else); churn alerts use it".into(),
        ),
    }
}

/// The model card as Markdown.
pub fn markdown(target: Target, f: &ModelFile) -> String {
    let (predicts, trained_on, scored) = purpose(target, f.horizon_days);
    let mut s = String::new();
    let _ = writeln!(s, "# Model card: {} {}\n", f.target, f.version);
    let _ = writeln!(s, "## What it predicts, and for whom\n");
    let _ = writeln!(s, "- Predicts {predicts}.");
    let _ = writeln!(s, "- Trained on {trained_on}.");
    let _ = writeln!(s, "- Scored by the nightly run for {scored}.");
    let _ = writeln!(
        s,
        "- Logistic regression (linfa-logistic), L2 alpha {}, at most {} iterations; {}.\n",
        f.settings.alpha,
        f.settings.max_iterations,
        if f.model.convergence.converged {
            "converged".to_string()
        } else {
            format!(
                "DID NOT CONVERGE (gradient {:.2e} per row)",
                f.model.convergence.max_gradient_per_row
            )
        }
    );
    data_and_metrics(&mut s, f);
    let _ = writeln!(s, "\n## The ten strongest coefficients, in words\n");
    for line in strongest(f, 10) {
        let _ = writeln!(s, "- {line}");
    }
    let _ = writeln!(s, "\n## Features it cannot be used without\n");
    let _ = writeln!(
        s,
        "Columns of `customer_features` (as `sql/customer_features.sql` computes them at the run date): {}.",
        super::target::model_features(&f.model)
            .iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(s, "\n## Known limits\n");
    for limit in limits(target, f) {
        let _ = writeln!(s, "- {limit}");
    }
    s
}

/// The snapshots and rows, then the holdout metrics with the calibration table.
fn data_and_metrics(s: &mut String, f: &ModelFile) {
    let m = &f.holdout_metrics;
    let _ = writeln!(s, "## Data\n");
    let _ = writeln!(s, "| | |\n|---|---|");
    let _ = writeln!(s, "| trained as of | {} |", f.as_of);
    let _ = writeln!(
        s,
        "| validation fit | snapshot {} (labels over the {} days after it) |",
        f.train_snapshot, f.horizon_days
    );
    let _ = writeln!(
        s,
        "| holdout | snapshot {}: {} rows, {} positive (base rate {:.4}) |",
        f.holdout_snapshot, m.rows, m.positives, m.base_rate
    );
    let fitted = if f.train_rows < m.rows {
        format!(
            "{} rows, a deterministic sample of its {} (`train_sample_rows`)",
            f.train_rows, m.rows
        )
    } else {
        format!("{} rows", f.train_rows)
    };
    let _ = writeln!(
        s,
        "| final model | refitted on the holdout snapshot {}: {fitted} |",
        f.holdout_snapshot
    );
    let _ = writeln!(s, "| input fingerprint | {} |\n", f.input_fingerprint);
    let _ = writeln!(
        s,
        "## Holdout metrics (the validation fit on the holdout snapshot)\n"
    );
    let _ = writeln!(
        s,
        "ROC AUC {:.4} · PR AUC {:.4} · log loss {:.4} · Brier {:.4} · lift in the top decile {:.2}\n",
        m.roc_auc, m.pr_auc, m.log_loss, m.brier, m.lift_top_decile
    );
    let _ = writeln!(s, "Calibration (10 bins of predicted probability):\n");
    let _ = writeln!(
        s,
        "| bin | rows | mean predicted | observed rate |\n|---|---|---|---|"
    );
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
    for b in &m.calibration {
        let _ = writeln!(
            s,
            "| {:.1}–{:.1} | {} | {} | {} |",
            b.bin as f64 / 10.0,
            (b.bin + 1) as f64 / 10.0,
            b.rows,
            opt(b.mean_predicted),
            opt(b.observed_rate)
        );
    }
}

/// The `n` coefficients largest in size, each as what it does to the odds.
fn strongest(f: &ModelFile, n: usize) -> Vec<String> {
    let mut coefs: Vec<&(String, f64)> = f.model.coefficients.iter().collect();
    coefs.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then_with(|| a.0.cmp(&b.0)));
    coefs
        .into_iter()
        .take(n)
        .map(|(name, c)| {
            let odds = c.exp();
            let effect = if *c >= 0.0 {
                format!("multiplies the odds by {odds:.2}")
            } else {
                format!("divides the odds by {:.2}", 1.0 / odds)
            };
            let numeric = f
                .model
                .preprocessor
                .numeric
                .iter()
                .find(|x| &x.name == name);
            let what = if let Some(x) = numeric {
                format!("each standard deviation ({:.3}) more of `{name}`", x.std)
            } else if let Some(base) = name.strip_suffix("__missing") {
                format!("`{base}` missing")
            } else if let Some((col, level)) = name.split_once('=') {
                format!("`{col}` = {level}")
            } else {
                format!("`{name}` true")
            };
            format!("{what} {effect} (coefficient {c:+.4})")
        })
        .collect()
}

fn limits(target: Target, f: &ModelFile) -> Vec<String> {
    let mut out = vec![
        format!(
            "Labels need {} days to be complete: the holdout is the snapshot {} days before the training date, so the model has not seen the last {} days of behaviour.",
            f.horizon_days, f.horizon_days, f.horizon_days
        ),
        "A categorical level not seen in training (a new segment or vehicle model) scores as none of the known levels.".into(),
        "Numeric nulls are imputed with the training mean; a feature whose meaning or unit changes upstream silently shifts the scores (watch the drift figures).".into(),
        "Probabilities are calibrated on the holdout snapshot's population; they describe the network as it was then.".into(),
    ];
    match target {
        Target::Refer => out.push(format!(
            "Customers delivered after the snapshot ({}) are not in the training population, yet every CRM customer is scored.",
            f.holdout_snapshot
        )),
        Target::Churn => out.push(
            "Customers without a visit in the year before the run date are outside the population and get no p_churn.".into(),
        ),
    }
    out
}
