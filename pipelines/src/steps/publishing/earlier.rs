//! Lists published on earlier run dates, read back for the cooldowns: a customer listed on a run
//! date in [D − cooldown days, D) is not listed again.

use std::sync::Arc;

use arrow::array::{Array, Date32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::contracts::Publication;
use crate::engine::{RunDate, Table};
use crate::error::{FlywheelError, Result};
use crate::storage::Root;

/// The customers of `list` (published as `publication` says) listed on run dates in
/// [date − cooldown days, date), as a table (customer_id, dt).
pub async fn previous_list(
    output: &Root,
    publication: &Publication,
    date: &RunDate,
    cooldown: i64,
) -> Result<Table> {
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Utf8, false),
        Field::new("dt", DataType::Date32, false),
    ]));
    let key = format!("{}=", publication.partition);
    let mut batches = Vec::new();
    for listed in output.list(&format!("{}/", publication.folder)).await? {
        let rel = listed.path;
        if !rel.ends_with(".parquet") {
            continue;
        }
        let Some(day) = partition_day(&rel, &key) else {
            continue;
        };
        let age = date.days_since(day);
        if age <= 0 || age > cooldown {
            continue;
        }
        // Gone between the listing and the read: a run of that date is replacing it.
        let Some(bytes) = output.get(&rel).await? else {
            continue;
        };
        let unreadable = |problem: String| FlywheelError::EarlierOutput {
            path: output.display(&rel),
            problem,
        };
        let days = RunDate::epoch_days_of(day) as i32;
        batches.extend(list_rows(bytes, &schema, days).map_err(unreadable)?);
    }
    Ok(Table { schema, batches })
}

/// The customer ids of one published list file, each with the file's run date.
fn list_rows(
    bytes: bytes::Bytes,
    schema: &SchemaRef,
    days: i32,
) -> std::result::Result<Vec<RecordBatch>, String> {
    let mut out = Vec::new();
    for b in parquet_batches(bytes)? {
        let ids = b
            .column_by_name("customer_id")
            .ok_or_else(|| "it has no customer_id column".to_string())?;
        let ids = arrow::compute::cast(ids, &DataType::Utf8).map_err(|e| e.to_string())?;
        let ids: StringArray = ids
            .as_any()
            .downcast_ref::<StringArray>()
            .cloned()
            .ok_or_else(|| "customer_id is not text".to_string())?;
        let n = ids.len();
        out.push(
            RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(ids), Arc::new(Date32Array::from(vec![days; n]))],
            )
            .map_err(|e| e.to_string())?,
        );
    }
    Ok(out)
}

/// The rows of `referral_kpis` and `lifecycle_health` of the latest `max_dates` earlier run dates
/// found in the output (dates before `date`), as a table (source, dt, scope, kpi, value, band):
/// what `sql/kpi_trends.sql` reads as `earlier_kpis`.
pub async fn earlier_kpis(output: &Root, date: &RunDate, max_dates: usize) -> Result<Table> {
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("dt", DataType::Date32, false),
        Field::new("scope", DataType::Utf8, true),
        Field::new("kpi", DataType::Utf8, true),
        Field::new("value", DataType::Float64, true),
        Field::new("band", DataType::Utf8, true),
    ]));
    let mut files = Vec::new();
    for source in ["referral_kpis", "lifecycle_health"] {
        for listed in output.list(&format!("{source}/")).await? {
            let day = partition_day(&listed.path, "dt=");
            if let Some(day) = day.filter(|d| date.days_since(*d) > 0) {
                if listed.path.ends_with(".parquet") {
                    files.push((day, source, listed.path));
                }
            }
        }
    }
    let mut days: Vec<chrono::NaiveDate> = files.iter().map(|(d, _, _)| *d).collect();
    days.sort();
    days.dedup();
    let keep: Vec<_> = days.into_iter().rev().take(max_dates).collect();
    files.sort();
    let mut batches = Vec::new();
    for (day, source, rel) in files.into_iter().filter(|(d, _, _)| keep.contains(d)) {
        let Some(bytes) = output.get(&rel).await? else {
            continue;
        };
        let days = RunDate::epoch_days_of(day) as i32;
        let rows = kpi_rows(bytes, &schema, source, days).map_err(|problem| {
            FlywheelError::EarlierOutput {
                path: output.display(&rel),
                problem,
            }
        })?;
        batches.extend(rows);
    }
    Ok(Table { schema, batches })
}

/// The KPI rows of one published KPI file, with its source table and run date.
fn kpi_rows(
    bytes: bytes::Bytes,
    schema: &SchemaRef,
    source: &str,
    days: i32,
) -> std::result::Result<Vec<RecordBatch>, String> {
    let mut out = Vec::new();
    for b in parquet_batches(bytes)? {
        let n = b.num_rows();
        let mut columns: Vec<arrow::array::ArrayRef> = vec![
            Arc::new(StringArray::from(vec![source; n])),
            Arc::new(Date32Array::from(vec![days; n])),
        ];
        for f in &schema.fields()[2..] {
            let c = b
                .column_by_name(f.name())
                .ok_or_else(|| format!("it has no {} column", f.name()))?;
            columns.push(arrow::compute::cast(c, f.data_type()).map_err(|e| e.to_string())?);
        }
        out.push(RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// Every batch of a Parquet file flywheel published, or what is wrong with it.
fn parquet_batches(bytes: bytes::Bytes) -> std::result::Result<Vec<RecordBatch>, String> {
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|b| b.build())
        .map_err(|e| format!("not a readable Parquet file ({e})"))?;
    reader
        .map(|b| b.map_err(|e| format!("a row group cannot be read ({e})")))
        .collect()
}

/// The run date of a published file from its `<key>YYYY-MM-DD` folder (`key`: e.g. `dt=`).
fn partition_day(path: &str, key: &str) -> Option<chrono::NaiveDate> {
    path.split('/')
        .find_map(|p| p.strip_prefix(key))
        .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
}
