//! Golden tests of single SQL jobs, in the manner of DataFusion's sqllogictest (`.slt`) files:
//! each `tests/sql/<name>.slt` gives a job's input tables, tiny and hand-made, and the rows the
//! job must return, checked by hand. The job runs alone, on exactly those tables, through the
//! same catalog, parameters and session as the nightly run.
//!
//! Format (a line starting with `#` is a comment):
//!
//! ```text
//! run_date 2026-06-01                 # the run date (as_of = D 00:00 UTC)
//! config attribution_window_days 90   # optional configuration overrides
//!
//! table <name>                        # an input table: a header of name:type, then CSV rows
//! customer_id:string,visits_365d:int32
//! C1,3
//!                                     # a blank line ends the table
//! query <job> [rowsort]               # run sql/<job>.sql; rowsort: compare sorted rows
//! ----
//! 2026-06-01,C1,...                   # every column, as text; empty = null
//! ```
//!
//! Types are the contracts' (string, int32, int64, double, boolean, date, timestamp,
//! decimal(p,s)). Jobs not covered here are covered by the whole-run golden cases in
//! `tests/golden/` (see `every_nightly_job_has_a_golden_test`). A training job
//! (`train_labels_<target>`) runs at the snapshot T = the run date.

mod common;

use std::path::Path;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema};
use flywheel_pipelines::config::Config;
use flywheel_pipelines::contracts::ColType;
use flywheel_pipelines::engine::{catalog, params, session, RunDate, Table};
use flywheel_pipelines::steps::scoring::training_set::label_params;

#[derive(Default)]
struct Case {
    run_date: Option<chrono::NaiveDate>,
    config: toml::Table,
    tables: Vec<(String, Table)>,
    queries: Vec<Query>,
}

struct Query {
    job: String,
    rowsort: bool,
    expected: Vec<String>,
    line: usize,
}

/// The header's `name:type` cells: commas inside parentheses (`decimal(18,2)`) do not split.
fn split_header(header: &str) -> Vec<&str> {
    let (mut cells, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in header.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                cells.push(&header[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    cells.push(&header[start..]);
    cells
}

fn parse_table(name: &str, lines: &[&str]) -> Table {
    let header = lines
        .first()
        .unwrap_or_else(|| panic!("table {name}: no header"));
    let fields: Vec<Field> = split_header(header)
        .into_iter()
        .map(|col| {
            let (n, t) = col
                .split_once(':')
                .unwrap_or_else(|| panic!("table {name}: column {col:?} has no :type"));
            let ty = ColType::parse(t.trim())
                .unwrap_or_else(|| panic!("table {name}: unknown type {t}"));
            Field::new(n.trim(), ty.arrow(), true)
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let text = std::iter::once(names.join(","))
        .chain(lines[1..].iter().map(|l| l.to_string()))
        .collect::<Vec<_>>()
        .join("\n");
    let reader = arrow::csv::ReaderBuilder::new(schema.clone())
        .with_header(true)
        .with_null_regex(regex::Regex::new("^$").unwrap())
        .build(std::io::Cursor::new(text))
        .unwrap();
    let batches: Vec<RecordBatch> = reader
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("table {name}: {e}"));
    Table { schema, batches }
}

fn parse(path: &Path) -> Case {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut case = Case::default();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[0] {
            "run_date" => {
                case.run_date =
                    Some(chrono::NaiveDate::parse_from_str(words[1], "%Y-%m-%d").unwrap())
            }
            "config" => {
                let value: toml::Value = toml::from_str(&format!("v = {}", words[2]))
                    .map(|t: toml::Table| t["v"].clone())
                    .unwrap();
                case.config.insert(words[1].to_string(), value);
            }
            "table" => {
                let start = i;
                while i < lines.len() && !lines[i].trim().is_empty() {
                    i += 1;
                }
                let body: Vec<&str> = lines[start..i]
                    .iter()
                    .copied()
                    .filter(|l| !l.trim_start().starts_with('#'))
                    .collect();
                case.tables
                    .push((words[1].to_string(), parse_table(words[1], &body)));
            }
            "query" => {
                let at = i;
                assert_eq!(lines.get(i).map(|l| l.trim()), Some("----"), "line {at}");
                i += 1;
                let start = i;
                while i < lines.len() && !lines[i].trim().is_empty() {
                    i += 1;
                }
                case.queries.push(Query {
                    job: words[1].to_string(),
                    rowsort: words.get(2) == Some(&"rowsort"),
                    expected: lines[start..i]
                        .iter()
                        .map(|l| l.trim().to_string())
                        .collect(),
                    line: at,
                });
            }
            other => panic!("{}: unknown directive {other}", path.display()),
        }
    }
    case
}

async fn run_case(path: &Path) -> Vec<String> {
    let case = parse(path);
    let mut table = toml::Table::try_from(Config::default()).unwrap();
    table.extend(case.config.clone());
    let cfg: Config = table.try_into().unwrap();
    let date = case.run_date.expect("run_date");
    let run_date = RunDate::new(date, &cfg).unwrap();
    let ctx = session(&cfg).unwrap();
    for (name, t) in &case.tables {
        t.register(&ctx, name).unwrap();
    }
    let jobs = catalog::all_jobs().unwrap();
    let mut failures = Vec::new();
    for q in &case.queries {
        let job = jobs
            .iter()
            .find(|j| j.name == q.job)
            .unwrap_or_else(|| panic!("no sql/{}.sql", q.job));
        // A training job's snapshot T is the case's run date.
        let p = match job.layer {
            catalog::Layer::Training => label_params(&cfg, &run_date),
            _ => params(&cfg, &run_date),
        };
        let sql = catalog::bind(job, &p).unwrap();
        let batches = ctx
            .sql(&sql)
            .await
            .unwrap_or_else(|e| panic!("{}: {} does not plan: {e}", path.display(), q.job))
            .collect()
            .await
            .unwrap_or_else(|e| panic!("{}: {} fails: {e}", path.display(), q.job));
        let mut got = common::render(&batches);
        let mut expected = q.expected.clone();
        if q.rowsort {
            got.sort();
            expected.sort();
        }
        if got != expected {
            failures.push(format!(
                "{}:{} {}:\n  expected:\n    {}\n  got:\n    {}",
                path.display(),
                q.line,
                q.job,
                expected.join("\n    "),
                got.join("\n    ")
            ));
        }
    }
    failures
}

fn cases() -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(common::repo().join("tests/sql"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_slt_case_returns_its_hand_checked_rows() {
    let cases = cases();
    assert!(cases.len() >= 5, "found {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        failures.extend(run_case(case).await);
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

/// A job's output changed on purpose must change its expected rows: the runner catches a wrong
/// expectation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_expectation_fails() {
    let dir = common::tempdir("slt-wrong");
    let original = common::repo().join("tests/sql/int_referral_generations.slt");
    let text = std::fs::read_to_string(&original).unwrap();
    let broken = text.replacen("C,3", "C,4", 1);
    assert_ne!(text, broken, "the case must hold the row C,3");
    let path = dir.join("broken.slt");
    std::fs::write(&path, broken).unwrap();
    let failures = run_case(&path).await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].contains("C,4") && failures[0].contains("C,3"));
}

/// Every job of the nightly run has a golden test: an `.slt` case here, or a whole-run case in
/// tests/golden/ whose expected tables are the job's output (intermediate jobs are covered by the
/// published tables computed from them).
#[test]
fn every_nightly_job_has_a_golden_test() {
    let mut covered: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for case in cases() {
        for q in parse(&case).queries {
            covered.insert(q.job);
        }
    }
    for case in std::fs::read_dir(common::repo().join("tests/golden")).unwrap() {
        let expected = case.unwrap().path().join("expected");
        for file in std::fs::read_dir(expected).unwrap() {
            let name = file.unwrap().file_name().to_string_lossy().to_string();
            let table = name.trim_end_matches(".csv");
            let table = table.split('@').next().unwrap();
            let table = table.rsplit("__").next().unwrap();
            covered.insert(table.to_string());
        }
    }
    let jobs = catalog::nightly_jobs().unwrap();
    // An intermediate job is covered when a covered job reads it.
    for job in jobs.iter().rev() {
        if covered.contains(&job.name) {
            covered.extend(job.reads.iter().cloned());
        }
    }
    let missing: Vec<&str> = jobs
        .iter()
        .map(|j| j.name.as_str())
        .filter(|n| !covered.contains(*n))
        .collect();
    assert!(
        missing.is_empty(),
        "jobs without a golden test: {missing:?}"
    );
}

/// Training computes `int_signup_facts` once, at the run date, and every snapshot T restricts it
/// (`int_referral_signups` at T over the run date's facts). On generated data, the snapshot's
/// signups and customer_features equal those computed from the inputs alone at T, row for row,
/// and the run date's signups cut at T do not (referee ids and first services named after T are
/// what the restriction removes), so the test sees the restriction at work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_from_the_run_dates_signup_facts_equal_their_own_computation() {
    use flywheel_pipelines::steps::scoring::training_set::{features_at, AS_OF_ANY_EARLIER};
    use flywheel_pipelines::steps::{demo_data, ingest};
    use flywheel_pipelines::storage::Root;
    use futures::TryStreamExt;

    let dir = common::tempdir("snapshot-facts");
    let cfg = Config {
        scratch: Some(dir.join("scratch").display().to_string()),
        ..Config::default()
    };
    let date = |d: &str| RunDate::new(d.parse().unwrap(), &cfg).unwrap();
    let as_of = date("2026-11-23");
    let input = Root::parse(&dir.join("in").display().to_string()).unwrap();
    demo_data::generate(&input, 4000, 42, &as_of).await.unwrap();
    let scratch = flywheel_pipelines::engine::Scratch::open(&cfg, "facts").unwrap();
    let ctx = session(&cfg).unwrap();
    ingest::load_inputs(&ctx, &cfg, &input, &as_of, &scratch)
        .await
        .unwrap();
    // At the run date, as training does: the facts and the signups, registered in `ctx`.
    let signups = ["int_referral_signups"];
    let at_run_date = jobs_at(&ctx, &ctx, &[], &signups, &cfg, &as_of).await;
    let run_date_signups = sorted(&at_run_date["int_referral_signups"]);
    let inputs = flywheel_pipelines::contracts::inputs();
    let mut cut_differs = 0;
    for t in ["2026-11-22", "2026-08-25", "2026-05-27", "2025-11-28"].map(date) {
        // From the inputs alone at T, as training did before; and from the run date's facts.
        let own = jobs_at(
            &ctx,
            &session(&cfg).unwrap(),
            inputs,
            &["customer_features"],
            &cfg,
            &t,
        )
        .await;
        let own_signups = sorted(&own["int_referral_signups"]);
        assert!(
            own_signups.len() > 100,
            "{t}: {} signups",
            own_signups.len()
        );
        let snap = session(&cfg).unwrap();
        let restricted = jobs_at(&ctx, &snap, &AS_OF_ANY_EARLIER, &signups, &cfg, &t).await;
        assert_eq!(
            sorted(&restricted["int_referral_signups"]),
            own_signups,
            "{t}"
        );
        // customer_features as training computes it.
        let stored = features_at(&ctx, &cfg, &t, &scratch).await.unwrap();
        let batches = stored
            .batches(None)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let features = Table {
            schema: stored.schema.clone(),
            batches,
        };
        assert_eq!(sorted(&features), sorted(&own["customer_features"]), "{t}");
        // The run date's signups cut at T (signup_ns is the 9th column) are not T's own.
        let before_t =
            |r: &&String| r.split(',').nth(8).unwrap().parse::<i64>().unwrap() < t.as_of_ns();
        let cut: Vec<String> = run_date_signups.iter().filter(before_t).cloned().collect();
        assert_eq!(cut.len(), own_signups.len(), "{t}");
        cut_differs += usize::from(cut != own_signups);
    }
    assert!(
        cut_differs >= 3,
        "only {cut_differs} snapshots see the restriction"
    );
    scratch.remove().await;
}

/// Run, in `ctx` at `t`, the jobs `targets` need beyond the tables `given` (registered in `ctx`
/// from `from`); every result held in memory.
async fn jobs_at(
    from: &datafusion::prelude::SessionContext,
    ctx: &datafusion::prelude::SessionContext,
    given: &[&str],
    targets: &[&str],
    cfg: &Config,
    t: &RunDate,
) -> std::collections::BTreeMap<String, Table> {
    use flywheel_pipelines::engine::{run_jobs, Release, Stages, Tables};
    for name in given {
        ctx.register_table(*name, from.table_provider(*name).await.unwrap())
            .unwrap();
    }
    let jobs = catalog::jobs_for(targets, given).unwrap();
    let mut tables = Tables::default();
    let (p, release) = (params(cfg, t), Release::none());
    run_jobs(
        ctx,
        &jobs,
        &p,
        &mut Stages::default(),
        &mut tables,
        &release,
    )
    .await
    .unwrap();
    tables.held
}

/// A table's rows as text, sorted.
fn sorted(t: &Table) -> Vec<String> {
    let mut rows = common::render(&t.batches);
    rows.sort();
    rows
}
