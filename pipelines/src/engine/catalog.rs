//! The catalog of SQL jobs: every file in `sql/` (embedded at build time by `pipelines/build.rs`),
//! one job per table. Like dbt's `ref()`, a job's inputs are the table names its text mentions,
//! and jobs run in an order where each comes after what it reads. A file's name says its layer,
//! as dbt's naming does:
//! - `int_<name>.sql`: an intermediate table of the nightly run, registered for later jobs and
//!   never published;
//! - `train_<name>.sql`: a training-set query, run by training only;
//! - any other name: a published table, whose contract (`data-contracts/<name>.odcs.yaml`) says
//!   where and how it is published.
//!
//! The tables Rust steps provide (the scores, the lists of earlier run dates) are named by the
//! contracts too: a published table whose producer is not `sql`, and `previous_<list>` for each
//! list with a cooldown.

use std::collections::{BTreeMap, BTreeSet};

use crate::contracts::{self, Role};
use crate::error::{FlywheelError, Result};

include!(concat!(env!("OUT_DIR"), "/sql_files.rs"));

/// Which layer a job belongs to, from its file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    Intermediate,
    Training,
    Published,
}

impl Layer {
    fn of(name: &str) -> Layer {
        if name.starts_with("int_") {
            Layer::Intermediate
        } else if name.starts_with("train_") {
            Layer::Training
        } else {
            Layer::Published
        }
    }
}

#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub sql: String,
    pub layer: Layer,
    pub reads: BTreeSet<String>,
}

impl Job {
    pub fn publish(&self) -> bool {
        self.layer == Layer::Published
    }

    /// How many times the job's SQL names `table` (outside comments and string literals).
    pub fn mentions(&self, table: &str) -> usize {
        words(&self.sql).iter().filter(|w| *w == table).count()
    }

    /// Whether the job's header asks the engine to keep its joins' inputs as written
    /// (`-- Engine:   keep_join_order`, then why): DataFusion otherwise swaps a hash join's inputs to
    /// build on the side its statistics call smaller, and a figure aggregated from a log has no
    /// size it can compare, so a join chain onto the customers built on the wide customer rows.
    pub fn keeps_join_order(&self) -> bool {
        self.sql
            .lines()
            .take_while(|l| l.starts_with("--"))
            .filter_map(|l| l.trim_start_matches("--").trim().strip_prefix("Engine:"))
            .any(|v| v.split_whitespace().next() == Some("keep_join_order"))
    }
}

/// The band edges of the KPI tables (`sql/int_kpi_bands.sql`), which the report draws too.
pub const KPI_BANDS: &str = "int_kpi_bands";

/// The table the scoring step provides.
pub const SCORES: &str = "customer_scores";

/// The KPI rows of earlier run dates, read back from the output for `sql/kpi_trends.sql`.
pub const EARLIER_KPIS: &str = "earlier_kpis";

/// The members of the lists of earlier run dates, read back from the output for
/// `sql/kpi_trends.sql`.
pub const EARLIER_LISTS: &str = "earlier_lists";

/// How many earlier run dates `kpi_trends` shows beside the run's own (12 points in all).
pub const TREND_DATES: usize = 11;

/// The name under which the rows of `list` published on earlier run dates are registered.
pub fn previous(list: &str) -> String {
    format!("previous_{list}")
}

/// Tables that Rust steps provide: published tables not built by SQL (the scores; the rejects
/// are not read by any job), `previous_<list>` for every list with a cooldown, and the KPI rows
/// and list members of earlier run dates.
pub fn rust_tables() -> Result<Vec<String>> {
    let mut out = vec![EARLIER_KPIS.to_string(), EARLIER_LISTS.to_string()];
    for c in contracts::published()? {
        if let Role::Published(p) = &c.role {
            if p.producer == "scoring" {
                out.push(c.table.clone());
            }
            if p.cooldown_setting.is_some() {
                out.push(previous(&c.table));
            }
        }
    }
    Ok(out)
}

/// `jobs` (in run order) split into those that run before the scoring step and those that need
/// the scores, directly or through a table computed from them; each part keeps the run order.
pub fn split_at_scores(jobs: Vec<Job>) -> (Vec<Job>, Vec<Job>) {
    let mut after_scores: BTreeSet<String> = BTreeSet::from([SCORES.to_string()]);
    let (mut early, mut late) = (Vec::new(), Vec::new());
    for job in jobs {
        if job.reads.iter().any(|t| after_scores.contains(t)) {
            after_scores.insert(job.name.clone());
            late.push(job);
        } else {
            early.push(job);
        }
    }
    (early, late)
}

/// The jobs of the nightly run (intermediate and published), each after the tables it reads.
pub fn nightly_jobs() -> Result<Vec<Job>> {
    let all = all_jobs()?;
    Ok(all
        .into_iter()
        .filter(|j| j.layer != Layer::Training)
        .collect())
}

/// The jobs needed to compute `targets` (and nothing else) when the tables `given` are already
/// registered (their jobs, and what only those jobs read, do not run), in run order.
pub fn jobs_for(targets: &[&str], given: &[&str]) -> Result<Vec<Job>> {
    let all = nightly_jobs()?;
    let runs = |job: &Job, needed: &BTreeSet<String>| {
        needed.contains(&job.name) && !given.contains(&job.name.as_str())
    };
    let mut needed: BTreeSet<String> = targets.iter().map(|t| t.to_string()).collect();
    for job in all.iter().rev() {
        if runs(job, &needed) {
            needed.extend(job.reads.iter().cloned());
        }
    }
    Ok(all.into_iter().filter(|j| runs(j, &needed)).collect())
}

/// A training-set job by name (`train_<name>.sql`).
pub fn training_job(name: &str) -> Result<Job> {
    all_jobs()?
        .into_iter()
        .find(|j| j.name == name && j.layer == Layer::Training)
        .ok_or_else(|| FlywheelError::internal(format!("no training job sql/{name}.sql")))
}

/// Every job, in an order where each job comes after the tables it reads.
pub fn all_jobs() -> Result<Vec<Job>> {
    let rust = rust_tables()?;
    let inputs = contracts::inputs();
    let known: BTreeSet<&str> = SQL_FILES
        .iter()
        .map(|(n, _)| *n)
        .chain(inputs.iter().copied())
        .chain(rust.iter().map(String::as_str))
        .chain(["snapshot_features"])
        .collect();
    let mut jobs: BTreeMap<String, Job> = BTreeMap::new();
    for (name, sql) in SQL_FILES {
        let header = sql.lines().next().unwrap_or_default();
        if !header.starts_with(&format!("-- {name}")) {
            return Err(FlywheelError::internal(format!(
                "sql/{name}.sql must open with `-- {name}`"
            )));
        }
        let reads = identifiers(sql)
            .into_iter()
            .filter(|id| id != name && known.contains(id.as_str()))
            .collect();
        jobs.insert(
            name.to_string(),
            Job {
                name: name.to_string(),
                sql: sql.to_string(),
                layer: Layer::of(name),
                reads,
            },
        );
    }
    let provided = inputs
        .iter()
        .map(|s| s.to_string())
        .chain(rust)
        .chain(["snapshot_features".to_string()]);
    order(jobs, provided.collect())
}

/// Kahn's algorithm, ties broken by name so the order is stable.
fn order(mut pending: BTreeMap<String, Job>, mut done: BTreeSet<String>) -> Result<Vec<Job>> {
    let mut out = Vec::new();
    while !pending.is_empty() {
        let ready: Vec<String> = pending
            .values()
            .filter(|j| j.reads.iter().all(|r| done.contains(r)))
            .map(|j| j.name.clone())
            .collect();
        if ready.is_empty() {
            let names: Vec<&String> = pending.keys().collect();
            return Err(FlywheelError::internal(format!(
                "SQL jobs read each other in a cycle: {names:?}"
            )));
        }
        for name in ready {
            if let Some(job) = pending.remove(&name) {
                done.insert(name);
                out.push(job);
            }
        }
    }
    Ok(out)
}

/// Identifiers outside comments and string literals.
fn identifiers(sql: &str) -> BTreeSet<String> {
    words(sql).into_iter().collect()
}

/// Every identifier outside comments and string literals, in order, lowercased.
fn words(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in sql.lines() {
        let code = line.split("--").next().unwrap_or_default();
        let mut in_string = false;
        let mut word = String::new();
        for ch in code.chars().chain(std::iter::once(' ')) {
            if ch == '\'' {
                in_string = !in_string;
                word.clear();
                continue;
            }
            if in_string {
                continue;
            }
            if ch.is_ascii_alphanumeric() || ch == '_' {
                word.push(ch.to_ascii_lowercase());
            } else if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
        }
    }
    out
}

/// Replace `${name}` placeholders with SQL literals. An unknown placeholder is a bug.
pub fn bind(job: &Job, params: &BTreeMap<String, String>) -> Result<String> {
    let mut out = String::with_capacity(job.sql.len());
    let mut rest = job.sql.as_str();
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').ok_or_else(|| {
            FlywheelError::internal(format!("sql/{}.sql: unclosed ${{", job.name))
        })?;
        let key = &rest[start + 2..start + end];
        let value = params.get(key).ok_or_else(|| {
            FlywheelError::internal(format!(
                "sql/{}.sql: unknown parameter ${{{key}}}",
                job.name
            ))
        })?;
        out.push_str(value);
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `-- Engine:   keep_join_order` in a job's header (not in its body) keeps its joins as
    /// written; customer_features asks for it, the other jobs do not.
    #[test]
    fn a_jobs_header_can_keep_its_join_order() {
        let job = |sql: &str| Job {
            name: "x".into(),
            sql: sql.into(),
            layer: Layer::Intermediate,
            reads: BTreeSet::new(),
        };
        assert!(job("-- x\n-- Engine:   keep_join_order (why)\nSELECT 1").keeps_join_order());
        assert!(!job("-- x\n-- Engine:   keep_join_orders\nSELECT 1").keeps_join_order());
        assert!(!job("-- x\nSELECT 1\n-- Engine: keep_join_order").keeps_join_order());
        let keeping: Vec<String> = all_jobs()
            .unwrap()
            .into_iter()
            .filter(Job::keeps_join_order)
            .map(|j| j.name)
            .collect();
        assert_eq!(keeping, ["customer_features"]);
    }

    #[test]
    fn jobs_come_after_what_they_read() {
        let jobs = nightly_jobs().unwrap();
        let pos = |n: &str| jobs.iter().position(|j| j.name == n).unwrap();
        assert!(pos("int_referral_generations") < pos("int_referral_signups"));
        assert!(pos("int_referral_signups") < pos("int_referrals"));
        assert!(pos("int_referrals") < pos("referral_attribution"));
        assert!(pos("int_referral_signups") < pos("customer_features"));
        let attribution = &jobs[pos("referral_attribution")];
        assert!(attribution.publish());
        assert_eq!(
            attribution.reads.iter().collect::<Vec<_>>(),
            vec!["int_referrals"]
        );
        assert!(!jobs[pos("int_referrals")].publish());
        assert!(jobs.iter().all(|j| j.layer != Layer::Training));
    }

    #[test]
    fn jobs_for_a_table_are_exactly_its_ancestors() {
        let names = |given: &[&str]| -> Vec<String> {
            jobs_for(&["customer_features"], given)
                .unwrap()
                .into_iter()
                .map(|j| j.name)
                .collect()
        };
        assert_eq!(
            names(&[]),
            [
                "int_referral_generations",
                "int_signup_facts",
                "int_referral_signups",
                "customer_features"
            ]
        );
        // Training's snapshots: the facts and generations are given, so only what reads the
        // snapshot date runs.
        assert_eq!(
            names(&["int_signup_facts", "int_referral_generations"]),
            ["int_referral_signups", "customer_features"]
        );
    }

    #[test]
    fn rust_tables_come_from_the_contracts() {
        assert_eq!(
            rust_tables().unwrap(),
            [
                "earlier_kpis",
                "earlier_lists",
                "previous_ambassador_candidates",
                "previous_churn_alerts",
                "customer_scores",
                "model_drift",
                "model_outcomes"
            ]
        );
    }

    #[test]
    fn comments_and_strings_are_not_dependencies() {
        let ids = identifiers("SELECT 'visits' AS x -- from visits\nFROM crm_customers");
        assert!(ids.contains("crm_customers"));
        assert!(!ids.contains("visits"));
    }

    #[test]
    fn mentions_count_the_names_in_the_code_only() {
        let job = Job {
            name: "b".into(),
            sql: "-- reads int_a\nSELECT 'int_a' FROM int_a JOIN int_a x ON TRUE -- int_a\nJOIN Int_A"
                .into(),
            layer: Layer::Published,
            reads: BTreeSet::new(),
        };
        assert_eq!(job.mentions("int_a"), 3);
        assert_eq!(job.mentions("b"), 0);
    }
}
