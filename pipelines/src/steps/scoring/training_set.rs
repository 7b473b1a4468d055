//! Point-in-time training sets: customer_features evaluated at a snapshot T (the same SQL as the
//! nightly run, with T as its as_of) joined to the target's label over [T, T + horizon)
//! (`sql/train_labels_<target>.sql`).

use std::collections::BTreeMap;

use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use datafusion::prelude::SessionContext;
use futures::{FutureExt, StreamExt};

use super::target::Target;
use crate::config::Config;
use crate::contracts;
use crate::engine::{
    catalog, params, run_jobs, stored::Batches, Release, RunDate, Scratch, Stages, Stored, Table,
    Tables,
};
use crate::error::{FlywheelError, Result};

/// customer_features evaluated at snapshot `t` in a sibling session of `ctx`, stored in a folder of
/// `scratch` of its own. `ctx` holds the validated inputs and the tables that do not depend on
/// the date or hold what was known at every earlier day ([`AS_OF_ANY_EARLIER`], computed at the
/// run date, which is `t` or later); the jobs that read `t` run again.
pub async fn features_at(
    ctx: &SessionContext,
    cfg: &Config,
    t: &RunDate,
    scratch: &Scratch,
) -> Result<Stored> {
    let shared = [contracts::inputs(), &AS_OF_ANY_EARLIER].concat();
    let snap = crate::engine::session::sibling(ctx, &shared).await?;
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

/// A labelled set: the rows of the snapshot's customer_features that
/// `sql/train_labels_<target>.sql` keeps, and their labels. The job gives each kept customer's
/// id and label, in customer_id order like the snapshot; the features are read from the
/// snapshot's stored file, so the set is not written again.
#[derive(Clone)]
pub struct Labelled {
    pub rows: Selected,
    pub y: Vec<bool>,
}

/// Some rows of a stored table, in its order.
#[derive(Clone)]
pub struct Selected {
    table: Stored,
    /// Per row of `table`: whether it is one of the rows.
    keep: Arc<Vec<bool>>,
}

impl Selected {
    /// The rows' batches in order (`columns`: only those, in the table's order; None: all).
    pub async fn batches(&self, columns: Option<&[&str]>) -> Result<Batches> {
        let keep = self.keep.clone();
        let mut at = 0usize;
        let rows = self.table.batches(columns).await?;
        Ok(rows
            .filter_map(move |b| {
                let out = b.and_then(|b| {
                    let range = at..at + b.num_rows();
                    at = range.end;
                    let mask = keep.get(range).ok_or_else(|| {
                        FlywheelError::internal("a stored snapshot has more rows than it had")
                    })?;
                    if mask.iter().all(|k| *k) {
                        return Ok(b);
                    }
                    let mask = BooleanArray::from(mask.to_vec());
                    Ok(arrow::compute::filter_record_batch(&b, &mask)?)
                });
                std::future::ready(match out {
                    Ok(b) if b.num_rows() == 0 => None,
                    other => Some(other),
                })
            })
            .boxed())
    }
}

/// The labelled training sets of `target` at the snapshots `ts`, in that order (their snapshots
/// stored in `scratch`). `ctx` holds the inputs and the run date's `int_referral_signups`. The
/// snapshots not computed yet are computed one after the other (each job keeps every core busy);
/// then the label jobs run all at once, each in a session of its own over `ctx`'s engine (its
/// settings and its memory budget), since each alone is a single-threaded pass at its end.
pub async fn training_sets<const N: usize>(
    ctx: &SessionContext,
    cfg: &Config,
    target: Target,
    ts: [RunDate; N],
    snapshots: &mut Snapshots,
    scratch: &Scratch,
) -> Result<[Labelled; N]> {
    for t in &ts {
        if !snapshots.contains_key(t) {
            let f = features_at(ctx, cfg, t, scratch).await?;
            snapshots.insert(*t, f);
        }
    }
    let jobs = ts.map(|t| {
        let (features, sql, reads, ctx) = (
            snapshots.get(&t).cloned(),
            label_sql(cfg, target, &t),
            label_reads(target),
            ctx.clone(),
        );
        async move {
            let features =
                features.ok_or_else(|| FlywheelError::internal("a snapshot was not computed"))?;
            let (sql, reads) = (sql?, reads?);
            let shared: Vec<&str> = reads.iter().map(String::as_str).collect();
            let labels = crate::engine::session::sibling(&ctx, &shared).await?;
            features.register(&labels, SNAPSHOT)?;
            crate::engine::runner::explain_if_asked(&labels, &target.labels_job(), &sql).await?;
            select_labelled(&labels, &sql, features).await
        }
        .boxed()
    });
    crate::parallel::spawn_each(jobs).await
}

/// The tables of `ctx` the label job of `target` reads besides the snapshot, as the catalog
/// finds them in its SQL.
fn label_reads(target: Target) -> Result<Vec<String>> {
    let job = catalog::training_job(&target.labels_job())?;
    Ok(job.reads.into_iter().filter(|t| t != SNAPSHOT).collect())
}

/// The name the label jobs read the snapshot's features under.
const SNAPSHOT: &str = "snapshot_features";

/// The label job of `target` at snapshot `t`, bound.
fn label_sql(cfg: &Config, target: Target, t: &RunDate) -> Result<String> {
    let job = catalog::training_job(&target.labels_job())?;
    catalog::bind(&job, &label_params(cfg, t))
}

/// The parameters of a label job at snapshot `t`: the nightly run's at `t`, and `snapshot_ns`.
pub fn label_params(cfg: &Config, t: &RunDate) -> BTreeMap<String, String> {
    let mut p = params(cfg, t);
    p.insert("snapshot_ns".into(), t.as_of_ns().to_string());
    p
}

/// The label job's ids and labels as they stream, matched to the rows of `features` (the
/// snapshot the job read): both are in customer_id order, so one pass over the snapshot's ids
/// finds each kept row. A job row whose id is not the next one of the snapshot is an error,
/// never a silently shifted label.
async fn select_labelled(ctx: &SessionContext, sql: &str, features: Stored) -> Result<Labelled> {
    let plan = ctx.sql(sql).await?.create_physical_plan().await?;
    let mut job = datafusion::physical_plan::execute_stream(plan, ctx.task_ctx())?;
    let mut snapshot = Ids::new(features.batches(Some(&[ID])).await?);
    let total = features.rows() as usize;
    let (mut keep, mut y) = (Vec::with_capacity(total), Vec::new());
    while let Some(b) = job.next().await {
        let b = b?;
        y.extend(labels(&b)?);
        for id in ids_of(&b)?.as_string::<i32>().iter() {
            let id = id.ok_or_else(|| FlywheelError::internal("a label job gave a null id"))?;
            snapshot.mark_through(id, &mut keep).await?;
        }
    }
    keep.resize(total, false);
    Ok(Labelled {
        rows: Selected {
            table: features,
            keep: Arc::new(keep),
        },
        y,
    })
}

/// The id column.
const ID: &str = "customer_id";

/// The customer_id column of a batch (of a label job or a training set), as text.
pub(crate) fn ids_of(b: &RecordBatch) -> Result<arrow::array::ArrayRef> {
    let ids = b
        .column_by_name(ID)
        .ok_or_else(|| FlywheelError::internal("training rows without a customer_id"))?;
    Ok(arrow::compute::cast(
        ids,
        &arrow::datatypes::DataType::Utf8,
    )?)
}

/// The ids of a stored table's id column, one at a time.
struct Ids {
    batches: Batches,
    current: Option<arrow::array::ArrayRef>,
    at: usize,
}

impl Ids {
    fn new(batches: Batches) -> Ids {
        Ids {
            batches,
            current: None,
            at: 0,
        }
    }

    /// Mark in `keep` the snapshot's rows up to the one of `id`: false for each row before it,
    /// true for its own. The snapshot ending first means the label job's ids are not the
    /// snapshot's, in its order.
    async fn mark_through(&mut self, id: &str, keep: &mut Vec<bool>) -> Result<()> {
        loop {
            let Some(c) = self.current.as_ref().filter(|c| self.at < c.len()) else {
                let Some(b) = self.batches.next().await else {
                    return Err(FlywheelError::internal(
                        "a label job's ids are not the snapshot's, in its order",
                    ));
                };
                (self.current, self.at) = (Some(ids_of(&b?)?), 0);
                continue;
            };
            let ids = c.as_string::<i32>();
            let same = ids.is_valid(self.at) && ids.value(self.at) == id;
            self.at += 1;
            keep.push(same);
            if same {
                return Ok(());
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use futures::TryStreamExt;

    /// The set's rows read back (`columns`: only those), each as its values joined by commas.
    async fn read(set: &Labelled, columns: Option<&[&str]>) -> Vec<String> {
        use arrow::util::display::array_value_to_string;
        let batches: Vec<RecordBatch> = set
            .rows
            .batches(columns)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let mut out = Vec::new();
        for b in &batches {
            for i in 0..b.num_rows() {
                let cells: Vec<String> = b
                    .columns()
                    .iter()
                    .map(|c| array_value_to_string(c, i).unwrap())
                    .collect();
                out.push(cells.join(","));
            }
        }
        out
    }

    /// A stored snapshot of ids `a`..`f` (values 1..6) in two batches, in `dir`.
    async fn snapshot(dir: &str) -> (Scratch, Stored) {
        let (_, scratch) = Scratch::in_temp_dir(dir);
        let schema = Arc::new(Schema::new(vec![
            Field::new(ID, DataType::Utf8, false),
            Field::new("v", DataType::Int32, false),
        ]));
        let batch = |ids: &[&str], v: std::ops::Range<i32>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from(ids.to_vec())),
                    Arc::new(Int32Array::from_iter_values(v)),
                ],
            )
            .unwrap()
        };
        let mut w =
            crate::engine::StoredWriter::create(&scratch, "snap.parquet", schema.clone()).unwrap();
        w.write(&batch(&["a", "b", "c"], 1..4)).await.unwrap();
        w.write(&batch(&["d", "e", "f"], 4..7)).await.unwrap();
        (scratch.clone(), w.finish().await.unwrap())
    }

    /// The label job's rows select the snapshot's rows of their ids, in order, with their labels:
    /// the features read back are those of the selected customers (a batch with none is left
    /// out), whatever columns are asked for.
    #[tokio::test]
    async fn a_labelled_set_is_the_snapshots_rows_of_the_label_jobs_ids() {
        let (scratch, features) = snapshot("labelled").await;
        let ctx = SessionContext::new();
        features.register(&ctx, SNAPSHOT).unwrap();
        let sql = "SELECT customer_id, v % 2 = 0 AS label FROM snapshot_features \
                   WHERE customer_id IN ('b', 'c', 'f') ORDER BY customer_id";
        let set = select_labelled(&ctx, sql, features).await.unwrap();
        assert_eq!(set.y, [true, false, true]);
        assert_eq!(read(&set, None).await, ["b,2", "c,3", "f,6"]);
        assert_eq!(read(&set, Some(&["v"])).await, ["2", "3", "6"]);
        scratch.remove().await;
    }

    /// A label job whose ids are not the snapshot's, in its order, is an error, not shifted labels.
    #[tokio::test]
    async fn label_job_rows_out_of_the_snapshots_order_are_an_error() {
        let (scratch, features) = snapshot("misordered").await;
        let ctx = SessionContext::new();
        features.register(&ctx, SNAPSHOT).unwrap();
        for sql in [
            "SELECT customer_id, true AS label FROM snapshot_features ORDER BY customer_id DESC",
            "SELECT 'x' AS customer_id, true AS label",
        ] {
            let err = select_labelled(&ctx, sql, features.clone())
                .await
                .err()
                .unwrap();
            assert!(
                err.to_string().contains("not the snapshot's"),
                "{sql}: {err}"
            );
        }
        scratch.remove().await;
    }
}
