//! Data contracts: the ODCS v3 YAML files in `data-contracts/` are the source of truth for every
//! input and output schema. This module parses the subset flywheel enforces (column names,
//! physical types, required, unique, enumerations, ranges, foreign keys, row predicates) and checks
//! output tables against them before they are published.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;

use crate::error::{FlywheelError, Result};

pub mod keys;

// The contracts compiled into the binary: every `data-contracts/*.odcs.yaml`, found by
// `pipelines/build.rs` (`CONTRACT_FILES`, by table name).
include!(concat!(env!("OUT_DIR"), "/contract_files.rs"));

/// The inputs, in the order their contracts give (`flywheelValidationOrder`: the CRM first, since
/// visits and answers refer to its accepted rows).
pub fn inputs() -> &'static [&'static str] {
    static INPUTS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    INPUTS.get_or_init(|| {
        let mut found: Vec<(i64, &'static str)> = CONTRACT_FILES
            .iter()
            .filter_map(|(name, text)| match parse_contract(name, text).ok()?.role {
                Role::Input { order } => Some((order, *name)),
                Role::Published(_) => None,
            })
            .collect();
        found.sort();
        found.into_iter().map(|(_, name)| name).collect()
    })
}

/// Every published table's contract, by name.
pub fn published() -> Result<Vec<Contract>> {
    let mut out = Vec::new();
    for (name, text) in CONTRACT_FILES {
        let c = parse_contract(name, text)?;
        if matches!(c.role, Role::Published(_)) {
            out.push(c);
        }
    }
    Ok(out)
}

/// What a contract says about its table's place in the pipeline (ODCS `customProperties`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// An export the run reads; validated in ascending `order`.
    Input {
        order: i64,
    },
    Published(Publication),
}

/// Where and how a published table is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// `sql` (built by `sql/<table>.sql`) or the Rust step that builds it (`scoring`, `ingest`).
    pub producer: String,
    /// Folder below the output root; `{input}` stands for each input's name (rejects).
    pub folder: String,
    /// The Hive-style partition key of the folder (`dt`: the run date).
    pub partition: String,
    /// Also published as `<table>.csv` for the CRM (the lists).
    pub crm_csv: bool,
    /// For a list: the configuration key of its cooldown in days.
    pub cooldown_setting: Option<String>,
}

impl Publication {
    /// The folder of the table's partition for run date `date` (`{input}` filled with `input`).
    pub fn folder_for(&self, input: &str, date: impl std::fmt::Display) -> String {
        format!(
            "{}/{}={date}",
            self.folder.replace("{input}", input),
            self.partition
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    String,
    Int32,
    Int64,
    Float64,
    /// decimal(precision, scale)
    Decimal(u8, i8),
    /// An instant, stored as nanoseconds since the epoch, UTC.
    Timestamp,
    Date,
    Boolean,
}

impl ColType {
    pub fn parse(s: &str) -> Option<ColType> {
        let s = s.trim().to_ascii_lowercase();
        Some(match s.as_str() {
            "string" => ColType::String,
            // The SQL names (what the contracts use, and SQL engines and datacontract-cli know)
            // and the Arrow/Parquet names.
            "integer" | "int" | "int32" => ColType::Int32,
            "bigint" | "long" | "int64" => ColType::Int64,
            "double" | "float64" => ColType::Float64,
            "timestamp" => ColType::Timestamp,
            "date" => ColType::Date,
            "boolean" => ColType::Boolean,
            _ => {
                let inner = s.strip_prefix("decimal(")?.strip_suffix(')')?;
                let (p, sc) = inner.split_once(',')?;
                ColType::Decimal(p.trim().parse().ok()?, sc.trim().parse().ok()?)
            }
        })
    }

    /// The Arrow type flywheel uses for this column in memory and in its outputs.
    pub fn arrow(&self) -> DataType {
        match self {
            ColType::String => DataType::Utf8,
            ColType::Int32 => DataType::Int32,
            ColType::Int64 => DataType::Int64,
            ColType::Float64 => DataType::Float64,
            ColType::Decimal(p, s) => DataType::Decimal128(*p, *s),
            ColType::Timestamp => DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            ColType::Date => DataType::Date32,
            ColType::Boolean => DataType::Boolean,
        }
    }

    pub fn name(&self) -> String {
        match self {
            ColType::String => "string".into(),
            ColType::Int32 => "integer".into(),
            ColType::Int64 => "bigint".into(),
            ColType::Float64 => "double".into(),
            ColType::Decimal(p, s) => format!("decimal({p},{s})"),
            ColType::Timestamp => "timestamp (UTC)".into(),
            ColType::Date => "date".into(),
            ColType::Boolean => "boolean".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub ty: ColType,
    pub required: bool,
    pub unique: bool,
    pub valid_values: Option<Vec<String>>,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    /// `table.column` this column must exist in.
    pub references: Option<(String, String)>,
}

/// A predicate over one row that must hold: an ODCS `quality` check of `type: sql` on the table,
/// written `SELECT COUNT(*) FROM <table> WHERE NOT (<predicate>)` with `mustBe: 0`, so that
/// datacontract-cli runs it as it is and flywheel applies `<predicate>` row by row (a null
/// predicate holds, as in SQL's WHERE).
#[derive(Debug, Clone)]
pub struct RowRule {
    pub name: String,
    pub predicate: String,
}

#[derive(Debug, Clone)]
pub struct Contract {
    pub table: String,
    pub role: Role,
    pub columns: Vec<Column>,
    pub row_rules: Vec<RowRule>,
}

impl Contract {
    pub fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(&c.name, c.ty.arrow(), !c.required))
                .collect::<Vec<_>>(),
        ))
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Check a finished output table before it is published: exact column names, order and
    /// types, no nulls in required columns, no duplicates in unique columns, only listed values
    /// in enumerations (`invalidValues`), values within `minimum`/`maximum`. Row rules (SQL
    /// predicates) need the query engine: publishing checks them (`check_row_rules`). For a
    /// table held in memory; [`Contract::output_check`] checks one streamed batch by batch.
    pub fn check_output(&self, batches: &[RecordBatch], schema: &Schema) -> Result<()> {
        let mut check = self.output_check(schema)?;
        for b in batches {
            check.add(b)?;
        }
        for (column, mut values) in check.finish()? {
            keys::text_column(batches, &column)?
                .iter()
                .for_each(|c| values.add(c));
            self.no_repeats(&column, values)?;
        }
        Ok(())
    }

    /// The checks of [`Contract::check_output`] for a table read batch by batch: the schema now,
    /// then each batch ([`OutputCheck::add`]), then the totals ([`OutputCheck::finish`]).
    pub fn output_check(&self, schema: &Schema) -> Result<OutputCheck<'_>> {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let expected: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
        if names != expected {
            return Err(self.broken(format!(
                "columns {names:?} differ from the contract's {expected:?}"
            )));
        }
        for (field, col) in schema.fields().iter().zip(&self.columns) {
            if field.data_type() != &col.ty.arrow() {
                return Err(self.broken(format!(
                    "column {} is {} but the contract says {}",
                    col.name,
                    field.data_type(),
                    col.ty.name()
                )));
            }
        }
        let n = self.columns.len();
        Ok(OutputCheck {
            contract: self,
            nulls: vec![0; n],
            hashes: (0..n).map(|_| keys::KeyHashes::default()).collect(),
            ranges: vec![(None, None); n],
        })
    }

    /// The second pass over a unique column whose hashes repeated: an error if a value does.
    pub fn no_repeats(&self, column: &str, values: keys::RepeatedValues) -> Result<()> {
        match values.duplicated().iter().min() {
            Some(v) => Err(self.broken(format!("unique column {column} repeats {v:?}"))),
            None => Ok(()),
        }
    }

    fn broken(&self, msg: String) -> FlywheelError {
        FlywheelError::Internal(format!("output table {}: {msg}", self.table))
    }
}

/// An output table's contract checks, batch by batch.
pub struct OutputCheck<'c> {
    contract: &'c Contract,
    nulls: Vec<usize>,
    hashes: Vec<keys::KeyHashes>,
    ranges: Vec<(Option<f64>, Option<f64>)>,
}

impl OutputCheck<'_> {
    /// Check one batch (enumerations at once; nulls, ranges and keys counted for `finish`).
    pub fn add(&mut self, b: &RecordBatch) -> Result<()> {
        let batch = std::slice::from_ref(b);
        for (i, col) in self.contract.columns.iter().enumerate() {
            self.nulls[i] += b.column(i).null_count();
            if col.unique {
                keys::text_column(batch, &col.name)?
                    .iter()
                    .for_each(|c| self.hashes[i].add(c));
            }
            if let Some(valid) = &col.valid_values {
                let text = keys::text_column(batch, &col.name)?;
                let bad = text
                    .iter()
                    .flat_map(|a| a.iter().flatten())
                    .find(|v| !valid.iter().any(|ok| ok == v));
                if let Some(v) = bad {
                    return Err(self.contract.broken(format!(
                        "column {} holds {v:?}, which is not one of {}",
                        col.name,
                        valid.join(", ")
                    )));
                }
            }
            if col.minimum.is_some() || col.maximum.is_some() {
                let (lo, hi) = numeric_range(batch, i)?;
                let (l, h) = &mut self.ranges[i];
                *l = lo.map(|v| l.map_or(v, |l| l.min(v))).or(*l);
                *h = hi.map(|v| h.map_or(v, |h| h.max(v))).or(*h);
            }
        }
        Ok(())
    }

    /// The checks over all batches; returns the unique columns whose value hashes repeat, each
    /// with the counter the caller feeds the column again before [`Contract::no_repeats`].
    pub fn finish(self) -> Result<Vec<(String, keys::RepeatedValues)>> {
        let c = self.contract;
        let mut second = Vec::new();
        for (i, (col, hashes)) in c.columns.iter().zip(self.hashes).enumerate() {
            if col.required && self.nulls[i] > 0 {
                return Err(c.broken(format!(
                    "required column {} has {} null values",
                    col.name, self.nulls[i]
                )));
            }
            if col.unique {
                let values = keys::RepeatedValues::new(hashes.repeated());
                if !values.is_empty() {
                    second.push((col.name.clone(), values));
                }
            }
            let (lo, hi) = self.ranges[i];
            if let (Some(min), Some(lo)) = (col.minimum, lo) {
                if lo < min {
                    return Err(c.broken(format!(
                        "column {} holds {lo}, below the minimum {min}",
                        col.name
                    )));
                }
            }
            if let (Some(max), Some(hi)) = (col.maximum, hi) {
                if hi > max {
                    return Err(c.broken(format!(
                        "column {} holds {hi}, above the maximum {max}",
                        col.name
                    )));
                }
            }
        }
        Ok(second)
    }
}

/// The smallest and largest non-null value of column `i` as f64 (None when all are null).
fn numeric_range(batches: &[RecordBatch], i: usize) -> Result<(Option<f64>, Option<f64>)> {
    let (mut lo, mut hi): (Option<f64>, Option<f64>) = (None, None);
    for b in batches {
        let values = arrow::compute::cast(b.column(i), &DataType::Float64)?;
        let values = values
            .as_any()
            .downcast_ref::<arrow::array::Float64Array>()
            .ok_or_else(|| FlywheelError::internal("a cast to Float64 gave another type"))?;
        for v in values.iter().flatten() {
            lo = Some(lo.map_or(v, |l: f64| l.min(v)));
            hi = Some(hi.map_or(v, |h: f64| h.max(v)));
        }
    }
    Ok((lo, hi))
}

/// Load a contract by table name.
pub fn contract(table: &str) -> Result<Contract> {
    let (_, text) = CONTRACT_FILES
        .iter()
        .find(|(name, _)| *name == table)
        .ok_or_else(|| FlywheelError::internal(format!("no data contract for table {table}")))?;
    parse_contract(table, text)
}

/// Where and how a published table is written (an error for a table that is not published).
pub fn publication(table: &str) -> Result<Publication> {
    match contract(table)?.role {
        Role::Published(p) => Ok(p),
        _ => Err(FlywheelError::internal(format!("{table} is not published"))),
    }
}

/// The published lists with a cooldown (the CRM lists), by table name.
pub fn cooldown_lists() -> Result<Vec<(String, Publication)>> {
    Ok(published()?
        .into_iter()
        .filter_map(|c| match c.role {
            Role::Published(p) if p.cooldown_setting.is_some() => Some((c.table, p)),
            _ => None,
        })
        .collect())
}

/// Every contract's text by table name (for tests and tools).
pub fn contract_texts() -> &'static [(&'static str, &'static str)] {
    CONTRACT_FILES
}

#[derive(Deserialize)]
struct Odcs {
    #[serde(rename = "apiVersion")]
    api_version: String,
    #[serde(rename = "customProperties", default)]
    custom: Vec<OdcsCustomProperty>,
    schema: Vec<OdcsObject>,
}

#[derive(Deserialize)]
struct OdcsCustomProperty {
    property: String,
    value: serde_yaml::Value,
}

/// The table's role from the contract's `flywheel*` custom properties.
fn role(custom: &[OdcsCustomProperty], bad: &dyn Fn(String) -> FlywheelError) -> Result<Role> {
    let get = |key: &str| custom.iter().find(|p| p.property == key).map(|p| &p.value);
    let text = |key: &str| -> Result<String> {
        get(key)
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| bad(format!("customProperties needs a text {key}")))
    };
    match text("flywheelRole")?.as_str() {
        "input" => Ok(Role::Input {
            order: get("flywheelValidationOrder")
                .and_then(|v| v.as_i64())
                .ok_or_else(|| bad("an input needs an integer flywheelValidationOrder".into()))?,
        }),
        "published" => Ok(Role::Published(Publication {
            producer: text("flywheelProducer")?,
            folder: text("flywheelFolder")?,
            partition: text("flywheelPartition")?,
            crm_csv: get("flywheelCrmExport").and_then(|v| v.as_str()) == Some("csv"),
            cooldown_setting: text("flywheelCooldownSetting").ok(),
        })),
        other => Err(bad(format!(
            "flywheelRole {other:?} is neither input nor published"
        ))),
    }
}

#[derive(Deserialize)]
struct OdcsObject {
    name: String,
    #[serde(default)]
    properties: Vec<OdcsProperty>,
    #[serde(default)]
    quality: Vec<OdcsQuality>,
}

#[derive(Deserialize)]
struct OdcsProperty {
    name: String,
    #[serde(rename = "physicalType")]
    physical_type: String,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    unique: bool,
    #[serde(rename = "logicalTypeOptions", default)]
    options: BTreeMap<String, serde_yaml::Value>,
    #[serde(default)]
    relationships: Vec<OdcsRelationship>,
    #[serde(default)]
    quality: Vec<OdcsQuality>,
}

#[derive(Deserialize)]
struct OdcsRelationship {
    to: String,
}

#[derive(Deserialize)]
struct OdcsQuality {
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    metric: Option<String>,
    #[serde(default)]
    arguments: BTreeMap<String, serde_yaml::Value>,
    #[serde(default)]
    query: Option<String>,
    #[serde(rename = "mustBe", default)]
    must_be: Option<serde_yaml::Value>,
}

/// The predicate of a row rule's query, `SELECT COUNT(*) FROM <table> WHERE NOT (<predicate>)`.
fn row_rule_predicate(table: &str, query: &str) -> Option<String> {
    let query = query.trim();
    let head = format!("SELECT COUNT(*) FROM {table} WHERE NOT (");
    let rest = query
        .get(..head.len())?
        .eq_ignore_ascii_case(&head)
        .then(|| &query[head.len()..])?;
    Some(rest.strip_suffix(')')?.trim().to_string())
}

pub fn parse_contract(table: &str, text: &str) -> Result<Contract> {
    let bad = |m: String| FlywheelError::internal(format!("data-contracts/{table}.odcs.yaml: {m}"));
    let odcs: Odcs = serde_yaml::from_str(text).map_err(|e| bad(e.to_string()))?;
    let role = role(&odcs.custom, &bad)?;
    if !odcs.api_version.starts_with("v3") {
        return Err(bad(format!(
            "apiVersion {} is not ODCS v3",
            odcs.api_version
        )));
    }
    let obj = odcs
        .schema
        .into_iter()
        .find(|o| o.name == table)
        .ok_or_else(|| bad(format!("no schema object named {table}")))?;
    let mut columns = Vec::new();
    for p in obj.properties {
        let ty = ColType::parse(&p.physical_type).ok_or_else(|| {
            bad(format!(
                "column {}: unknown physicalType {}",
                p.name, p.physical_type
            ))
        })?;
        let num = |k: &str| p.options.get(k).and_then(|v| v.as_f64());
        let mut valid_values = None;
        for q in &p.quality {
            if q.metric.as_deref() == Some("invalidValues") {
                if let Some(serde_yaml::Value::Sequence(vals)) = q.arguments.get("validValues") {
                    valid_values = Some(
                        vals.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect(),
                    );
                }
            }
        }
        let references = p.relationships.first().and_then(|r| {
            r.to.split_once('.')
                .map(|(t, c)| (t.to_string(), c.to_string()))
        });
        columns.push(Column {
            name: p.name,
            ty,
            required: p.required,
            unique: p.unique,
            valid_values,
            minimum: num("minimum"),
            maximum: num("maximum"),
            references,
        });
    }
    let mut row_rules = Vec::new();
    for q in obj.quality {
        if q.kind.as_deref() != Some("sql") {
            continue;
        }
        let name = q.name.unwrap_or_default();
        let predicate = q
            .query
            .as_deref()
            .and_then(|query| row_rule_predicate(table, query))
            .filter(|_| q.must_be.as_ref().and_then(|v| v.as_i64()) == Some(0))
            .ok_or_else(|| {
                bad(format!(
                    "sql quality check {name:?} must read `query: \"SELECT COUNT(*) FROM {table} WHERE NOT (<predicate>)\"` with `mustBe: 0`"
                ))
            })?;
        row_rules.push(RowRule { name, predicate });
    }
    Ok(Contract {
        table: table.to_string(),
        role,
        columns,
        row_rules,
    })
}
