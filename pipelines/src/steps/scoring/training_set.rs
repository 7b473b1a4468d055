//! Point-in-time training sets: customer_features evaluated at a snapshot T (the same SQL as the
//! nightly run, with T as its as_of) joined to the target's label over [T, T + horizon)
//! (`sql/train_labels_<target>.sql`).

use std::collections::BTreeMap;

use arrow::array::{AsArray, RecordBatch};
use datafusion::prelude::SessionContext;

use super::target::Target;
use crate::config::Config;
use crate::contracts;
use crate::engine::{catalog, params, run_jobs, session, Release, RunDate, Stages, Table, Tables};
use crate::error::{FlywheelError, Result};

/// customer_features evaluated at snapshot `t` in a session of its own (the job reads
/// `int_referral_signups` and `int_referral_generations`, which must be computed at `t` too).
/// `ctx` holds the validated inputs.
pub async fn features_at(ctx: &SessionContext, cfg: &Config, t: &RunDate) -> Result<Table> {
    let snap = session(cfg)?;
    crate::engine::session::same_joins(ctx, &snap);
    for name in contracts::inputs() {
        let provider = ctx.table_provider(*name).await?;
        snap.register_table(*name, provider)?;
    }
    let needed = catalog::jobs_for(&[FEATURES])?;
    let mut tables = Tables::default();
    run_jobs(
        &snap,
        &needed,
        &params(cfg, t),
        &mut Stages::default(),
        &mut tables,
        &Release::none(),
    )
    .await?;
    tables
        .held
        .remove(FEATURES)
        .ok_or_else(|| FlywheelError::internal("the customer_features job left no table"))
}

/// The table of features both training and scoring read.
pub const FEATURES: &str = "customer_features";

/// customer_features per snapshot, computed once per process: `train --target all` needs the
/// snapshot as_of − 180 days for both targets (refer's training, churn's holdout).
pub type Snapshots = BTreeMap<RunDate, Table>;

/// A labelled training set at snapshot `t`: the rows of `sql/train_labels_<target>.sql` and
/// their labels. `ctx` holds the inputs and the run date's `int_referral_signups`.
pub async fn training_set(
    ctx: &SessionContext,
    cfg: &Config,
    target: Target,
    t: &RunDate,
    snapshots: &mut Snapshots,
) -> Result<(Vec<RecordBatch>, Vec<bool>)> {
    let features = match snapshots.get(t) {
        Some(f) => f.clone(),
        None => {
            let f = features_at(ctx, cfg, t).await?;
            snapshots.insert(*t, f.clone());
            f
        }
    };
    labelled(ctx, cfg, target, t, &features).await
}

/// The rows of `sql/train_labels_<target>.sql` at snapshot `t` over `features` (customer_features
/// at `t`: computed, or as a run of `t` published it) and their labels. `ctx` holds the inputs
/// and `int_referral_signups`.
pub async fn labelled(
    ctx: &SessionContext,
    cfg: &Config,
    target: Target,
    t: &RunDate,
    features: &Table,
) -> Result<(Vec<RecordBatch>, Vec<bool>)> {
    features.register(ctx, "snapshot_features")?;
    let mut p = params(cfg, t);
    p.insert("snapshot_ns".into(), t.as_of_ns().to_string());
    let job = catalog::training_job(&target.labels_job())?;
    let batches = ctx.sql(&catalog::bind(&job, &p)?).await?.collect().await;
    ctx.deregister_table("snapshot_features")?;
    let batches = batches?;
    let mut labels = Vec::new();
    for b in &batches {
        let col = b
            .column_by_name("label")
            .ok_or_else(|| FlywheelError::internal(format!("sql/{}.sql has no label", job.name)))?
            .as_boolean();
        labels.extend((0..b.num_rows()).map(|i| col.value(i)));
    }
    Ok((batches, labels))
}
