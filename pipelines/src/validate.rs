//! Row rules (domain.md, "Row rules, precisely"), generated from the contracts: required
//! columns, uniqueness (every copy of a duplicated key is rejected), enumerations, ranges,
//! integer widths, foreign keys and the contract's row predicates. Rows that break a rule are
//! quarantined with their reasons; the rest are registered under the input's name.

use std::sync::Arc;

use arrow::array::{AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::DataType;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use serde::Serialize;

use crate::contracts::{ColType, Contract};
use crate::error::{FlywheelError, Result};
use crate::inputs::{LoadedInput, CONVERSION_ERRORS, SOURCE_FILE};

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

/// The SQL that annotates every raw row with `_reasons` ('' when the row is clean).
pub fn rule_sql(contract: &Contract, raw: &str) -> String {
    let mut reasons: Vec<String> = vec![format!("r.{CONVERSION_ERRORS}")];
    let mut joins = String::new();
    for col in &contract.columns {
        let c = format!("r.{}", quote_ident(&col.name));
        let n = &col.name;
        if col.required || col.valid_values.is_some() {
            reasons.push(format!(
                "CASE WHEN {c} IS NULL THEN {} END",
                quote_str(&format!("{n}: required value is missing"))
            ));
        }
        if col.unique {
            // Keys seen more than once (a hash aggregate, cheaper than a window over all rows).
            let alias = format!("_dup_{n}");
            let bare = quote_ident(n);
            joins.push_str(&format!(
                " LEFT JOIN (SELECT {bare} AS k FROM {raw} WHERE {bare} IS NOT NULL GROUP BY {bare} HAVING COUNT(*) > 1) {alias} ON {alias}.k = {c}"
            ));
            reasons.push(format!(
                "CASE WHEN {alias}.k IS NOT NULL THEN {} END",
                quote_str(&format!("{n}: duplicated key (every copy is rejected)"))
            ));
        }
        if let Some(values) = &col.valid_values {
            let list = values
                .iter()
                .map(|v| quote_str(v))
                .collect::<Vec<_>>()
                .join(", ");
            reasons.push(format!(
                "CASE WHEN {c} NOT IN ({list}) THEN {} END",
                quote_str(&format!("{n}: not one of {}", values.join(", ")))
            ));
        }
        if col.ty == ColType::Int32 {
            reasons.push(format!(
                "CASE WHEN {c} < -2147483648 OR {c} > 2147483647 THEN {} END",
                quote_str(&format!("{n}: value does not fit int32"))
            ));
        }
        if let Some(min) = col.minimum {
            reasons.push(format!(
                "CASE WHEN {c} < {min} THEN {} END",
                quote_str(&format!("{n}: below the minimum {min}"))
            ));
        }
        if let Some(max) = col.maximum {
            reasons.push(format!(
                "CASE WHEN {c} > {max} THEN {} END",
                quote_str(&format!("{n}: above the maximum {max}"))
            ));
        }
        if let Some((table, key)) = &col.references {
            let alias = format!("_fk_{n}");
            joins.push_str(&format!(
                " LEFT JOIN (SELECT DISTINCT {k} AS k FROM {table}) {alias} ON {alias}.k = {c}",
                k = quote_ident(key)
            ));
            reasons.push(format!(
                "CASE WHEN {c} IS NOT NULL AND {alias}.k IS NULL THEN {} END",
                quote_str(&format!("{n}: no accepted {table} row with this {key}"))
            ));
        }
    }
    for rule in &contract.row_rules {
        reasons.push(format!(
            "CASE WHEN NOT ({}) THEN {} END",
            rule.predicate,
            quote_str(&format!("rule {} broken", rule.name))
        ));
    }
    let cols = contract
        .columns
        .iter()
        .map(|c| format!("r.{}", quote_ident(&c.name)))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT {cols}, r.{SOURCE_FILE}, concat_ws('; ', {}) AS _reasons FROM {raw} r{joins}",
        reasons.join(", ")
    )
}

/// Validate one loaded input; registers the accepted rows (before as_of) under the input's name and
/// returns the quarantined rows (with `_source_file` and `_reasons`).
///
/// One streaming pass of the rule SQL: each annotated batch is split in Rust into accepted rows
/// (clean, before as_of, cast to the contract types) and quarantined rows, so no annotated copy
/// of the whole input is ever held; only the (few) quarantined rows go on to the reject queries.
pub async fn validate_input(
    ctx: &SessionContext,
    contract: &Contract,
    loaded: LoadedInput,
    as_of_ns: i64,
    partitions: usize,
) -> Result<(InputCheck, Vec<RecordBatch>)> {
    let table = &contract.table;
    let raw = format!("raw_{table}");
    let rows: u64 = loaded.batches.iter().map(|b| b.num_rows() as u64).sum();
    ctx.register_table(
        &raw,
        Arc::new(MemTable::try_new(
            loaded.schema.clone(),
            split(loaded.batches, partitions),
        )?),
    )?;
    let annotated = ctx.sql(&rule_sql(contract, &raw)).await?;
    let planned_schema = annotated.schema().inner().clone();
    let mut stream = annotated.execute_stream().await?;
    ctx.deregister_table(&raw)?;

    let schema = contract.schema();
    let time_column = event_time_column(table);
    let mut accepted = Vec::new();
    let mut quarantined = Vec::new();
    let mut checked_schema = None;
    let mut used = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        checked_schema.get_or_insert_with(|| batch.schema());
        let reasons = batch
            .column_by_name("_reasons")
            .ok_or_else(|| FlywheelError::internal("the row-rule SQL lost _reasons"))?;
        let reasons = arrow::compute::cast(reasons, &DataType::Utf8)?;
        let clean = arrow::compute::kernels::cmp::eq(&reasons, &StringArray::new_scalar(""))?;
        let bad = arrow::compute::not(&clean)?;
        if bad.true_count() > 0 {
            quarantined.push(arrow::compute::filter_record_batch(&batch, &bad)?);
        }
        let keep = match time_column {
            Some(t) => {
                let ts = batch.column_by_name(t).ok_or_else(|| {
                    FlywheelError::internal(format!("{table}: no event-time column {t}"))
                })?;
                let ts = arrow::compute::cast(ts, &DataType::Int64)?;
                let before =
                    arrow::compute::kernels::cmp::lt(&ts, &Int64Array::new_scalar(as_of_ns))?;
                arrow::compute::and(&clean, &before)?
            }
            None => clean,
        };
        if keep.true_count() == 0 {
            continue;
        }
        let kept = arrow::compute::filter_record_batch(&batch, &keep)?;
        let columns = schema
            .fields()
            .iter()
            .map(|f| {
                let c = kept.column_by_name(f.name()).ok_or_else(|| {
                    FlywheelError::internal(format!("{table}: the row-rule SQL lost {}", f.name()))
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
    drop(stream);
    ctx.register_table(
        table.as_str(),
        Arc::new(MemTable::try_new(schema, split(accepted, partitions))?),
    )?;
    let checked_name = format!("checked_{table}");
    let checked_schema = checked_schema.unwrap_or(planned_schema);
    ctx.register_table(
        &checked_name,
        Arc::new(MemTable::try_new(checked_schema, vec![quarantined])?),
    )?;

    // Quarantined rows as one fixed schema for every input.
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
    let rejects = ctx
        .sql(&format!(
            "SELECT {input} AS input, {SOURCE_FILE} AS source_file, CAST({key} AS VARCHAR) AS record_key, \
             concat_ws(', ', {record}) AS record, _reasons AS reasons \
             FROM {checked_name} WHERE _reasons <> '' ORDER BY source_file, record_key, record",
            input = quote_str(table)
        ))
        .await?
        .collect()
        .await?;
    let rejected: u64 = rejects.iter().map(|b| b.num_rows() as u64).sum();

    let top = ctx
        .sql(&format!(
            "SELECT reason, COUNT(*) AS n FROM (SELECT unnest(string_to_array(_reasons, '; ')) AS reason \
             FROM {checked_name} WHERE _reasons <> '') GROUP BY reason ORDER BY n DESC, reason LIMIT 5"
        ))
        .await?
        .collect()
        .await?;
    let mut top_reasons = Vec::new();
    for b in &top {
        let reasons = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8)?;
        let reasons = reasons.as_string::<i32>();
        let counts = b.column(1).as_primitive::<arrow::datatypes::Int64Type>();
        for i in 0..b.num_rows() {
            top_reasons.push((reasons.value(i).to_string(), counts.value(i) as u64));
        }
    }
    ctx.deregister_table(&checked_name)?;
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
    ))
}

pub fn sql_type(ty: ColType) -> String {
    match ty {
        ColType::String => "VARCHAR".into(),
        ColType::Int32 => "INT".into(),
        ColType::Int64 => "BIGINT".into(),
        ColType::Float64 => "DOUBLE".into(),
        ColType::Decimal(p, s) => format!("DECIMAL({p}, {s})"),
        ColType::Timestamp => "TIMESTAMP".into(),
        ColType::Date => "DATE".into(),
        ColType::Boolean => "BOOLEAN".into(),
    }
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
