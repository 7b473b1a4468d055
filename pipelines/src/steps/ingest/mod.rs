//! Ingest: read the four exports from the input root, convert their physical types to the
//! contracts' (`read`), and apply the row rules generated from the contracts (`rules`, with the
//! key checks of `contracts::keys`). Accepted rows before as_of are registered in the query
//! session under each input's name; broken rows are returned as rejects with their reasons.

use std::collections::BTreeMap;
use std::time::Instant;

use arrow::array::RecordBatch;
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use tracing::info;

use crate::config::Config;
use crate::contracts;
use crate::engine::RunDate;
use crate::error::{FlywheelError, Result};
use crate::storage::Root;

pub mod read;
pub mod rules;

pub use read::InputFile;
pub use rules::InputCheck;

/// Inputs after the row rules, registered in `ctx` under their names.
pub struct ValidatedInputs {
    pub checks: Vec<InputCheck>,
    pub files: BTreeMap<String, Vec<InputFile>>,
    pub rejects: BTreeMap<String, Vec<RecordBatch>>,
}

/// Read and validate every input; the accepted rows before the run date's as_of are registered
/// in `ctx` under the inputs' names.
pub async fn load_inputs(
    ctx: &SessionContext,
    cfg: &Config,
    input: &Root,
    run_date: &RunDate,
) -> Result<ValidatedInputs> {
    Ok(load(ctx, cfg, input, run_date, false).await?.0)
}

/// Inputs read and validated once, for runs of several dates (a backfill): each date registers
/// them in its own session with its own as_of (`register`), as if it had read them itself.
pub struct CheckedInputs {
    validated: ValidatedInputs,
    inputs: Vec<rules::CheckedInput>,
}

impl CheckedInputs {
    /// Read and validate every input once (as of `first`, which only sets the counts logged).
    pub async fn load(cfg: &Config, input: &Root, first: &RunDate) -> Result<CheckedInputs> {
        let ctx = crate::engine::session(cfg)?;
        let (validated, inputs) = load(&ctx, cfg, input, first, true).await?;
        Ok(CheckedInputs { validated, inputs })
    }

    /// Register the accepted rows before `run_date`'s as_of in `ctx`; the checks, files and
    /// rejects are those of the one reading, the `used` counts this date's.
    pub fn register(
        &self,
        ctx: &SessionContext,
        run_date: &RunDate,
        partitions: usize,
    ) -> Result<ValidatedInputs> {
        let mut checks = self.validated.checks.clone();
        for (check, input) in checks.iter_mut().zip(&self.inputs) {
            check.used = input.register(ctx, run_date.as_of_ns(), partitions)?;
        }
        Ok(ValidatedInputs {
            checks,
            files: self.validated.files.clone(),
            rejects: self.validated.rejects.clone(),
        })
    }

    /// The files read, per input.
    pub fn files(&self) -> &BTreeMap<String, Vec<InputFile>> {
        &self.validated.files
    }
}

async fn load(
    ctx: &SessionContext,
    cfg: &Config,
    input: &Root,
    run_date: &RunDate,
    keep: bool,
) -> Result<(ValidatedInputs, Vec<rules::CheckedInput>)> {
    let as_of_ns = run_date.as_of_ns();
    let mut kept = Vec::new();
    let inputs = contracts::inputs();
    let mut out = ValidatedInputs {
        checks: vec![],
        files: BTreeMap::new(),
        rejects: BTreeMap::new(),
    };
    // Reading (Parquet decoding and type conversion, on tokio's workers) runs one input ahead of
    // the row rules: while an input is validated, the next one is read. Inputs are validated in
    // the contracts' order, the CRM first, since the others' foreign keys look up its accepted rows.
    let (tx, mut rx) = futures::channel::mpsc::channel(0);
    let root = input.clone();
    let reader = AbortOnDrop(tokio::spawn(async move {
        let mut tx = tx;
        for name in inputs {
            let started = Instant::now();
            let loaded = match contracts::contract(name) {
                Ok(c) => read::load_input(&root, &c).await.map(|l| (c, l)),
                Err(e) => Err(e),
            };
            let failed = loaded.is_err();
            let read = (loaded, started.elapsed().as_secs_f64());
            if futures::SinkExt::send(&mut tx, read).await.is_err() || failed {
                break;
            }
        }
    }));
    for name in inputs {
        let (loaded, read_seconds) = rx
            .next()
            .await
            .ok_or_else(|| FlywheelError::internal("the input reader stopped early"))?;
        let (contract, loaded) = loaded?;
        let started = Instant::now();
        let files = loaded.files.clone();
        let (check, rejects, checked) = rules::validate_input(
            ctx,
            &contract,
            loaded,
            as_of_ns,
            cfg.target_partitions,
            keep,
        )
        .await?;
        kept.extend(checked);
        info!(
            input = name,
            rows = check.rows,
            rejected = check.rejected,
            used = check.used,
            files = files.len(),
            read_seconds,
            rules_seconds = started.elapsed().as_secs_f64(),
            "input checked"
        );
        out.files.insert(name.to_string(), files);
        out.rejects.insert(name.to_string(), rejects);
        out.checks.push(check);
    }
    drop(reader);
    Ok((out, kept))
}

/// A spawned task that is cancelled when this guard goes out of scope (e.g. on an early error).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Fail the run when an input's reject share is above the threshold.
pub fn enforce_reject_share(checks: &[InputCheck], max: f64) -> Result<()> {
    let over: Vec<String> = checks
        .iter()
        .filter(|c| c.reject_share > max)
        .map(|c| {
            let reasons =
                c.top_reasons.iter().map(|(r, n)| format!("{n}× {r}")).collect::<Vec<_>>().join("; ");
            format!(
                "input {}: {} of {} rows rejected ({:.2}% > max_reject_share {:.2}%); most common: {reasons}",
                c.input,
                c.rejected,
                c.rows,
                c.reject_share * 100.0,
                max * 100.0
            )
        })
        .collect();
    if over.is_empty() {
        Ok(())
    } else {
        Err(FlywheelError::TooManyRejects(over))
    }
}
