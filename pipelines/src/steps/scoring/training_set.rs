//! Point-in-time training sets: customer_features evaluated at a snapshot T (the same SQL as the
//! nightly run, with T as its as_of) joined to the target's label over [T, T + horizon)
//! (`sql/train_labels_<target>.sql`).

use std::collections::BTreeMap;

use arrow::array::{AsArray, RecordBatch};
use datafusion::prelude::SessionContext;

use super::target::Target;
use crate::config::Config;
use crate::contracts;
use crate::engine::{
    catalog, params, run_jobs, session, stored, Release, RunDate, Scratch, Stages, Stored, Table,
    Tables,
};
use crate::error::{FlywheelError, Result};

/// customer_features evaluated at snapshot `t` in a session of its own, stored in a folder of
/// `scratch` of its own. `ctx` holds the validated inputs and the tables that do not depend on
/// the date or hold what was known at every earlier day ([`AS_OF_ANY_EARLIER`], computed at the
/// run date, which is `t` or later); the jobs that read `t` run again.
pub async fn features_at(
    ctx: &SessionContext,
    cfg: &Config,
    t: &RunDate,
    scratch: &Scratch,
) -> Result<Stored> {
    let snap = session(cfg)?;
    crate::engine::session::same_joins(ctx, &snap);
    for name in contracts::inputs().iter().chain(&AS_OF_ANY_EARLIER) {
        let provider = ctx.table_provider(*name).await?;
        snap.register_table(*name, provider)?;
    }
    let needed = catalog::jobs_for(&[FEATURES], &AS_OF_ANY_EARLIER)?;
    let mut tables = Tables::default();
    let scratch = scratch.child(&format!("snapshot-{t}"));
    run_jobs(
        &snap,
        &needed,
        &params(cfg, t),
        &mut Stages::default(),
        &mut tables,
        &Release::none().spilling_to(&scratch, &[]),
    )
    .await?;
    tables
        .stored
        .remove(FEATURES)
        .ok_or_else(|| FlywheelError::internal("the customer_features job left no table"))
}

/// The intermediate tables a snapshot reads as the run date computed them: the generations (the
/// CRM alone) and the signup facts, which hold, restricted to any earlier day boundary, what was
/// known then (`sql/int_signup_facts.sql` says why); `int_referral_signups` applies the
/// restriction. Computing them once instead of per snapshot is most of what a snapshot cost.
pub const AS_OF_ANY_EARLIER: [&str; 2] = ["int_referral_generations", "int_signup_facts"];

/// The table of features both training and scoring read.
pub const FEATURES: &str = "customer_features";

/// customer_features per snapshot, computed once per process: `train --target all` needs the
/// snapshot as_of − 180 days for both targets (refer's training, churn's holdout).
pub type Snapshots = BTreeMap<RunDate, Stored>;

/// A labelled set, stored: the rows of `sql/train_labels_<target>.sql` (features and label) in
/// the scratch area, and their labels in memory.
pub struct Labelled {
    pub rows: Stored,
    pub y: Vec<bool>,
}

/// The labelled training set at snapshot `t`, stored in `scratch`. `ctx` holds the inputs and
/// the run date's `int_referral_signups`.
pub async fn training_set(
    ctx: &SessionContext,
    cfg: &Config,
    target: Target,
    t: &RunDate,
    snapshots: &mut Snapshots,
    scratch: &Scratch,
) -> Result<Labelled> {
    let features = match snapshots.get(t) {
        Some(f) => f.clone(),
        None => {
            let f = features_at(ctx, cfg, t, scratch).await?;
            snapshots.insert(*t, f.clone());
            f
        }
    };
    features.register(ctx, SNAPSHOT)?;
    let df = ctx.sql(&label_sql(cfg, target, t)?).await?;
    let rel = format!("labelled/{}-{t}.parquet", target.name());
    let stored = stream_labelled(ctx, df, scratch, &rel).await;
    ctx.deregister_table(SNAPSHOT)?;
    stored
}

/// The name the label jobs read the snapshot's features under.
const SNAPSHOT: &str = "snapshot_features";

/// The label job of `target` at snapshot `t`, bound.
fn label_sql(cfg: &Config, target: Target, t: &RunDate) -> Result<String> {
    let mut p = params(cfg, t);
    p.insert("snapshot_ns".into(), t.as_of_ns().to_string());
    let job = catalog::training_job(&target.labels_job())?;
    catalog::bind(&job, &p)
}

/// Stream a label job's rows into the scratch file `rel`, keeping their labels.
async fn stream_labelled(
    ctx: &SessionContext,
    df: datafusion::prelude::DataFrame,
    scratch: &Scratch,
    rel: &str,
) -> Result<Labelled> {
    let mut y = Vec::new();
    let rows = stored::compute(ctx, df, (scratch, rel), |b| {
        y.extend(labels(b)?);
        Ok(())
    })
    .await?;
    Ok(Labelled { rows, y })
}

/// The `label` column of a batch of a label job.
fn labels(b: &RecordBatch) -> Result<Vec<bool>> {
    let col = b
        .column_by_name("label")
        .ok_or_else(|| FlywheelError::internal("a label job's rows have no label"))?
        .as_boolean();
    Ok((0..b.num_rows()).map(|i| col.value(i)).collect())
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
    features.register(ctx, SNAPSHOT)?;
    let batches = ctx.sql(&label_sql(cfg, target, t)?).await?.collect().await;
    ctx.deregister_table(SNAPSHOT)?;
    let batches = batches?;
    let mut y = Vec::new();
    for b in &batches {
        y.extend(labels(b)?);
    }
    Ok((batches, y))
}
