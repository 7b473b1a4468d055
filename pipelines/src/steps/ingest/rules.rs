//! Row rules (domain.md, "Row rules, precisely"), generated from the contracts: required
//! columns, uniqueness (every copy of a duplicated key is rejected), enumerations, ranges,
//! integer widths, foreign keys and the contract's row predicates. Rows that break a rule are
//! quarantined with their reasons; the rest are streamed to the run's scratch area and registered
//! under the input's name by location.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::prelude::{col, lit, SessionContext};
use futures::StreamExt;
use serde::Serialize;

use super::read::{self, file_of_row, InputFile, CONVERSION_ERRORS, ROW_NUMBER};
use crate::contracts::keys;
use crate::contracts::{ColType, Contract};
use crate::engine::encode::ParquetSink;
use crate::engine::scratch::ClusteredSink;
use crate::engine::Scratch;
use crate::error::{FlywheelError, Result};
use crate::storage::{Listed, Root};

/// The column of quarantined rows that names the file each came from.
const SOURCE_FILE: &str = "_source_file";

/// The event-time column of each log input; the CRM snapshot has none and is not time-filtered.
pub fn event_time_column(table: &str) -> Option<&'static str> {
    match table {
        "visits" => Some("visit_ts"),
        "nps_responses" => Some("response_ts"),
        "referral_events" => Some("event_ts"),
        _ => None,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct InputCheck {
    pub input: String,
    pub rows: u64,
    pub rejected: u64,
    pub reject_share: f64,
    /// Rows accepted and before as_of (what the jobs see).
    pub used: u64,
    /// The most frequent reasons with their counts.
    pub top_reasons: Vec<(String, u64)>,
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn quote_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The column of marks (set in Rust) for duplicated values of a unique column.
fn duplicate_mark(column: &str) -> String {
    format!("_dup_{column}")
}

/// The column of marks (set in Rust) for values a foreign key does not find.
fn missing_mark(column: &str) -> String {
    format!("_fk_{column}")
}

/// Every rule of `contract` as (condition, reason): a row breaks the rule when the condition is
/// true (null is not).
fn rules(contract: &Contract) -> Vec<(String, String)> {
    let mut rules: Vec<(String, String)> = Vec::new();
    for col in &contract.columns {
        let c = format!("r.{}", quote_ident(&col.name));
        let n = &col.name;
        if col.required || col.valid_values.is_some() {
            rules.push((
                format!("{c} IS NULL"),
                format!("{n}: required value is missing"),
            ));
        }
        if col.unique {
            rules.push((
                format!("r.{}", quote_ident(&duplicate_mark(n))),
                format!("{n}: duplicated key (every copy is rejected)"),
            ));
        }
        if let Some(values) = &col.valid_values {
            let list = values
                .iter()
                .map(|v| quote_str(v))
                .collect::<Vec<_>>()
                .join(", ");
            rules.push((
                format!("{c} NOT IN ({list})"),
                format!("{n}: not one of {}", values.join(", ")),
            ));
        }
        if col.ty == ColType::Int32 {
            rules.push((
                format!("{c} < -2147483648 OR {c} > 2147483647"),
                format!("{n}: value does not fit int32"),
            ));
        }
        if let Some(min) = col.minimum {
            rules.push((
                format!("{c} < {min}"),
                format!("{n}: below the minimum {min}"),
            ));
        }
        if let Some(max) = col.maximum {
            rules.push((
                format!("{c} > {max}"),
                format!("{n}: above the maximum {max}"),
            ));
        }
        if let Some((table, key)) = &col.references {
            rules.push((
                format!("r.{}", quote_ident(&missing_mark(n))),
                format!("{n}: no accepted {table} row with this {key}"),
            ));
        }
    }
    for rule in &contract.row_rules {
        rules.push((
            format!("NOT ({})", rule.predicate),
            format!("rule {} broken", rule.name),
        ));
    }
    rules
}

/// The SQL that returns the raw rows that break a rule, with their row number and `_reasons`.
/// Unique and foreign keys are read from the boolean mark columns `mark_keys` adds.
pub fn rule_sql(contract: &Contract, raw: &str) -> String {
    let rules = rules(contract);
    let cols = contract
        .columns
        .iter()
        .map(|c| format!("r.{}", quote_ident(&c.name)))
        .collect::<Vec<_>>()
        .join(", ");
    let reasons: Vec<String> = std::iter::once(format!("r.{CONVERSION_ERRORS}"))
        .chain(
            rules
                .iter()
                .map(|(cond, reason)| format!("CASE WHEN {cond} THEN {} END", quote_str(reason))),
        )
        .collect();
    // The filter names the same conditions, so the reasons are only built for broken rows.
    let broken: Vec<String> = std::iter::once(format!("r.{CONVERSION_ERRORS} IS NOT NULL"))
        .chain(
            rules
                .iter()
                .map(|(cond, _)| format!("COALESCE({cond}, FALSE)")),
        )
        .collect();
    format!(
        "SELECT {cols}, r.{ROW_NUMBER}, concat_ws('; ', {}) AS _reasons FROM {raw} r WHERE {}",
        reasons.join(", "),
        broken.join(" OR ")
    )
}

/// What the key rules look values up in: for each unique column the values that occur more
/// than once in the whole input, for each foreign-key column the referenced input's accepted
/// keys.
struct KeyLookups<'a> {
    duplicated: BTreeMap<String, keys::ValueSet>,
    known: BTreeMap<String, keys::KeySet<'a>>,
}

/// The duplicated values of every unique column of an input, found in two narrow passes over its
/// files (the key columns only): the hashes of every value, then exact counts of the values
/// whose hash was seen twice. The input itself is never held.
async fn duplicated_keys(
    root: &Root,
    contract: &Contract,
    files: &[Listed],
) -> Result<BTreeMap<String, keys::ValueSet>> {
    let unique: Vec<String> = contract
        .columns
        .iter()
        .filter(|c| c.unique)
        .map(|c| c.name.clone())
        .collect();
    if unique.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut hashes: Vec<keys::KeyHashes> = unique.iter().map(|_| Default::default()).collect();
    read::for_each_key_batch(root, contract, files, &unique, |texts| {
        hashes.iter_mut().zip(texts).for_each(|(h, t)| h.add(t));
        Ok(())
    })
    .await?;
    let mut values: Vec<keys::RepeatedValues> = hashes
        .into_iter()
        .map(|h| keys::RepeatedValues::new(h.repeated()))
        .collect();
    if values.iter().any(|v| !v.is_empty()) {
        read::for_each_key_batch(root, contract, files, &unique, |texts| {
            values.iter_mut().zip(texts).for_each(|(v, t)| v.add(t));
            Ok(())
        })
        .await?;
    }
    Ok(unique
        .into_iter()
        .zip(values.into_iter().map(keys::RepeatedValues::duplicated))
        .collect())
}

/// The accepted keys of every input the contract's foreign keys reference (one column each).
async fn referenced_keys(
    ctx: &SessionContext,
    contract: &Contract,
) -> Result<BTreeMap<String, Vec<StringArray>>> {
    let mut out = BTreeMap::new();
    for col in &contract.columns {
        if let Some((table, key)) = &col.references {
            let referenced = ctx
                .table(table.as_str())
                .await
                .map_err(|e| {
                    FlywheelError::internal(format!(
                        "{}.{} references {table}, which is not validated yet: {e}",
                        contract.table, col.name
                    ))
                })?
                .select_columns(&[key.as_str()])?
                .collect()
                .await?;
            out.insert(col.name.clone(), keys::text_column(&referenced, key)?);
        }
    }
    Ok(out)
}

/// The staged batches with one boolean column per unique key (`_dup_<column>`: the value occurs
/// more than once in the input) and per foreign key (`_fk_<column>`: the referenced input's
/// accepted rows do not hold the value), for the rule SQL.
fn mark_keys(
    contract: &Contract,
    batches: &[RecordBatch],
    schema: &SchemaRef,
    workers: usize,
    lookups: &KeyLookups<'_>,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let flags = |text: &[StringArray], f: &(dyn Fn(&str) -> bool + Sync)| {
        crate::parallel::map_ordered(text, workers, |a| {
            let marks: BooleanArray = a.iter().map(|v| Some(v.is_some_and(f))).collect();
            Ok(Arc::new(marks) as ArrayRef)
        })
    };
    let mut marks: Vec<(String, Vec<ArrayRef>)> = Vec::new();
    for col in &contract.columns {
        if let Some(dups) = lookups.duplicated.get(&col.name) {
            let text = keys::text_column(batches, &col.name)?;
            let marked = if dups.is_empty() {
                text.iter()
                    .map(|a| Arc::new(BooleanArray::from(vec![false; a.len()])) as ArrayRef)
                    .collect()
            } else {
                flags(&text, &|v| dups.contains(v))?
            };
            marks.push((duplicate_mark(&col.name), marked));
        }
        if let Some(known) = lookups.known.get(&col.name) {
            let text = keys::text_column(batches, &col.name)?;
            marks.push((
                missing_mark(&col.name),
                flags(&text, &|v| !known.contains(v))?,
            ));
        }
    }
    let mut fields = schema.fields().to_vec();
    fields.extend(
        marks
            .iter()
            .map(|(name, _)| Arc::new(Field::new(name, DataType::Boolean, false))),
    );
    let marked_schema = Arc::new(Schema::new(fields));
    let marked = batches
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let mut columns = b.columns().to_vec();
            columns.extend(marks.iter().map(|(_, m)| m[i].clone()));
            Ok(RecordBatch::try_new(marked_schema.clone(), columns)?)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((marked_schema, marked))
}

/// An input after its row rules: its valid rows (every date's) in the scratch area, so that each
/// run date registers the rows before its own as_of without reading the export again.
#[derive(Clone)]
pub struct CheckedInput {
    pub contract: Contract,
    scratch: Scratch,
    rel: String,
    rows: u64,
    /// The latest event time of the valid rows (ns; None for the CRM or an empty log).
    latest: Option<i64>,
}

impl CheckedInput {
    /// Register the valid rows before `as_of_ns` under the input's name, read from the scratch
    /// file by the engine; returns their count. When every row is before as_of (an export cut
    /// at the run date) the file itself is the table, with its exact row count for the planner;
    /// otherwise a view filters it (the filter pushed into the scan).
    pub async fn register(&self, ctx: &SessionContext, as_of_ns: i64) -> Result<u64> {
        let table = self.contract.table.as_str();
        let schema = self.contract.schema();
        if self.latest.is_none_or(|t| t < as_of_ns) {
            self.scratch.register(ctx, table, &self.rel, schema)?;
            return Ok(self.rows);
        }
        let valid = format!("valid_{table}");
        self.scratch
            .register(ctx, &valid, &self.rel, schema.clone())?;
        let mut rows = ctx.table(valid.as_str()).await?;
        ctx.deregister_table(&valid)?;
        if let Some(t) = event_time_column(table) {
            let instant = match schema.field_with_name(t)?.data_type() {
                DataType::Timestamp(TimeUnit::Nanosecond, tz) => {
                    lit(ScalarValue::TimestampNanosecond(Some(as_of_ns), tz.clone()))
                }
                _ => {
                    return Err(FlywheelError::internal(format!(
                        "{table}.{t} is not a timestamp"
                    )))
                }
            };
            rows = rows.filter(col(t).lt(instant))?;
        }
        ctx.deregister_table(table)?;
        ctx.register_table(table, rows.into_view())?;
        Ok(ctx.table(table).await?.count().await? as u64)
    }
}

/// Inputs whose valid rows are kept in one scratch file per value of a column, because the jobs
/// read them filtered on it: `int_signup_facts` scans the signups six times and the first
/// services once, `int_referrals` the rewards, `customer_features` the shares, each a small part
/// of the referral events (at 1M customers 1.4M signups, 0.13M first services of 8.8M events),
/// and a scan skips the other files by their statistics instead of decoding every event. The
/// third element names the text columns whose statistics are kept as well, because a job filters
/// on them: `int_signup_facts`' referee ids read the events that name a referee
/// (`referee_customer_id IS NOT NULL`), and the files of the shares, clicks and signups, where
/// it is null on every row, are skipped by their null counts.
const CLUSTER_BY: [(&str, &str, &[&str]); 1] =
    [("referral_events", "event_type", &["referee_customer_id"])];

/// Where the valid rows of an input go: one scratch file, or a folder of one file per value of
/// its [`CLUSTER_BY`] column.
enum ValidRows {
    File(Box<ParquetSink>),
    Clustered(ClusteredSink),
}

impl ValidRows {
    fn create(scratch: &Scratch, contract: &Contract) -> Result<ValidRows> {
        let table = contract.table.as_str();
        Ok(match CLUSTER_BY.iter().find(|(t, _, _)| *t == table) {
            Some((_, column, also_pruned)) => ValidRows::Clustered(scratch.clustered_writer(
                &format!("inputs/{table}"),
                contract.schema(),
                column,
                also_pruned,
            )?),
            None => ValidRows::File(Box::new(
                scratch.writer(&format!("inputs/{table}.parquet"), contract.schema())?,
            )),
        })
    }

    async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        match self {
            ValidRows::File(sink) => sink.write(batch).await,
            ValidRows::Clustered(sink) => sink.write(batch).await,
        }
    }

    async fn finish(self) -> Result<(String, u64)> {
        match self {
            ValidRows::File(sink) => sink.finish().await,
            ValidRows::Clustered(sink) => sink.finish().await,
        }
    }
}

/// Rows of the staged input checked at a time: the rule SQL runs over one chunk in memory.
const CHUNK_ROWS: usize = 524_288;

/// Validate one input, streamed from its files: the duplicated keys first (two narrow passes),
/// then chunk by chunk the row rules, the broken rows kept and the valid rows written to the
/// scratch area. Returns the check (`used` is set when a date registers it), the quarantined
/// rows, the checked input and the files read.
pub async fn validate_input(
    ctx: &SessionContext,
    contract: &Contract,
    input: &Root,
    files: Vec<Listed>,
    scratch: &Scratch,
    partitions: usize,
) -> Result<(InputCheck, Vec<RecordBatch>, CheckedInput, Vec<InputFile>)> {
    let duplicated = duplicated_keys(input, contract, &files).await?;
    let referenced = referenced_keys(ctx, contract).await?;
    let lookups = KeyLookups {
        duplicated,
        known: referenced
            .iter()
            .map(|(c, a)| (c.clone(), keys::key_set(a)))
            .collect(),
    };
    let staged = read::staging_schema(contract);
    let mut valid = ValidRows::create(scratch, contract)?;
    let (mut batches, reader) = read::stream_input(input, contract, files);
    let (mut chunk, mut chunk_rows, mut rows) = (Vec::new(), 0usize, 0u64);
    let (mut broken, mut planned, mut latest) = (Vec::new(), None, None);
    loop {
        let next = batches.next().await.transpose()?;
        let end = next.is_none();
        if let Some(batch) = next {
            (rows, chunk_rows) = (
                rows + batch.num_rows() as u64,
                chunk_rows + batch.num_rows(),
            );
            chunk.push(batch);
        }
        if chunk_rows >= CHUNK_ROWS || (end && (chunk_rows > 0 || planned.is_none())) {
            let (marked_schema, marked) =
                mark_keys(contract, &chunk, &staged, partitions, &lookups)?;
            let (plan, bad_rows) =
                broken_rows(ctx, contract, marked_schema, marked, partitions).await?;
            for b in valid_rows(
                contract,
                std::mem::take(&mut chunk),
                &row_numbers(&bad_rows)?,
            )? {
                latest = latest.max(latest_event(contract, &b)?);
                valid.write(&b).await?;
            }
            (planned, chunk_rows) = (Some(plan), 0);
            broken.extend(bad_rows);
        }
        if end {
            break;
        }
    }
    let files = reader.await.map_err(FlywheelError::internal)?;
    let (rel, valid_count) = valid.finish().await?;
    let checked = CheckedInput {
        contract: contract.clone(),
        scratch: scratch.clone(),
        rel,
        rows: valid_count,
        latest,
    };
    let planned = planned.ok_or_else(|| FlywheelError::internal("the row rules never ran"))?;
    let (check, rejects) = quarantined(ctx, contract, rows, planned, broken, &files).await?;
    Ok((check, rejects, checked, files))
}

/// The check of an input and its quarantined rows, from the broken rows of every chunk.
async fn quarantined(
    ctx: &SessionContext,
    contract: &Contract,
    rows: u64,
    planned: Schema,
    broken: Vec<RecordBatch>,
    files: &[InputFile],
) -> Result<(InputCheck, Vec<RecordBatch>)> {
    let table = &contract.table;
    let checked_name = format!("checked_{table}");
    register_checked(ctx, &checked_name, planned, broken, files)?;
    let rejects = quarantine(ctx, contract, &checked_name).await;
    let top_reasons = top_reasons(ctx, &checked_name).await;
    ctx.deregister_table(&checked_name)?;
    let (rejects, top_reasons) = (rejects?, top_reasons?);
    let rejected: u64 = rejects.iter().map(|b| b.num_rows() as u64).sum();
    let reject_share = if rows == 0 {
        0.0
    } else {
        rejected as f64 / rows as f64
    };
    let check = InputCheck {
        input: table.clone(),
        rows,
        rejected,
        reject_share,
        used: 0,
        top_reasons,
    };
    Ok((check, rejects))
}

/// The latest event time (ns) in `batch` of a log input (None for the CRM or no rows).
fn latest_event(contract: &Contract, batch: &RecordBatch) -> Result<Option<i64>> {
    let Some(t) = event_time_column(&contract.table) else {
        return Ok(None);
    };
    let ts = batch
        .column_by_name(t)
        .ok_or_else(|| FlywheelError::internal(format!("{}: no {t}", contract.table)))?;
    if ts.null_count() > 0 {
        return Ok(Some(i64::MAX)); // a row without a time: let the as_of filter decide
    }
    let ns = arrow::compute::cast(ts, &DataType::Int64)?;
    Ok(arrow::compute::max(ns.as_primitive::<Int64Type>()))
}

/// The row numbers of the broken rows.
fn row_numbers(broken: &[RecordBatch]) -> Result<BTreeSet<i64>> {
    let mut bad = BTreeSet::new();
    for b in broken {
        let numbers = b
            .column_by_name(ROW_NUMBER)
            .ok_or_else(|| FlywheelError::internal("the row-rule SQL lost _row"))?;
        bad.extend(numbers.as_primitive::<Int64Type>().values().iter().copied());
    }
    Ok(bad)
}

/// The rows of one marked chunk that break a rule (with `_row` and `_reasons`), and the schema
/// the rule SQL plans (for when no row breaks one).
async fn broken_rows(
    ctx: &SessionContext,
    contract: &Contract,
    marked_schema: SchemaRef,
    marked: Vec<RecordBatch>,
    partitions: usize,
) -> Result<(Schema, Vec<RecordBatch>)> {
    let table = &contract.table;
    let raw = format!("raw_{table}");
    ctx.register_table(
        &raw,
        Arc::new(MemTable::try_new(marked_schema, split(marked, partitions))?),
    )?;
    let broken = async {
        let sql = rule_sql(contract, &raw);
        crate::engine::runner::explain_if_asked(ctx, &format!("rules:{table}"), &sql).await?;
        let df = ctx.sql(&sql).await?;
        let planned = df.schema().as_arrow().clone();
        Ok::<_, FlywheelError>((planned, df.collect().await?))
    }
    .await;
    ctx.deregister_table(&raw)?;
    broken
}

/// The staged batches without the broken rows (by row number), in the contract's schema.
fn valid_rows(
    contract: &Contract,
    batches: Vec<RecordBatch>,
    bad: &BTreeSet<i64>,
) -> Result<Vec<RecordBatch>> {
    let table = &contract.table;
    let schema = contract.schema();
    let mut valid = Vec::new();
    for batch in batches {
        let kept = match without_rows(&batch, bad)? {
            Some(k) => arrow::compute::filter_record_batch(&batch, &k)?,
            None => batch,
        };
        if kept.num_rows() == 0 {
            continue;
        }
        let columns = schema
            .fields()
            .iter()
            .map(|f| {
                let c = kept.column_by_name(f.name()).ok_or_else(|| {
                    FlywheelError::internal(format!("{table}: staged input lost {}", f.name()))
                })?;
                Ok(arrow::compute::cast(c, f.data_type())?)
            })
            .collect::<Result<Vec<_>>>()?;
        valid.push(RecordBatch::try_new(schema.clone(), columns).map_err(|e| {
            FlywheelError::internal(format!(
                "{table}: valid rows do not fit the contract schema: {e}"
            ))
        })?);
    }
    Ok(valid)
}

/// A filter that drops the rows of `batch` whose number is in `bad` (None: keep them all).
fn without_rows(batch: &RecordBatch, bad: &BTreeSet<i64>) -> Result<Option<BooleanArray>> {
    let numbers = batch
        .column_by_name(ROW_NUMBER)
        .ok_or_else(|| FlywheelError::internal("staged input without _row"))?
        .as_primitive::<Int64Type>();
    let (Some(first), Some(last)) = (numbers.values().first(), numbers.values().last()) else {
        return Ok(None);
    };
    if bad.range(*first..=*last).next().is_none() {
        return Ok(None);
    }
    Ok(Some(
        numbers
            .values()
            .iter()
            .map(|n| Some(!bad.contains(n)))
            .collect(),
    ))
}

/// Register the broken rows with the file each came from as `name`.
fn register_checked(
    ctx: &SessionContext,
    name: &str,
    planned: Schema,
    broken: Vec<RecordBatch>,
    files: &[InputFile],
) -> Result<()> {
    let checked_schema = {
        let base = broken
            .first()
            .map(|b| b.schema())
            .unwrap_or(Arc::new(planned));
        let mut fields = base.fields().to_vec();
        fields.push(Arc::new(Field::new(SOURCE_FILE, DataType::Utf8, false)));
        Arc::new(Schema::new(fields))
    };
    let checked = broken
        .into_iter()
        .map(|b| {
            let numbers = b
                .column_by_name(ROW_NUMBER)
                .ok_or_else(|| FlywheelError::internal("the row-rule SQL lost _row"))?;
            let files: StringArray = numbers
                .as_primitive::<Int64Type>()
                .values()
                .iter()
                .map(|n| Some(file_of_row(files, *n)))
                .collect();
            let mut columns = b.columns().to_vec();
            columns.push(Arc::new(files));
            Ok(RecordBatch::try_new(checked_schema.clone(), columns)?)
        })
        .collect::<Result<Vec<_>>>()?;
    ctx.register_table(
        name,
        Arc::new(MemTable::try_new(checked_schema, vec![checked])?),
    )?;
    Ok(())
}

/// The quarantined rows of the checked table `checked`, in the one schema every input's rejects
/// share (input, source_file, record_key, record, reasons).
async fn quarantine(
    ctx: &SessionContext,
    contract: &Contract,
    checked: &str,
) -> Result<Vec<RecordBatch>> {
    let record = contract
        .columns
        .iter()
        .map(|c| {
            let q = quote_ident(&c.name);
            format!(
                "{} || '=' || COALESCE(CAST({q} AS VARCHAR), 'null')",
                quote_str(&c.name)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let key = contract
        .columns
        .iter()
        .find(|c| c.unique)
        .map(|c| quote_ident(&c.name))
        .unwrap_or("NULL".into());
    Ok(ctx
        .sql(&format!(
            "SELECT {input} AS input, {SOURCE_FILE} AS source_file, CAST({key} AS VARCHAR) AS record_key, \
             concat_ws(', ', {record}) AS record, _reasons AS reasons \
             FROM {checked} WHERE _reasons <> '' ORDER BY source_file, record_key, record",
            input = quote_str(&contract.table)
        ))
        .await?
        .collect()
        .await?)
}

/// The five most frequent reasons of the checked table `checked`, with their counts.
async fn top_reasons(ctx: &SessionContext, checked: &str) -> Result<Vec<(String, u64)>> {
    let top = ctx
        .sql(&format!(
            "SELECT reason, COUNT(*) AS n FROM (SELECT unnest(string_to_array(_reasons, '; ')) AS reason \
             FROM {checked} WHERE _reasons <> '') GROUP BY reason ORDER BY n DESC, reason LIMIT 5"
        ))
        .await?
        .collect()
        .await?;
    let mut out = Vec::new();
    for b in &top {
        let reasons = arrow::compute::cast(b.column(0), &DataType::Utf8)?;
        let reasons = reasons.as_string::<i32>();
        let counts = b.column(1).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            out.push((reasons.value(i).to_string(), counts.value(i) as u64));
        }
    }
    Ok(out)
}

/// Spread batches over `n` partitions (round robin, so the order within each is stable).
pub fn split(batches: Vec<RecordBatch>, n: usize) -> Vec<Vec<RecordBatch>> {
    let n = n.max(1);
    let mut parts: Vec<Vec<RecordBatch>> = vec![Vec::new(); n];
    for (i, b) in batches.into_iter().enumerate() {
        parts[i % n].push(b);
    }
    parts
}
