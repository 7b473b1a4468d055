//! Row rules (domain.md, "Row rules, precisely"), generated from the contracts: required
//! columns, uniqueness (every copy of a duplicated key is rejected), enumerations, ranges,
//! integer widths, foreign keys and the contract's row predicates. Rows that break a rule are
//! quarantined with their reasons; the rest are registered under the input's name.

use std::sync::Arc;

use std::collections::BTreeSet;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use serde::Serialize;

use super::read::{file_of_row, InputFile, LoadedInput, CONVERSION_ERRORS, ROW_NUMBER};
use crate::contracts::keys;
use crate::contracts::{ColType, Contract};
use crate::error::{FlywheelError, Result};

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

/// The loaded batches with one boolean column per unique key (`_dup_<column>`: the value occurs
/// more than once) and per foreign key (`_fk_<column>`: the referenced input's accepted rows do
/// not hold the value), for the rule SQL.
async fn mark_keys(
    ctx: &SessionContext,
    contract: &Contract,
    batches: &[RecordBatch],
    schema: &SchemaRef,
    workers: usize,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let flags = |text: &[StringArray], f: &(dyn Fn(&str) -> bool + Sync)| {
        crate::parallel::map_ordered(text, workers, |a| {
            let marks: BooleanArray = a.iter().map(|v| Some(v.is_some_and(f))).collect();
            Ok(Arc::new(marks) as ArrayRef)
        })
    };
    let mut marks: Vec<(String, Vec<ArrayRef>)> = Vec::new();
    for col in &contract.columns {
        if col.unique {
            let text = keys::text_column(batches, &col.name)?;
            let dups = keys::duplicated(&text, workers)?;
            let marked = if dups.is_empty() {
                text.iter()
                    .map(|a| Arc::new(BooleanArray::from(vec![false; a.len()])) as ArrayRef)
                    .collect()
            } else {
                flags(&text, &|v| dups.contains(v))?
            };
            marks.push((duplicate_mark(&col.name), marked));
        }
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
            let known_text = keys::text_column(&referenced, key)?;
            let known = keys::key_set(&known_text);
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

/// An input after its row rules, kept so that runs of several dates can register it without
/// reading and checking it again (a backfill): the staged batches and the numbers of the rows
/// that break a rule. The rules do not depend on the run date; only the as_of filter does.
pub struct CheckedInput {
    pub contract: Contract,
    pub batches: Vec<RecordBatch>,
    pub bad: BTreeSet<i64>,
}

impl CheckedInput {
    /// Register the accepted rows before `as_of_ns` under the input's name; returns their count.
    pub fn register(&self, ctx: &SessionContext, as_of_ns: i64, partitions: usize) -> Result<u64> {
        register_accepted(
            ctx,
            &self.contract,
            self.batches.iter().cloned(),
            &self.bad,
            as_of_ns,
            partitions,
        )
    }
}

/// Validate one loaded input; registers the accepted rows (before as_of) under the input's name and
/// returns the check and the quarantined rows, and with `keep` the checked input for other dates.
pub async fn validate_input(
    ctx: &SessionContext,
    contract: &Contract,
    loaded: LoadedInput,
    as_of_ns: i64,
    partitions: usize,
    keep: bool,
) -> Result<(InputCheck, Vec<RecordBatch>, Option<CheckedInput>)> {
    let table = &contract.table;
    let rows: u64 = loaded.batches.iter().map(|b| b.num_rows() as u64).sum();
    let (planned, broken) = broken_rows(ctx, contract, &loaded, partitions).await?;
    let mut bad = BTreeSet::new();
    for b in &broken {
        let numbers = b
            .column_by_name(ROW_NUMBER)
            .ok_or_else(|| FlywheelError::internal("the row-rule SQL lost _row"))?;
        bad.extend(numbers.as_primitive::<Int64Type>().values().iter().copied());
    }
    let files = loaded.files;
    let kept = keep.then(|| CheckedInput {
        contract: contract.clone(),
        batches: loaded.batches.clone(),
        bad: bad.clone(),
    });
    let used = register_accepted(ctx, contract, loaded.batches, &bad, as_of_ns, partitions)?;
    let checked_name = format!("checked_{table}");
    register_checked(ctx, &checked_name, planned, broken, &files)?;
    let rejects = quarantine(ctx, contract, &checked_name).await?;
    let top_reasons = top_reasons(ctx, &checked_name).await;
    ctx.deregister_table(&checked_name)?;
    let top_reasons = top_reasons?;
    let rejected: u64 = rejects.iter().map(|b| b.num_rows() as u64).sum();
    let reject_share = if rows == 0 {
        0.0
    } else {
        rejected as f64 / rows as f64
    };
    Ok((
        InputCheck {
            input: table.clone(),
            rows,
            rejected,
            reject_share,
            used,
            top_reasons,
        },
        rejects,
        kept,
    ))
}

/// Register the accepted rows before as_of of `batches` under the contract's table name.
fn register_accepted(
    ctx: &SessionContext,
    contract: &Contract,
    batches: impl IntoIterator<Item = RecordBatch>,
    bad: &BTreeSet<i64>,
    as_of_ns: i64,
    partitions: usize,
) -> Result<u64> {
    let (schema, accepted, used) = accepted_rows(contract, batches, bad, as_of_ns)?;
    // A backfill registers the input again for the next date.
    ctx.deregister_table(contract.table.as_str())?;
    ctx.register_table(
        contract.table.as_str(),
        Arc::new(MemTable::try_new(schema, split(accepted, partitions))?),
    )?;
    Ok(used)
}

/// The raw rows that break a rule (with `_row` and `_reasons`), and the schema the rule SQL
/// plans (for when no row breaks one).
async fn broken_rows(
    ctx: &SessionContext,
    contract: &Contract,
    loaded: &LoadedInput,
    partitions: usize,
) -> Result<(Schema, Vec<RecordBatch>)> {
    let table = &contract.table;
    let raw = format!("raw_{table}");
    let (marked_schema, marked) =
        mark_keys(ctx, contract, &loaded.batches, &loaded.schema, partitions).await?;
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

/// The loaded batches without the broken rows (by row number) and, for a log input, without the
/// rows at or after as_of, in the contract's schema. Returns that schema, the batches and their
/// row count.
fn accepted_rows(
    contract: &Contract,
    batches: impl IntoIterator<Item = RecordBatch>,
    bad: &BTreeSet<i64>,
    as_of_ns: i64,
) -> Result<(SchemaRef, Vec<RecordBatch>, u64)> {
    let table = &contract.table;
    let schema = contract.schema();
    let time_column = event_time_column(table);
    let mut accepted = Vec::new();
    let mut used = 0u64;
    for batch in batches {
        let mut keep = without_rows(&batch, bad)?;
        if let Some(t) = time_column {
            let ts = batch.column_by_name(t).ok_or_else(|| {
                FlywheelError::internal(format!("{table}: no event-time column {t}"))
            })?;
            let ts = arrow::compute::cast(ts, &DataType::Int64)?;
            let before = arrow::compute::kernels::cmp::lt(&ts, &Int64Array::new_scalar(as_of_ns))?;
            keep = Some(match keep {
                Some(k) => arrow::compute::and(&k, &before)?,
                None => before,
            });
        }
        let kept = match keep {
            Some(k) if k.true_count() < k.len() => arrow::compute::filter_record_batch(&batch, &k)?,
            _ => batch,
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
        used += kept.num_rows() as u64;
        accepted.push(RecordBatch::try_new(schema.clone(), columns).map_err(|e| {
            FlywheelError::internal(format!(
                "{table}: accepted rows do not fit the contract schema: {e}"
            ))
        })?);
    }
    Ok((schema, accepted, used))
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
