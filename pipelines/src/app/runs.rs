//! `flywheel runs`: the run ledger of an output root, oldest first; `flywheel recover`: what a
//! crash left behind, finished or cleaned up.

use crate::config::Config;
use crate::error::Result;
use crate::steps::publishing::commit::{self, Recoverer};
use crate::steps::publishing::ledger::{self, RunRecord};
use crate::storage::Root;

/// Every recorded run of the configured output (of one run date when `date` is given).
pub async fn list(cfg: &Config, date: Option<&str>) -> Result<Vec<RunRecord>> {
    ledger::list(&Root::parse(&cfg.output)?, date).await
}

/// Finish every interrupted commit of the configured output, remove the staging of dead runs and
/// free their locks (dates a live run holds are left to it). Returns what was done.
pub async fn recover(cfg: &Config) -> Result<Vec<String>> {
    let id = format!(
        "recover-{}",
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    );
    let me = Recoverer {
        id: &id,
        holding: None,
        stale_after_minutes: cfg.lock_stale_after_minutes,
    };
    commit::recover(&Root::parse(&cfg.output)?, &me).await
}
