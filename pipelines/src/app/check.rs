//! `flywheel validate`: read and check the inputs against their contracts and row rules, as the
//! nightly run would, and publish nothing.

use chrono::NaiveDate;

use crate::config::Config;
use crate::engine::{session, RunDate, Scratch};
use crate::error::Result;
use crate::steps::ingest::{self, InputCheck};
use crate::storage::Root;

/// The contract results of every input as of `date` (an error when an input's reject share is
/// above `max_reject_share`, after the results were handed to `report`).
pub async fn validate(
    cfg: &Config,
    date: NaiveDate,
    report: impl FnOnce(&[InputCheck]),
) -> Result<()> {
    let run_date = RunDate::new(date, cfg)?;
    let ctx = session(cfg)?;
    let root = Root::parse(&cfg.input)?;
    let validated = Scratch::within(cfg, "validate", true, |scratch| async move {
        ingest::load_inputs(&ctx, cfg, &root, &run_date, &scratch).await
    })
    .await?;
    report(&validated.checks);
    ingest::enforce_reject_share(&validated.checks, cfg.max_reject_share)
}
