//! The SQL job runner: binds a job's `${...}` parameters from the run date and the
//! configuration, runs it, registers its result for later jobs, and lets go of tables after their
//! last reader.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::prelude::{DataFrame, SessionContext};

use super::catalog::{self, Job};
use super::run_date::{RunDate, DAY_NS};
use super::scratch::Scratch;
use super::session;
use super::stages::Stages;
use super::stored::{self, Stored};
use super::table::Table;
use crate::config::Config;
use crate::error::{FlywheelError, Result};

/// The parameters every job may use, as SQL literals for `${...}` placeholders: the run date's
/// instants (from [`RunDate`]) and the business settings of the configuration.
pub fn params(cfg: &Config, run_date: &RunDate) -> BTreeMap<String, String> {
    let ns = run_date.as_of_ns();
    let values = [
        ("as_of_ns", ns.to_string()),
        ("as_of_days", run_date.epoch_days().to_string()),
        (
            "as_of",
            format!("arrow_cast({ns}, 'Timestamp(ns, \"UTC\")')"),
        ),
        ("run_date", format!("DATE '{run_date}'")),
        ("day_ns", DAY_NS.to_string()),
        ("window_start_ns", run_date.window_start_ns().to_string()),
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

/// A profiling aid: FLYWHEEL_EXPLAIN=referrals,rules:visits prints those queries' EXPLAIN ANALYZE
/// (per-operator rows and times) to stderr; the query then runs twice.
pub async fn explain_if_asked(ctx: &SessionContext, name: &str, sql: &str) -> Result<()> {
    if explaining(name) {
        explain_plan_if_asked(name, &ctx.sql(sql).await?).await?;
    }
    Ok(())
}

/// [`explain_if_asked`] of a planned query (with the session settings it was planned with).
pub async fn explain_plan_if_asked(name: &str, df: &DataFrame) -> Result<()> {
    if explaining(name) {
        let plan = df.clone().explain(false, true)?.collect().await?;
        eprintln!(
            "EXPLAIN ANALYZE {name}\n{}",
            arrow::util::pretty::pretty_format_batches(&plan)?
        );
    }
    Ok(())
}

fn explaining(name: &str) -> bool {
    std::env::var("FLYWHEEL_EXPLAIN").is_ok_and(|v| v.split(',').any(|j| j.trim() == name))
}

/// The tables jobs computed: held in memory (small tables Rust reads), or stored in the scratch
/// area.
#[derive(Default)]
pub struct Tables {
    pub held: BTreeMap<String, Table>,
    pub stored: BTreeMap<String, Stored>,
}

impl Tables {
    fn remove(&mut self, name: &str) {
        self.held.remove(name);
        self.stored.remove(name);
    }
}

/// When the tables nobody publishes (inputs, intermediate results) can be let go: right after
/// the last job that reads them, so a run does not hold every input until it ends. With a
/// scratch area (`spilling_to`), results are not held at all (except those named): each streams
/// into the scratch area as it is computed and later jobs, scoring and publishing read it from
/// there.
///
/// An intermediate table that one later job reads, and names once, is not computed on its own
/// (`inlined`): it is registered as a view, and its reader's plan computes it as part of its
/// own. Stored, it was written to the scratch area only to be read back once (at 1M,
/// `int_signup_facts`: 98 MB written and read, about 0.5 s). A table that two jobs read, or one
/// job twice, would be computed twice as a view, so it is stored; so is one whose joins are
/// planned unlike its reader's (`keeps_join_order`). Training plans no release, so its
/// snapshots share the stored signup facts.
#[derive(Default)]
pub struct Release {
    after: BTreeMap<String, Vec<String>>,
    inlined: BTreeSet<String>,
    spill: Option<(Scratch, Vec<String>)>,
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
                && (inputs.contains(&t) || jobs.iter().any(|j| j.name == t && !j.publish()))
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
        let inlined = jobs
            .iter()
            .filter(|t| !t.publish() && !keep.contains(&t.name.as_str()))
            .filter(|t| {
                let mut readers = jobs.iter().filter(|j| j.reads.contains(&t.name));
                matches!((readers.next(), readers.next()), (Some(r), None)
                    if r.mentions(&t.name) == 1 && r.keeps_join_order() == t.keeps_join_order())
            })
            .map(|t| t.name.clone())
            .collect();
        Release {
            after,
            inlined,
            spill: None,
        }
    }

    /// Whether `job`'s result is registered as a view that its one reader computes.
    fn inlines(&self, job: &Job) -> bool {
        let held = self
            .spill
            .as_ref()
            .is_some_and(|(_, held)| held.contains(&job.name));
        self.inlined.contains(&job.name) && !held
    }

    /// Stream results into `scratch`, except `held` (small tables Rust reads).
    pub fn spilling_to(mut self, scratch: &Scratch, held: &[&str]) -> Self {
        let held = held.iter().map(|t| t.to_string()).collect();
        self.spill = Some((scratch.clone(), held));
        self
    }

    /// Where `job`'s result goes instead of memory, if it is spilled.
    fn spills(&self, job: &Job) -> Option<&Scratch> {
        let (scratch, held) = self.spill.as_ref()?;
        (!held.contains(&job.name)).then_some(scratch)
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
    tables: &mut Tables,
    release: &Release,
) -> Result<()> {
    for job in jobs {
        let started = stages.start();
        let sql = catalog::bind(job, params)?;
        let tried = std::time::Instant::now();
        match run_job(ctx, job, &sql, release, tables).await {
            // DataFusion 55's hash joins cannot spill: when a job's outgrow the budget after all
            // (engine::session::choose_joins estimates from the input rows), the job runs again
            // with sort-merge joins, and so does the rest of the run. Nothing of the failed
            // attempt was registered; a stored table is written again from the start.
            Err(FlywheelError::Resources(why)) if session::hash_joins(ctx) => {
                tracing::warn!(
                    job = %job.name,
                    seconds = tried.elapsed().as_secs_f64(),
                    why = %why,
                    "the job's hash joins outgrew the memory budget: it runs again, and the rest of the run, with sort-merge joins, which spill"
                );
                session::set_hash_joins(ctx, false);
                run_job(ctx, job, &sql, release, tables).await?;
            }
            other => other?,
        }
        for done in release.after(&job.name) {
            ctx.deregister_table(done.as_str())?;
            tables.remove(done);
        }
        stages.done(&format!("sql:{}", job.name), started);
    }
    Ok(())
}

/// Run one job's SQL and register its result: streamed into the scratch area, held, or (a table
/// its one reader computes) a view.
async fn run_job(
    ctx: &SessionContext,
    job: &Job,
    sql: &str,
    release: &Release,
    tables: &mut Tables,
) -> Result<()> {
    let df = ctx
        .sql(sql)
        .await
        .map_err(|e| FlywheelError::internal(format!("sql/{}.sql does not plan: {e}", job.name)))?;
    let df = if job.keeps_join_order() {
        let (mut state, plan) = df.into_parts();
        state.config_mut().options_mut().optimizer.join_reordering = false;
        DataFrame::new(state, plan)
    } else {
        df
    };
    let planned: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    explain_plan_if_asked(&job.name, &df).await?;
    if release.inlines(job) {
        tracing::info!(job = %job.name, "a view: its one reader computes it");
        ctx.deregister_table(job.name.as_str())?;
        ctx.register_table(job.name.as_str(), df.into_view())?;
    } else if let Some(scratch) = release.spills(job) {
        let stored = spill(ctx, df, scratch, &job.name).await?;
        tables.stored.insert(job.name.clone(), stored);
    } else {
        let batches = df.collect().await?;
        let schema = batches.first().map(|b| b.schema()).unwrap_or(planned);
        let table = Table { schema, batches };
        table.register(ctx, &job.name)?;
        tables.held.insert(job.name.clone(), table);
    }
    Ok(())
}

/// Stream a job's result into the scratch area and register it there under `name`.
async fn spill(
    ctx: &SessionContext,
    df: DataFrame,
    scratch: &Scratch,
    name: &str,
) -> Result<Stored> {
    let rel = format!("tables/{name}.parquet");
    let stored = stored::compute(ctx, df, (scratch, &rel), |_| Ok(())).await?;
    stored.register(ctx, name)?;
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::catalog::Layer;

    fn job(name: &str, publish: bool, reads: &[&str]) -> Job {
        Job {
            name: name.into(),
            sql: String::new(),
            layer: if publish {
                Layer::Published
            } else {
                Layer::Intermediate
            },
            reads: reads.iter().map(|r| r.to_string()).collect(),
        }
    }

    /// A job whose hash joins outgrow the budget runs again with sort-merge joins, which spill,
    /// and gives the rows a hash join gives; the rest of the run plans sort-merge joins.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_whose_hash_joins_outgrow_the_budget_runs_again_with_sort_merge_joins() {
        use arrow::array::{Int64Array, RecordBatch, StringArray};
        use arrow::datatypes::{DataType, Field, Schema};
        use datafusion::datasource::MemTable;

        let cfg = Config {
            memory_limit_mb: 64,
            ..Config::default()
        };
        let ctx = crate::engine::session::session(&cfg).unwrap();
        session::set_hash_joins(&ctx, true);
        // 1.5M rows a side with 40-byte keys: a hash join's build side alone is over 64 MiB.
        let rows = 1_500_000_i64;
        let schema = std::sync::Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Int64, false),
        ]));
        for (name, step) in [("a", 1), ("b", 2)] {
            let batches = (0..rows)
                .step_by(8192)
                .map(|from| {
                    let to = (from + 8192).min(rows);
                    RecordBatch::try_new(
                        schema.clone(),
                        vec![
                            Arc::new(StringArray::from_iter_values(
                                (from..to).map(|i| format!("{:040}", i * step)),
                            )),
                            Arc::new(Int64Array::from_iter_values(from..to)),
                        ],
                    )
                    .unwrap()
                })
                .collect();
            let table = MemTable::try_new(schema.clone(), vec![batches]).unwrap();
            ctx.register_table(name, Arc::new(table)).unwrap();
        }
        let mut joined = job("joined", false, &["a", "b"]);
        joined.sql = "SELECT COUNT(*) AS n, SUM(a.v + b.v) AS s FROM a JOIN b ON a.k = b.k".into();
        let (mut stages, mut tables) = (Stages::default(), Tables::default());
        run_jobs(
            &ctx,
            &[joined],
            &BTreeMap::new(),
            &mut stages,
            &mut tables,
            &Release::none(),
        )
        .await
        .unwrap();
        assert!(
            !session::hash_joins(&ctx),
            "the run went on with hash joins"
        );
        let batch = &tables.held["joined"].batches[0];
        let column = |i: usize| {
            batch
                .column(i)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .value(0)
        };
        // Keys 0, 2, 4, … of `a` (value i at key i) meet `b`'s keys 2j (value j): 750,000 pairs,
        // i = 2j for j < 750,000, so the sum of i + j is 3 × (0 + … + 749,999).
        let half = rows / 2;
        assert_eq!(column(0), half);
        assert_eq!(column(1), 3 * half * (half - 1) / 2);
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

    #[test]
    fn a_table_one_job_reads_once_is_inlined_into_it() {
        let mut jobs = vec![
            job("facts", false, &["events"]),
            job("signups", false, &["facts"]),
            job("twice", false, &["crm"]),
            job("both", true, &["signups", "twice"]),
            job("kept", false, &["crm"]),
            job("read_by_two", false, &["crm"]),
            job("features", true, &["both", "kept", "read_by_two"]),
            job("lists", true, &["features", "read_by_two"]),
        ];
        jobs[1].sql = "SELECT * FROM facts -- facts".into();
        jobs[3].sql = "SELECT * FROM signups, twice t1, twice t2".into();
        jobs[6].sql = "SELECT * FROM both, kept, read_by_two".into();
        jobs[7].sql = "SELECT * FROM features, read_by_two".into();
        let release = Release::plan(&jobs, &["events", "crm"], &["kept"]);
        let inlined: Vec<&str> = jobs
            .iter()
            .filter(|j| release.inlines(j))
            .map(|j| j.name.as_str())
            .collect();
        // Published, kept, read twice by one job, read by two jobs: stored.
        assert_eq!(inlined, ["facts", "signups"]);
        // A reader that plans its joins otherwise keeps the table stored.
        jobs[1].sql = "-- signups\n-- Engine:   keep_join_order\nSELECT * FROM facts".into();
        let release = Release::plan(&jobs, &["events", "crm"], &["kept"]);
        assert!(!release.inlines(&jobs[0]));
    }

    /// An inlined table is a view: nothing of it is held or stored, and its reader computes it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_inlined_table_is_computed_by_its_reader() {
        let ctx = crate::engine::session::session(&Config::default()).unwrap();
        let mut facts = job("facts", false, &[]);
        facts.sql = "SELECT * FROM (VALUES (1), (2), (3)) AS t(x)".into();
        let mut total = job("total", false, &["facts"]);
        total.sql = "SELECT SUM(x) AS s FROM facts".into();
        let jobs = [facts, total];
        let release = Release::plan(&jobs, &[], &["total"]);
        let (mut stages, mut tables) = (Stages::default(), Tables::default());
        run_jobs(
            &ctx,
            &jobs,
            &BTreeMap::new(),
            &mut stages,
            &mut tables,
            &release,
        )
        .await
        .unwrap();
        assert!(!tables.held.contains_key("facts") && !tables.stored.contains_key("facts"));
        let s = tables.held["total"].batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap()
            .value(0);
        assert_eq!(s, 6);
        // Let go after its reader, like a stored table.
        assert!(!ctx.table_exist("facts").unwrap());
    }
}
