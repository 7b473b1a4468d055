//! Publishing: gather every published table the contracts name (`outputs`), check each against
//! its whole output contract (`check`), encode and stage them with the report (`stage`, into a
//! `publisher::Publisher`), then commit them with the manifest through a journal (`commit`):
//! crash-safe, every table whole in its old or new version at any instant, a completion marker
//! last. `lock` keeps one run per date, `ledger` records every run, `earlier` reads back the
//! lists of earlier run dates for the cooldowns.

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use bytes::Bytes;
use datafusion::prelude::SessionContext;

use crate::contracts::{self, Contract, Publication, Role};
use crate::engine::{encode, RunDate, Table};
use crate::error::{FlywheelError, Result};

pub mod commit;
pub mod earlier;
pub mod ledger;
pub mod lock;
pub mod manifest;
pub mod publisher;

pub use manifest::{Manifest, PublishedTable};
pub use publisher::{PublishedFile, Publisher};

/// One table to publish: its name (`rejects/<input>` for rejects), the folder of its partition,
/// its contract and its rows.
pub struct Output {
    pub name: String,
    pub folder: String,
    pub contract: Contract,
    pub publication: Publication,
    pub table: Table,
}

/// Every published table of the run, in contract order: one per contract whose role is
/// `published` (one per input for a `{input}` folder, i.e. the rejects). `tables` holds the SQL
/// and scoring results by name; `rejects` the quarantined rows per input.
pub fn outputs(
    tables: &BTreeMap<String, Table>,
    rejects: &BTreeMap<String, Vec<RecordBatch>>,
    date: &RunDate,
) -> Result<Vec<Output>> {
    let mut out = Vec::new();
    for contract in contracts::published()? {
        let Role::Published(publication) = contract.role.clone() else {
            continue;
        };
        if publication.folder.contains("{input}") {
            let schema = contract.schema();
            for (input, batches) in rejects {
                let batches = batches
                    .iter()
                    .map(|b| RecordBatch::try_new(schema.clone(), b.columns().to_vec()))
                    .collect::<std::result::Result<_, _>>()?;
                out.push(Output {
                    name: format!("{}/{input}", contract.table),
                    folder: publication.folder_for(input, date),
                    contract: contract.clone(),
                    publication: publication.clone(),
                    table: Table {
                        schema: schema.clone(),
                        batches,
                    },
                });
            }
            continue;
        }
        let table = tables.get(&contract.table).cloned().ok_or_else(|| {
            FlywheelError::internal(format!(
                "published table {} was not computed",
                contract.table
            ))
        })?;
        out.push(Output {
            name: contract.table.clone(),
            folder: publication.folder_for("", date),
            contract,
            publication,
            table,
        });
    }
    Ok(out)
}

/// Check every output against its whole contract: the column checks of
/// [`Contract::check_output`], then each row rule (a SQL predicate) over the table's rows.
pub async fn check(ctx: &SessionContext, outputs: &[Output]) -> Result<()> {
    for o in outputs {
        o.contract.check_output(&o.table.batches, &o.table.schema)?;
        if o.contract.row_rules.is_empty() {
            continue;
        }
        let name = "_output_under_check";
        o.table.register(ctx, name)?;
        for rule in &o.contract.row_rules {
            let broken = count_broken(ctx, name, &rule.predicate).await?;
            if broken > 0 {
                ctx.deregister_table(name)?;
                return Err(FlywheelError::Internal(format!(
                    "output table {}: {broken} rows break rule {} ({})",
                    o.name, rule.name, rule.predicate
                )));
            }
        }
        ctx.deregister_table(name)?;
    }
    Ok(())
}

/// Rows of `table` for which `predicate` is false (null counts as holding, as in the row rules).
async fn count_broken(ctx: &SessionContext, table: &str, predicate: &str) -> Result<usize> {
    let df = ctx
        .sql(&format!(
            "SELECT * FROM {table} WHERE COALESCE(NOT ({predicate}), FALSE)"
        ))
        .await?;
    Ok(df.count().await?)
}

/// A table as its Parquet files hold it, so that every common reader (pandas, pyarrow, polars,
/// DuckDB, Spark) reads the folder with partition discovery: the partition column (`dt`) is left
/// out (the `dt=D` folder carries it; a `date` inside the files would clash with the type the
/// readers infer from the folder), and instants are microseconds, UTC (Spark and Hive do not
/// read nanosecond timestamps; flywheel's own instants have no finer part than the inputs').
pub fn file_layout(table: &Table, partition: &str) -> Result<Table> {
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    let micros = |f: &Field| match f.data_type() {
        DataType::Timestamp(TimeUnit::Nanosecond, tz) => {
            Some(DataType::Timestamp(TimeUnit::Microsecond, tz.clone()))
        }
        _ => None,
    };
    let keep: Vec<usize> = (0..table.schema.fields().len())
        .filter(|&i| table.schema.field(i).name() != partition)
        .collect();
    let fields: Vec<Field> = keep
        .iter()
        .map(|&i| {
            let f = table.schema.field(i);
            match micros(f) {
                Some(t) => f.clone().with_data_type(t),
                None => f.clone(),
            }
        })
        .collect();
    let schema = std::sync::Arc::new(Schema::new(fields));
    let mut batches = Vec::with_capacity(table.batches.len());
    for b in &table.batches {
        let mut columns = Vec::with_capacity(keep.len());
        for (&i, f) in keep.iter().zip(schema.fields()) {
            let c = b.column(i);
            columns.push(if c.data_type() == f.data_type() {
                c.clone()
            } else {
                arrow::compute::cast(c, f.data_type())?
            });
        }
        batches.push(RecordBatch::try_new(schema.clone(), columns)?);
    }
    Ok(Table { schema, batches })
}

/// Encode and stage `outputs` and the report (nothing published is touched). Returns the
/// tables for the manifest.
pub async fn stage(
    publisher: &mut Publisher,
    outputs: &[Output],
    (report_folder, report): (String, Bytes),
    partitions: usize,
) -> Result<Vec<PublishedTable>> {
    // What analysts read: the files without the partition column, instants in microseconds.
    let files: Vec<Table> = outputs
        .iter()
        .map(|o| file_layout(&o.table, &o.publication.partition))
        .collect::<Result<_>>()?;
    // Parquet encoding is the CPU-heavy part: spread the tables over the partitions' threads.
    let encoded = encode::parquet_bytes_parallel(
        files
            .iter()
            .map(|t| (&t.schema, t.batches.as_slice()))
            .collect(),
        partitions,
    )?;
    let mut published = Vec::new();
    for (o, bytes) in outputs.iter().zip(encoded) {
        let rows = o.table.rows();
        publisher
            .stage(&o.folder, "part-00000.parquet", bytes, Some(rows))
            .await?;
        if o.publication.crm_csv {
            // The CRM file keeps every column (dt included) and lives apart from the Parquet
            // folders, so that those hold only Parquet.
            let csv = encode::csv_bytes(&o.table.schema, &o.table.batches)?;
            let folder =
                o.folder
                    .replacen(&o.publication.folder, &format!("exports/{}", o.name), 1);
            publisher
                .stage(&folder, &format!("{}.csv", o.name), csv, Some(rows))
                .await?;
        }
        published.push(PublishedTable {
            table: o.name.clone(),
            path: o.folder.clone(),
            rows,
            contract: format!("data-contracts/{}.odcs.yaml", o.contract.table),
        });
    }
    publisher
        .stage(&report_folder, "index.html", report, None)
        .await?;
    Ok(published)
}
