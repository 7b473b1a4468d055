//! Training from the command line: validate the inputs as of the training date, then train a
//! challenger per target and promote it when it is at least as good as the champion.

use chrono::NaiveDate;

use crate::config::Config;
use crate::engine::RunDate;
use crate::engine::Scratch;
use crate::error::Result;
use crate::steps::scoring::train::{self, training_inputs, Request, Trained, TrainingInputs};
use crate::steps::scoring::training_set::Snapshots;
use crate::steps::scoring::{Registry, Target};
use crate::storage::Root;

/// What `flywheel train` was asked.
pub struct TrainSettings {
    pub targets: Vec<Target>,
    pub as_of: NaiveDate,
    /// Where to write the out-of-time design matrices (for `tests/sklearn_compare.py`).
    pub export_design: Option<String>,
}

/// One trained target and how long it took.
pub struct TrainedTarget {
    pub target: Target,
    pub seconds: f64,
    pub trained: Trained,
}

/// Train every target of `settings`, in order.
pub async fn train(cfg: &Config, settings: &TrainSettings) -> Result<Vec<TrainedTarget>> {
    let as_of = RunDate::new(settings.as_of, cfg)?;
    let export = settings
        .export_design
        .as_deref()
        .map(Root::parse)
        .transpose()?;
    Scratch::within(cfg, "train", true, |scratch| async move {
        let inputs = training_inputs(cfg, &Root::parse(&cfg.input)?, &as_of, &scratch).await?;
        train_each(cfg, settings, &inputs, as_of, export.as_ref()).await
    })
    .await
}

async fn train_each(
    cfg: &Config,
    settings: &TrainSettings,
    inputs: &TrainingInputs,
    as_of: RunDate,
    export: Option<&Root>,
) -> Result<Vec<TrainedTarget>> {
    let registry = Registry::open(cfg)?;
    let mut snapshots = Snapshots::new();
    let mut out = Vec::new();
    for &target in &settings.targets {
        let started = std::time::Instant::now();
        let request = Request {
            target,
            as_of,
            fingerprint: &inputs.fingerprint,
            export,
        };
        let trained = train::train(inputs, cfg, &registry, &request, &mut snapshots).await?;
        out.push(TrainedTarget {
            target,
            seconds: started.elapsed().as_secs_f64(),
            trained,
        });
    }
    Ok(out)
}
