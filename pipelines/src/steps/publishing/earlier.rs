//! What earlier runs published, read back by a run: the lists of earlier run dates (for the
//! cooldowns, a customer listed on a run date in [D − cooldown days, D) is not listed again, and
//! for who entered and left each list), the KPI rows of earlier run dates (the trends), and a
//! past run date's features and scores (the realised quality of past scores). Every file is
//! found by its `<partition>=YYYY-MM-DD` folder and decoded only in the columns asked for.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Date32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::NaiveDate;

use crate::contracts::Publication;
use crate::engine::{RunDate, Table};
use crate::error::{FlywheelError, Result};
use crate::storage::Root;

/// The KPI tables whose rows the trends follow (their folders are their names).
const KPI_SOURCES: [&str; 2] = ["referral_kpis", "lifecycle_health"];

/// The Parquet files below `folder` by run date (from their `<key>=YYYY-MM-DD` folder), in a
/// fixed order (date, path), so a run reads them, and registers their rows, the same way each time.
async fn dated_files(output: &Root, folder: &str, key: &str) -> Result<Vec<(NaiveDate, String)>> {
    let key = format!("{key}=");
    let mut files: Vec<(NaiveDate, String)> = output
        .list(&format!("{folder}/"))
        .await?
        .into_iter()
        .filter(|l| l.path.ends_with(".parquet"))
        .filter_map(|l| partition_day(&l.path, &key).map(|d| (d, l.path)))
        .collect();
    files.sort();
    Ok(files)
}

/// One published file's batches, only `columns` decoded, or an error naming the file.
async fn read_columns(output: &Root, rel: &str, columns: &[&str]) -> Result<Vec<RecordBatch>> {
    // Gone between the listing and the read: a run of that date is replacing it.
    let Some(bytes) = output.get(rel).await? else {
        return Ok(Vec::new());
    };
    parquet_columns(bytes, columns).map_err(|problem| FlywheelError::EarlierOutput {
        path: output.display(rel),
        problem,
    })
}

/// The members of one CRM list on earlier run dates: (run date, customer ids) per published
/// batch, for the dates `wanted` accepts. Read once per run for both the cooldown
/// ([`previous_list`]) and the trends ([`earlier_lists`]).
pub async fn list_history(
    output: &Root,
    publication: &Publication,
    wanted: impl Fn(NaiveDate) -> bool,
) -> Result<Vec<(NaiveDate, ArrayRef)>> {
    let mut out = Vec::new();
    for (day, rel) in dated_files(output, &publication.folder, &publication.partition).await? {
        if !wanted(day) {
            continue;
        }
        for b in read_columns(output, &rel, &["customer_id"]).await? {
            let ids = arrow::compute::cast(b.column(0), &DataType::Utf8).map_err(|e| {
                FlywheelError::EarlierOutput {
                    path: output.display(&rel),
                    problem: format!("customer_id is not text ({e})"),
                }
            })?;
            out.push((day, ids));
        }
    }
    Ok(out)
}

/// The customers of a list's `history` listed on run dates in [date − cooldown days, date), as
/// a table (customer_id, dt): what the list's SQL reads as `previous_<list>`.
pub fn previous_list(
    history: &[(NaiveDate, ArrayRef)],
    date: &RunDate,
    cooldown: i64,
) -> Result<Table> {
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Utf8, false),
        Field::new("dt", DataType::Date32, false),
    ]));
    let mut batches = Vec::new();
    for (day, ids) in history {
        let age = date.days_since(*day);
        if age <= 0 || age > cooldown {
            continue;
        }
        let days = Date32Array::from(vec![RunDate::epoch_days_of(*day) as i32; ids.len()]);
        batches.push(RecordBatch::try_new(
            schema.clone(),
            vec![ids.clone(), Arc::new(days)],
        )?);
    }
    Ok(Table { schema, batches })
}

/// The members of every list of `histories` on the run dates `days`, as a table (list, dt,
/// customer_id): what `sql/kpi_trends.sql` reads as `earlier_lists` to count who entered and
/// left each list.
pub fn earlier_lists(
    histories: &[(String, Vec<(NaiveDate, ArrayRef)>)],
    days: &[NaiveDate],
) -> Result<Table> {
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("list", DataType::Utf8, false),
        Field::new("dt", DataType::Date32, false),
        Field::new("customer_id", DataType::Utf8, false),
    ]));
    let mut batches = Vec::new();
    for (list, history) in histories {
        for (day, ids) in history.iter().filter(|(d, _)| days.contains(d)) {
            let n = ids.len();
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from(vec![list.as_str(); n])),
                Arc::new(Date32Array::from(vec![
                    RunDate::epoch_days_of(*day) as i32;
                    n
                ])),
                ids.clone(),
            ];
            batches.push(RecordBatch::try_new(schema.clone(), columns)?);
        }
    }
    Ok(Table { schema, batches })
}

/// The latest `max_dates` run dates before `date` found in the output (dates with a
/// `referral_kpis` or `lifecycle_health` file), oldest first: the earlier points of the trends;
/// and the rows of those two tables on those dates, as a table (source, dt, scope, kpi, value,
/// band): what `sql/kpi_trends.sql` reads as `earlier_kpis`. Each folder is listed once.
pub async fn earlier_kpis(
    output: &Root,
    date: &RunDate,
    max_dates: usize,
) -> Result<(Vec<NaiveDate>, Table)> {
    let mut files = Vec::new();
    for source in KPI_SOURCES {
        for (day, rel) in dated_files(output, source, "dt").await? {
            if date.days_since(day) > 0 {
                files.push((day, source, rel));
            }
        }
    }
    files.sort();
    let mut days: Vec<NaiveDate> = files.iter().map(|(d, _, _)| *d).collect();
    days.dedup();
    let days = days.split_off(days.len().saturating_sub(max_dates));

    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("dt", DataType::Date32, false),
        Field::new("scope", DataType::Utf8, true),
        Field::new("kpi", DataType::Utf8, true),
        Field::new("value", DataType::Float64, true),
        Field::new("band", DataType::Utf8, true),
    ]));
    let kept: Vec<&str> = schema.fields()[2..]
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    let mut batches = Vec::new();
    for (day, source, rel) in files.iter().filter(|(d, _, _)| days.contains(d)) {
        for b in read_columns(output, rel, &kept).await? {
            let n = b.num_rows();
            let mut columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from(vec![*source; n])),
                Arc::new(Date32Array::from(vec![
                    RunDate::epoch_days_of(*day) as i32;
                    n
                ])),
            ];
            for (f, c) in schema.fields()[2..].iter().zip(b.columns()) {
                columns.push(arrow::compute::cast(c, f.data_type())?);
            }
            batches.push(RecordBatch::try_new(schema.clone(), columns)?);
        }
    }
    Ok((days, Table { schema, batches }))
}

/// The latest run date at most `limit` with a file of `publication`'s table.
pub async fn latest_date_at_most(
    output: &Root,
    publication: &Publication,
    limit: NaiveDate,
) -> Result<Option<NaiveDate>> {
    let files = dated_files(output, &publication.folder, &publication.partition).await?;
    Ok(files
        .into_iter()
        .map(|(d, _)| d)
        .filter(|d| *d <= limit)
        .max())
}

/// The rows `publication`'s table published on run date `day`, only `columns` read.
pub async fn partition(
    output: &Root,
    publication: &Publication,
    day: NaiveDate,
    columns: &[&str],
) -> Result<Table> {
    let mut batches = Vec::new();
    for (d, rel) in dated_files(output, &publication.folder, &publication.partition).await? {
        if d == day {
            batches.extend(read_columns(output, &rel, columns).await?);
        }
    }
    let schema = match batches.first() {
        Some(b) => b.schema(),
        None => Arc::new(Schema::empty()),
    };
    Ok(Table { schema, batches })
}

/// The batches of a Parquet file flywheel published, only `columns` decoded, in that order
/// (each must exist), or what is wrong with the file.
fn parquet_columns(
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
    let mut out = Vec::new();
    for b in reader {
        let b = b.map_err(|e| format!("a row group cannot be read ({e})"))?;
        // A projection keeps the file's column order; put the columns in the order asked for.
        let ordered = columns
            .iter()
            .map(|c| b.column_by_name(c).cloned())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| "a projected column is missing".to_string())?;
        let fields: Vec<_> = columns
            .iter()
            .filter_map(|c| b.schema().field_with_name(c).ok().cloned())
            .collect();
        out.push(
            RecordBatch::try_new(Arc::new(Schema::new(fields)), ordered)
                .map_err(|e| e.to_string())?,
        );
    }
    Ok(out)
}

/// The run date of a published file from its `<key>YYYY-MM-DD` folder (`key`: e.g. `dt=`).
fn partition_day(path: &str, key: &str) -> Option<NaiveDate> {
    path.split('/')
        .find_map(|p| p.strip_prefix(key))
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
}
