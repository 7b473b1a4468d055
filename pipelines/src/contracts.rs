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

/// The contracts compiled into the binary, by table name.
const CONTRACT_FILES: &[(&str, &str)] = &[
    (
        "crm_customers",
        include_str!("../../data-contracts/crm_customers.odcs.yaml"),
    ),
    (
        "visits",
        include_str!("../../data-contracts/visits.odcs.yaml"),
    ),
    (
        "nps_responses",
        include_str!("../../data-contracts/nps_responses.odcs.yaml"),
    ),
    (
        "referral_events",
        include_str!("../../data-contracts/referral_events.odcs.yaml"),
    ),
    (
        "referral_attribution",
        include_str!("../../data-contracts/referral_attribution.odcs.yaml"),
    ),
    (
        "customer_features",
        include_str!("../../data-contracts/customer_features.odcs.yaml"),
    ),
    (
        "rejects",
        include_str!("../../data-contracts/rejects.odcs.yaml"),
    ),
    (
        "referral_kpis",
        include_str!("../../data-contracts/referral_kpis.odcs.yaml"),
    ),
    (
        "lifecycle_health",
        include_str!("../../data-contracts/lifecycle_health.odcs.yaml"),
    ),
    (
        "lifecycle_diagnosis",
        include_str!("../../data-contracts/lifecycle_diagnosis.odcs.yaml"),
    ),
    (
        "channel_funnel",
        include_str!("../../data-contracts/channel_funnel.odcs.yaml"),
    ),
    (
        "referrer_rewards",
        include_str!("../../data-contracts/referrer_rewards.odcs.yaml"),
    ),
    (
        "referred_vs_other",
        include_str!("../../data-contracts/referred_vs_other.odcs.yaml"),
    ),
    (
        "customer_scores",
        include_str!("../../data-contracts/customer_scores.odcs.yaml"),
    ),
    (
        "ambassador_candidates",
        include_str!("../../data-contracts/ambassador_candidates.odcs.yaml"),
    ),
    (
        "churn_alerts",
        include_str!("../../data-contracts/churn_alerts.odcs.yaml"),
    ),
];

/// The inputs, in the order they are validated (the CRM first: visits and answers refer to it).
pub const INPUTS: [&str; 4] = [
    "crm_customers",
    "visits",
    "nps_responses",
    "referral_events",
];

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
    fn parse(s: &str) -> Option<ColType> {
        let s = s.trim().to_ascii_lowercase();
        Some(match s.as_str() {
            "string" => ColType::String,
            "int32" => ColType::Int32,
            "int64" => ColType::Int64,
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
            ColType::Int32 => "int32".into(),
            ColType::Int64 => "int64".into(),
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

/// A predicate over one row that must hold (ODCS `quality` of type `custom`, engine `flywheel`).
#[derive(Debug, Clone)]
pub struct RowRule {
    pub name: String,
    pub predicate: String,
}

#[derive(Debug, Clone)]
pub struct Contract {
    pub table: String,
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
    /// types, no nulls in required columns, no duplicates in unique columns.
    pub fn check_output(&self, batches: &[RecordBatch], schema: &Schema) -> Result<()> {
        let fail =
            |msg: String| FlywheelError::Internal(format!("output table {}: {msg}", self.table));
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let expected: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
        if names != expected {
            return Err(fail(format!(
                "columns {names:?} differ from the contract's {expected:?}"
            )));
        }
        for (field, col) in schema.fields().iter().zip(&self.columns) {
            if field.data_type() != &col.ty.arrow() {
                return Err(fail(format!(
                    "column {} is {} but the contract says {}",
                    col.name,
                    field.data_type(),
                    col.ty.name()
                )));
            }
        }
        for (i, col) in self.columns.iter().enumerate() {
            if col.required {
                let nulls: usize = batches.iter().map(|b| b.column(i).null_count()).sum();
                if nulls > 0 {
                    return Err(fail(format!(
                        "required column {} has {nulls} null values",
                        col.name
                    )));
                }
            }
            if col.unique {
                let text = crate::keys::text_column(batches, &col.name)?;
                let repeated = crate::keys::duplicated(&text, 2)?;
                if let Some(v) = repeated.iter().min() {
                    return Err(fail(format!("unique column {} repeats {v:?}", col.name)));
                }
            }
        }
        Ok(())
    }
}

/// Load a contract by table name.
pub fn contract(table: &str) -> Result<Contract> {
    let (_, text) = CONTRACT_FILES
        .iter()
        .find(|(name, _)| *name == table)
        .ok_or_else(|| FlywheelError::internal(format!("no data contract for table {table}")))?;
    parse_contract(table, text)
}

/// All contract texts, for tests and `flywheel contracts`.
pub fn contract_texts() -> &'static [(&'static str, &'static str)] {
    CONTRACT_FILES
}

#[derive(Deserialize)]
struct Odcs {
    #[serde(rename = "apiVersion")]
    api_version: String,
    schema: Vec<OdcsObject>,
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
    engine: Option<String>,
    #[serde(default)]
    implementation: Option<String>,
}

pub fn parse_contract(table: &str, text: &str) -> Result<Contract> {
    let bad = |m: String| FlywheelError::internal(format!("data-contracts/{table}.odcs.yaml: {m}"));
    let odcs: Odcs = serde_yaml::from_str(text).map_err(|e| bad(e.to_string()))?;
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
    let row_rules = obj
        .quality
        .into_iter()
        .filter(|q| q.kind.as_deref() == Some("custom") && q.engine.as_deref() == Some("flywheel"))
        .filter_map(|q| {
            Some(RowRule {
                name: q.name?,
                predicate: q.implementation?,
            })
        })
        .collect();
    Ok(Contract {
        table: table.to_string(),
        columns,
        row_rules,
    })
}
