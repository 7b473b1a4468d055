//! SQL jobs: one file in `sql/` per table. Like dbt's `ref()`, a job's inputs are the table names
//! its text mentions; the runner orders jobs from those names. A job whose header says
//! `(intermediate` is registered for later jobs but not published.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{FlywheelError, Result};

const SQL_FILES: &[(&str, &str)] = &[
    (
        "referral_generations",
        include_str!("../../sql/referral_generations.sql"),
    ),
    (
        "referral_signups",
        include_str!("../../sql/referral_signups.sql"),
    ),
    ("referrals", include_str!("../../sql/referrals.sql")),
    (
        "referral_attribution",
        include_str!("../../sql/referral_attribution.sql"),
    ),
    (
        "customer_features",
        include_str!("../../sql/customer_features.sql"),
    ),
    ("referral_kpis", include_str!("../../sql/referral_kpis.sql")),
    (
        "lifecycle_health",
        include_str!("../../sql/lifecycle_health.sql"),
    ),
    (
        "lifecycle_diagnosis",
        include_str!("../../sql/lifecycle_diagnosis.sql"),
    ),
    (
        "channel_funnel",
        include_str!("../../sql/channel_funnel.sql"),
    ),
    (
        "referrer_rewards",
        include_str!("../../sql/referrer_rewards.sql"),
    ),
    (
        "referred_vs_other",
        include_str!("../../sql/referred_vs_other.sql"),
    ),
    (
        "ambassador_candidates",
        include_str!("../../sql/ambassador_candidates.sql"),
    ),
    ("churn_alerts", include_str!("../../sql/churn_alerts.sql")),
];

/// Tables that Rust steps provide: the scores, and the lists of earlier run dates.
pub const RUST_TABLES: [&str; 3] = [
    "customer_scores",
    "previous_ambassador_candidates",
    "previous_churn_alerts",
];

#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub sql: String,
    pub publish: bool,
    pub reads: BTreeSet<String>,
}

impl Job {
    /// Whether the job needs the scores (and so runs after the scoring step).
    pub fn needs_scores(&self) -> bool {
        self.reads.contains("customer_scores")
    }
}

/// Every job, in an order where each job comes after the tables it reads.
pub fn all_jobs(inputs: &[&str]) -> Result<Vec<Job>> {
    let names: BTreeSet<&str> = SQL_FILES.iter().map(|(n, _)| *n).collect();
    let known: BTreeSet<&str> = names
        .iter()
        .copied()
        .chain(inputs.iter().copied())
        .chain(RUST_TABLES)
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
                publish: !header.contains("(intermediate"),
                reads,
            },
        );
    }
    order(jobs, inputs)
}

/// Kahn's algorithm, ties broken by name so the order is stable.
fn order(mut pending: BTreeMap<String, Job>, inputs: &[&str]) -> Result<Vec<Job>> {
    let mut done: BTreeSet<String> = inputs
        .iter()
        .chain(RUST_TABLES.iter())
        .map(|s| s.to_string())
        .collect();
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
            let job = pending.remove(&name).expect("ready job is pending");
            done.insert(name);
            out.push(job);
        }
    }
    Ok(out)
}

/// Identifiers outside comments and string literals.
fn identifiers(sql: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
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
                out.insert(std::mem::take(&mut word));
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

    #[test]
    fn jobs_come_after_what_they_read() {
        let jobs = all_jobs(&crate::contracts::INPUTS).unwrap();
        let pos = |n: &str| jobs.iter().position(|j| j.name == n).unwrap();
        assert!(pos("referral_generations") < pos("referral_signups"));
        assert!(pos("referral_signups") < pos("referrals"));
        assert!(pos("referrals") < pos("referral_attribution"));
        assert!(pos("referral_signups") < pos("customer_features"));
        let attribution = &jobs[pos("referral_attribution")];
        assert!(attribution.publish);
        assert_eq!(
            attribution.reads.iter().collect::<Vec<_>>(),
            vec!["referrals"]
        );
        assert!(!jobs[pos("referrals")].publish);
    }

    #[test]
    fn comments_and_strings_are_not_dependencies() {
        let ids = identifiers("SELECT 'visits' AS x -- from visits\nFROM crm_customers");
        assert!(ids.contains("crm_customers"));
        assert!(!ids.contains("visits"));
    }
}
