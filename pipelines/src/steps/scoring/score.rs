//! Nightly scoring: every customer of customer_features scored with the champion models (as read
//! back from their files), with deciles and reasons; p_churn only for the churn population.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Float64Array, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::SchemaRef;
use flywheel_models::{deciles, ModelFile};

use super::reasons::{reasons, Described};
use super::target::Target;
use crate::engine::catalog::SCORES;
use crate::engine::Table;
use crate::error::{FlywheelError, Result};

/// Output schema of scores/customer_scores (its contract's).
pub fn scores_schema() -> Result<SchemaRef> {
    Ok(crate::contracts::contract(SCORES)?.schema())
}

/// Score customer_features (at the run date) with `models`, the champions as read back from
/// their files, on `partitions` threads. A target without a model gets null scores.
pub fn score(
    features: &Table,
    models: &BTreeMap<Target, ModelFile>,
    partitions: usize,
) -> Result<Table> {
    let versions: BTreeMap<&str, String> = models
        .iter()
        .map(|(t, f)| (t.name(), f.version.clone()))
        .collect();
    let n: usize = features.batches.iter().map(|b| b.num_rows()).sum();
    // Score the batches on `target_partitions` threads, then put the parts back in batch order:
    // the same output whatever the timing.
    let parts =
        crate::parallel::map_ordered(&features.batches, partitions, |b| score_batch(models, b))?;
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
    let schema = scores_schema()?;
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
    Ok(Table {
        schema,
        batches: vec![batch],
    })
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
    let churn_population = Target::Churn.population(b)?;
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
        let churn = churn.as_ref().filter(|_| churn_population[i]);
        part.p_churn.push(churn.map(|s| s[i].p));
        part.churn_reasons
            .push(churn.map(|s| reasons(&s[i], &described, i)));
    }
    Ok(part)
}
