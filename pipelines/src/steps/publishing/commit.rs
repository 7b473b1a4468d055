//! The commit of a run's staged files, made safe against a crash or a storage error at any
//! instant by a journal.
//!
//! 1. Every file of the run (tables, CRM exports, report, manifest) is staged under
//!    `_staging/<run id>/` (see [`super::publisher`]).
//! 2. The journal `_staging/<run id>/_commit.json` is written: every move (staged file → its
//!    published place) and the published files the new version drops. From here the commit is
//!    decided and only ever finished, never rolled back (every file it needs is staged).
//! 3. The date's completion marker `_runs/dt=D/_SUCCESS` is removed: the date is changing.
//! 4. Each staged file is moved over its published file (an atomic replace on a local disk; a
//!    copy over the object on S3, which readers see whole, old or new). A published folder is
//!    never empty, and each table is always either its whole old or its whole new version.
//! 5. Dropped files are deleted; the manifest is the last move.
//! 6. The marker is written: the date is complete (what a scheduler's sensor waits for).
//! 7. The journal is deleted, then whatever is left of the staging folder.
//!
//! A commit that stops anywhere is finished by the next `flywheel run` or `flywheel recover` on
//! the output ([`recover`]): it takes the date's lock (so never while the run that wrote the
//! journal is alive), and replays the journal: a move whose staged file is gone was done. Staging
//! of runs that died before their journal is removed, and a run that ended without its ledger
//! record gets an `abandoned` one.
//!
//! `FLYWHEEL_COMMIT_KILL_AFTER=k` (the process kills itself with SIGKILL after the commit's k-th
//! step) and `FLYWHEEL_COMMIT_FAIL_AFTER=k` (a storage error after the k-th step) exist for the
//! crash tests; the steps are counted from the journal's write (step 1).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use super::{ledger, lock};
use crate::engine::RunDate;
use crate::error::{FlywheelError, Result};
use crate::storage::Root;

/// Where a run stages its files, below the output root.
pub fn staging(run_id: &str) -> String {
    format!("{STAGING}/{run_id}")
}

const STAGING: &str = "_staging";
const JOURNAL: &str = "_commit.json";

/// The marker of a complete date, written last by every commit.
pub fn marker(date: &str) -> String {
    format!("_runs/dt={date}/_SUCCESS")
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Move {
    pub from: String,
    pub to: String,
}

/// What a commit does, written before it touches anything published.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Journal {
    pub schema_version: u32,
    pub run_id: String,
    pub run_date: String,
    /// In order; the manifest last.
    pub moves: Vec<Move>,
    /// Published files the new version does not have, deleted after the moves.
    pub deletes: Vec<String>,
}

impl Journal {
    pub fn new(run_id: &str, date: &RunDate, moves: Vec<Move>, deletes: Vec<String>) -> Journal {
        Journal {
            schema_version: ledger::SCHEMA_VERSION,
            run_id: run_id.to_string(),
            run_date: date.to_string(),
            moves,
            deletes,
        }
    }

    fn path(&self) -> String {
        format!("{}/{JOURNAL}", staging(&self.run_id))
    }
}

/// Counts the commit's steps; the fault injection of the crash tests hooks in here.
struct Steps {
    done: usize,
    kill_after: Option<usize>,
    fail_after: Option<usize>,
}

impl Steps {
    fn from_env() -> Steps {
        let number = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
        Steps {
            done: 0,
            kill_after: number("FLYWHEEL_COMMIT_KILL_AFTER"),
            fail_after: number("FLYWHEEL_COMMIT_FAIL_AFTER"),
        }
    }

    /// Replaying a journal injects nothing.
    fn none() -> Steps {
        Steps {
            done: 0,
            kill_after: None,
            fail_after: None,
        }
    }

    fn done(&mut self, what: &str) -> Result<()> {
        self.done += 1;
        debug!(step = self.done, what, "commit step done");
        if self.kill_after == Some(self.done) {
            // SAFETY: kill(2) on our own pid; nothing after it runs.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
        if self.fail_after == Some(self.done) {
            return Err(FlywheelError::storage(
                what,
                "injected storage error (FLYWHEEL_COMMIT_FAIL_AFTER)",
            ));
        }
        Ok(())
    }
}

/// Write the journal and carry it out.
pub async fn execute(root: &Root, journal: &Journal) -> Result<()> {
    let mut steps = Steps::from_env();
    let json = serde_json::to_vec_pretty(journal).map_err(FlywheelError::internal)?;
    root.put(&journal.path(), json.into()).await?;
    steps.done("write the commit journal")?;
    finish(root, journal, &mut steps).await.map_err(|e| {
        let hint = "; the commit is journaled: the next `flywheel run` or `flywheel recover` on this output finishes it";
        match e {
            FlywheelError::Storage { location, message } => FlywheelError::Storage {
                location,
                message: message + hint,
            },
            other => other,
        }
    })
}

/// Carry out a written journal from wherever it stopped (every step can be done again).
async fn finish(root: &Root, journal: &Journal, steps: &mut Steps) -> Result<()> {
    let marker = marker(&journal.run_date);
    root.delete(&marker).await?;
    steps.done("remove the completion marker")?;
    for m in &journal.moves {
        if !root.rename_if_present(&m.from, &m.to).await? && !root.exists(&m.to).await? {
            return Err(FlywheelError::EarlierOutput {
                path: root.display(&m.from),
                problem: format!(
                    "the commit of run {} cannot be finished: this staged file is gone and {} was never published",
                    journal.run_id,
                    root.display(&m.to)
                ),
            });
        }
        steps.done(&m.to)?;
    }
    for d in &journal.deletes {
        root.delete(d).await?;
        steps.done(d)?;
    }
    let body = serde_json::json!({ "run_id": journal.run_id, "run_date": journal.run_date });
    root.put(&marker, body.to_string().into()).await?;
    steps.done("write the completion marker")?;
    root.delete(&journal.path()).await?;
    steps.done("remove the commit journal")?;
    root.delete_prefix(&staging(&journal.run_id)).await?;
    steps.done("remove the staging folder")?;
    Ok(())
}

/// Who is recovering: an id for the locks it takes, the date whose lock it already holds (a run
/// holds its own date's), and when a lock counts as stale.
pub struct Recoverer<'a> {
    pub id: &'a str,
    pub holding: Option<(&'a str, &'a lock::Lock)>,
    pub stale_after_minutes: i64,
}

/// Finish every interrupted commit, remove the staging of dead runs and free the locks of dead
/// runs, date by date under the date's lock; a date whose lock a live run holds is left to that
/// run. A run that ended without its ledger record (killed, or its store stopped answering) gets
/// an `abandoned` one. Returns what was done, one line each.
pub async fn recover(root: &Root, me: &Recoverer<'_>) -> Result<Vec<String>> {
    // date -> the runs with staging (run id, whether its journal was written)
    let mut dates: BTreeMap<String, BTreeMap<String, bool>> = BTreeMap::new();
    for listed in root.list(&format!("{STAGING}/")).await? {
        let rest = listed
            .path
            .trim_start_matches(STAGING)
            .trim_start_matches('/');
        let Some((run_id, file)) = rest.split_once('/') else {
            continue;
        };
        if run_id == me.id {
            continue;
        }
        let Some(date) = run_id
            .get(..10)
            .filter(|d| d.parse::<chrono::NaiveDate>().is_ok())
        else {
            warn!(staging = %root.display(&staging(run_id)), "not a run's staging folder; left alone");
            continue;
        };
        let journaled = dates
            .entry(date.to_string())
            .or_default()
            .entry(run_id.to_string())
            .or_default();
        *journaled |= file == JOURNAL;
    }
    for date in lock::dates(root).await? {
        dates.entry(date).or_default();
    }
    let mut done = Vec::new();
    for (date, runs) in dates {
        if let Some((held, lock)) = me.holding.filter(|(d, _)| *d == date) {
            for line in recover_date(root, held, &runs, Some(lock), me.id).await? {
                info!(date = %date, "{line}");
                done.push(line);
            }
            continue;
        }
        let lock = match lock::acquire(root, &date, me.id, me.stale_after_minutes, false).await {
            Ok(lock) => lock,
            Err(FlywheelError::Locked { holder, .. }) => {
                if !runs.is_empty() {
                    info!(date = %date, "staging left alone: {holder} holds the date");
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        let outcome = recover_date(root, &date, &runs, Some(&lock), me.id).await;
        lock.release().await;
        for line in outcome? {
            info!(date = %date, "{line}");
            done.push(line);
        }
    }
    Ok(done)
}

/// The recovery of one date, under its lock.
async fn recover_date(
    root: &Root,
    date: &str,
    runs: &BTreeMap<String, bool>,
    lock: Option<&lock::Lock>,
    found_by: &str,
) -> Result<Vec<String>> {
    let mut done = Vec::new();
    if let Some(holder) = lock.and_then(|l| l.taken_over.as_ref()) {
        if !runs.contains_key(&holder.run_id) {
            ledger::record_abandoned(
                root,
                &holder.run_id,
                date,
                found_by,
                "it ended without releasing its lock",
            )
            .await?;
            done.push(format!(
                "freed the lock of {date} left by run {} (host {}, pid {})",
                holder.run_id, holder.host, holder.pid
            ));
        }
    }
    for (run_id, &journaled) in runs {
        done.push(recover_run(root, run_id, date, journaled, found_by).await?);
    }
    Ok(done)
}

async fn recover_run(
    root: &Root,
    run_id: &str,
    date: &str,
    journaled: bool,
    found_by: &str,
) -> Result<String> {
    let line: (String, &str) = if journaled {
        let path = format!("{}/{JOURNAL}", staging(run_id));
        let journal: Journal = match root.get(&path).await? {
            Some(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| FlywheelError::EarlierOutput {
                    path: root.display(&path),
                    problem: format!("not a commit journal ({e})"),
                })?
            }
            // Finished by someone else since the listing.
            None => return Ok(format!("commit of run {run_id} ({date}) already finished")),
        };
        finish(root, &journal, &mut Steps::none()).await?;
        (
            format!("finished the interrupted commit of run {run_id} ({date})"),
            "it stopped during its commit, which was finished for it: its tables are published",
        )
    } else {
        root.delete_prefix(&staging(run_id)).await?;
        (
            format!("removed the staging of run {run_id} ({date}), which ended before its commit"),
            "it stopped before its commit: nothing of it was published",
        )
    };
    ledger::record_abandoned(root, run_id, date, found_by, line.1).await?;
    Ok(line.0)
}
