//! Ingest: read the four exports from the input root, convert their physical types to the
//! contracts' (`read`), and apply the row rules generated from the contracts (`rules`, with the
//! key checks of `contracts::keys`), streaming: no input is held in memory. Valid rows are
//! written once to the run's scratch area and those before as_of registered in the query session
//! under each input's name, by location; broken rows are returned as rejects with their reasons.

use std::collections::BTreeMap;
use std::time::Instant;

use arrow::array::RecordBatch;
use datafusion::prelude::SessionContext;
use tracing::info;

use crate::config::Config;
use crate::contracts;
use crate::engine::{RunDate, Scratch};
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

/// Read and validate every input, streaming its valid rows into `scratch`; the valid rows before
/// the run date's as_of are registered in `ctx` under the inputs' names.
pub async fn load_inputs(
    ctx: &SessionContext,
    cfg: &Config,
    input: &Root,
    run_date: &RunDate,
    scratch: &Scratch,
) -> Result<ValidatedInputs> {
    Ok(load(ctx, cfg, input, run_date, scratch).await?.0)
}

/// Inputs read and validated once, for runs of several dates (a backfill): each date registers
/// them in its own session with its own as_of (`register`), as if it had read them itself.
pub struct CheckedInputs {
    validated: ValidatedInputs,
    inputs: Vec<rules::CheckedInput>,
}

impl CheckedInputs {
    /// Read and validate every input once into `scratch` (as of `first`, which only sets the
    /// counts logged).
    pub async fn load(
        cfg: &Config,
        input: &Root,
        first: &RunDate,
        scratch: &Scratch,
    ) -> Result<CheckedInputs> {
        let ctx = crate::engine::session(cfg)?;
        let (validated, inputs) = load(&ctx, cfg, input, first, scratch).await?;
        Ok(CheckedInputs { validated, inputs })
    }

    /// Register the valid rows before `run_date`'s as_of in `ctx`; the checks, files and
    /// rejects are those of the one reading, the `used` counts this date's.
    pub async fn register(
        &self,
        ctx: &SessionContext,
        cfg: &Config,
        run_date: &RunDate,
    ) -> Result<ValidatedInputs> {
        let mut checks = self.validated.checks.clone();
        for (check, input) in checks.iter_mut().zip(&self.inputs) {
            check.used = input.register(ctx, run_date.as_of_ns()).await?;
        }
        choose_joins(ctx, cfg, &checks);
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

/// Every input, each streamed from its files through the row rules into the scratch area and
/// registered as of the run date. Inputs are validated `target_partitions` at a time, each
/// started, in the contracts' order, once the inputs its foreign keys reference are registered
/// (the CRM before visits and NPS answers: they look up its valid rows; the referral events
/// reference none and are read alongside the CRM). The results are in the contracts' order; when
/// inputs fail, the error is that of the first failing input in that order, as if they had been
/// read one after another (the inputs before it are still read to the end).
async fn load(
    ctx: &SessionContext,
    cfg: &Config,
    input: &Root,
    run_date: &RunDate,
    scratch: &Scratch,
) -> Result<(ValidatedInputs, Vec<rules::CheckedInput>)> {
    let contracts = contracts::inputs()
        .iter()
        .map(|name| contracts::contract(name))
        .collect::<Result<Vec<_>>>()?;
    let mut waiting: Vec<usize> = (0..contracts.len()).collect();
    let mut registered = std::collections::BTreeSet::new();
    let mut validated = BTreeMap::new();
    let mut running = tokio::task::JoinSet::new();
    let mut failed: Option<(usize, FlywheelError)> = None;
    loop {
        while running.len() < cfg.target_partitions.max(1) {
            let ready = waiting.iter().position(|&i| {
                let refs = contracts[i]
                    .columns
                    .iter()
                    .filter_map(|c| c.references.as_ref());
                before_failure(&failed, i)
                    && refs
                        .map(|(table, _)| table)
                        .all(|t| registered.contains(t.as_str()))
            });
            let Some(at) = ready else { break };
            let i = waiting.remove(at);
            running.spawn(validate(ctx, cfg, input, scratch, i, contracts[i].clone()));
        }
        let Some(finished) = running.join_next().await else {
            break;
        };
        let (i, started, checked) = finished.map_err(FlywheelError::internal)?;
        let (mut check, rejects, checked, files) = match checked {
            Ok(checked) => checked,
            Err(e) => {
                if before_failure(&failed, i) {
                    failed = Some((i, e));
                }
                continue;
            }
        };
        check.used = checked.register(ctx, run_date.as_of_ns()).await?;
        let name = contracts[i].table.as_str();
        info!(
            input = name,
            rows = check.rows,
            rejected = check.rejected,
            used = check.used,
            files = files.len(),
            seconds = started.elapsed().as_secs_f64(),
            "input checked"
        );
        registered.insert(name);
        validated.insert(i, (check, rejects, checked, files));
    }
    if let Some((_, e)) = failed {
        return Err(e);
    }
    if !waiting.is_empty() {
        return Err(FlywheelError::internal(
            "the inputs' foreign keys reference each other in a cycle",
        ));
    }
    let (out, kept) = in_order(&contracts, validated);
    choose_joins(ctx, cfg, &out.checks);
    Ok((out, kept))
}

/// Whether input `i` comes before the first input that failed, in the contracts' order: only
/// those are still started, and the failure of one of them is the error reported instead.
fn before_failure(failed: &Option<(usize, FlywheelError)>, i: usize) -> bool {
    failed.as_ref().is_none_or(|(f, _)| i < *f)
}

/// One input read and validated (the tuple of [`rules::validate_input`]).
type Validated = (
    InputCheck,
    Vec<RecordBatch>,
    rules::CheckedInput,
    Vec<InputFile>,
);

/// The task that validates input `i` (`contract`): its index, when it started, and its result.
fn validate(
    ctx: &SessionContext,
    cfg: &Config,
    input: &Root,
    scratch: &Scratch,
    i: usize,
    contract: contracts::Contract,
) -> impl std::future::Future<Output = (usize, Instant, Result<Validated>)> + Send + 'static {
    let (ctx, input, scratch) = (ctx.clone(), input.clone(), scratch.clone());
    let partitions = cfg.target_partitions;
    async move {
        let started = Instant::now();
        let checked = match read::require_files(&input, &contract.table).await {
            Ok(listed) => {
                rules::validate_input(&ctx, &contract, &input, listed, &scratch, partitions).await
            }
            Err(e) => Err(e),
        };
        (i, started, checked)
    }
}

/// The validated inputs, in the contracts' order.
fn in_order(
    contracts: &[contracts::Contract],
    validated: BTreeMap<usize, Validated>,
) -> (ValidatedInputs, Vec<rules::CheckedInput>) {
    let mut kept = Vec::new();
    let mut out = ValidatedInputs {
        checks: vec![],
        files: BTreeMap::new(),
        rejects: BTreeMap::new(),
    };
    for (i, (check, rejects, checked, files)) in validated {
        let name = contracts[i].table.clone();
        kept.push(checked);
        out.files.insert(name.clone(), files);
        out.rejects.insert(name, rejects);
        out.checks.push(check);
    }
    (out, kept)
}

/// Plan sort-merge joins when the inputs are too large for hash joins in the memory budget
/// (`engine::session::choose_joins`).
fn choose_joins(ctx: &SessionContext, cfg: &Config, checks: &[InputCheck]) {
    let rows = checks.iter().map(|c| c.used).sum();
    if crate::engine::session::choose_joins(ctx, cfg, rows) {
        info!(
            input_rows = rows,
            memory_limit_mb = cfg.memory_limit_mb,
            "joins are sort-merge joins, which spill: hash joins of inputs this large would outgrow the memory budget"
        );
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
