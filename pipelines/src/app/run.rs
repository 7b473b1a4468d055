//! The nightly run: load the champion models, read and validate the inputs, run the SQL jobs in
//! dependency order with the scoring step between those that need the scores, check every output
//! against its contract, publish atomically, write the manifest. It never trains: a target
//! without a champion stops the run (exit 5) unless `allow_missing_models` is set.

use std::collections::BTreeMap;

use chrono::{NaiveDate, Utc};
use datafusion::prelude::{col, SessionContext};
use tracing::{info, warn, Instrument};

use crate::config::Config;
use crate::contracts;
use crate::engine::catalog::{self, Job};
use crate::engine::{params, run_jobs, session, Release, RunDate, Scratch, Stages, Table, Tables};
use crate::error::{FlywheelError, Result};
use crate::steps::ingest::{self, CheckedInputs};
use crate::steps::presenting::{self, lineage, metrics, report};
use crate::steps::publishing::{
    self, commit, earlier, ledger, lock, EarlyStaging, Manifest, Publisher,
};
use crate::steps::scoring::{self, registry, ModelFile, Registry, Target};
use crate::storage::{self, Root};

/// What a finished run returns: its manifest, where the manifest is, and the tables it held in
/// memory (those the report reads: `presenting::READS`, and the drift and outcome figures).
pub struct RunReport {
    pub manifest: Manifest,
    pub manifest_path: String,
    pub tables: BTreeMap<String, Table>,
}

/// Notes of a run. `scorer`: about the models (their history, not the data): manifest only, so
/// the report stays byte-identical on reruns. `data`: about the data (e.g. referred_by cycles):
/// manifest and report.
#[derive(Default)]
struct Notes {
    scorer: Vec<String>,
    data: Vec<String>,
}

/// Who a run is: its date, output root, id and start.
struct ThisRun {
    date: RunDate,
    output: Root,
    /// `<run date>-<start in ns>`: names its staging folder, lock holder and ledger record.
    id: String,
    started_at: chrono::DateTime<Utc>,
}

/// The nightly entry point: run date `date` with configuration `cfg`. Only one run of a date at
/// a time: the date's lock is held from here to the end, released whether the run succeeds or
/// fails; every run, failed or refused, leaves a ledger record.
pub async fn run(cfg: &Config, date: NaiveDate) -> Result<RunReport> {
    run_with(cfg, date, None).await
}

/// A run of `date`; `shared`: inputs already read and validated (a backfill), else it reads them.
async fn run_with(
    cfg: &Config,
    date: NaiveDate,
    shared: Option<&CheckedInputs>,
) -> Result<RunReport> {
    let started_at = Utc::now();
    let run_date = RunDate::new(date, cfg)?;
    let this = ThisRun {
        date: run_date,
        output: Root::parse(&cfg.output)?,
        id: format!(
            "{}-{}",
            run_date,
            started_at.timestamp_nanos_opt().unwrap_or_default()
        ),
        started_at,
    };
    let (output, run_id) = (&this.output, &this.id);
    let span = tracing::info_span!("run", run_id = %run_id, run_date = %run_date);
    let hooks = Hooks::start(cfg, &this).instrument(span.clone()).await;
    let result = run_with_lock(cfg, &this, shared)
        .instrument(span.clone())
        .await;
    if let Err(e) = &result {
        span.in_scope(|| tracing::error!(exit_code = e.exit_code(), "run failed: {e}"));
    }
    let record = ledger::RunRecord {
        schema_version: ledger::SCHEMA_VERSION,
        run_id: run_id.clone(),
        run_date: run_date.to_string(),
        status: if result.is_ok() {
            "succeeded"
        } else {
            "failed"
        }
        .into(),
        exit_code: Some(result.as_ref().err().map_or(0, |e| e.exit_code())),
        error: result.as_ref().err().map(|e| e.to_string()),
        started_at: started_at.to_rfc3339(),
        ended_at: Utc::now().to_rfc3339(),
        flywheel_version: env!("CARGO_PKG_VERSION").to_string(),
        input_fingerprints: result
            .as_ref()
            .map(|r| fingerprints(&r.manifest))
            .unwrap_or_default(),
    };
    // The ledger must not turn a run's own outcome into another: a record that cannot be
    // written (e.g. the store is down, which the run's error already says) is a warning, and
    // waits a bounded time; the next run then records this one as abandoned.
    let written = tokio::time::timeout(
        crate::storage::CLEANUP_DEADLINE,
        ledger::write(output, &record),
    )
    .await;
    let failed = match written {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("the store did not answer".to_string()),
    };
    if let Some(e) = failed {
        let record = serde_json::to_string(&record).unwrap_or_default();
        span.in_scope(
            || warn!(error = %e, record = %record, "could not write the run's ledger record"),
        );
    }
    hooks.end(&this, &result).instrument(span).await;
    result
}

/// The platform hooks of a run: `--lineage-file` (OpenLineage START, then COMPLETE or FAIL) and
/// `--metrics-file` (Prometheus text, at the end). A hook that cannot be written is a warning:
/// it never changes the run's outcome.
struct Hooks {
    /// The lineage file, who the events are about, and the START event written there.
    lineage: Option<(String, lineage::RunInfo, serde_json::Value)>,
    metrics: Option<String>,
}

impl Hooks {
    async fn start(cfg: &Config, this: &ThisRun) -> Hooks {
        let mut hooks = Hooks {
            lineage: None,
            metrics: cfg.metrics_file.clone(),
        };
        let (Some(path), Ok(input)) = (&cfg.lineage_file, Root::parse(&cfg.input)) else {
            return hooks;
        };
        let run = lineage::RunInfo {
            run_id: this.id.clone(),
            as_of: this.date.as_of_rfc3339(),
            input,
            output: this.output.clone(),
        };
        match lineage::start(&run, &Utc::now().to_rfc3339()) {
            Ok(start) => {
                write_hook(path, format!("{start}\n")).await;
                hooks.lineage = Some((path.clone(), run, start));
            }
            Err(e) => warn!(error = %e, "could not build the OpenLineage START event"),
        }
        hooks
    }

    async fn end(self, this: &ThisRun, result: &Result<RunReport>) {
        let ended = Utc::now();
        if let Some(path) = &self.metrics {
            let text = metrics::prometheus(&metrics::Outcome {
                run_date: &this.date.to_string(),
                exit_code: result.as_ref().err().map_or(0, |e| e.exit_code()),
                seconds: (ended - this.started_at).num_milliseconds() as f64 / 1000.0,
                ended_at: ended.timestamp_millis() as f64 / 1000.0,
                published: result.as_ref().ok().map(|r| (&r.manifest, &r.tables)),
            });
            write_hook(path, text).await;
        }
        if let Some((path, run, start)) = &self.lineage {
            let error = result.as_ref().err().map(|e| e.to_string());
            let how = match result {
                Ok(r) => lineage::End::Complete(&r.manifest),
                Err(_) => lineage::End::Fail(error.as_deref().unwrap_or_default()),
            };
            match lineage::end(run, &ended.to_rfc3339(), &how) {
                Ok(end) => write_hook(path, format!("{start}\n{end}\n")).await,
                Err(e) => warn!(error = %e, "could not build the OpenLineage end event"),
            }
        }
    }
}

/// Write a hook's file, bounded in time; a failure is a warning.
async fn write_hook(path: &str, text: String) {
    let write = storage::write_file(path, text.into());
    match tokio::time::timeout(storage::CLEANUP_DEADLINE, write).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(file = %path, error = %e, "could not write a platform hook's file"),
        Err(_) => {
            warn!(file = %path, "the store did not answer while writing a platform hook's file")
        }
    }
}

/// Per input, the fingerprint of the files the run read.
fn fingerprints(manifest: &Manifest) -> BTreeMap<String, String> {
    manifest
        .inputs
        .iter()
        .map(|(input, files)| {
            let fp = ledger::fingerprint(
                files
                    .iter()
                    .map(|f| (f.path.as_str(), f.size, f.last_modified.as_str())),
            );
            (input.clone(), fp)
        })
        .collect()
}

/// The run under the date's lock (refused at once, exit 7, when another run holds it). Before
/// anything else it finishes what crashed runs left on the output (interrupted commits, staging,
/// locks of dead runs; see `commit::recover`).
async fn run_with_lock(
    cfg: &Config,
    this: &ThisRun,
    shared: Option<&CheckedInputs>,
) -> Result<RunReport> {
    let date = this.date.to_string();
    let lock = lock::acquire(
        &this.output,
        &date,
        &this.id,
        cfg.lock_stale_after_minutes,
        cfg.break_lock,
    )
    .await?;
    let me = commit::Recoverer {
        id: &this.id,
        holding: Some((&date, &lock)),
        stale_after_minutes: cfg.lock_stale_after_minutes,
    };
    let result = match commit::recover(&this.output, &me).await {
        Ok(_) => {
            Scratch::within(cfg, &this.id, false, |scratch| async move {
                run_locked(cfg, this, shared, &scratch).await
            })
            .await
        }
        Err(e) => Err(e),
    };
    lock.release().await;
    result
}

/// The run itself, under the date's lock.
async fn run_locked(
    cfg: &Config,
    this: &ThisRun,
    shared: Option<&CheckedInputs>,
    scratch: &Scratch,
) -> Result<RunReport> {
    let (run_date, output, run_id, started_at) =
        (this.date, &this.output, this.id.clone(), this.started_at);
    let input = Root::parse(&cfg.input)?;
    let (mut stages, mut notes, ctx) = (Stages::default(), Notes::default(), session(cfg)?);
    let registry = Registry::open(cfg)?;
    let models = champions(&registry, cfg.allow_missing_models, &mut notes.scorer).await?;

    let t = stages.start();
    let validated = match shared {
        Some(inputs) => inputs.register(&ctx, cfg, &run_date).await?,
        None => ingest::load_inputs(&ctx, cfg, &input, &run_date, scratch).await?,
    };
    stages.done("load_and_validate_inputs", t);
    ingest::enforce_reject_share(&validated.checks, cfg.max_reject_share)?;

    // The stored published tables are staged as their jobs finish; a run that fails before
    // its commit stops that and removes its staging folder, the publisher's files included.
    let mut early = EarlyStaging::new(output.clone(), &run_id, cfg.target_partitions)?;
    let champions = (&models, &registry);
    let staging = (&mut stages, &mut early);
    let computed = compute(&ctx, (cfg, scratch), &run_date, output, champions, staging).await;
    let computed = early.unless_failed(computed).await?;
    let tables = computed.tables;
    notes.data.extend(cycle_warning(computed.cycles));
    let t = stages.start();
    let mut publisher = Publisher::new(output.clone(), &run_id, &run_date);
    let report = (&models, notes.data.as_slice());
    let staging = (&mut publisher, &mut early);
    let staged = stage_outputs(&ctx, cfg, &run_date, &tables, &validated, report, staging).await;
    let published = early.unless_failed(staged).await?;
    stages.done("stage_outputs", t);
    let manifest = Manifest {
        schema_version: ledger::SCHEMA_VERSION,
        flywheel_version: env!("CARGO_PKG_VERSION").to_string(),
        run_id,
        run_date: run_date.to_string(),
        as_of: run_date.as_of_rfc3339(),
        started_at: started_at.to_rfc3339(),
        input: input.url.clone(),
        output: output.url.clone(),
        inputs: validated.files,
        contract_checks: validated.checks,
        tables: published,
        files: publisher.files(),
        warnings: notes.scorer.into_iter().chain(notes.data).collect(),
        config: cfg.clone(),
        model_versions: models
            .iter()
            .map(|(t, f)| (t.name().to_string(), f.version.clone()))
            .collect(),
        stages: stages.0,
        drift: computed.drift,
        outcomes: computed.outcomes,
    };
    let manifest_path = commit_with_manifest(publisher, output, &manifest).await?;
    info!(manifest = %manifest_path, "run published");
    Ok(RunReport {
        manifest,
        manifest_path,
        tables: tables.held,
    })
}

/// Check every output and stage it with the report (see `publishing`); the stored tables were
/// started by `early` as their jobs finished.
async fn stage_outputs(
    ctx: &SessionContext,
    cfg: &Config,
    run_date: &RunDate,
    tables: &Tables,
    validated: &ingest::ValidatedInputs,
    (models, warnings): (&BTreeMap<Target, ModelFile>, &[String]),
    (publisher, early): (&mut Publisher, &mut EarlyStaging),
) -> Result<Vec<publishing::PublishedTable>> {
    let partitions = cfg.target_partitions;
    let outputs = publishing::outputs(tables, &validated.rejects, run_date)?;
    publishing::check(ctx, &outputs).await?;
    let report = report_file(run_date, &tables.held, models, &validated.checks, warnings);
    publishing::stage(publisher, &outputs, report, partitions, early).await
}

/// Run `jobs` one after another, offering each table stored to `early` staging once its job
/// is done.
async fn run_offering(
    ctx: &SessionContext,
    jobs: &[Job],
    params: &BTreeMap<String, String>,
    (stages, early): (&mut Stages, &mut EarlyStaging),
    tables: &mut Tables,
    release: &Release,
) -> Result<()> {
    for job in jobs {
        run_jobs(
            ctx,
            std::slice::from_ref(job),
            params,
            stages,
            tables,
            release,
        )
        .await?;
        early.offer(&tables.stored);
    }
    Ok(())
}

/// Stage the manifest and commit everything staged; returns the manifest's URL.
async fn commit_with_manifest(
    publisher: Publisher,
    output: &Root,
    manifest: &Manifest,
) -> Result<String> {
    let manifest_rel = publishing::manifest::path(&manifest.run_date);
    let json = match publishing::manifest::to_json(manifest) {
        Ok(json) => json,
        Err(e) => {
            publisher.abort().await;
            return Err(e);
        }
    };
    let committing = std::time::Instant::now();
    publisher.commit(&manifest_rel, json).await?;
    info!(
        seconds = committing.elapsed().as_secs_f64(),
        marker = %output.display(&commit::marker(&manifest.run_date)),
        "commit done"
    );
    Ok(output.display(&manifest_rel))
}

/// The morning report of the run, and the folder it is published to.
fn report_file(
    run_date: &RunDate,
    tables: &BTreeMap<String, Table>,
    models: &BTreeMap<Target, ModelFile>,
    checks: &[ingest::InputCheck],
    warnings: &[String],
) -> (String, bytes::Bytes) {
    let champions: BTreeMap<String, ModelFile> = models
        .iter()
        .map(|(t, f)| (t.name().to_string(), f.clone()))
        .collect();
    let html = report::html(&report::ReportInput {
        date: run_date.to_string(),
        tables,
        champions: &champions,
        checks,
        warnings,
    });
    (format!("reports/dt={run_date}"), html.into())
}

/// The intermediate table whose null generations mark referred_by cycles.
const GENERATIONS: &str = "int_referral_generations";

/// Customers on a referred_by cycle (their generation is null).
async fn cycles(ctx: &SessionContext) -> Result<usize> {
    let on_cycle = col("generation").is_null();
    Ok(ctx
        .table(GENERATIONS)
        .await?
        .filter(on_cycle)?
        .count()
        .await?)
}

/// A data warning when customers sit on a referred_by cycle.
fn cycle_warning(cycles: usize) -> Option<String> {
    if cycles == 0 {
        return None;
    }
    let msg = format!(
        "{cycles} customers are on a referred_by cycle (or their chain reaches one): their generation is null"
    );
    warn!("{msg}");
    Some(msg)
}

/// The champion of every target, as read back from its file. A target without one stops the
/// run unless `allow_missing` (then its scores are null, said in `notes`).
async fn champions(
    registry: &Registry,
    allow_missing: bool,
    notes: &mut Vec<String>,
) -> Result<BTreeMap<Target, ModelFile>> {
    let mut out = BTreeMap::new();
    for (target, champion) in registry::champions(registry).await? {
        match champion.version {
            Some(v) => {
                out.insert(target, registry.load(target, &v).await?);
            }
            None if allow_missing => {
                let msg = format!(
                    "{} scores are null: no champion model (allow_missing_models is set); train one with `flywheel train --target {}`",
                    target.name(),
                    target.name()
                );
                warn!("{msg}");
                notes.push(msg);
            }
            None => {
                return Err(FlywheelError::MissingModel {
                    target: target.name().to_string(),
                    registry: registry.location(),
                })
            }
        }
    }
    Ok(out)
}

/// Every table of the run: what earlier run dates published (lists, KPI rows), the SQL jobs that
/// do not need the scores, the scoring step, the jobs that need the scores, then the realised
/// quality of past scores. Inputs and intermediate tables are let go after their last reader;
/// intermediate tables are streamed into the scratch area rather than held.
async fn compute(
    ctx: &SessionContext,
    (cfg, scratch): (&Config, &Scratch),
    run_date: &RunDate,
    output: &Root,
    models: Champions<'_>,
    (stages, early): (&mut Stages, &mut EarlyStaging),
) -> Result<Computed> {
    let p = params(cfg, run_date);
    let jobs = catalog::nightly_jobs()?;
    let (before_scores, late) = catalog::split_at_scores(jobs);
    let ordered: Vec<Job> = before_scores.iter().chain(&late).cloned().collect();
    let due = due_outcomes(cfg, run_date, output).await?;
    let mut keep = vec![GENERATIONS, catalog::KPI_BANDS];
    if !due.is_empty() {
        keep.extend(scoring::outcome::LABEL_TABLES);
    }
    let release = Release::plan(&ordered, contracts::inputs(), &keep)
        .spilling_to(scratch, &presenting::READS);
    let mut tables = Tables::default();
    let t = stages.start();
    register_earlier(ctx, cfg, output, run_date).await?;
    stages.done("earlier_outputs", t);
    let staging = (&mut *stages, &mut *early);
    run_offering(ctx, &before_scores, &p, staging, &mut tables, &release).await?;
    let cycles = cycles(ctx).await?;

    let t = stages.start();
    let features = tables
        .stored
        .get(scoring::training_set::FEATURES)
        .ok_or_else(|| FlywheelError::internal("customer_features was not computed"))?;
    let partitions = cfg.target_partitions;
    let (scores, drift) = scoring::score::score(features, models.0, partitions, scratch).await?;
    tables.held.insert(
        scoring::drift::DRIFT.to_string(),
        scoring::drift::table(&drift)?,
    );
    scratch.register(ctx, catalog::SCORES, &scores.rel, scores.schema.clone())?;
    tables.stored.insert(catalog::SCORES.to_string(), scores);
    early.offer(&tables.stored);
    stages.done("score", t);

    run_offering(ctx, &late, &p, (stages, early), &mut tables, &release).await?;

    let t = stages.start();
    let outcomes = outcomes(ctx, cfg, output, models, &due).await?;
    if !due.is_empty() {
        for name in scoring::outcome::LABEL_TABLES {
            ctx.deregister_table(name)?;
            tables.stored.remove(name);
        }
    }
    let outcome_table = scoring::outcome::table(&outcomes)?;
    let outcomes_name = scoring::outcome::OUTCOMES.to_string();
    tables.held.insert(outcomes_name, outcome_table);
    stages.done("outcomes", t);
    crate::engine::memory::log_peak(ctx);
    Ok(Computed {
        tables,
        cycles,
        drift,
        outcomes,
    })
}

/// The tables of a run and the figures the manifest carries.
struct Computed {
    tables: Tables,
    /// Customers on a referred_by cycle.
    cycles: usize,
    drift: Vec<scoring::drift::Drift>,
    outcomes: Vec<scoring::outcome::Outcome>,
}

/// The champions of a run and the registry they come from (for the files of older versions).
type Champions<'a> = (&'a BTreeMap<Target, ModelFile>, &'a Registry);

/// For each target, the latest earlier run date with published scores whose horizon has passed
/// by this run date (P + horizon <= D: this run's inputs hold the label's whole window).
async fn due_outcomes(
    cfg: &Config,
    run_date: &RunDate,
    output: &Root,
) -> Result<Vec<(Target, RunDate)>> {
    let scores = contracts::publication(catalog::SCORES)?;
    let mut due = Vec::new();
    for target in Target::ALL {
        let limit = run_date.date() - chrono::Duration::days(target.horizon_days(cfg));
        if let Some(day) = earlier::latest_date_at_most(output, &scores, limit).await? {
            due.push((target, RunDate::new(day, cfg)?));
        }
    }
    Ok(due)
}

/// How the scores of the `due` run dates turned out (README, Drift): each date's published
/// customer_features and scores read back and labelled as training labels them.
async fn outcomes(
    ctx: &SessionContext,
    cfg: &Config,
    output: &Root,
    models: Champions<'_>,
    due: &[(Target, RunDate)],
) -> Result<Vec<scoring::outcome::Outcome>> {
    let features_table = contracts::publication(scoring::training_set::FEATURES)?;
    let scores_table = contracts::publication(catalog::SCORES)?;
    let mut out = Vec::new();
    for (target, scored) in due {
        let day = scored.date();
        let columns = scoring::outcome::FEATURE_COLUMNS;
        let features = earlier::partition(output, &features_table, day, &columns).await?;
        let score_columns = scoring::outcome::score_columns(*target);
        let score_columns: Vec<&str> = score_columns.iter().map(String::as_str).collect();
        let scores = earlier::partition(output, &scores_table, day, &score_columns).await?;
        let published = scoring::outcome::Published {
            scored: *scored,
            features,
            scores,
        };
        let champion = models.0.get(target);
        let version = version_file(models, *target, &published).await;
        let outcome = scoring::outcome::measure(
            ctx,
            cfg,
            *target,
            &published,
            version.as_ref().or(champion),
            champion.map(|c| c.version.as_str()),
        )
        .await?;
        info!(target = target.name(), scored_date = %scored, realised_auc = ?outcome.realised_auc, training_auc = ?outcome.training_auc, rows = outcome.rows, "realised quality of earlier scores");
        out.push(outcome);
    }
    Ok(out)
}

/// The model file of the version that scored `published` when it is not the champion (None
/// when it is, or when the registry no longer has it).
async fn version_file(
    models: Champions<'_>,
    target: Target,
    published: &scoring::outcome::Published,
) -> Option<ModelFile> {
    let version = published.version(target)?;
    if models.0.get(&target).is_some_and(|c| c.version == version) {
        return None;
    }
    match models.1.load(target, &version).await {
        Ok(file) => Some(file),
        Err(e) => {
            warn!(target = target.name(), version = %version, "the model file of earlier scores cannot be read ({e}); its training AUC is left out");
            None
        }
    }
}

/// Register what the jobs read of earlier run dates in the output: for every CRM list,
/// `previous_<list>` (its members on run dates within its cooldown); for `kpi_trends`, the KPI
/// rows (`earlier_kpis`) and list members (`earlier_lists`) of the latest earlier run dates (at
/// most `catalog::TREND_DATES`). Each list's files are read once for both.
async fn register_earlier(
    ctx: &SessionContext,
    cfg: &Config,
    output: &Root,
    run_date: &RunDate,
) -> Result<()> {
    let (days, kpis) = earlier::earlier_kpis(output, run_date, catalog::TREND_DATES).await?;
    kpis.register(ctx, catalog::EARLIER_KPIS)?;
    let mut histories = Vec::new();
    for (list, publication) in contracts::cooldown_lists()? {
        let setting = publication.cooldown_setting.as_deref().unwrap_or_default();
        let cooldown = cfg.integer(setting)?;
        let in_cooldown = |d| (1..=cooldown).contains(&run_date.days_since(d));
        let history = earlier::list_history(output, &publication, |d| {
            in_cooldown(d) || days.contains(&d)
        })
        .await?;
        earlier::previous_list(&history, run_date, cooldown)?
            .register(ctx, &catalog::previous(&list))?;
        histories.push((list, history));
    }
    earlier::earlier_lists(&histories, &days)?.register(ctx, catalog::EARLIER_LISTS)
}

/// How one date of a backfill went.
#[derive(Debug, Clone)]
pub struct DateOutcome {
    pub date: NaiveDate,
    /// `succeeded`, `failed`, or `skipped` (its last run succeeded on the same inputs).
    pub status: &'static str,
    pub seconds: f64,
    pub exit_code: i32,
}

/// `flywheel run --from D1 --to D2`: every date in ascending order (the lists' cooldowns read
/// earlier dates). A date whose last run succeeded on inputs with the same fingerprint is skipped
/// unless `force`. The inputs are read and validated once, before the first date that runs, and
/// each date registers them with its own as_of (a date sees only events before it), so a date's
/// tables are those of a run of that date alone. Stops at the first failure with its error;
/// `progress` hears of every date as it ends.
pub async fn backfill(
    cfg: &Config,
    from: NaiveDate,
    to: NaiveDate,
    force: bool,
    progress: impl FnMut(&DateOutcome),
) -> Result<Vec<DateOutcome>> {
    Scratch::within(cfg, "backfill", true, |scratch| async move {
        backfill_in(cfg, (from, to), force, progress, &scratch).await
    })
    .await
}

async fn backfill_in(
    cfg: &Config,
    (from, to): (NaiveDate, NaiveDate),
    force: bool,
    mut progress: impl FnMut(&DateOutcome),
    scratch: &Scratch,
) -> Result<Vec<DateOutcome>> {
    if from > to {
        return Err(FlywheelError::Config(format!(
            "--from {from} is after --to {to}"
        )));
    }
    let (input, output) = (Root::parse(&cfg.input)?, Root::parse(&cfg.output)?);
    let current = listed_fingerprints(&input).await?;
    let mut shared: Option<CheckedInputs> = None;
    let mut out = Vec::new();
    let mut date = from;
    while date <= to {
        let started = std::time::Instant::now();
        let last = ledger::list(&output, Some(&date.to_string())).await?.pop();
        let done_before =
            last.is_some_and(|r| r.status == "succeeded" && r.input_fingerprints == current);
        let outcome = if done_before && !force {
            DateOutcome {
                date,
                status: "skipped",
                seconds: 0.0,
                exit_code: 0,
            }
        } else {
            if shared.is_none() {
                let first = RunDate::new(date, cfg)?;
                shared = Some(CheckedInputs::load(cfg, &input, &first, scratch).await?);
            }
            let result = run_with(cfg, date, shared.as_ref()).await;
            let outcome = DateOutcome {
                date,
                status: if result.is_ok() {
                    "succeeded"
                } else {
                    "failed"
                },
                seconds: started.elapsed().as_secs_f64(),
                exit_code: result.as_ref().err().map_or(0, |e| e.exit_code()),
            };
            if let Err(e) = result {
                progress(&outcome);
                return Err(e);
            }
            outcome
        };
        progress(&outcome);
        out.push(outcome);
        date = date
            .succ_opt()
            .ok_or_else(|| FlywheelError::Config(format!("no date after {date}")))?;
    }
    Ok(out)
}

/// Per input, the fingerprint of its files as listed now (what a run records in the ledger).
async fn listed_fingerprints(input: &Root) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for name in contracts::inputs() {
        let files = ingest::read::input_files(input, name).await?;
        let fp = ledger::fingerprint(
            files
                .iter()
                .map(|f| (f.path.as_str(), f.size, f.last_modified.as_str())),
        );
        out.insert(name.to_string(), fp);
    }
    Ok(out)
}
