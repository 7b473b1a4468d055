//! Reading the input exports: list every `*.parquet` below an input's prefix, check each file's
//! schema against the contract, and convert the physical types exporters write (pandas' int64 and
//! float money, naive nanosecond timestamps, large or dictionary strings, ...) into the contract's
//! types. A value that cannot be converted without loss is not a type error: its row is marked
//! with the reason and later quarantined by the row rules.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Decimal128Array, Int64Array, RecordBatch, StringArray, StringBuilder,
    TimestampNanosecondArray,
};
use arrow::compute::{cast_with_options, CastOptions};
use arrow::datatypes::{
    DataType, Field, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use futures::{SinkExt, StreamExt};
use parquet::arrow::async_reader::ParquetRecordBatchStream;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use serde::Serialize;

use crate::contracts::{ColType, Contract};
use crate::error::{FlywheelError, Result};
use crate::storage::{Listed, ParquetReader, Root};

/// Name of the column that carries conversion problems of a row into validation.
pub const CONVERSION_ERRORS: &str = "_conversion_errors";
/// Name of the column that numbers the rows of an input (0, 1, ... across its files in listing
/// order): the row rules report rejected rows by number, and the number tells the file.
pub const ROW_NUMBER: &str = "_row";

#[derive(Debug, Clone, Serialize)]
pub struct InputFile {
    pub path: String,
    pub size: u64,
    pub last_modified: String,
    pub rows: u64,
}

/// The type a contract column has while it is being validated.
pub fn staging_type(ty: ColType) -> DataType {
    match ty {
        ColType::Int32 => DataType::Int64,
        ColType::Decimal(_, s) => DataType::Decimal128(38, s),
        other => other.arrow(),
    }
}

pub fn staging_schema(contract: &Contract) -> SchemaRef {
    let mut fields: Vec<Field> = contract
        .columns
        .iter()
        .map(|c| Field::new(&c.name, staging_type(c.ty), true))
        .collect();
    fields.push(Field::new(ROW_NUMBER, DataType::Int64, false));
    fields.push(Field::new(CONVERSION_ERRORS, DataType::Utf8, true));
    Arc::new(Schema::new(fields))
}

/// The Parquet files of input `table` below `root`, in path order (Hive-style folders included).
pub async fn input_files(root: &Root, table: &str) -> Result<Vec<crate::storage::Listed>> {
    Ok(root
        .list(table)
        .await?
        .into_iter()
        .filter(|l| l.path.ends_with(".parquet"))
        .collect())
}

/// The Parquet files of input `table`, or an error for people when there are none.
pub async fn require_files(root: &Root, table: &str) -> Result<Vec<Listed>> {
    let files = input_files(root, table).await?;
    if files.is_empty() {
        return Err(FlywheelError::input(
            table,
            None,
            format!("no *.parquet files under {}", root.display(table)),
            "export the table there (Hive-style key=value/ folders are fine)",
        ));
    }
    Ok(files)
}

/// The text of the `columns` (contract columns) of every file of one input, batch by batch, as
/// staging converts them (a value that does not convert is null, as in the staged row): the
/// first, narrow pass that finds duplicated keys without holding the input.
pub async fn for_each_key_batch(
    root: &Root,
    contract: &Contract,
    files: &[Listed],
    columns: &[String],
    mut each: impl FnMut(&[StringArray]) -> Result<()>,
) -> Result<()> {
    let keys = columns
        .iter()
        .map(|name| {
            let col = contract.columns.iter().find(|c| &c.name == name);
            col.map(|c| (name, c.ty))
                .ok_or_else(|| FlywheelError::internal(format!("no key column {name}")))
        })
        .collect::<Result<Vec<_>>>()?;
    for listed in files {
        let (mut stream, unreadable) = open_file(root, listed, contract, Some(columns)).await?;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| unreadable(&e))?;
            let mut problems = Problems(vec![None; batch.num_rows()]);
            let texts = keys
                .iter()
                .map(|&(name, ty)| {
                    let src = batch
                        .column_by_name(name)
                        .ok_or_else(|| FlywheelError::internal(format!("{name} not read")))?;
                    let staged = convert_column(src, ty, name, &mut problems)?;
                    let text = arrow::compute::cast(&staged, &DataType::Utf8)?;
                    Ok(text.as_string::<i32>().clone())
                })
                .collect::<Result<Vec<_>>>()?;
            each(&texts)?;
        }
    }
    Ok(())
}

/// Stream every file of one input in listing order, converted to the staging schema and with
/// the rows numbered across files, through a small channel (the reading and converting runs on
/// a tokio worker while the caller checks what came before). The task returns the files read.
pub fn stream_input(
    root: &Root,
    contract: &Contract,
    files: Vec<Listed>,
) -> (
    futures::channel::mpsc::Receiver<Result<RecordBatch>>,
    tokio::task::JoinHandle<Vec<InputFile>>,
) {
    let (mut tx, rx) = futures::channel::mpsc::channel(2);
    let (root, contract) = (root.clone(), contract.clone());
    let task = tokio::spawn(async move {
        let schema = staging_schema(&contract);
        let mut infos = Vec::new();
        let mut next_row = 0i64;
        for listed in files {
            let mut rows = 0u64;
            let sent = async {
                let (mut stream, unreadable) = open_file(&root, &listed, &contract, None).await?;
                while let Some(batch) = stream.next().await {
                    let batch = batch.map_err(|e| unreadable(&e))?;
                    let mut columns = convert_batch(&batch, &contract)?;
                    let n = batch.num_rows() as i64;
                    let numbers = Int64Array::from_iter_values(next_row..next_row + n);
                    columns.insert(contract.columns.len(), Arc::new(numbers));
                    next_row += n;
                    rows += n as u64;
                    let staged = RecordBatch::try_new(schema.clone(), columns)?;
                    if tx.send(Ok(staged)).await.is_err() {
                        break; // the caller stopped
                    }
                }
                Ok::<_, FlywheelError>(())
            }
            .await;
            if let Err(e) = sent {
                let _ = tx.send(Err(e)).await;
                break;
            }
            infos.push(InputFile {
                path: listed.path,
                size: listed.size,
                last_modified: listed.last_modified,
                rows,
            });
        }
        infos
    });
    (rx, task)
}

/// Which file of an input holds row number `row` (files in listing order, as loaded).
pub fn file_of_row(files: &[InputFile], row: i64) -> &str {
    let mut end = 0i64;
    for f in files {
        end += f.rows as i64;
        if row < end {
            return &f.path;
        }
    }
    files.last().map_or("", |f| f.path.as_str())
}

type Unreadable = Box<dyn Fn(&dyn std::fmt::Display) -> FlywheelError + Send + Sync>;

/// Open one input file: check its columns against the contract and stream its batches with the
/// contract columns only (or only `only` of them); also returns how to report a read failure.
async fn open_file(
    root: &Root,
    listed: &Listed,
    contract: &Contract,
    only: Option<&[String]>,
) -> Result<(ParquetRecordBatchStream<ParquetReader>, Unreadable)> {
    let table = contract.table.clone();
    let shown = root.display(&listed.path);
    let unreadable: Unreadable = {
        let (table, shown) = (table.clone(), shown.clone());
        Box::new(move |e: &dyn std::fmt::Display| {
            FlywheelError::input(
                &table,
                Some(shown.clone()),
                format!("not a readable Parquet file ({e})"),
                "re-export it",
            )
        })
    };
    let reader = root.parquet_reader(&listed.path, listed.size);
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| unreadable(&e))?;
    let file_schema = builder.schema().clone();
    let mut roots = Vec::new();
    for col in &contract.columns {
        let Some((idx, field)) = file_schema.column_with_name(&col.name) else {
            return Err(FlywheelError::input(
                &table,
                Some(shown),
                format!("has no column {} (expected {})", col.name, col.ty.name()),
                "every contract column must be present: add it (nullable columns may be all null)",
            ));
        };
        if !compatible(field.data_type(), col.ty) {
            return Err(FlywheelError::input(
                &table,
                Some(shown),
                format!(
                    "column {} has type {} but the contract expects {}",
                    col.name,
                    field.data_type(),
                    col.ty.name()
                ),
                "re-export it with a compatible type",
            ));
        }
        if only.is_none_or(|o| o.contains(&col.name)) {
            roots.push(idx);
        }
    }
    roots.sort_unstable();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let stream = builder
        .with_projection(mask)
        .with_batch_size(65_536)
        .build()
        .map_err(|e| unreadable(&e))?;
    Ok((stream, unreadable))
}

fn is_string(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => is_string(v),
        _ => false,
    }
}

fn is_integer(t: &DataType) -> bool {
    t.is_integer()
}

/// Which physical types load into which contract type (domain.md, Inputs).
pub fn compatible(found: &DataType, want: ColType) -> bool {
    match want {
        ColType::String => is_string(found),
        ColType::Int32 | ColType::Int64 => is_integer(found),
        ColType::Float64 => found.is_floating() || is_integer(found),
        ColType::Decimal(..) => {
            matches!(
                found,
                DataType::Decimal32(..)
                    | DataType::Decimal64(..)
                    | DataType::Decimal128(..)
                    | DataType::Decimal256(..)
            ) || is_integer(found)
                || found.is_floating()
        }
        ColType::Timestamp => matches!(found, DataType::Timestamp(..)),
        ColType::Date => matches!(found, DataType::Date32 | DataType::Date64),
        ColType::Boolean => matches!(found, DataType::Boolean),
    }
}

/// Per-row conversion problems, joined into one string per row.
struct Problems(Vec<Option<String>>);

impl Problems {
    fn add(&mut self, row: usize, msg: String) {
        match &mut self.0[row] {
            Some(s) => {
                s.push_str("; ");
                s.push_str(&msg);
            }
            slot @ None => *slot = Some(msg),
        }
    }
}

fn convert_batch(batch: &RecordBatch, contract: &Contract) -> Result<Vec<ArrayRef>> {
    let n = batch.num_rows();
    let mut problems = Problems(vec![None; n]);
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(contract.columns.len() + 2);
    for col in &contract.columns {
        let src = batch
            .column_by_name(&col.name)
            .expect("projected column present");
        let out = convert_column(src, col.ty, &col.name, &mut problems)?;
        columns.push(out);
    }
    let mut errs = StringBuilder::with_capacity(n, 0);
    for p in problems.0 {
        errs.append_option(p);
    }
    columns.push(Arc::new(errs.finish()));
    Ok(columns)
}

fn safe_cast(a: &ArrayRef, to: &DataType) -> Result<ArrayRef> {
    Ok(cast_with_options(
        a,
        to,
        &CastOptions {
            safe: true,
            ..Default::default()
        },
    )?)
}

/// Record a problem for every row that was non-null before a conversion and null after it.
fn lost_values(
    before: &ArrayRef,
    after: &ArrayRef,
    name: &str,
    problems: &mut Problems,
    what: &str,
) {
    if after.null_count() == before.null_count() {
        return;
    }
    for i in 0..before.len() {
        if before.is_valid(i) && after.is_null(i) {
            problems.add(i, format!("{name}: {what}"));
        }
    }
}

fn convert_column(
    src: &ArrayRef,
    ty: ColType,
    name: &str,
    problems: &mut Problems,
) -> Result<ArrayRef> {
    match ty {
        ColType::String => safe_cast(src, &DataType::Utf8),
        ColType::Boolean => Ok(src.clone()),
        ColType::Date => safe_cast(src, &DataType::Date32),
        ColType::Int32 | ColType::Int64 | ColType::Float64 => {
            let to = staging_type(ty);
            let out = safe_cast(src, &to)?;
            lost_values(
                src,
                &out,
                name,
                problems,
                "value does not fit the contract's integer type",
            );
            Ok(out)
        }
        ColType::Timestamp => Ok(Arc::new(timestamps_to_utc_nanos(src, name, problems))),
        ColType::Decimal(precision, scale) => {
            Ok(Arc::new(to_decimal(src, precision, scale, name, problems)?))
        }
    }
}

/// Any timestamp unit, naive (taken as UTC), UTC or another zone, as UTC nanoseconds. Arrow
/// stores zoned timestamps as UTC instants already, so the values only change unit.
fn timestamps_to_utc_nanos(
    src: &ArrayRef,
    name: &str,
    problems: &mut Problems,
) -> TimestampNanosecondArray {
    let DataType::Timestamp(unit, _) = src.data_type() else {
        unreachable!("checked by compatible()")
    };
    if *unit == TimeUnit::Nanosecond {
        // Already nanoseconds: only the zone label changes, the buffer is shared.
        return src
            .as_primitive::<TimestampNanosecondType>()
            .clone()
            .with_timezone("UTC");
    }
    let (values, factor): (Vec<Option<i64>>, i64) = match unit {
        TimeUnit::Second => (
            src.as_primitive::<TimestampSecondType>().iter().collect(),
            1_000_000_000,
        ),
        TimeUnit::Millisecond => (
            src.as_primitive::<TimestampMillisecondType>()
                .iter()
                .collect(),
            1_000_000,
        ),
        TimeUnit::Microsecond => (
            src.as_primitive::<TimestampMicrosecondType>()
                .iter()
                .collect(),
            1_000,
        ),
        TimeUnit::Nanosecond => (
            src.as_primitive::<TimestampNanosecondType>()
                .iter()
                .collect(),
            1,
        ),
    };
    let out: TimestampNanosecondArray = values
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            v.and_then(|v| {
                let r = v.checked_mul(factor);
                if r.is_none() {
                    problems.add(
                        i,
                        format!("{name}: timestamp out of range (years 1677-2262)"),
                    );
                }
                r
            })
        })
        .collect();
    out.with_timezone("UTC")
}

/// Money: decimals and integers that convert without loss, floats rounded to cents (halves away
/// from zero, on the float's shortest decimal representation, so 2.675 is 2.68).
fn to_decimal(
    src: &ArrayRef,
    precision: u8,
    scale: i8,
    name: &str,
    problems: &mut Problems,
) -> Result<Decimal128Array> {
    let limit = 10i128.pow(precision as u32);
    let mut out: Vec<Option<i128>> = Vec::with_capacity(src.len());
    match src.data_type() {
        DataType::Float16 | DataType::Float32 | DataType::Float64 => {
            let f = safe_cast(src, &DataType::Float64)?;
            for (i, v) in f
                .as_primitive::<arrow::datatypes::Float64Type>()
                .iter()
                .enumerate()
            {
                out.push(v.and_then(|x| {
                    let r = round_float(x, scale);
                    if r.is_none() {
                        problems.add(i, format!("{name}: {x} is not a finite amount"));
                    }
                    r
                }));
            }
        }
        DataType::Decimal32(_, s)
        | DataType::Decimal64(_, s)
        | DataType::Decimal128(_, s)
        | DataType::Decimal256(_, s) => {
            let s = *s;
            let wide = safe_cast(src, &DataType::Decimal128(38, s))?;
            lost_values(src, &wide, name, problems, "amount too large");
            for (i, v) in wide
                .as_primitive::<arrow::datatypes::Decimal128Type>()
                .iter()
                .enumerate()
            {
                out.push(v.and_then(|x| {
                    let r = rescale(x, s, scale);
                    if r.is_none() {
                        problems.add(
                            i,
                            format!("{name}: amount has more than {scale} decimal places"),
                        );
                    }
                    r
                }));
            }
        }
        _ => {
            let ints = safe_cast(src, &DataType::Int64)?;
            lost_values(src, &ints, name, problems, "amount too large");
            let ints: &Int64Array = ints.as_primitive();
            for v in ints.iter() {
                out.push(v.map(|x| x as i128 * 10i128.pow(scale as u32)));
            }
        }
    }
    for (i, v) in out.iter_mut().enumerate() {
        if let Some(x) = *v {
            if x.abs() >= limit {
                problems.add(
                    i,
                    format!("{name}: amount exceeds decimal({precision},{scale})"),
                );
                *v = None;
            }
        }
    }
    Ok(Decimal128Array::from(out).with_precision_and_scale(38, scale)?)
}

fn rescale(x: i128, from: i8, to: i8) -> Option<i128> {
    if from <= to {
        x.checked_mul(10i128.pow((to - from) as u32))
    } else {
        let d = 10i128.pow((from - to) as u32);
        (x % d == 0).then_some(x / d)
    }
}

/// Round a float to `scale` decimals, halves away from zero, on its shortest representation.
pub fn round_float(x: f64, scale: i8) -> Option<i128> {
    if !x.is_finite() {
        return None;
    }
    let text = format!("{:e}", x); // shortest round-trip digits, e.g. "2.675e0"
    let (mantissa, exp) = text.split_once('e')?;
    let exp: i32 = exp.parse().ok()?;
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    // value = 0.d1d2d3... × 10^(exp+1); we want round(value × 10^scale).
    let point = exp + 1 + scale as i32; // digits before the decimal point after scaling
    let (int_part, rest): (String, String) = if point <= 0 {
        (String::new(), "0".repeat((-point) as usize) + &digits)
    } else if point as usize >= digits.len() {
        (
            digits.clone() + &"0".repeat(point as usize - digits.len()),
            String::new(),
        )
    } else {
        (
            digits[..point as usize].to_string(),
            digits[point as usize..].to_string(),
        )
    };
    if int_part.len() > 36 {
        return None;
    }
    let mut v: i128 = if int_part.is_empty() {
        0
    } else {
        int_part.parse().ok()?
    };
    if rest.as_bytes().first().is_some_and(|c| *c >= b'5') {
        v += 1;
    }
    Some(if negative { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::round_float;

    #[test]
    fn floats_round_to_cents_half_away_from_zero() {
        assert_eq!(round_float(2.675, 2), Some(268));
        assert_eq!(round_float(-2.675, 2), Some(-268));
        assert_eq!(round_float(0.125, 2), Some(13));
        assert_eq!(round_float(0.124999, 2), Some(12));
        assert_eq!(round_float(1234.5, 2), Some(123450));
        assert_eq!(round_float(0.0, 2), Some(0));
        assert_eq!(round_float(1e-9, 2), Some(0));
        assert_eq!(round_float(0.005, 2), Some(1));
        assert_eq!(round_float(f64::NAN, 2), None);
    }
}
