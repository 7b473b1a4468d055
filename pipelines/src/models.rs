//! Scores: point-in-time training sets, training with out-of-time validation, the model registry
//! in object storage (`models/<target>/<version>/model.json`, a champion pointer per target), and
//! nightly scoring of every customer.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, SchemaRef};
use chrono::NaiveDate;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use flywheel_models::{evaluate, fit, FeatureSpec, FitSettings, Metrics, Model, Preprocessor};
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::config::Config;
use crate::error::{FlywheelError, Result};
use crate::jobs;
use crate::run::{self, Stages, Table};
use crate::storage::Root;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    Refer,
    Churn,
}

impl Target {
    pub const ALL: [Target; 2] = [Target::Refer, Target::Churn];

    pub fn name(&self) -> &'static str {
        match self {
            Target::Refer => "refer",
            Target::Churn => "churn",
        }
    }

    pub fn parse(s: &str) -> Result<Vec<Target>> {
        match s {
            "refer" => Ok(vec![Target::Refer]),
            "churn" => Ok(vec![Target::Churn]),
            "all" => Ok(Target::ALL.to_vec()),
            _ => Err(FlywheelError::Config(format!(
                "unknown target {s:?}: use refer, churn or all"
            ))),
        }
    }

    fn horizon_days(&self, cfg: &Config) -> i64 {
        match self {
            Target::Refer => cfg.refer_horizon_days,
            Target::Churn => cfg.churn_horizon_days,
        }
    }

    fn labels_sql(&self) -> &'static str {
        match self {
            Target::Refer => include_str!("../../sql/labels_refer.sql"),
            Target::Churn => include_str!("../../sql/labels_churn.sql"),
        }
    }
}

/// The features both models use (columns of customer_features).
pub fn feature_spec() -> FeatureSpec {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    FeatureSpec {
        numeric: s(&[
            "tenure_days",
            "days_since_last_visit",
            "visits_90d",
            "visits_365d",
            "revenue_365d",
            "value_added_revenue_365d",
            "value_added_visits_365d",
            "repair_visits_365d",
            "roadside_365d",
            "avg_wait_minutes_365d",
            "nps_last",
            "nps_mean_365d",
            "nps_responses_365d",
            "shares_365d",
            "referrals_converted_total",
            "referrals_converted_365d",
            "social_shares_90d",
        ]),
        missing_indicator: s(&[
            "days_since_last_visit",
            "avg_wait_minutes_365d",
            "nps_last",
            "nps_mean_365d",
        ]),
        boolean: s(&["community_member", "acquired_by_referral"]),
        categorical: s(&["segment", "vehicle_model"]),
    }
}

/// What `models/<target>/<version>/model.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelFile {
    pub format: u32,
    pub target: String,
    pub version: String,
    pub model: Model,
    pub settings: FitSettings,
    pub horizon_days: i64,
    pub as_of: String,
    pub train_snapshot: String,
    pub holdout_snapshot: String,
    pub train_rows: u64,
    pub holdout_metrics: Metrics,
    pub input_fingerprint: String,
    pub libraries: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Champion {
    pub version: Option<String>,
    /// Earlier champions, newest last (for rollback).
    pub history: Vec<String>,
}

pub struct Registry {
    root: Root,
}

impl Registry {
    pub fn open(cfg: &Config) -> Result<Registry> {
        Ok(Registry {
            root: Root::parse(&cfg.models_root())?,
        })
    }

    pub async fn load(&self, target: Target, version: &str) -> Result<ModelFile> {
        let rel = format!("{}/{version}/model.json", target.name());
        let bytes = self.root.get(&rel).await?.ok_or_else(|| {
            FlywheelError::Model(format!(
                "no model {version} for {} at {}",
                target.name(),
                self.root.display(&rel)
            ))
        })?;
        let file: ModelFile = serde_json::from_slice(&bytes).map_err(|e| {
            FlywheelError::Model(format!(
                "{} is not a valid model file ({e}); retrain with `flywheel train`",
                self.root.display(&rel)
            ))
        })?;
        file.model.check().map_err(|e| {
            FlywheelError::Model(format!(
                "{} is not a usable model file ({e}); retrain with `flywheel train`",
                self.root.display(&rel)
            ))
        })?;
        if file.format != 1 || file.target != target.name() {
            return Err(FlywheelError::Model(format!(
                "{} is a {} model of format {}; expected a {} model of format 1",
                self.root.display(&rel),
                file.target,
                file.format,
                target.name()
            )));
        }
        Ok(file)
    }

    pub async fn champion(&self, target: Target) -> Result<Champion> {
        let rel = format!("{}/champion.json", target.name());
        match self.root.get(&rel).await? {
            None => Ok(Champion::default()),
            Some(b) => serde_json::from_slice(&b).map_err(|e| {
                FlywheelError::Model(format!("{} is corrupt: {e}", self.root.display(&rel)))
            }),
        }
    }

    async fn set_champion(&self, target: Target, champion: &Champion) -> Result<()> {
        let json = serde_json::to_vec_pretty(champion).map_err(FlywheelError::internal)?;
        self.root
            .put(&format!("{}/champion.json", target.name()), json.into())
            .await
    }

    pub async fn save(&self, file: &ModelFile) -> Result<()> {
        let json = serde_json::to_vec_pretty(file).map_err(FlywheelError::internal)?;
        self.root
            .put(
                &format!("{}/{}/model.json", file.target, file.version),
                json.into(),
            )
            .await
    }

    pub async fn versions(&self, target: Target) -> Result<Vec<String>> {
        let mut out: Vec<String> = self
            .root
            .list(target.name())
            .await?
            .into_iter()
            .filter_map(|m| {
                let rel = self.root.relative(&m.location);
                let mut parts = rel.split('/');
                let (_, v, f) = (parts.next()?, parts.next()?, parts.next()?);
                (f == "model.json").then(|| v.to_string())
            })
            .collect();
        out.sort();
        Ok(out)
    }

    pub async fn promote(&self, target: Target, version: &str) -> Result<()> {
        self.load(target, version).await?;
        let mut c = self.champion(target).await?;
        if c.version.as_deref() == Some(version) {
            return Ok(());
        }
        if let Some(old) = c.version.take() {
            c.history.push(old);
        }
        c.version = Some(version.to_string());
        self.set_champion(target, &c).await
    }

    pub async fn rollback(&self, target: Target) -> Result<String> {
        let mut c = self.champion(target).await?;
        let previous = c.history.pop().ok_or_else(|| {
            FlywheelError::Config(format!(
                "{} has no earlier champion to roll back to",
                target.name()
            ))
        })?;
        c.version = Some(previous.clone());
        self.set_champion(target, &c).await?;
        Ok(previous)
    }
}

fn days_to_ns(d: NaiveDate) -> i64 {
    d.signed_duration_since(NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch"))
        .num_days()
        * 86_400_000_000_000
}

/// customer_features evaluated at snapshot `t` in a context of its own (the jobs read
/// `referral_signups` and `referral_generations`, which must be computed at `t` too).
pub async fn features_at(ctx: &SessionContext, cfg: &Config, t: NaiveDate) -> Result<Table> {
    let snap = run::session(cfg)?;
    for name in crate::contracts::INPUTS {
        let provider = ctx.table_provider(name).await?;
        snap.register_table(name, provider)?;
    }
    let all = jobs::all_jobs(&crate::contracts::INPUTS)?;
    let needed: Vec<_> = all
        .into_iter()
        .filter(|j| {
            matches!(
                j.name.as_str(),
                "referral_generations" | "referral_signups" | "customer_features"
            )
        })
        .collect();
    let mut stages = Stages::default();
    let mut tables = BTreeMap::new();
    run::run_jobs(
        &snap,
        &needed,
        &run::params(cfg, t),
        &mut stages,
        &mut tables,
        &run::Release::none(),
    )
    .await?;
    Ok(tables
        .remove("customer_features")
        .expect("customer_features job ran"))
}

/// customer_features per snapshot date, computed once per process: `train --target all` needs
/// the snapshot as_of − 180 days for both targets (refer's training, churn's holdout).
pub type Snapshots = BTreeMap<NaiveDate, Table>;

/// A labelled training set at snapshot `t`. `ctx` holds the run-date tables.
pub async fn training_set(
    ctx: &SessionContext,
    cfg: &Config,
    target: Target,
    t: NaiveDate,
    snapshots: &mut Snapshots,
) -> Result<(Vec<RecordBatch>, Vec<bool>)> {
    let features = match snapshots.get(&t) {
        Some(f) => f.clone(),
        None => {
            let f = features_at(ctx, cfg, t).await?;
            snapshots.insert(t, f.clone());
            f
        }
    };
    ctx.deregister_table("snapshot_features")?;
    ctx.register_table(
        "snapshot_features",
        Arc::new(MemTable::try_new(
            features.schema.clone(),
            vec![features.batches],
        )?),
    )?;
    let mut params = run::params(cfg, t);
    params.insert("snapshot_ns".into(), days_to_ns(t).to_string());
    let job = jobs::Job {
        name: format!("labels_{}", target.name()),
        sql: target.labels_sql().to_string(),
        publish: false,
        reads: Default::default(),
    };
    let batches = ctx
        .sql(&jobs::bind(&job, &params)?)
        .await?
        .collect()
        .await?;
    ctx.deregister_table("snapshot_features")?;
    let mut labels = Vec::new();
    for b in &batches {
        let col = b
            .column_by_name("label")
            .expect("label column")
            .as_boolean();
        labels.extend((0..b.num_rows()).map(|i| col.value(i)));
    }
    Ok((batches, labels))
}

fn design(
    pre: &Preprocessor,
    batches: &[RecordBatch],
) -> Result<flywheel_models::ndarray::Array2<f64>> {
    // Each batch on its own, on two threads, back in order.
    let parts = crate::parallel::map_ordered(batches, 2, |b| Ok(pre.transform(b)?))?;
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    if views.is_empty() {
        return Ok(flywheel_models::ndarray::Array2::zeros((
            0,
            pre.column_names().len(),
        )));
    }
    flywheel_models::ndarray::concatenate(flywheel_models::ndarray::Axis(0), &views)
        .map_err(FlywheelError::internal)
}

pub struct Trained {
    pub file: ModelFile,
    pub promoted: bool,
    pub reason: String,
}

/// Train a challenger for `target` as of `as_of`, compare it with the champion on the same
/// holdout, and promote it when it is at least as good (README, "Models").
#[allow(clippy::too_many_arguments)]
pub async fn train(
    ctx: &SessionContext,
    cfg: &Config,
    registry: &Registry,
    target: Target,
    as_of: NaiveDate,
    fingerprint: &str,
    export: Option<&Root>,
    snapshots: &mut Snapshots,
) -> Result<Trained> {
    let h = chrono::Duration::days(target.horizon_days(cfg));
    let (train_t, holdout_t) = (as_of - h - h, as_of - h);
    let spec = feature_spec();
    // linfa's gradient is a sum over rows: the tolerance is per row (1e-4) times the rows.
    let settings = |rows: usize| FitSettings {
        alpha: cfg.l2,
        max_iterations: cfg.max_iterations,
        gradient_tolerance: 1e-4 * rows.max(1) as f64,
    };

    let (train_b, train_y) = training_set(ctx, cfg, target, train_t, snapshots).await?;
    let (hold_b, hold_y) = training_set(ctx, cfg, target, holdout_t, snapshots).await?;
    info!(target = target.name(), train_rows = train_y.len(), holdout_rows = hold_y.len(), %train_t, %holdout_t, "training sets built");

    // Out-of-time validation (fit on the older snapshot, evaluate on the newer one) and the final
    // model (the same settings on the newer snapshot) do not depend on each other: they are
    // fitted at once, on two threads. Each fit is single-threaded and deterministic.
    let step = std::time::Instant::now();
    let fit_on = |batches: &[RecordBatch], y: &[bool], what: &'static str| -> Result<_> {
        let pre = Preprocessor::fit(&spec, batches)?;
        let x = design(&pre, batches)?;
        let model = fit(pre, &x, y, &settings(y.len()))?;
        info!(
            target = target.name(),
            seconds = step.elapsed().as_secs_f64(),
            rows = y.len(),
            "{what} model fitted"
        );
        Ok((model, x))
    };
    let (validation, final_fit) = std::thread::scope(|scope| {
        let validation = scope.spawn(|| fit_on(&train_b, &train_y, "validation"));
        let final_fit = fit_on(&hold_b, &hold_y, "final");
        let validation = validation
            .join()
            .unwrap_or_else(|_| Err(FlywheelError::internal("the validation fit panicked")));
        (validation, final_fit)
    });
    let (validation_model, x) = validation?;
    let (model, _) = final_fit?;
    let settings = settings(hold_y.len());
    let xh = design(&validation_model.preprocessor, &hold_b)?;
    let p = validation_model.predict(&xh);
    if let Some(dir) = export {
        // The out-of-time design matrices, for comparisons with other libraries.
        let names = validation_model.preprocessor.column_names();
        dir.put(
            &format!("{}/train.csv", target.name()),
            design_csv(&names, &x, &train_y).into(),
        )
        .await?;
        dir.put(
            &format!("{}/holdout.csv", target.name()),
            design_csv(&names, &xh, &hold_y).into(),
        )
        .await?;
        let ours = serde_json::json!({
            "alpha": cfg.l2,
            "roc_auc": evaluate(&p, &hold_y).roc_auc,
            "intercept": validation_model.intercept,
            "coefficients": validation_model.coefficients,
        });
        dir.put(
            &format!("{}/flywheel.json", target.name()),
            serde_json::to_vec_pretty(&ours)
                .map_err(FlywheelError::internal)?
                .into(),
        )
        .await?;
    }
    drop(x);
    let holdout_metrics = evaluate(&p, &hold_y);
    info!(
        target = target.name(),
        seconds = step.elapsed().as_secs_f64(),
        "holdout evaluated"
    );
    if !model.convergence.converged {
        tracing::warn!(
            target = target.name(),
            gradient = model.convergence.max_gradient_per_row,
            "the model did not converge; raise max_iterations or l2"
        );
    }
    let mut file = ModelFile {
        format: 1,
        target: target.name().into(),
        version: String::new(),
        model,
        settings,
        horizon_days: target.horizon_days(cfg),
        as_of: as_of.to_string(),
        train_snapshot: train_t.to_string(),
        holdout_snapshot: holdout_t.to_string(),
        train_rows: hold_y.len() as u64,
        holdout_metrics,
        input_fingerprint: fingerprint.to_string(),
        libraries: BTreeMap::from([
            ("flywheel".into(), env!("CARGO_PKG_VERSION").into()),
            ("linfa-logistic".into(), "0.8.1".into()),
            ("datafusion".into(), "55".into()),
        ]),
    };
    // Content-addressed version: the same inputs and settings give the same file and name.
    let body = serde_json::to_vec(&file).map_err(FlywheelError::internal)?;
    file.version = format!("{}-{:016x}", as_of.format("%Y%m%d"), fnv1a(&body));
    registry.save(&file).await?;

    // Promotion: compare with the champion on this holdout.
    let champion = registry.champion(target).await?;
    let (promoted, reason) = match &champion.version {
        None => (true, "no champion yet".to_string()),
        Some(v) if *v == file.version => (true, "identical to the champion".to_string()),
        Some(v) => match registry.load(target, v).await {
            Err(e) => (true, format!("the champion {v} cannot be used ({e})")),
            Ok(champ) => match design(&champ.model.preprocessor, &hold_b) {
                Err(e) => (
                    true,
                    format!("the champion {v} does not fit today's features ({e})"),
                ),
                Ok(xh) => {
                    let cm = evaluate(&champ.model.predict(&xh), &hold_y);
                    promotion_decision(&file.holdout_metrics, &cm, v)
                }
            },
        },
    };
    if promoted {
        registry.promote(target, &file.version).await?;
    }
    Ok(Trained {
        file,
        promoted,
        reason,
    })
}

/// The promotion rule: holdout ROC AUC at least the champion's minus 0.005 and Brier score not
/// worse by more than 10%.
pub fn promotion_decision(
    challenger: &Metrics,
    champion: &Metrics,
    champion_version: &str,
) -> (bool, String) {
    let auc_ok = challenger.roc_auc >= champion.roc_auc - 0.005;
    let brier_ok = challenger.brier <= champion.brier * 1.10;
    let detail = format!(
        "challenger AUC {:.4} vs champion {champion_version} {:.4}; Brier {:.4} vs {:.4}",
        challenger.roc_auc, champion.roc_auc, challenger.brier, champion.brier
    );
    match (auc_ok, brier_ok) {
        (true, true) => (true, format!("promoted: {detail}")),
        (false, _) => (
            false,
            format!("kept as challenger: AUC more than 0.005 below the champion's ({detail})"),
        ),
        (true, false) => (
            false,
            format!("kept as challenger: Brier more than 10% worse ({detail})"),
        ),
    }
}

/// A design matrix as CSV: a header of design column names and `label`, then one row per row.
fn design_csv(names: &[String], x: &flywheel_models::ndarray::Array2<f64>, y: &[bool]) -> Vec<u8> {
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

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// A short fingerprint of the input files (paths, sizes, rows), recorded in every model.
pub fn fingerprint(files: &BTreeMap<String, Vec<crate::inputs::InputFile>>) -> String {
    let mut text = String::new();
    for (input, fs) in files {
        for f in fs {
            text.push_str(&format!("{input}/{}:{}:{};", f.path, f.size, f.rows));
        }
    }
    format!("{:016x}", fnv1a(text.as_bytes()))
}

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

/// Output schema of scores/customer_scores.
pub fn scores_schema() -> SchemaRef {
    crate::contracts::contract("customer_scores")
        .expect("customer_scores contract")
        .schema()
}

/// Score every customer with the champions. `features` is customer_features at the run date.
/// The champion pointer of every target, read once per run: the run plans what it may release
/// from it, and `score` uses the same pointers.
pub async fn champions(registry: &Registry) -> Result<BTreeMap<Target, Champion>> {
    let mut out = BTreeMap::new();
    for target in Target::ALL {
        out.insert(target, registry.champion(target).await?);
    }
    Ok(out)
}

/// Score customer_features with the champions (`champions`, from [`champions`]); a target
/// without one is trained first.
#[allow(clippy::too_many_arguments)]
pub async fn score(
    cfg: &Config,
    ctx: &SessionContext,
    registry: &Registry,
    champions: &BTreeMap<Target, Champion>,
    features: &Table,
    as_of: NaiveDate,
    fingerprint: &str,
    log: &mut Vec<String>,
) -> Result<(Table, BTreeMap<String, ModelFile>)> {
    let mut snapshots = Snapshots::new();
    let mut versions = BTreeMap::new();
    let mut models = BTreeMap::new();
    for target in Target::ALL {
        let version = champions.get(&target).and_then(|c| c.version.clone());
        let file = match version {
            Some(v) => registry.load(target, &v).await?,
            None => {
                let msg = format!(
                    "no champion model for {}: training one as of {as_of} first",
                    target.name()
                );
                tracing::warn!("{msg}");
                log.push(msg);
                match train(
                    ctx,
                    cfg,
                    registry,
                    target,
                    as_of,
                    fingerprint,
                    None,
                    &mut snapshots,
                )
                .await
                {
                    Ok(t) => t.file,
                    // Too little history to train (a new network, a small test set): publish
                    // everything else, with null scores, and say so.
                    Err(FlywheelError::Model(e)) => {
                        let msg = format!(
                            "{} scores are null: no model could be trained ({e})",
                            target.name()
                        );
                        tracing::warn!("{msg}");
                        log.push(msg);
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        versions.insert(target.name().to_string(), file.version.clone());
        models.insert(target, file);
    }
    let n: usize = features.batches.iter().map(|b| b.num_rows()).sum();
    // Score the batches on `target_partitions` threads, then put the parts back in batch order:
    // the same output whatever the timing.
    let parts = crate::parallel::map_ordered(&features.batches, cfg.target_partitions, |b| {
        score_batch(&models, b)
    })?;
    let mut ids = Vec::with_capacity(n);
    let mut p_refer: Vec<Option<f64>> = Vec::with_capacity(n);
    let mut refer_reasons: Vec<Option<String>> = Vec::with_capacity(n);
    let mut p_churn: Vec<Option<f64>> = Vec::with_capacity(n);
    let mut churn_reasons: Vec<Option<String>> = Vec::with_capacity(n);
    for part in parts {
        ids.extend(part.ids);
        p_refer.extend(part.p_refer);
        refer_reasons.extend(part.refer_reasons);
        p_churn.extend(part.p_churn);
        churn_reasons.extend(part.churn_reasons);
    }
    let refer_dec = deciles(&p_refer, &ids);
    let churn_dec = deciles(&p_churn, &ids);
    let schema = scores_schema();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(ids)),
        Arc::new(Float64Array::from(p_refer)),
        Arc::new(Int32Array::from(refer_dec)),
        Arc::new(StringArray::from(refer_reasons)),
        Arc::new(StringArray::from(vec![versions.get("refer").cloned(); n])),
        Arc::new(Float64Array::from(p_churn)),
        Arc::new(Int32Array::from(churn_dec)),
        Arc::new(StringArray::from(churn_reasons)),
        Arc::new(StringArray::from(vec![versions.get("churn").cloned(); n])),
    ];
    let batch = RecordBatch::try_new(schema.clone(), cols)?;
    Ok((
        Table {
            schema,
            batches: vec![batch],
        },
        models
            .into_iter()
            .map(|(t, f)| (t.name().to_string(), f))
            .collect(),
    ))
}

/// The scores of one batch of customer_features.
struct ScoredPart {
    ids: Vec<String>,
    p_refer: Vec<Option<f64>>,
    refer_reasons: Vec<Option<String>>,
    p_churn: Vec<Option<f64>>,
    churn_reasons: Vec<Option<String>>,
}

fn score_batch(models: &BTreeMap<Target, ModelFile>, b: &RecordBatch) -> Result<ScoredPart> {
    let score_with = |t: Target| -> Result<Option<Vec<flywheel_models::Score>>> {
        models
            .get(&t)
            .map(|m| m.model.score(b))
            .transpose()
            .map_err(FlywheelError::from)
    };
    let refer = score_with(Target::Refer)?;
    let churn = score_with(Target::Churn)?;
    let described = Described::new(b);
    let column = |name: &str| {
        b.column_by_name(name).ok_or_else(|| {
            FlywheelError::internal(format!("customer_features has no column {name}"))
        })
    };
    let id = column("customer_id")?.as_string::<i32>();
    let active = column("visits_365d")?.as_primitive::<arrow::datatypes::Int32Type>();
    let n = b.num_rows();
    let mut part = ScoredPart {
        ids: Vec::with_capacity(n),
        p_refer: Vec::with_capacity(n),
        refer_reasons: Vec::with_capacity(n),
        p_churn: Vec::with_capacity(n),
        churn_reasons: Vec::with_capacity(n),
    };
    for i in 0..n {
        part.ids.push(id.value(i).to_string());
        part.p_refer.push(refer.as_ref().map(|s| s[i].p));
        part.refer_reasons
            .push(refer.as_ref().map(|s| reasons(&s[i], &described, i)));
        // The churn population: customers with a visit in W (domain.md, Scores).
        let in_population = active.value(i) > 0;
        let churn = churn.as_ref().filter(|_| in_population);
        part.p_churn.push(churn.map(|s| s[i].p));
        part.churn_reasons
            .push(churn.map(|s| reasons(&s[i], &described, i)));
    }
    Ok(part)
}

fn reasons(s: &flywheel_models::Score, d: &Described, i: usize) -> String {
    s.top_features
        .iter()
        .map(|(f, _)| d.describe(f, i))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Decile 1 = the highest tenth of the scored customers (ties: customer_id), null when unscored.
fn deciles(p: &[Option<f64>], ids: &[String]) -> Vec<Option<i32>> {
    let mut idx: Vec<usize> = (0..p.len()).filter(|i| p[*i].is_some()).collect();
    idx.sort_by(|a, b| {
        p[*b]
            .unwrap()
            .total_cmp(&p[*a].unwrap())
            .then_with(|| ids[*a].cmp(&ids[*b]))
    });
    let n = idx.len();
    let mut out = vec![None; p.len()];
    for (rank, i) in idx.into_iter().enumerate() {
        out[i] = Some((rank * 10 / n.max(1)) as i32 + 1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(auc: f64, brier: f64) -> Metrics {
        let mut m = evaluate(&[0.9, 0.1], &[true, false]);
        m.roc_auc = auc;
        m.brier = brier;
        m
    }

    #[test]
    fn promotion_rule_better_equal_worse() {
        let champion = metrics(0.80, 0.100);
        assert!(
            promotion_decision(&metrics(0.82, 0.095), &champion, "c").0,
            "better"
        );
        assert!(
            promotion_decision(&metrics(0.80, 0.100), &champion, "c").0,
            "equal"
        );
        assert!(
            promotion_decision(&metrics(0.7951, 0.109), &champion, "c").0,
            "within tolerance"
        );
        let (ok, why) = promotion_decision(&metrics(0.7949, 0.100), &champion, "c");
        assert!(!ok && why.contains("AUC"), "{why}");
        let (ok, why) = promotion_decision(&metrics(0.81, 0.111), &champion, "c");
        assert!(!ok && why.contains("Brier"), "{why}");
    }

    #[test]
    fn deciles_rank_highest_first_with_ties_by_id() {
        let ids: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let d = deciles(&[Some(0.1), Some(0.9), None, Some(0.9)], &ids);
        assert_eq!(d, vec![Some(7), Some(1), None, Some(4)]);
    }
}
