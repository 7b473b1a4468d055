//! Nightly scoring: every customer of customer_features scored with the champion models (as read
//! back from their files), with deciles and reasons; p_churn only for the churn population. The
//! features are read from the scratch area batch by batch and the scores written back to it.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, AsArray, Float64Array, Int32Array, RecordBatch, StringArray, StringBuilder,
};
use arrow::datatypes::SchemaRef;
use flywheel_models::{deciles_by, ModelFile};

use super::drift::{count_batch, BatchCounts, Drift, DriftCounts};
use super::reasons::{reasons_into, Described};
use super::target::{model_features, Target};
use crate::engine::catalog::SCORES;
use crate::engine::stored::{next_group, Batches};
use crate::engine::{Scratch, Stored, StoredWriter};
use crate::error::{FlywheelError, Result};

/// Output schema of scores/customer_scores (its contract's).
pub fn scores_schema() -> Result<SchemaRef> {
    Ok(crate::contracts::contract(SCORES)?.schema())
}

/// Score the stored customer_features (at the run date) with `models`, the champions as read
/// back from their files, on `partitions` threads, into a stored table of scores in the order of
/// the features, and count the drift figures on the way. A target without a model gets null
/// scores. Two passes over the features, neither holding them: the probabilities first (a decile
/// ranks every customer, so it needs them all: 8 bytes a customer and target, and the ids), then
/// the scores with their reasons and deciles, written batch by batch. In each pass a group of
/// batches is worked on the threads while the group before it is taken in (and written) and the
/// next one read: [`Overlapped`].
pub async fn score(
    features: &Stored,
    models: &BTreeMap<Target, ModelFile>,
    partitions: usize,
    scratch: &Scratch,
) -> Result<(Stored, Vec<Drift>)> {
    let shared = Arc::new(models.clone());
    let (mut p_refer, mut p_churn, mut ids) = (Vec::new(), Vec::new(), Vec::new());
    let mut drift = DriftCounts::new(models);
    let read = first_pass_columns(models);
    let read: Vec<&str> = read.iter().map(String::as_str).collect();
    let mut batches = features.batches(Some(&read)).await?;
    let mut work = Overlapped::new(partitions, shared.clone(), first_pass);
    while let Some(parts) = work.results(&mut batches).await? {
        for (id, refer, churn, counts) in parts {
            drift.add(counts);
            ids.push(id);
            p_refer.extend(refer);
            p_churn.extend(churn);
        }
    }
    let ids: Vec<&dyn arrow::array::Array> = ids.iter().map(|a| a.as_ref()).collect();
    let ids = arrow::compute::concat(&ids)?;
    let ids = ids.as_string::<i32>();
    // The two rankings are independent: one sort per thread.
    let ranked = crate::parallel::map_ordered(&[&p_refer, &p_churn], partitions, |p| {
        Ok(deciles_by(p, |i| ids.value(i)))
    })?;
    let [refer_dec, churn_dec]: [Vec<Option<i32>>; 2] = ranked
        .try_into()
        .map_err(|_| FlywheelError::internal("two rankings expected"))?;
    drop((p_refer, p_churn));

    let scores = write_scores(
        features,
        shared,
        [&refer_dec, &churn_dec],
        partitions,
        scratch,
    )
    .await?;
    // Read back (published) in the pieces that give the bytes of the scores as one batch.
    let cuts = crate::engine::encode::one_batch_cuts(scores.rows() as usize);
    let scores = scores.cut_as(cuts)?;
    Ok((scores, drift.finish()))
}

/// The second pass: every customer's scores, reasons and deciles (`deciles`: refer's and churn's,
/// in the order of the features), written to the scratch area batch by batch.
async fn write_scores(
    features: &Stored,
    models: Arc<BTreeMap<Target, ModelFile>>,
    [refer_dec, churn_dec]: [&[Option<i32>]; 2],
    partitions: usize,
    scratch: &Scratch,
) -> Result<Stored> {
    let versions: BTreeMap<&str, String> = models
        .iter()
        .map(|(t, f)| (t.name(), f.version.clone()))
        .collect();
    let schema = scores_schema()?;
    let mut out = StoredWriter::create(scratch, "tables/customer_scores.parquet", schema.clone())?;
    let mut batches = features.batches(None).await?;
    let mut work = Overlapped::new(partitions, models.clone(), score_batch);
    let mut at = 0;
    while let Some(parts) = work.results(&mut batches).await? {
        for part in parts {
            let n = part.ids.len();
            let version = |t: &str| -> ArrayRef {
                let v = versions.get(t).map(String::as_str);
                Arc::new(StringArray::from_iter(std::iter::repeat_n(v, n)))
            };
            let cols: Vec<ArrayRef> = vec![
                part.ids,
                Arc::new(Float64Array::from(part.p_refer)),
                Arc::new(Int32Array::from(refer_dec[at..at + n].to_vec())),
                Arc::new(part.refer_reasons),
                version("refer"),
                Arc::new(Float64Array::from(part.p_churn)),
                Arc::new(Int32Array::from(churn_dec[at..at + n].to_vec())),
                Arc::new(part.churn_reasons),
                version("churn"),
            ];
            out.write(&RecordBatch::try_new(schema.clone(), cols)?)
                .await?;
            at += n;
        }
    }
    out.finish().await
}

/// The models' work on groups of batches, one group at a time on `partitions` threads (results
/// in batch order) beside the caller: [`Overlapped::next`] starts a group and hands back the
/// results of the group started before it, so that reading the next group and writing the last
/// one's results overlap with the work (they were a third of the scoring stage's time, on one
/// thread while the other waited).
struct Overlapped<R> {
    partitions: usize,
    models: Arc<BTreeMap<Target, ModelFile>>,
    work: fn(&BTreeMap<Target, ModelFile>, &RecordBatch) -> Result<R>,
    pending: Option<tokio::task::JoinHandle<Result<Vec<R>>>>,
}

impl<R: Send + 'static> Overlapped<R> {
    fn new(
        partitions: usize,
        models: Arc<BTreeMap<Target, ModelFile>>,
        work: fn(&BTreeMap<Target, ModelFile>, &RecordBatch) -> Result<R>,
    ) -> Self {
        Overlapped {
            partitions,
            models,
            work,
            pending: None,
        }
    }

    /// The results of the next group of `batches` ([`next_group`]), in batch order, while the
    /// group after it is worked; None when every group has come back.
    async fn results(&mut self, batches: &mut Batches) -> Result<Option<Vec<R>>> {
        loop {
            let group = next_group(batches, self.partitions).await?;
            let last = group.is_none();
            match self.next(group).await? {
                Some(done) => return Ok(Some(done)),
                None if last => return Ok(None),
                None => {}
            }
        }
    }

    /// Start the work on `group` (None: no more groups) and return the results of the group
    /// started before (None when there was none).
    async fn next(&mut self, group: Option<Vec<RecordBatch>>) -> Result<Option<Vec<R>>> {
        let started = group.map(|group| {
            let (models, work, partitions) = (self.models.clone(), self.work, self.partitions);
            tokio::task::spawn_blocking(move || {
                crate::parallel::map_ordered(&group, partitions, |b| work(&models, b))
            })
        });
        let Some(before) = std::mem::replace(&mut self.pending, started) else {
            return Ok(None);
        };
        let done = before
            .await
            .map_err(|e| FlywheelError::internal(format!("a scoring task failed: {e}")))??;
        Ok(Some(done))
    }
}

/// The first pass over one batch: its ids, probabilities and drift counts.
fn first_pass(
    models: &BTreeMap<Target, ModelFile>,
    b: &RecordBatch,
) -> Result<(ArrayRef, Probabilities, Probabilities, BatchCounts)> {
    let (refer, churn) = probabilities(models, b)?;
    let counts = count_batch(models, b, &refer, &churn)?;
    Ok((column(b, "customer_id")?.clone(), refer, churn, counts))
}

/// The columns of customer_features the first pass reads: the ids, the populations' columns,
/// and every model's inputs and drift variables (the other columns are not decoded).
fn first_pass_columns(models: &BTreeMap<Target, ModelFile>) -> Vec<String> {
    let mut columns = vec!["customer_id".to_string()];
    columns.extend(
        Target::ALL
            .iter()
            .map(|t| t.population_column().to_string()),
    );
    for m in models.values() {
        columns.extend(model_features(&m.model));
        columns.extend(m.drift_reference.iter().map(|r| r.variable.clone()));
    }
    columns
}

fn column<'b>(b: &'b RecordBatch, name: &str) -> Result<&'b ArrayRef> {
    b.column_by_name(name)
        .ok_or_else(|| FlywheelError::internal(format!("customer_features has no column {name}")))
}

/// One probability per row (null: not scored).
type Probabilities = Vec<Option<f64>>;

/// The probabilities of one batch (refer, churn); null without a model, and for churn outside
/// its population.
fn probabilities(
    models: &BTreeMap<Target, ModelFile>,
    b: &RecordBatch,
) -> Result<(Probabilities, Probabilities)> {
    let n = b.num_rows();
    let of = |t: Target| -> Result<Vec<Option<f64>>> {
        match models.get(&t) {
            Some(m) => Ok(m.model.probabilities(b)?.into_iter().map(Some).collect()),
            None => Ok(vec![None; n]),
        }
    };
    let refer = of(Target::Refer)?;
    let population = Target::Churn.population(b)?;
    let churn = of(Target::Churn)?
        .into_iter()
        .zip(population)
        .map(|(p, inside)| p.filter(|_| inside))
        .collect();
    Ok((refer, churn))
}

/// The scores of one batch of customer_features.
struct ScoredPart {
    ids: ArrayRef,
    p_refer: Vec<Option<f64>>,
    refer_reasons: StringArray,
    p_churn: Vec<Option<f64>>,
    churn_reasons: StringArray,
}

fn score_batch(models: &BTreeMap<Target, ModelFile>, b: &RecordBatch) -> Result<ScoredPart> {
    let score_with = |t: Target| -> Result<Option<Vec<flywheel_models::Score<'_>>>> {
        models
            .get(&t)
            .map(|m| m.model.score(b))
            .transpose()
            .map_err(FlywheelError::from)
    };
    let refer = score_with(Target::Refer)?;
    let churn = score_with(Target::Churn)?;
    let described = Described::new(b);
    let churn_population = Target::Churn.population(b)?;
    let (p_refer, refer_reasons) = scored_column(refer.as_deref(), |_| true, &described);
    let (p_churn, churn_reasons) =
        scored_column(churn.as_deref(), |i| churn_population[i], &described);
    Ok(ScoredPart {
        ids: column(b, "customer_id")?.clone(),
        p_refer,
        refer_reasons,
        p_churn,
        churn_reasons,
    })
}

/// One target's probabilities and reasons for the rows of a batch (null without a model or
/// outside `scored`), the reasons written into one reused buffer and appended as they come.
fn scored_column(
    scores: Option<&[flywheel_models::Score<'_>]>,
    scored: impl Fn(usize) -> bool,
    described: &Described,
) -> (Vec<Option<f64>>, StringArray) {
    let n = described.rows();
    let mut p = Vec::with_capacity(n);
    let mut reasons = StringBuilder::with_capacity(n, n * 64);
    let mut buf = String::new();
    for i in 0..n {
        match scores.filter(|_| scored(i)) {
            Some(s) => {
                p.push(Some(s[i].p));
                reasons_into(&mut buf, &s[i], described, i);
                reasons.append_value(&buf);
            }
            None => {
                p.push(None);
                reasons.append_null();
            }
        }
    }
    (p, reasons.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;

    fn first_value(_: &BTreeMap<Target, ModelFile>, b: &RecordBatch) -> Result<i64> {
        let v = b.column(0).as_primitive::<arrow::datatypes::Int64Type>();
        if v.value(0) < 0 {
            return Err(FlywheelError::internal("a negative batch"));
        }
        Ok(v.value(0))
    }

    fn batch(v: i64) -> RecordBatch {
        let column: ArrayRef = Arc::new(Int64Array::from(vec![v]));
        RecordBatch::try_from_iter([("v", column)]).unwrap()
    }

    /// Each call hands back the group started by the call before, in batch order, whatever the
    /// threads; the last group comes back with the call that starts none; an error is returned.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn overlapped_work_comes_back_one_group_late_and_in_order() {
        for partitions in [1, 2, 3] {
            let mut work = Overlapped::new(partitions, Arc::new(BTreeMap::new()), first_value);
            let groups: Vec<Vec<RecordBatch>> = (0..5)
                .map(|g| (0..7).map(|i| batch(g * 100 + i)).collect())
                .collect();
            let mut seen = Vec::new();
            assert!(work.next(Some(groups[0].clone())).await.unwrap().is_none());
            for g in groups.iter().skip(1) {
                seen.extend(work.next(Some(g.clone())).await.unwrap().unwrap());
            }
            seen.extend(work.next(None).await.unwrap().unwrap());
            assert!(work.next(None).await.unwrap().is_none());
            let expected: Vec<i64> = (0..5)
                .flat_map(|g| (0..7).map(move |i| g * 100 + i))
                .collect();
            assert_eq!(seen, expected, "{partitions} threads");

            work.next(Some(vec![batch(1), batch(-1)])).await.unwrap();
            assert!(work.next(None).await.is_err());
        }
    }
}
