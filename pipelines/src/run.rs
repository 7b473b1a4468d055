//! The nightly run: load and validate the inputs, run the SQL jobs in dependency order, check
//! every output against its contract, publish atomically, write the manifest.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use chrono::{NaiveDate, Utc};
use datafusion::datasource::MemTable;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;
use serde::Serialize;
use tracing::{info, warn};

use crate::config::Config;
use crate::contracts::{self, INPUTS};
use crate::error::{FlywheelError, Result};
use crate::inputs::{self, InputFile};
use crate::jobs::{self, Job};
use crate::models;
use crate::publish::{PublishedFile, Publisher};
use crate::storage::Root;
use crate::validate::{self, InputCheck};

const DAY_NS: i64 = 86_400_000_000_000;

/// A materialised table: its schema and batches.
#[derive(Clone)]
pub struct Table {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl Table {
    pub fn rows(&self) -> u64 {
        self.batches.iter().map(|b| b.num_rows() as u64).sum()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    pub stage: String,
    pub seconds: f64,
    /// CPU time of the process during the stage (user + system, Linux), seconds: above
    /// `seconds` when the stage used more than one core.
    pub cpu_seconds: Option<f64>,
    /// Peak resident memory of the process during the stage (Linux), MiB.
    pub peak_rss_mib: Option<u64>,
}

/// When a stage started: wall clock and process CPU time.
#[derive(Clone, Copy)]
pub struct StageStart {
    wall: Instant,
    cpu: Option<f64>,
}

/// Stage timer: wall time, CPU time and peak RSS per stage.
#[derive(Default)]
pub struct Stages(pub Vec<Stage>);

impl Stages {
    pub fn start(&self) -> StageStart {
        reset_peak_rss();
        StageStart {
            wall: Instant::now(),
            cpu: cpu_seconds(),
        }
    }
    pub fn done(&mut self, name: &str, started: StageStart) {
        let millis = |s: f64| (s * 1000.0).round() / 1000.0;
        let seconds = millis(started.wall.elapsed().as_secs_f64());
        let cpu_seconds = cpu_seconds()
            .zip(started.cpu)
            .map(|(now, then)| millis(now - then));
        let peak = peak_rss_mib();
        info!(
            stage = name,
            seconds,
            cpu_seconds,
            peak_rss_mib = peak,
            "stage done"
        );
        self.0.push(Stage {
            stage: name.to_string(),
            seconds,
            cpu_seconds,
            peak_rss_mib: peak,
        });
    }
}

/// User + system CPU time of this process so far (Linux /proc, clock ticks of 1/100 s).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn reset_peak_rss() {
    // Linux: writing 5 to clear_refs resets VmHWM. Not a data path.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}

/// Query engine with a fixed partition count (results do not depend on the machine) and, when
/// configured, a memory budget beyond which sorts and aggregates spill.
pub fn session(cfg: &Config) -> Result<SessionContext> {
    let mut runtime = RuntimeEnvBuilder::new();
    if cfg.memory_limit_mb > 0 {
        // Opt-in only: under a budget, DataFusion 55's RepartitionExec can deadlock while it
        // spills (apache/datafusion#24883, fixed upstream after 55); seen here at 1M customers.
        warn!(
            memory_limit_mb = cfg.memory_limit_mb,
            "a query-engine memory budget is set: large runs may spill, and DataFusion 55 can stall while a repartition spills"
        );
        runtime = runtime.with_memory_pool(Arc::new(FairSpillPool::new(
            cfg.memory_limit_mb as usize * 1024 * 1024,
        )));
    }
    let runtime = runtime.build_arc()?;
    let mut config = SessionConfig::new()
        .with_target_partitions(cfg.target_partitions)
        .with_batch_size(8192)
        .with_information_schema(false);
    // Published strings are plain Utf8, which every reader understands.
    config.options_mut().sql_parser.map_string_types_to_utf8view = false;
    Ok(SessionContext::new_with_config_rt(config, runtime))
}

/// The run date's time parameters, as SQL literals for `${...}` placeholders.
pub fn params(cfg: &Config, as_of: NaiveDate) -> BTreeMap<String, String> {
    let days = as_of
        .signed_duration_since(NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch"))
        .num_days();
    let ns = days * DAY_NS;
    let values = [
        ("as_of_ns", ns.to_string()),
        ("as_of_days", days.to_string()),
        (
            "as_of",
            format!("arrow_cast({ns}, 'Timestamp(ns, \"UTC\")')"),
        ),
        ("run_date", format!("DATE '{as_of}'")),
        (
            "attribution_window_days",
            cfg.attribution_window_days.to_string(),
        ),
        (
            "max_signups_per_referrer_per_day",
            cfg.max_signups_per_referrer_per_day.to_string(),
        ),
        ("refer_horizon_days", cfg.refer_horizon_days.to_string()),
        ("churn_horizon_days", cfg.churn_horizon_days.to_string()),
        (
            "churn_alert_threshold",
            format!("{:?}", cfg.churn_alert_threshold),
        ),
        (
            "ambassador_top_share",
            format!("{:?}", cfg.ambassador_top_share),
        ),
        (
            "candidate_cooldown_days",
            cfg.candidate_cooldown_days.to_string(),
        ),
        ("alert_cooldown_days", cfg.alert_cooldown_days.to_string()),
    ];
    values
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// Inputs after the row rules, registered in `ctx` under their names.
pub struct ValidatedInputs {
    pub checks: Vec<InputCheck>,
    pub files: BTreeMap<String, Vec<InputFile>>,
    pub rejects: BTreeMap<String, Vec<RecordBatch>>,
}

pub async fn load_inputs(
    ctx: &SessionContext,
    cfg: &Config,
    input: &Root,
    as_of: NaiveDate,
) -> Result<ValidatedInputs> {
    let as_of_ns: i64 = params(cfg, as_of)["as_of_ns"]
        .parse()
        .map_err(FlywheelError::internal)?;
    let mut out = ValidatedInputs {
        checks: vec![],
        files: BTreeMap::new(),
        rejects: BTreeMap::new(),
    };
    // Reading (Parquet decoding and type conversion, on tokio's workers) runs one input ahead of
    // the row rules: while an input is validated, the next one is read. Inputs are validated in
    // INPUTS order, the CRM first, since the others' foreign keys look up its accepted rows.
    let (tx, mut rx) = futures::channel::mpsc::channel(0);
    let root = input.clone();
    let reader = AbortOnDrop(tokio::spawn(async move {
        let mut tx = tx;
        for name in INPUTS {
            let started = Instant::now();
            let loaded = match contracts::contract(name) {
                Ok(c) => inputs::load_input(&root, &c).await.map(|l| (c, l)),
                Err(e) => Err(e),
            };
            let failed = loaded.is_err();
            let read = (loaded, started.elapsed().as_secs_f64());
            if futures::SinkExt::send(&mut tx, read).await.is_err() || failed {
                break;
            }
        }
    }));
    for name in INPUTS {
        let (loaded, read_seconds) = rx
            .next()
            .await
            .ok_or_else(|| FlywheelError::internal("the input reader stopped early"))?;
        let (contract, loaded) = loaded?;
        let started = Instant::now();
        let files = loaded.files.clone();
        let (check, rejects) =
            validate::validate_input(ctx, &contract, loaded, as_of_ns, cfg.target_partitions)
                .await?;
        info!(
            input = name,
            rows = check.rows,
            rejected = check.rejected,
            used = check.used,
            files = files.len(),
            read_seconds,
            rules_seconds = started.elapsed().as_secs_f64(),
            "input checked"
        );
        out.files.insert(name.to_string(), files);
        out.rejects.insert(name.to_string(), rejects);
        out.checks.push(check);
    }
    drop(reader);
    Ok(out)
}

/// A spawned task that is cancelled when this guard goes out of scope (e.g. on an early error).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Fail the run when an input's reject share is above the threshold.
pub fn enforce_reject_share(checks: &[InputCheck], max: f64) -> Result<()> {
    let over: Vec<String> = checks
        .iter()
        .filter(|c| c.reject_share > max)
        .map(|c| {
            let reasons =
                c.top_reasons.iter().map(|(r, n)| format!("{n}× {r}")).collect::<Vec<_>>().join("; ");
            format!(
                "input {}: {} of {} rows rejected ({:.2}% > max_reject_share {:.2}%); most common: {reasons}",
                c.input,
                c.rejected,
                c.rows,
                c.reject_share * 100.0,
                max * 100.0
            )
        })
        .collect();
    if over.is_empty() {
        Ok(())
    } else {
        Err(FlywheelError::Contract(format!(
            "{}. Nothing was published; fix the export or raise max_reject_share.",
            over.join("\n")
        )))
    }
}

/// A profiling aid: FLYWHEEL_EXPLAIN=referrals,rules:visits prints those queries' EXPLAIN ANALYZE
/// (per-operator rows and times) to stderr; the query then runs twice.
pub async fn explain_if_asked(ctx: &SessionContext, name: &str, sql: &str) -> Result<()> {
    if std::env::var("FLYWHEEL_EXPLAIN").is_ok_and(|v| v.split(',').any(|j| j.trim() == name)) {
        let plan = ctx
            .sql(&format!("EXPLAIN ANALYZE {sql}"))
            .await?
            .collect()
            .await?;
        eprintln!(
            "EXPLAIN ANALYZE {name}\n{}",
            arrow::util::pretty::pretty_format_batches(&plan)?
        );
    }
    Ok(())
}

/// When the tables nobody publishes (inputs, intermediate results) can be let go: right after
/// the last job that reads them, so a run does not hold every input until it ends.
#[derive(Default)]
pub struct Release {
    after: BTreeMap<String, Vec<String>>,
}

impl Release {
    /// Hold everything (training reads the inputs again for every snapshot).
    pub fn none() -> Self {
        Self::default()
    }

    /// `jobs` in the order they run; `keep`: tables Rust reads after the jobs.
    pub fn plan(jobs: &[Job], inputs: &[&str], keep: &[&str]) -> Self {
        let droppable = |t: &str| {
            !keep.contains(&t)
                && (inputs.contains(&t) || jobs.iter().any(|j| j.name == t && !j.publish))
        };
        let mut last: BTreeMap<&str, &str> = BTreeMap::new();
        for job in jobs {
            for table in job.reads.iter().filter(|t| droppable(t)) {
                last.insert(table, &job.name);
            }
        }
        let mut after: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (table, job) in last {
            after
                .entry(job.to_string())
                .or_default()
                .push(table.to_string());
        }
        Release { after }
    }

    fn after(&self, job: &str) -> &[String] {
        self.after.get(job).map(Vec::as_slice).unwrap_or_default()
    }
}

/// Run SQL jobs in order, registering each result under its name and adding it to `tables`;
/// tables whose last reader has run are let go as `release` says.
pub async fn run_jobs(
    ctx: &SessionContext,
    jobs: &[Job],
    params: &BTreeMap<String, String>,
    stages: &mut Stages,
    tables: &mut BTreeMap<String, Table>,
    release: &Release,
) -> Result<()> {
    for job in jobs {
        let started = stages.start();
        let sql = jobs::bind(job, params)?;
        let df = ctx.sql(&sql).await.map_err(|e| {
            FlywheelError::internal(format!("sql/{}.sql does not plan: {e}", job.name))
        })?;
        let planned: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        explain_if_asked(ctx, &job.name, &sql).await?;
        let batches = df.collect().await?;
        let schema = batches.first().map(|b| b.schema()).unwrap_or(planned);
        let table = Table {
            schema: schema.clone(),
            batches,
        };
        ctx.deregister_table(job.name.as_str())?;
        ctx.register_table(
            job.name.as_str(),
            Arc::new(MemTable::try_new(schema, vec![table.batches.clone()])?),
        )?;
        tables.insert(job.name.clone(), table);
        for done in release.after(&job.name) {
            ctx.deregister_table(done.as_str())?;
            tables.remove(done);
        }
        stages.done(&format!("sql:{}", job.name), started);
    }
    Ok(())
}

/// The CRM lists, published as Parquet and CSV under `lists/`.
pub const LISTS: [&str; 2] = ["ambassador_candidates", "churn_alerts"];

/// The folder of a published table below the output root (without `dt=`).
pub fn published_path(table: &str) -> String {
    if LISTS.contains(&table) {
        format!("lists/{table}")
    } else {
        table.to_string()
    }
}

/// Customers listed on run dates in [date - cooldown days, date): (customer_id, dt).
async fn previous_list(output: &Root, list: &str, date: NaiveDate, cooldown: i64) -> Result<Table> {
    use arrow::array::{Date32Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Utf8, false),
        Field::new("dt", DataType::Date32, false),
    ]));
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch");
    let mut batches = Vec::new();
    for meta in output.list(&format!("lists/{list}/")).await? {
        let rel = output.relative(&meta.location);
        if !rel.ends_with(".parquet") {
            continue;
        }
        let Some(day) = rel
            .split('/')
            .find_map(|p| p.strip_prefix("dt="))
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        else {
            continue;
        };
        if day >= date || (date - day).num_days() > cooldown {
            continue;
        }
        let bytes = output.get(&rel).await?.unwrap_or_default();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .map_err(|e| {
                FlywheelError::Contract(format!(
                    "earlier list {} is unreadable: {e}",
                    output.display(&rel)
                ))
            })?;
        let days = day.signed_duration_since(epoch).num_days() as i32;
        for b in reader {
            let b = b?;
            let ids = arrow::compute::cast(
                b.column_by_name("customer_id").ok_or_else(|| {
                    FlywheelError::Contract(format!(
                        "earlier list {} has no customer_id",
                        output.display(&rel)
                    ))
                })?,
                &DataType::Utf8,
            )?;
            let ids: StringArray = ids
                .as_any()
                .downcast_ref::<StringArray>()
                .cloned()
                .unwrap_or_else(|| StringArray::from(Vec::<String>::new()));
            let n = ids.len();
            batches.push(RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(ids), Arc::new(Date32Array::from(vec![days; n]))],
            )?);
        }
    }
    Ok(Table { schema, batches })
}

/// Where a published table lives below the output root.
pub fn output_folder(table: &str, date: NaiveDate) -> String {
    format!("{table}/dt={date}")
}

#[derive(Debug, Serialize)]
pub struct Manifest {
    pub flywheel_version: String,
    pub run_date: String,
    pub as_of: String,
    pub started_at: String,
    pub input: String,
    pub output: String,
    pub inputs: BTreeMap<String, Vec<InputFile>>,
    pub contract_checks: Vec<InputCheck>,
    pub tables: Vec<PublishedTable>,
    pub files: Vec<PublishedFile>,
    pub warnings: Vec<String>,
    pub config: Config,
    pub model_versions: BTreeMap<String, String>,
    pub stages: Vec<Stage>,
}

#[derive(Debug, Serialize)]
pub struct PublishedTable {
    pub table: String,
    pub path: String,
    pub rows: u64,
    pub contract: String,
}

pub struct RunReport {
    pub manifest: Manifest,
    pub manifest_path: String,
    pub tables: BTreeMap<String, Table>,
}

/// The nightly entry point.
pub async fn run(cfg: &Config, date: NaiveDate) -> Result<RunReport> {
    let started_at = Utc::now();
    let input = Root::parse(&cfg.input)?;
    let output = Root::parse(&cfg.output)?;
    let mut stages = Stages::default();
    let ctx = session(cfg)?;
    let p = params(cfg, date);

    let t = stages.start();
    let validated = load_inputs(&ctx, cfg, &input, date).await?;
    stages.done("load_and_validate_inputs", t);
    enforce_reject_share(&validated.checks, cfg.max_reject_share)?;

    let jobs = jobs::all_jobs(&INPUTS)?;
    let (late, early): (Vec<Job>, Vec<Job>) = jobs.iter().cloned().partition(|j| j.needs_scores());
    // Inputs and intermediate tables go as soon as their last reader has run (the generations
    // stay for the referred_by cycle warning below). When the scoring step has to train a
    // missing champion first, everything stays: training reads the inputs at its snapshot
    // dates and the run date's referral_signups for its labels.
    let registry = models::Registry::open(cfg)?;
    let champions = models::champions(&registry).await?;
    let release = if champions.values().any(|c| c.version.is_none()) {
        Release::none()
    } else {
        let ordered: Vec<Job> = early.iter().chain(&late).cloned().collect();
        Release::plan(&ordered, &INPUTS, &["referral_generations"])
    };
    let mut tables = BTreeMap::new();
    run_jobs(&ctx, &early, &p, &mut stages, &mut tables, &release).await?;
    // Notes of the scorer (a model trained first, null scores) depend on the registry's history,
    // not on the data: the manifest keeps them; the report (byte-identical on reruns) does not.
    let mut scorer_notes = Vec::new();
    // Warnings about the data (e.g. referred_by cycles): manifest and report.
    let mut warnings = Vec::new();

    // Scores: a Rust step over customer_features, with the champion models.
    let t = stages.start();
    let fingerprint = models::fingerprint(&validated.files);
    let (scores, champions) = models::score(
        cfg,
        &ctx,
        &registry,
        &champions,
        &tables["customer_features"],
        date,
        &fingerprint,
        &mut scorer_notes,
    )
    .await?;
    ctx.register_table(
        "customer_scores",
        Arc::new(MemTable::try_new(
            scores.schema.clone(),
            vec![scores.batches.clone()],
        )?),
    )?;
    tables.insert("customer_scores".into(), scores);
    let model_versions: BTreeMap<String, String> = champions
        .iter()
        .map(|(t, f)| (t.clone(), f.version.clone()))
        .collect();
    stages.done("score", t);

    // The CRM lists: cooldowns read the lists of earlier run dates from the output store.
    let t = stages.start();
    for list in LISTS {
        let cooldown = if list == "ambassador_candidates" {
            cfg.candidate_cooldown_days
        } else {
            cfg.alert_cooldown_days
        };
        let previous = previous_list(&output, list, date, cooldown).await?;
        let name = format!("previous_{list}");
        ctx.deregister_table(name.as_str())?;
        ctx.register_table(
            name.as_str(),
            Arc::new(MemTable::try_new(previous.schema, vec![previous.batches])?),
        )?;
    }
    run_jobs(&ctx, &late, &p, &mut stages, &mut tables, &release).await?;
    stages.done("lists", t);
    if let Some(g) = tables.get("referral_generations") {
        let cycles = null_count(g, "generation");
        if cycles > 0 {
            let msg = format!(
                "{cycles} customers are on a referred_by cycle (or their chain reaches one): their generation is null"
            );
            warn!("{msg}");
            warnings.push(msg);
        }
    }

    // Check and stage every published table; nothing is visible until commit().
    let t = stages.start();
    let run_id = format!(
        "{}-{}",
        date,
        started_at.timestamp_nanos_opt().unwrap_or_default()
    );
    let mut publisher = Publisher::new(output.clone(), &run_id);
    let mut published = Vec::new();
    let staged: Result<()> = async {
        // Every published table, checked against its contract first.
        struct Output {
            name: String,
            folder: String,
            contract: String,
            table: Table,
        }
        let rejects_schema = contracts::contract("rejects")?.schema();
        let mut outputs: Vec<Output> = Vec::new();
        for job in jobs.iter().filter(|j| j.publish) {
            outputs.push(Output {
                name: job.name.clone(),
                folder: output_folder(&published_path(&job.name), date),
                contract: job.name.clone(),
                table: tables[&job.name].clone(),
            });
        }
        outputs.push(Output {
            name: "customer_scores".into(),
            folder: output_folder("scores/customer_scores", date),
            contract: "customer_scores".into(),
            table: tables["customer_scores"].clone(),
        });
        for (name, batches) in &validated.rejects {
            let batches: Vec<RecordBatch> = batches
                .iter()
                .map(|b| RecordBatch::try_new(rejects_schema.clone(), b.columns().to_vec()))
                .collect::<std::result::Result<_, _>>()?;
            outputs.push(Output {
                name: format!("rejects/{name}"),
                folder: output_folder(&format!("rejects/{name}"), date),
                contract: "rejects".into(),
                table: Table {
                    schema: rejects_schema.clone(),
                    batches,
                },
            });
        }
        for o in &outputs {
            contracts::contract(&o.contract)?.check_output(&o.table.batches, &o.table.schema)?;
        }
        // Parquet encoding is the CPU-heavy part: spread the tables over the partitions' threads.
        let encoded = crate::publish::parquet_bytes_parallel(
            outputs
                .iter()
                .map(|o| (&o.table.schema, o.table.batches.as_slice()))
                .collect(),
            cfg.target_partitions,
        )?;
        for (o, bytes) in outputs.iter().zip(encoded) {
            let rows = o.table.rows();
            publisher
                .stage(&o.folder, "part-00000.parquet", bytes, Some(rows))
                .await?;
            if LISTS.contains(&o.name.as_str()) {
                let csv = crate::publish::csv_bytes(&o.table.schema, &o.table.batches)?;
                publisher
                    .stage(&o.folder, &format!("{}.csv", o.name), csv, Some(rows))
                    .await?;
            }
            published.push(PublishedTable {
                table: o.name.clone(),
                path: o.folder.clone(),
                rows,
                contract: format!("data-contracts/{}.odcs.yaml", o.contract),
            });
        }
        // The morning report, from the checked tables and the champion models.
        let html = crate::report::html(&crate::report::ReportInput {
            date: date.to_string(),
            tables: &tables,
            champions: &champions,
            checks: &validated.checks,
            warnings: &warnings,
        });
        let folder = output_folder("reports", date);
        publisher
            .stage(&folder, "index.html", Bytes::from(html), None)
            .await?;
        Ok(())
    }
    .await;
    if let Err(e) = staged {
        publisher.abort().await;
        return Err(e);
    }
    let files = publisher.commit().await?;
    stages.done("publish", t);

    let manifest = Manifest {
        flywheel_version: env!("CARGO_PKG_VERSION").to_string(),
        run_date: date.to_string(),
        as_of: format!("{date}T00:00:00Z"),
        started_at: started_at.to_rfc3339(),
        input: input.url.clone(),
        output: output.url.clone(),
        inputs: validated.files,
        contract_checks: validated.checks,
        tables: published,
        files,
        warnings: scorer_notes.into_iter().chain(warnings).collect(),
        config: cfg.clone(),
        model_versions,
        stages: stages.0,
    };
    let manifest_path = format!("_runs/dt={date}/manifest.json");
    let json = serde_json::to_vec_pretty(&manifest).map_err(FlywheelError::internal)?;
    output.put(&manifest_path, json.into()).await?;
    info!(manifest = %output.display(&manifest_path), "run published");
    Ok(RunReport {
        manifest,
        manifest_path: output.display(&manifest_path),
        tables,
    })
}

fn null_count(table: &Table, column: &str) -> usize {
    let Ok(idx) = table.schema.index_of(column) else {
        return 0;
    };
    table
        .batches
        .iter()
        .map(|b| b.column(idx).null_count())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str, publish: bool, reads: &[&str]) -> Job {
        Job {
            name: name.into(),
            sql: String::new(),
            publish,
            reads: reads.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn tables_are_released_after_their_last_reader_only() {
        let jobs = [
            job("signups", false, &["events", "crm"]),
            job("features", true, &["signups", "crm", "visits"]),
            job("kpis", true, &["features", "events"]),
            job("lists", true, &["features", "visits", "generations"]),
            job("generations", false, &["crm"]),
        ];
        let release = Release::plan(&jobs, &["events", "crm", "visits"], &["generations"]);
        assert!(release.after("signups").is_empty());
        // crm: "generations" (kept itself) reads it last.
        assert_eq!(release.after("features"), ["signups"]);
        assert_eq!(release.after("kpis"), ["events"]);
        // Published tables stay for publishing; kept tables stay for Rust.
        assert_eq!(release.after("lists"), ["visits"]);
        assert_eq!(release.after("generations"), ["crm"]);
        assert!(Release::none().after("features").is_empty());
    }
}
