//! Training: a challenger per target, fitted out of time (on the snapshot as_of − 2 horizons,
//! evaluated on as_of − 1 horizon), refitted on the newer snapshot, saved to the registry and
//! promoted when it is at least as good as the champion on the same holdout.

use std::collections::BTreeMap;

use arrow::array::{AsArray, RecordBatch};
use datafusion::prelude::SessionContext;
use flywheel_models::ndarray::Array2;
use flywheel_models::{evaluate, fit, promotion_decision, FitSettings, ModelFile, Preprocessor};
use tracing::info;

use super::registry::Registry;
use super::target::{feature_spec, Target};
use super::training_set::{training_set, Snapshots};
use crate::config::Config;
use crate::engine::{catalog, params, run_jobs, session, Release, RunDate, Scratch, Stages, Tables};
use crate::error::{FlywheelError, Result};
use crate::steps::ingest;
use crate::storage::Root;

/// The design matrix of `batches`: each batch on its own, on two threads, back in order.
pub fn design(pre: &Preprocessor, batches: &[RecordBatch]) -> Result<Array2<f64>> {
    let parts = crate::parallel::map_ordered(batches, 2, |b| Ok(pre.transform(b)?))?;
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    if views.is_empty() {
        return Ok(Array2::zeros((0, pre.column_names().len())));
    }
    flywheel_models::ndarray::concatenate(flywheel_models::ndarray::Axis(0), &views)
        .map_err(FlywheelError::internal)
}

/// What training reads: a query session holding the validated inputs as of the training date and
/// that date's `int_referral_signups` (the labels read its flags), and the inputs' fingerprint.
pub struct TrainingInputs {
    pub ctx: SessionContext,
    pub fingerprint: String,
}

/// Read and validate the inputs at `input` as of `as_of` (their valid rows streamed into
/// `scratch`, which must outlive the returned session) and compute what the labels read.
pub async fn training_inputs(
    cfg: &Config,
    input: &Root,
    as_of: &RunDate,
    scratch: &Scratch,
) -> Result<TrainingInputs> {
    let ctx = session(cfg)?;
    let validated = ingest::load_inputs(&ctx, cfg, input, as_of, scratch).await?;
    ingest::enforce_reject_share(&validated.checks, cfg.max_reject_share)?;
    let jobs = catalog::jobs_for(&["int_referral_signups"])?;
    let mut tables = Tables::default();
    let p = params(cfg, as_of);
    run_jobs(
        &ctx,
        &jobs,
        &p,
        &mut Stages::default(),
        &mut tables,
        &Release::none().spilling_to(scratch, &[]),
    )
    .await?;
    Ok(TrainingInputs {
        ctx,
        fingerprint: super::target::fingerprint(&validated.files),
    })
}

pub struct Trained {
    pub file: ModelFile,
    pub promoted: bool,
    pub reason: String,
}

/// What to train: a target as of a date, on inputs with this fingerprint; `export`: where to
/// write the out-of-time design matrices (for comparisons with other libraries).
pub struct Request<'a> {
    pub target: Target,
    pub as_of: RunDate,
    pub fingerprint: &'a str,
    pub export: Option<&'a Root>,
}

/// A labelled set: feature batches and their labels.
#[derive(Clone)]
struct Labelled {
    batches: Vec<RecordBatch>,
    y: Vec<bool>,
}

impl Labelled {
    /// At most `limit` rows for fitting (all when `limit` is 0 or the set is smaller): the rows
    /// whose customer_id has the smallest 64-bit FNV-1a hashes (ties: the smaller id), in their
    /// original order. A customer's membership depends on its id alone, so the sample is the
    /// same on every machine and run, and unrelated to the label.
    fn sample(&self, limit: usize) -> Result<Labelled> {
        if limit == 0 || self.y.len() <= limit {
            return Ok(self.clone());
        }
        let mut keyed: Vec<(u64, String, usize)> = Vec::with_capacity(self.y.len());
        for b in &self.batches {
            let ids = b
                .column_by_name("customer_id")
                .ok_or_else(|| FlywheelError::internal("a training set has no customer_id"))?;
            let ids = arrow::compute::cast(ids, &arrow::datatypes::DataType::Utf8)?;
            for id in ids.as_string::<i32>().iter() {
                let id = id.unwrap_or_default().to_string();
                keyed.push((flywheel_models::fnv1a(id.as_bytes()), id, keyed.len()));
            }
        }
        keyed.select_nth_unstable(limit - 1);
        let mut keep = vec![false; keyed.len()];
        for (_, _, row) in &keyed[..limit] {
            keep[*row] = true;
        }
        let (mut batches, mut at) = (Vec::with_capacity(self.batches.len()), 0);
        for b in &self.batches {
            let mask = arrow::array::BooleanArray::from(keep[at..at + b.num_rows()].to_vec());
            batches.push(arrow::compute::filter_record_batch(b, &mask)?);
            at += b.num_rows();
        }
        let y = self
            .y
            .iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(y, _)| *y);
        Ok(Labelled {
            batches,
            y: y.collect(),
        })
    }
}

/// The two fits of a training: out of time (older snapshot) and final (newer snapshot).
struct Fits {
    validation: flywheel_models::Model,
    /// The validation model's design matrix of the older snapshot (for `export`).
    validation_x: Array2<f64>,
    model: flywheel_models::Model,
}

/// Train a challenger for `req.target` as of `req.as_of`, compare it with the champion on the
/// same holdout, and promote it when it is at least as good (README, "Models"). `ctx` holds the
/// validated inputs and the run date's `int_referral_signups`.
pub async fn train(
    ctx: &SessionContext,
    cfg: &Config,
    registry: &Registry,
    req: &Request<'_>,
    snapshots: &mut Snapshots,
) -> Result<Trained> {
    let target = req.target;
    let h = target.horizon_days(cfg);
    let (train_t, holdout_t) = (req.as_of.days_before(2 * h), req.as_of.days_before(h));
    let (b, y) = training_set(ctx, cfg, target, &train_t, snapshots).await?;
    let older = Labelled { batches: b, y };
    let (b, y) = training_set(ctx, cfg, target, &holdout_t, snapshots).await?;
    let newer = Labelled { batches: b, y };
    info!(target = target.name(), train_rows = older.y.len(), holdout_rows = newer.y.len(), %train_t, %holdout_t, "training sets built");

    let step = std::time::Instant::now();
    let (fits, fitted_rows) = fit_sampled(cfg, target, &older, &newer, step)?;
    let xh = design(&fits.validation.preprocessor, &newer.batches)?;
    let p = fits.validation.predict(&xh);
    if let Some(dir) = req.export {
        export_design(dir, cfg, target, &fits, &xh, &p, &older, &newer).await?;
    }
    drop(fits.validation_x);
    let holdout_metrics = evaluate(&p, &newer.y);
    info!(
        target = target.name(),
        seconds = step.elapsed().as_secs_f64(),
        "holdout evaluated"
    );
    let model = fits.model;
    let drift_reference = drift_reference(&model, &newer.batches)?;
    if !model.convergence.converged {
        tracing::warn!(
            target = target.name(),
            gradient = model.convergence.max_gradient_per_row,
            "the model did not converge; raise max_iterations or l2"
        );
    }
    let mut file = ModelFile {
        format: flywheel_models::FORMAT,
        target: target.name().into(),
        version: String::new(),
        model,
        settings: settings(cfg, fitted_rows),
        horizon_days: h,
        as_of: req.as_of.to_string(),
        train_snapshot: train_t.to_string(),
        holdout_snapshot: holdout_t.to_string(),
        train_rows: fitted_rows as u64,
        holdout_metrics,
        input_fingerprint: req.fingerprint.to_string(),
        libraries: BTreeMap::from([
            ("flywheel".into(), env!("CARGO_PKG_VERSION").into()),
            ("linfa-logistic".into(), "0.8.1".into()),
            ("datafusion".into(), "55".into()),
        ]),
        drift_reference,
    };
    file.version = file.content_version(&req.as_of.date().format("%Y%m%d").to_string());
    registry.save(&file).await?;
    let (promoted, reason) = promotion(registry, target, &file, &newer).await?;
    if promoted {
        registry.promote(target, &file.version).await?;
    }
    Ok(Trained {
        file,
        promoted,
        reason,
    })
}

/// The training snapshot's distribution of every feature the model reads and of its score (the
/// final model on its own training rows): the reference of the nightly drift figures.
fn drift_reference(
    model: &flywheel_models::Model,
    batches: &[RecordBatch],
) -> Result<Vec<flywheel_models::drift::Reference>> {
    use flywheel_models::drift::{column_values, reference_of, Reference};
    let mut out = Vec::new();
    for name in super::target::model_features(model) {
        out.push(reference_of(&name, &column_values(batches, &name)?));
    }
    let p = model.predict(&design(&model.preprocessor, batches)?);
    let scores: Vec<Option<f64>> = p.into_iter().map(Some).collect();
    out.push(Reference::numeric(SCORE_VARIABLE, &scores));
    Ok(out)
}

/// The name the score goes by in the drift figures.
pub const SCORE_VARIABLE: &str = "score";

/// linfa's gradient is a sum over rows: the tolerance is per row (1e-4) times the rows.
fn settings(cfg: &Config, rows: usize) -> FitSettings {
    FitSettings {
        alpha: cfg.l2,
        max_iterations: cfg.max_iterations,
        gradient_tolerance: 1e-4 * rows.max(1) as f64,
    }
}

/// Both fits on at most `train_sample_rows` rows of each snapshot (see [`Labelled::sample`]);
/// also the rows the final model was fitted on.
fn fit_sampled(
    cfg: &Config,
    target: Target,
    older: &Labelled,
    newer: &Labelled,
    step: std::time::Instant,
) -> Result<(Fits, usize)> {
    let limit = cfg.train_sample_rows as usize;
    let (older_fit, newer_fit) = (older.sample(limit)?, newer.sample(limit)?);
    let fits = fit_both(cfg, target, &older_fit, &newer_fit, step)?;
    let fitted_rows = newer_fit.y.len();
    if fitted_rows < newer.y.len() {
        info!(
            target = target.name(),
            fitted_rows,
            snapshot_rows = newer.y.len(),
            "fitted on a sample (train_sample_rows); evaluated on the whole holdout"
        );
    }
    drop((older_fit, newer_fit));
    Ok((fits, fitted_rows))
}

/// Out-of-time validation (fit on the older snapshot, evaluate on the newer one) and the final
/// model (the same settings on the newer snapshot) do not depend on each other: they are fitted
/// at once, on two threads. Each fit is single-threaded and deterministic.
fn fit_both(
    cfg: &Config,
    target: Target,
    older: &Labelled,
    newer: &Labelled,
    step: std::time::Instant,
) -> Result<Fits> {
    let spec = feature_spec();
    let fit_on = |set: &Labelled, what: &'static str| -> Result<_> {
        let pre = Preprocessor::fit(&spec, &set.batches)?;
        let x = design(&pre, &set.batches)?;
        let model = fit(pre, &x, &set.y, &settings(cfg, set.y.len()))?;
        info!(
            target = target.name(),
            seconds = step.elapsed().as_secs_f64(),
            rows = set.y.len(),
            "{what} model fitted"
        );
        Ok((model, x))
    };
    let (validation, final_fit) = std::thread::scope(|scope| {
        let validation = scope.spawn(|| fit_on(older, "validation"));
        let final_fit = fit_on(newer, "final");
        let validation = validation
            .join()
            .unwrap_or_else(|_| Err(FlywheelError::internal("the validation fit panicked")));
        (validation, final_fit)
    });
    let (validation, validation_x) = validation?;
    let (model, _) = final_fit?;
    Ok(Fits {
        validation,
        validation_x,
        model,
    })
}

/// The out-of-time design matrices and flywheel's validation model, for `tests/sklearn_compare.py`.
#[allow(clippy::too_many_arguments)]
async fn export_design(
    dir: &Root,
    cfg: &Config,
    target: Target,
    fits: &Fits,
    xh: &Array2<f64>,
    p: &[f64],
    older: &Labelled,
    newer: &Labelled,
) -> Result<()> {
    let names = fits.validation.preprocessor.column_names();
    dir.put(
        &format!("{}/train.csv", target.name()),
        design_csv(&names, &fits.validation_x, &older.y).into(),
    )
    .await?;
    dir.put(
        &format!("{}/holdout.csv", target.name()),
        design_csv(&names, xh, &newer.y).into(),
    )
    .await?;
    let ours = serde_json::json!({
        "alpha": cfg.l2,
        "roc_auc": evaluate(p, &newer.y).roc_auc,
        "intercept": fits.validation.intercept,
        "coefficients": fits.validation.coefficients,
    });
    dir.put(
        &format!("{}/flywheel.json", target.name()),
        serde_json::to_vec_pretty(&ours)
            .map_err(FlywheelError::internal)?
            .into(),
    )
    .await
}

/// Whether the challenger `file` replaces the champion, compared on the same holdout.
async fn promotion(
    registry: &Registry,
    target: Target,
    file: &ModelFile,
    holdout: &Labelled,
) -> Result<(bool, String)> {
    let champion = registry.champion(target).await?;
    Ok(match &champion.version {
        None => (true, "no champion yet".to_string()),
        Some(v) if *v == file.version => (true, "identical to the champion".to_string()),
        Some(v) => match registry.load(target, v).await {
            Err(e) => (true, format!("the champion {v} cannot be used ({e})")),
            Ok(champ) => match design(&champ.model.preprocessor, &holdout.batches) {
                Err(e) => (
                    true,
                    format!("the champion {v} does not fit today's features ({e})"),
                ),
                Ok(xh) => {
                    let cm = evaluate(&champ.model.predict(&xh), &holdout.y);
                    promotion_decision(&file.holdout_metrics, &cm, v)
                }
            },
        },
    })
}

/// A design matrix as CSV: a header of design column names and `label`, then one row per row.
fn design_csv(names: &[String], x: &Array2<f64>, y: &[bool]) -> Vec<u8> {
    let mut out = String::new();
    out.push_str(
        &names
            .iter()
            .map(|n| format!("\"{}\"", n.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(","),
    );
    out.push_str(",label\n");
    for (row, label) in x.rows().into_iter().zip(y) {
        for v in row {
            out.push_str(&format!("{v},"));
        }
        out.push_str(if *label { "1\n" } else { "0\n" });
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn set(ids: &[&str]) -> Labelled {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "customer_id",
            DataType::Utf8,
            false,
        )]));
        let half = ids.len() / 2;
        let batch = |part: &[&str]| {
            RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(StringArray::from(part.to_vec()))],
            )
            .unwrap()
        };
        Labelled {
            batches: vec![batch(&ids[..half]), batch(&ids[half..])],
            // The label is a function of the id, so alignment can be checked.
            y: ids.iter().map(|i| i.ends_with('7')).collect(),
        }
    }

    fn ids(l: &Labelled) -> Vec<String> {
        l.batches
            .iter()
            .flat_map(|b| {
                let c = b.column(0).as_string::<i32>().clone();
                (0..c.len())
                    .map(|i| c.value(i).to_string())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn the_fitting_sample_is_the_smallest_hashes_in_order_with_their_labels() {
        let names: Vec<String> = (0..1000).map(|i| format!("CU{i:08}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let full = set(&refs);
        // No limit, or a limit above the size: everything.
        assert_eq!(full.sample(0).unwrap().y.len(), 1000);
        assert_eq!(full.sample(5000).unwrap().y.len(), 1000);
        let s = full.sample(100).unwrap();
        let kept = ids(&s);
        assert_eq!(kept.len(), 100);
        // Exactly the 100 smallest hashes, kept in their original order.
        let mut by_hash: Vec<(u64, &String)> = names
            .iter()
            .map(|n| (flywheel_models::fnv1a(n.as_bytes()), n))
            .collect();
        by_hash.sort();
        let mut want: Vec<&String> = by_hash[..100].iter().map(|(_, n)| *n).collect();
        want.sort();
        assert_eq!(kept.iter().collect::<Vec<_>>(), want);
        // Labels travel with their rows.
        let labels: Vec<bool> = kept.iter().map(|i| i.ends_with('7')).collect();
        assert_eq!(s.y, labels);
        // Membership depends on the id's own hash: a customer sampled from the whole set is
        // sampled from any subset that contains it (its rank can only improve).
        let first_half = ids(&set(&refs[..500]).sample(100).unwrap());
        for id in kept.iter().filter(|i| refs[..500].contains(&i.as_str())) {
            assert!(first_half.contains(id), "{id}");
        }
    }
}
