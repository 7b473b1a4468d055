//! `flywheel runs`: the run ledger of an output root, oldest first.

use crate::config::Config;
use crate::error::Result;
use crate::steps::publishing::ledger::{self, RunRecord};
use crate::storage::Root;

/// Every recorded run of the configured output (of one run date when `date` is given).
pub async fn list(cfg: &Config, date: Option<&str>) -> Result<Vec<RunRecord>> {
    ledger::list(&Root::parse(&cfg.output)?, date).await
}
