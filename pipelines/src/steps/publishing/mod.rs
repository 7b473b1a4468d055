//! Publishing: gather every published table the contracts name (`outputs`), check each against
//! its whole output contract (`check`), encode and stage them with the report (`stage`, into a
//! `publisher::Publisher`), then commit them with the manifest through a journal (`commit`):
//! crash-safe, every table whole in its old or new version at any instant, a completion marker
//! last. `lock` keeps one run per date, `ledger` records every run, `earlier` reads back the
//! lists of earlier run dates for the cooldowns.

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use datafusion::prelude::SessionContext;
use futures::StreamExt;

use crate::contracts::{self, Contract, Publication, Role};
use crate::engine::{encode, RunDate, Stored, Table, Tables};
use crate::error::{FlywheelError, Result};

pub mod commit;
pub mod earlier;
pub mod early;
pub mod ledger;
pub mod lock;
pub mod manifest;
pub mod publisher;

pub use early::EarlyStaging;
pub use manifest::{Manifest, PublishedTable};
pub use publisher::{PublishedFile, Publisher};

/// One table to publish: its name (`rejects/<input>` for rejects), the folder of its partition,
/// its contract and its rows.
pub struct Output {
    pub name: String,
    pub folder: String,
    pub contract: Contract,
    pub publication: Publication,
    pub table: Content,
}

/// The rows of a table to publish: held in memory, or stored in the scratch area (read back
/// batch by batch to be checked and written).
pub enum Content {
    Held(Table),
    Stored(Stored),
}

impl Content {
    pub fn rows(&self) -> u64 {
        match self {
            Content::Held(t) => t.rows(),
            Content::Stored(s) => s.rows(),
        }
    }
}

/// Every published table of the run, in contract order: one per contract whose role is
/// `published` (one per input for a `{input}` folder, i.e. the rejects). `tables` holds the SQL
/// and scoring results by name; `rejects` the quarantined rows per input.
pub fn outputs(
    tables: &Tables,
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
                    table: Content::Held(Table {
                        schema: schema.clone(),
                        batches,
                    }),
                });
            }
            continue;
        }
        let held = tables.held.get(&contract.table).cloned().map(Content::Held);
        let stored = || {
            tables
                .stored
                .get(&contract.table)
                .cloned()
                .map(Content::Stored)
        };
        let table = held.or_else(stored).ok_or_else(|| {
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
/// [`Contract::check_output`], then each row rule (a SQL predicate) over the table's rows. A
/// stored table's column checks run while [`stage`] writes it (one read of the table, not two);
/// its row rules here, over the table registered under its name.
pub async fn check(ctx: &SessionContext, outputs: &[Output]) -> Result<()> {
    for o in outputs {
        let name = match &o.table {
            Content::Held(t) => {
                o.contract.check_output(&t.batches, &t.schema)?;
                "_output_under_check"
            }
            Content::Stored(_) => o.contract.table.as_str(),
        };
        if o.contract.row_rules.is_empty() {
            continue;
        }
        if let Content::Held(t) = &o.table {
            t.register(ctx, name)?;
        }
        let mut broken_rule = None;
        for rule in &o.contract.row_rules {
            let broken = count_broken(ctx, name, &rule.predicate).await?;
            if broken > 0 {
                broken_rule = Some((rule, broken));
                break;
            }
        }
        if let Content::Held(_) = &o.table {
            ctx.deregister_table(name)?;
        }
        if let Some((rule, broken)) = broken_rule {
            return Err(FlywheelError::Internal(format!(
                "output table {}: {broken} rows break rule {} ({})",
                o.name, rule.name, rule.predicate
            )));
        }
    }
    Ok(())
}

/// The second pass of a stored table's column checks: only over a unique column whose value
/// hashes repeated in the first (see [`crate::contracts::OutputCheck::finish`]).
async fn check_repeats(
    contract: &Contract,
    table: &Stored,
    second: Vec<(String, crate::contracts::keys::RepeatedValues)>,
) -> Result<()> {
    for (column, mut values) in second {
        let mut batches = table.batches(Some(&[column.as_str()])).await?;
        while let Some(b) = batches.next().await {
            crate::contracts::keys::text_column(&[b?], &column)?
                .iter()
                .for_each(|c| values.add(c));
        }
        contract.no_repeats(&column, values)?;
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
    let layout = FileLayout::of(&table.schema, partition);
    let batches = table
        .batches
        .iter()
        .map(|b| layout.batch(b))
        .collect::<Result<_>>()?;
    Ok(Table {
        schema: layout.schema,
        batches,
    })
}

/// The file layout of a table's schema (see [`file_layout`]), applied batch by batch.
pub struct FileLayout {
    pub schema: SchemaRef,
    keep: Vec<usize>,
}

impl FileLayout {
    pub fn of(schema: &SchemaRef, partition: &str) -> FileLayout {
        use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
        let micros = |f: &Field| match f.data_type() {
            DataType::Timestamp(TimeUnit::Nanosecond, tz) => {
                Some(DataType::Timestamp(TimeUnit::Microsecond, tz.clone()))
            }
            _ => None,
        };
        let keep: Vec<usize> = (0..schema.fields().len())
            .filter(|&i| schema.field(i).name() != partition)
            .collect();
        let fields: Vec<Field> = keep
            .iter()
            .map(|&i| {
                let f = schema.field(i);
                match micros(f) {
                    Some(t) => f.clone().with_data_type(t),
                    None => f.clone(),
                }
            })
            .collect();
        FileLayout {
            schema: std::sync::Arc::new(Schema::new(fields)),
            keep,
        }
    }

    pub fn batch(&self, b: &RecordBatch) -> Result<RecordBatch> {
        let mut columns = Vec::with_capacity(self.keep.len());
        for (&i, f) in self.keep.iter().zip(self.schema.fields()) {
            let c = b.column(i);
            columns.push(if c.data_type() == f.data_type() {
                c.clone()
            } else {
                arrow::compute::cast(c, f.data_type())?
            });
        }
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// Encode and stage `outputs` and the report (nothing published is touched). Returns the
/// tables for the manifest. Held tables are encoded on the partitions' threads at once; stored
/// tables stream from the scratch area into their staged files through `early` (most of them
/// were started while the jobs ran), and are recorded here in output order.
pub async fn stage(
    publisher: &mut Publisher,
    outputs: &[Output],
    (report_folder, report): (String, Bytes),
    partitions: usize,
    early: &mut EarlyStaging,
) -> Result<Vec<PublishedTable>> {
    early.open_up();
    early.offer(outputs.iter().filter_map(|o| match &o.table {
        Content::Stored(s) => Some((&o.contract.table, s)),
        Content::Held(_) => None,
    }));
    // What analysts read: the files without the partition column, instants in microseconds.
    let held: Vec<Table> = outputs
        .iter()
        .filter_map(|o| match &o.table {
            Content::Held(t) => Some(file_layout(t, &o.publication.partition)),
            Content::Stored(_) => None,
        })
        .collect::<Result<_>>()?;
    // Parquet encoding is the CPU-heavy part: spread the tables over the partitions' threads.
    let encoded = encode::parquet_bytes_parallel(
        held.iter()
            .map(|t| (&t.schema, t.batches.as_slice()))
            .collect(),
        partitions,
    )?;
    let mut encoded = encoded.into_iter();
    let mut published = Vec::new();
    for o in outputs {
        let rows = o.table.rows();
        // The CRM file keeps every column (dt included) and lives apart from the Parquet
        // folders, so that those hold only Parquet.
        let csv_folder =
            o.folder
                .replacen(&o.publication.folder, &format!("exports/{}", o.name), 1);
        let csv_file = format!("{}.csv", o.name);
        match &o.table {
            Content::Held(t) => {
                let bytes = encoded
                    .next()
                    .ok_or_else(|| FlywheelError::internal("a held table was not encoded"))?;
                publisher
                    .stage(&o.folder, "part-00000.parquet", bytes, Some(rows))
                    .await?;
                if o.publication.crm_csv {
                    let csv = encode::csv_bytes(&t.schema, &t.batches)?;
                    publisher
                        .stage(&csv_folder, &csv_file, csv, Some(rows))
                        .await?;
                }
            }
            Content::Stored(_) => {
                let written = early.take(&o.contract.table).await?;
                let targets = [
                    (o.folder.as_str(), "part-00000.parquet"),
                    (csv_folder.as_str(), csv_file.as_str()),
                ];
                for (file, target) in written.into_iter().zip(targets) {
                    publisher.adopt(target, file.staged, file.rows, file.bytes);
                }
            }
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

/// Write the stored `table` into the staged Parquet file `parquet`, checked against the
/// contract's columns as it goes (and a second pass for a unique column whose hashes repeat),
/// and into the CRM CSV file `csv` when it has one. Returns each file's rows and bytes.
async fn write_stored(
    root: &crate::storage::Root,
    contract: &Contract,
    table: &Stored,
    partition: &str,
    parquet: &str,
    csv: Option<&str>,
) -> Result<Vec<(u64, u64)>> {
    let mut check = contract.output_check(&table.schema)?;
    let layout = FileLayout::of(&table.schema, partition);
    let laid_out = table.batches(None).await?.map(|b| {
        let b = b?;
        check.add(&b)?;
        layout.batch(&b)
    });
    let (rows, bytes) =
        publisher::write_parquet(root, parquet, layout.schema.clone(), laid_out).await?;
    check_repeats(contract, table, check.finish()?).await?;
    let mut written = vec![(rows, bytes)];
    if let Some(staged) = csv {
        let batches = table.batches(None).await?;
        written.push(publisher::write_csv(root, staged, table.schema.clone(), batches).await?);
    }
    Ok(written)
}
