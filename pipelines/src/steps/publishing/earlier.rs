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

/// The latest `max_dates` run dates before `date` found in the output (dates with a
/// `referral_kpis` or `lifecycle_health` file), oldest first: the earlier points of the trends.
pub async fn earlier_run_dates(
    output: &Root,
    date: &RunDate,
    max_dates: usize,
) -> Result<Vec<chrono::NaiveDate>> {
    let mut days = Vec::new();
    for source in KPI_SOURCES {
        for listed in output.list(&format!("{source}/")).await? {
            let day = partition_day(&listed.path, "dt=");
            if let Some(day) = day.filter(|d| date.days_since(*d) > 0) {
                if listed.path.ends_with(".parquet") {
                    days.push(day);
                }
            }
        }
    }
    days.sort();
    days.dedup();
    let keep = days.len().saturating_sub(max_dates);
    Ok(days.split_off(keep))
}

/// The KPI tables whose rows the trends follow.
const KPI_SOURCES: [&str; 2] = ["referral_kpis", "lifecycle_health"];

/// The rows of `referral_kpis` and `lifecycle_health` of the run dates `days` (see
/// [`earlier_run_dates`]), as a table (source, dt, scope, kpi, value, band): what
/// `sql/kpi_trends.sql` reads as `earlier_kpis`.
pub async fn earlier_kpis(output: &Root, days: &[chrono::NaiveDate]) -> Result<Table> {
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("dt", DataType::Date32, false),
        Field::new("scope", DataType::Utf8, true),
        Field::new("kpi", DataType::Utf8, true),
        Field::new("value", DataType::Float64, true),
        Field::new("band", DataType::Utf8, true),
    ]));
    let mut batches = Vec::new();
    for (day, source, rel) in files_of_days(output, &KPI_SOURCES, days).await? {
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

/// The customers on each list of `lists` (published as each publication says) on the run dates
/// `days`, as a table (list, dt, customer_id): what `sql/kpi_trends.sql` reads as
/// `earlier_lists` to count who entered and left each list.
pub async fn earlier_lists(
    output: &Root,
    lists: &[(&str, &Publication)],
    days: &[chrono::NaiveDate],
) -> Result<Table> {
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("list", DataType::Utf8, false),
        Field::new("dt", DataType::Date32, false),
        Field::new("customer_id", DataType::Utf8, false),
    ]));
    let id_schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Utf8, false),
        Field::new("dt", DataType::Date32, false),
    ]));
    let mut batches = Vec::new();
    for (list, publication) in lists {
        let folders = [publication.folder.as_str()];
        for (day, _, rel) in files_of_days(output, &folders, days).await? {
            let Some(bytes) = output.get(&rel).await? else {
                continue;
            };
            let epoch = RunDate::epoch_days_of(day) as i32;
            let rows = list_rows(bytes, &id_schema, epoch).map_err(|problem| {
                FlywheelError::EarlierOutput {
                    path: output.display(&rel),
                    problem,
                }
            })?;
            for b in rows {
                let name: arrow::array::ArrayRef =
                    Arc::new(StringArray::from(vec![*list; b.num_rows()]));
                let columns = vec![name, b.column(1).clone(), b.column(0).clone()];
                batches.push(
                    RecordBatch::try_new(schema.clone(), columns)
                        .map_err(|e| FlywheelError::internal(e.to_string()))?,
                );
            }
        }
    }
    Ok(Table { schema, batches })
}

/// The Parquet files of `folders` in the `dt=` partitions of `days`, in a fixed order
/// (day, folder, path) so a run reads them, and so registers their rows, the same way each time.
async fn files_of_days<'a>(
    output: &Root,
    folders: &[&'a str],
    days: &[chrono::NaiveDate],
) -> Result<Vec<(chrono::NaiveDate, &'a str, String)>> {
    let mut files = Vec::new();
    for folder in folders {
        for listed in output.list(&format!("{folder}/")).await? {
            let day = partition_day(&listed.path, "dt=").filter(|d| days.contains(d));
            if let Some(day) = day.filter(|_| listed.path.ends_with(".parquet")) {
                files.push((day, *folder, listed.path));
            }
        }
    }
    files.sort();
    Ok(files)
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

/// The latest run date at most `limit` with a Parquet file in `folder`'s `dt=` partitions.
pub async fn latest_date_at_most(
    output: &Root,
    folder: &str,
    limit: chrono::NaiveDate,
) -> Result<Option<chrono::NaiveDate>> {
    let mut latest = None;
    for listed in output.list(&format!("{folder}/")).await? {
        let day = partition_day(&listed.path, "dt=").filter(|d| *d <= limit);
        if let Some(day) = day.filter(|_| listed.path.ends_with(".parquet")) {
            latest = latest.max(Some(day));
        }
    }
    Ok(latest)
}

/// The rows of `folder`'s partition of run date `day` as published, only `columns` read.
pub async fn partition(
    output: &Root,
    folder: &str,
    day: chrono::NaiveDate,
    columns: &[&str],
) -> Result<Table> {
    let days = [day];
    let mut batches = Vec::new();
    for (_, _, rel) in files_of_days(output, &[folder], &days).await? {
        let Some(bytes) = output.get(&rel).await? else {
            continue;
        };
        let read =
            projected_batches(bytes, columns).map_err(|problem| FlywheelError::EarlierOutput {
                path: output.display(&rel),
                problem,
            })?;
        batches.extend(read);
    }
    let schema = match batches.first() {
        Some(b) => b.schema(),
        None => Arc::new(Schema::empty()),
    };
    Ok(Table { schema, batches })
}

/// The batches of a Parquet file flywheel published, only `columns` decoded (each must exist).
fn projected_batches(
    bytes: bytes::Bytes,
    columns: &[&str],
) -> std::result::Result<Vec<RecordBatch>, String> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| format!("not a readable Parquet file ({e})"))?;
    let fields = builder.parquet_schema().root_schema().get_fields();
    let mut roots = Vec::new();
    for c in columns {
        let at = fields
            .iter()
            .position(|f| f.name() == *c)
            .ok_or_else(|| format!("it has no {c} column"))?;
        roots.push(at);
    }
    let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(|e| format!("not a readable Parquet file ({e})"))?;
    reader
        .map(|b| b.map_err(|e| format!("a row group cannot be read ({e})")))
        .collect()
}
