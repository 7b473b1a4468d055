//! `flywheel demo`: demo exports into the input root when it holds none, a champion per target
//! trained explicitly (the nightly run never trains), then the nightly run.

use chrono::NaiveDate;

use crate::config::Config;
use crate::engine::RunDate;
use crate::engine::Scratch;
use crate::error::Result;
use crate::steps::demo_data;
use crate::steps::scoring::train::{self, training_inputs, Request};
use crate::steps::scoring::training_set::Snapshots;
use crate::steps::scoring::{registry, Registry, Target};
use crate::storage::Root;

/// What the demo did before the run, for the command line to say.
pub struct Prepared {
    /// Customers generated, or None when data was already there.
    pub generated: Option<usize>,
    /// Targets trained (those without a champion).
    pub trained: Vec<Target>,
}

/// Generate data when the input root holds none, and train a champion for every target that has
/// none. The caller then runs the nightly job.
pub async fn prepare(cfg: &Config, customers: usize, date: NaiveDate) -> Result<Prepared> {
    let run_date = RunDate::new(date, cfg)?;
    let root = Root::parse(&cfg.input)?;
    let mut generated = None;
    if root.list("crm_customers").await?.is_empty() {
        demo_data::generate(&root, customers, 42, &run_date).await?;
        generated = Some(customers);
    }
    let registry = Registry::open(cfg)?;
    let missing: Vec<Target> = registry::champions(&registry)
        .await?
        .into_iter()
        .filter(|(_, c)| c.version.is_none())
        .map(|(t, _)| t)
        .collect();
    if !missing.is_empty() {
        train_missing(cfg, &run_date, &registry, &missing).await?;
    }
    Ok(Prepared {
        generated,
        trained: missing,
    })
}

async fn train_missing(
    cfg: &Config,
    run_date: &RunDate,
    registry: &Registry,
    targets: &[Target],
) -> Result<()> {
    Scratch::within(cfg, "demo-train", true, |scratch| async move {
        let inputs = training_inputs(cfg, &Root::parse(&cfg.input)?, run_date, &scratch).await?;
        let mut snapshots = Snapshots::new();
        for &target in targets {
            let request = Request {
                target,
                as_of: *run_date,
                fingerprint: &inputs.fingerprint,
                export: None,
            };
            train::train(&inputs, cfg, registry, &request, &mut snapshots).await?;
        }
        Ok(())
    })
    .await
}
