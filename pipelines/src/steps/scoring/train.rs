//! Training: a challenger per target, fitted out of time (on the snapshot as_of − 2 horizons,
//! evaluated on as_of − 1 horizon), refitted on the newer snapshot, saved to the registry and
//! promoted when it is at least as good as the champion on the same holdout.

use std::collections::BTreeMap;

use arrow::array::{AsArray, RecordBatch};
use datafusion::prelude::SessionContext;
use flywheel_models::ndarray::Array2;
use flywheel_models::{evaluate, fit, promotion_decision, FitSettings, ModelFile, Preprocessor};
use futures::{FutureExt, StreamExt};
use tracing::info;

use super::registry::Registry;
use super::target::{feature_spec, Target};
use super::training_set::{training_sets, Labelled, Snapshots};
use crate::config::Config;
use crate::engine::stored::{next_group, read_ahead, BATCHES_PER_THREAD};
use crate::engine::{
    catalog, params, run_jobs, session, Release, RunDate, Scratch, Stages, Tables,
};
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
    /// Where the snapshots and labelled sets are stored.
    pub scratch: Scratch,
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
    let jobs = catalog::jobs_for(&["int_referral_signups"], &[])?;
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
        scratch: scratch.clone(),
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

/// The rows a fit reads, in memory: feature batches and their labels.
#[derive(Clone)]
struct Sample {
    batches: Vec<RecordBatch>,
    y: Vec<bool>,
}

/// At most `limit` rows of `set` for fitting (all when `limit` is 0 or the set is smaller): the
/// rows whose customer_id has the smallest 64-bit FNV-1a hashes (ties: the smaller id), in their
/// original order. A customer's membership depends on its id alone, so the sample is the same on
/// every machine and run, and unrelated to the label. Read from the stored set: a pass over the
/// ids (8 bytes a row), a second over the ids of a tied hash (practically never), then the rows
/// kept.
async fn sample(set: &Labelled, limit: usize) -> Result<Sample> {
    let keep = if limit == 0 || set.y.len() <= limit {
        None
    } else {
        let mut hashes = Vec::with_capacity(set.y.len());
        for_each_id(set, |id| hashes.push(flywheel_models::fnv1a(id.as_bytes()))).await?;
        let (mut keep, tie) = smallest(&hashes, limit);
        if let Some((h, slots)) = tie {
            let (mut tied, mut row) = (Vec::new(), 0);
            for_each_id(set, |id| {
                if hashes[row] == h {
                    tied.push((id.to_string(), row));
                }
                row += 1;
            })
            .await?;
            tied.sort();
            tied.iter().take(slots).for_each(|(_, r)| keep[*r] = true);
        }
        Some(keep)
    };
    let (mut batches, mut y, mut at) = (Vec::new(), Vec::new(), 0);
    let mut rows = set.rows.batches(None).await?;
    while let Some(b) = rows.next().await {
        let b = b?;
        let range = at..at + b.num_rows();
        at = range.end;
        match &keep {
            None => {
                y.extend_from_slice(&set.y[range]);
                batches.push(b);
            }
            Some(keep) => {
                let mask = arrow::array::BooleanArray::from(keep[range.clone()].to_vec());
                batches.push(arrow::compute::filter_record_batch(&b, &mask)?);
                y.extend(
                    set.y[range.clone()]
                        .iter()
                        .zip(&keep[range])
                        .filter(|(_, k)| **k)
                        .map(|(y, _)| *y),
                );
            }
        }
    }
    Ok(Sample { batches, y })
}

/// The `limit` smallest `hashes` (limit ≥ 1, fewer than the rows): every row below the
/// `limit`-th smallest hash, and the rows at it when they all fit; else those are left out
/// and returned as (hash, how many of them to keep), to be chosen by id.
fn smallest(hashes: &[u64], limit: usize) -> (Vec<bool>, Option<(u64, usize)>) {
    let mut sorted = hashes.to_vec();
    let (_, &mut h, _) = sorted.select_nth_unstable(limit - 1);
    drop(sorted);
    let below = hashes.iter().filter(|x| **x < h).count();
    let at = hashes.iter().filter(|x| **x == h).count();
    let slots = limit - below;
    let keep = hashes
        .iter()
        .map(|x| *x < h || (*x == h && at <= slots))
        .collect();
    (keep, (at > slots).then_some((h, slots)))
}

/// `f` over the customer_id of every row of the stored set, in order (a null id as "").
async fn for_each_id(set: &Labelled, mut f: impl FnMut(&str)) -> Result<()> {
    let mut ids = set.rows.batches(Some(&["customer_id"])).await?;
    while let Some(b) = ids.next().await {
        super::training_set::ids_of(&b?)?
            .as_string::<i32>()
            .iter()
            .for_each(|id| f(id.unwrap_or_default()));
    }
    Ok(())
}

/// The probability `model` gives every row of the stored set, in order: its design matrix a
/// few batches at a time, on two threads (row for row what one matrix of every row gives),
/// while the next batches are read.
async fn predict(model: &flywheel_models::Model, set: &Labelled) -> Result<Vec<f64>> {
    let mut p = Vec::with_capacity(set.y.len());
    const THREADS: usize = 2;
    let ahead = THREADS * BATCHES_PER_THREAD; // the next group, read while this one is scored
    let mut rows = read_ahead(set.rows.batches(None).await?, ahead);
    while let Some(group) = next_group(&mut rows, THREADS).await? {
        let parts = crate::parallel::map_ordered(&group, THREADS, |b| {
            Ok(model.predict(&model.preprocessor.transform(b)?))
        })?;
        p.extend(parts.into_iter().flatten());
    }
    Ok(p)
}

/// The whole design matrix of the stored set (only to export it: small sets).
async fn design_of(pre: &Preprocessor, set: &Labelled) -> Result<Array2<f64>> {
    let mut batches = Vec::new();
    let mut rows = set.rows.batches(None).await?;
    while let Some(b) = rows.next().await {
        batches.push(b?);
    }
    design(pre, &batches)
}

/// The two fits of a training: out of time (older snapshot) and final (newer snapshot).
struct Fits {
    validation: flywheel_models::Model,
    /// The validation model's design matrix of the older snapshot and its labels (for
    /// `export`).
    validation_x: Array2<f64>,
    validation_y: Vec<bool>,
    model: flywheel_models::Model,
}

/// Train a challenger for `req.target` as of `req.as_of`, compare it with the champion on the
/// same holdout, and promote it when it is at least as good (README, "Models"). `ctx` holds the
/// validated inputs and the run date's `int_referral_signups`.
pub async fn train(
    inputs: &TrainingInputs,
    cfg: &Config,
    registry: &Registry,
    req: &Request<'_>,
    snapshots: &mut Snapshots,
) -> Result<Trained> {
    let (ctx, scratch) = (&inputs.ctx, &inputs.scratch);
    let target = req.target;
    let h = target.horizon_days(cfg);
    let (train_t, holdout_t) = (req.as_of.days_before(2 * h), req.as_of.days_before(h));
    let [older, newer] =
        training_sets(ctx, cfg, target, [train_t, holdout_t], snapshots, scratch).await?;
    info!(target = target.name(), train_rows = older.y.len(), holdout_rows = newer.y.len(), %train_t, %holdout_t, "training sets built");

    let step = std::time::Instant::now();
    let (fits, fitted_rows) = fit_sampled(cfg, target, &older, &newer, step).await?;
    let p = predict(&fits.validation, &newer).await?;
    if let Some(dir) = req.export {
        export_design(dir, cfg, target, &fits, &p, &newer).await?;
    }
    drop(fits.validation_x);
    let holdout_metrics = evaluate(&p, &newer.y);
    info!(
        target = target.name(),
        seconds = step.elapsed().as_secs_f64(),
        "holdout evaluated"
    );
    let model = fits.model;
    let drift_reference = drift_reference(&model, &newer).await?;
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
/// final model on its own training rows): the reference of the nightly drift figures. Each
/// feature is a pass over its column of the stored set, two at a time on tasks of their own (a
/// column's values in memory each), the figures in the order of the features.
async fn drift_reference(
    model: &flywheel_models::Model,
    set: &Labelled,
) -> Result<Vec<flywheel_models::drift::Reference>> {
    use flywheel_models::drift::{Reference, Values};
    let jobs = super::target::model_features(model)
        .into_iter()
        .map(|name| {
            let stored = set.rows.clone();
            async move {
                let mut parts = Vec::new();
                let mut column = stored.batches(Some(&[name.as_str()])).await?;
                while let Some(b) = column.next().await {
                    parts.push(Values::of_column(&b?, &name)?);
                }
                Ok(Reference::of_columns(&name, &parts))
            }
            .boxed()
        })
        .collect();
    let mut out = crate::parallel::spawn_ordered(jobs, 2).await?;
    let scores: Vec<Option<f64>> = predict(model, set).await?.into_iter().map(Some).collect();
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

/// Both fits on at most `train_sample_rows` rows of each snapshot (see [`sample`]); also the
/// rows the final model was fitted on.
async fn fit_sampled(
    cfg: &Config,
    target: Target,
    older: &Labelled,
    newer: &Labelled,
    step: std::time::Instant,
) -> Result<(Fits, usize)> {
    let limit = cfg.train_sample_rows as usize;
    // Each sample is a pass over its stored set on one thread: both at once.
    let [older_fit, newer_fit] = crate::parallel::spawn_each([older, newer].map(|set| {
        let set = set.clone();
        async move { sample(&set, limit).await }.boxed()
    }))
    .await?;
    let fits = fit_both(cfg, target, older_fit, &newer_fit, step)?;
    let fitted_rows = newer_fit.y.len();
    if fitted_rows < newer.y.len() {
        info!(
            target = target.name(),
            fitted_rows,
            snapshot_rows = newer.y.len(),
            "fitted on a sample (train_sample_rows); evaluated on the whole holdout"
        );
    }
    Ok((fits, fitted_rows))
}

/// Out-of-time validation (fit on the older snapshot, evaluate on the newer one) and the final
/// model (the same settings on the newer snapshot) do not depend on each other: they are fitted
/// at once, on two threads. Each fit is single-threaded and deterministic.
fn fit_both(
    cfg: &Config,
    target: Target,
    older: Sample,
    newer: &Sample,
    step: std::time::Instant,
) -> Result<Fits> {
    let spec = feature_spec();
    let fit_on = |set: &Sample, what: &'static str| -> Result<_> {
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
        let validation = scope.spawn(|| fit_on(&older, "validation"));
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
        validation_y: older.y,
        model,
    })
}

/// The out-of-time design matrices and flywheel's validation model, for `tests/sklearn_compare.py`.
async fn export_design(
    dir: &Root,
    cfg: &Config,
    target: Target,
    fits: &Fits,
    p: &[f64],
    newer: &Labelled,
) -> Result<()> {
    let names = fits.validation.preprocessor.column_names();
    dir.put(
        &format!("{}/train.csv", target.name()),
        design_csv(&names, &fits.validation_x, &fits.validation_y).into(),
    )
    .await?;
    let xh = design_of(&fits.validation.preprocessor, newer).await?;
    dir.put(
        &format!("{}/holdout.csv", target.name()),
        design_csv(&names, &xh, &newer.y).into(),
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
            Ok(champ) => match predict(&champ.model, holdout).await {
                Err(e) => (
                    true,
                    format!("the champion {v} does not fit today's features ({e})"),
                ),
                Ok(p) => {
                    let cm = evaluate(&p, &holdout.y);
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
    use super::*;

    #[test]
    fn the_fitting_sample_is_the_smallest_hashes_in_order() {
        let names: Vec<String> = (0..1000).map(|i| format!("CU{i:08}")).collect();
        let hashes: Vec<u64> = names
            .iter()
            .map(|n| flywheel_models::fnv1a(n.as_bytes()))
            .collect();
        let (keep, tie) = smallest(&hashes, 100);
        assert!(tie.is_none());
        let kept: Vec<&String> = names
            .iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(n, _)| n)
            .collect();
        // Exactly the 100 smallest hashes, kept in their original order.
        let mut by_hash: Vec<(u64, &String)> = hashes.iter().copied().zip(&names).collect();
        by_hash.sort();
        let mut want: Vec<&String> = by_hash[..100].iter().map(|(_, n)| *n).collect();
        want.sort();
        assert_eq!(kept, want);
        // Membership depends on the id's own hash: a customer sampled from the whole set is
        // sampled from any subset that contains it (its rank can only improve).
        let (half, _) = smallest(&hashes[..500], 100);
        for (row, _) in keep.iter().enumerate().filter(|(r, k)| **k && *r < 500) {
            assert!(half[row], "{}", names[row]);
        }
    }

    #[test]
    fn a_tie_at_the_boundary_is_left_to_the_ids() {
        // Sorted: 1, 3, 5, 5, 5. Three rows: both below 5 and one of the three 5s, by id.
        assert_eq!(
            smallest(&[5, 1, 5, 3, 5], 3),
            (vec![false, true, false, true, false], Some((5, 1)))
        );
        // Two rows: no tie at the boundary.
        assert_eq!(
            smallest(&[5, 1, 5, 3, 5], 2),
            (vec![false, true, false, true, false], None)
        );
        // Four rows: two of the three 5s, by id.
        assert_eq!(
            smallest(&[5, 1, 5, 3, 5], 4),
            (vec![false, true, false, true, false], Some((5, 2)))
        );
        // Every tied row fits.
        assert_eq!(smallest(&[2, 1, 2], 3).1, None);
    }
}
