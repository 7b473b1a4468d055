//! The command line, a module of the `flywheel` binary: raw flags (clap), then one validated
//! settings value, then a call into the library's applications; what they return is printed here.

use std::io::IsTerminal;

use chrono::{NaiveDate, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use flywheel_pipelines::app;
use flywheel_pipelines::config::Config;
use flywheel_pipelines::error::{FlywheelError, Result};
use flywheel_pipelines::steps::presenting::summary;
use flywheel_pipelines::steps::scoring::Target;

#[derive(Parser, Debug)]
#[command(
    name = "flywheel",
    version,
    about = "Nightly referral and lifecycle pipeline for a car-service network"
)]
pub struct Cli {
    /// Config file (default: ./flywheel.toml when present).
    #[arg(long, global = true, env = "FLYWHEEL_CONFIG")]
    pub config: Option<String>,
    /// Log format: text for terminals, json for schedulers and log collectors.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "FLYWHEEL_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write demo exports (the four inputs) for N customers.
    Generate {
        #[arg(long, default_value_t = 20_000)]
        customers: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// The export date: every event is before this day (default: today, UTC).
        #[arg(long)]
        as_of: Option<String>,
        /// Where to write (local path, file:// or s3:// URL).
        #[arg(long, default_value = "./data")]
        out: String,
    },
    /// Check the inputs against their contracts and row rules; publishes nothing.
    Validate {
        #[arg(long)]
        input: Option<String>,
        #[arg(long)]
        date: Option<String>,
    },
    /// The nightly run: validate, attribute, build features, score, publish.
    Run {
        /// Run date D (as_of = D 00:00 UTC; default: today, UTC).
        #[arg(long, conflicts_with_all = ["from", "to"])]
        date: Option<String>,
        /// Backfill: run every date from this one to --to, in ascending order.
        #[arg(long, requires = "to")]
        from: Option<String>,
        /// Backfill: the last date to run (with --from).
        #[arg(long, requires = "from")]
        to: Option<String>,
        /// Backfill: also rerun dates whose last run succeeded on the same inputs.
        #[arg(long, requires = "from")]
        force: bool,
        #[arg(long)]
        input: Option<String>,
        #[arg(long)]
        output: Option<String>,
        /// Go on when a target has no champion model: its scores are null and the lists' model
        /// paths are skipped (otherwise the run stops with exit code 5).
        #[arg(long)]
        allow_missing_models: bool,
        /// Take over the date's lock held by a run that died (see README, exit code 7).
        #[arg(long)]
        break_lock: bool,
        /// Write Prometheus metrics of the run here at its end (node_exporter textfile format).
        #[arg(long, value_name = "PATH")]
        metrics_file: Option<String>,
        /// Write OpenLineage run events here (START, then COMPLETE or FAIL), JSON lines.
        #[arg(long, value_name = "PATH")]
        lineage_file: Option<String>,
    },
    /// Train a challenger model per target and promote it when it beats the champion.
    Train {
        #[arg(long, value_enum, default_value_t = TargetArg::All)]
        target: TargetArg,
        /// Training date: fit on as_of - 2 horizons, evaluate on as_of - 1 horizon.
        #[arg(long)]
        as_of: Option<String>,
        #[arg(long)]
        input: Option<String>,
        /// Output root; the registry is `<output>/models` unless `models` is configured.
        #[arg(long)]
        output: Option<String>,
        /// Also write the out-of-time design matrices (train.csv, holdout.csv per target) and
        /// flywheel's holdout AUC here, for `tests/sklearn_compare.py`.
        #[arg(long)]
        export_design: Option<String>,
    },
    /// The run ledger: every run of the output (failed and refused ones too), oldest first.
    Runs {
        /// Only the runs of this run date.
        #[arg(long)]
        date: Option<String>,
        #[arg(long)]
        output: Option<String>,
    },
    /// Finish interrupted commits, remove the staging of dead runs and free their locks (each
    /// `flywheel run` does this first; this does it alone, e.g. after a crash).
    Recover {
        #[arg(long)]
        output: Option<String>,
    },
    /// The model registry: list, show, promote, rollback.
    Models {
        #[command(subcommand)]
        action: ModelsAction,
    },
    /// Print a shell completion script: `flywheel completions bash > /etc/bash_completion.d/flywheel`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Generate demo data into ./data if absent, train missing champions, run, print a summary.
    Demo {
        #[arg(long, default_value_t = 20_000)]
        customers: usize,
        #[arg(long)]
        date: Option<String>,
    },
}

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
pub enum TargetArg {
    Refer,
    Churn,
    All,
}

impl TargetArg {
    fn targets(self) -> Vec<Target> {
        match self {
            TargetArg::Refer => vec![Target::Refer],
            TargetArg::Churn => vec![Target::Churn],
            TargetArg::All => Target::ALL.to_vec(),
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum ModelsAction {
    /// Every version per target, with its holdout metrics; * marks the champion.
    List,
    /// One model file (default: the champion).
    Show {
        target: String,
        version: Option<String>,
    },
    /// Make a version the champion.
    Promote { target: String, version: String },
    /// Return to the previous champion.
    Rollback { target: String },
}

fn one_target(s: &str) -> Result<Target> {
    match Target::parse(s)?.as_slice() {
        [t] => Ok(*t),
        _ => Err(FlywheelError::Config(
            "name one target: refer or churn".into(),
        )),
    }
}

/// A `--date` or `--as-of` flag: YYYY-MM-DD, default today (UTC).
fn parse_date(s: Option<&str>) -> Result<NaiveDate> {
    match s {
        None => Ok(Utc::now().date_naive()),
        Some(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map_err(|_| FlywheelError::Config(format!("date {s:?} is not YYYY-MM-DD"))),
    }
}

pub async fn execute(cli: Cli) -> Result<()> {
    let cfg = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Generate {
            customers,
            seed,
            as_of,
            out,
        } => generate(&cfg, customers, seed, as_of, &out).await,
        Command::Validate { input, date } => {
            let cfg = cfg.with_roots(input, None);
            let date = parse_date(date.as_deref())?;
            app::check::validate(&cfg, date, print_checks).await?;
            println!("inputs at {} meet their contracts", cfg.input);
            Ok(())
        }
        Command::Run {
            date,
            from,
            to,
            force,
            input,
            output,
            allow_missing_models,
            break_lock,
            metrics_file,
            lineage_file,
        } => {
            let mut cfg = cfg.with_roots(input, output);
            cfg.allow_missing_models |= allow_missing_models;
            cfg.break_lock = break_lock;
            cfg.metrics_file = metrics_file;
            cfg.lineage_file = lineage_file;
            match (from, to) {
                (Some(from), Some(to)) => {
                    let (from, to) = (parse_date(Some(&from))?, parse_date(Some(&to))?);
                    backfill(&cfg, from, to, force).await
                }
                _ => run(&cfg, parse_date(date.as_deref())?).await,
            }
        }
        Command::Train {
            target,
            as_of,
            input,
            output,
            export_design,
        } => {
            let settings = app::train::TrainSettings {
                targets: target.targets(),
                as_of: parse_date(as_of.as_deref())?,
                export_design,
            };
            train(&cfg.with_roots(input, output), &settings).await
        }
        Command::Runs { date, output } => runs(&cfg.with_roots(None, output), date).await,
        Command::Recover { output } => recover(&cfg.with_roots(None, output)).await,
        Command::Models { action } => models(&cfg, action).await,
        Command::Completions { shell } => {
            completions(shell);
            Ok(())
        }
        Command::Demo { customers, date } => {
            let date = parse_date(date.as_deref())?;
            let prepared = app::demo::prepare(&cfg, customers, date).await?;
            match prepared.generated {
                Some(n) => println!("generated {n} demo customers as of {date} at {}", cfg.input),
                None => println!("using the data already at {}", cfg.input),
            }
            for t in prepared.trained {
                println!("trained a {} champion as of {date}", t.name());
            }
            run(&cfg, date).await
        }
    }
}

/// `flywheel recover`: one line per thing done.
async fn recover(cfg: &Config) -> Result<()> {
    let done = app::runs::recover(cfg).await?;
    if done.is_empty() {
        println!("nothing to recover at {}", cfg.output);
    }
    for line in done {
        println!("{line}");
    }
    Ok(())
}

/// `flywheel completions <shell>`: the completion script on stdout.
fn completions(shell: clap_complete::Shell) {
    use clap::CommandFactory;
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "flywheel",
        &mut std::io::stdout(),
    );
}

/// `flywheel run --from D1 --to D2`: a progress line per date, then a total.
async fn backfill(cfg: &Config, from: NaiveDate, to: NaiveDate, force: bool) -> Result<()> {
    let started = std::time::Instant::now();
    let dates = app::run::backfill(cfg, from, to, force, |d| {
        println!("{} {:<9} {:>8.2} s", d.date, d.status, d.seconds);
    })
    .await?;
    let ran = dates.iter().filter(|d| d.status == "succeeded").count();
    println!(
        "backfilled {from}..{to}: {ran} run, {} skipped, in {:.1} s; outputs at {}",
        dates.len() - ran,
        started.elapsed().as_secs_f64(),
        cfg.output
    );
    Ok(())
}

/// `flywheel runs`: one line per ledger record.
async fn runs(cfg: &Config, date: Option<String>) -> Result<()> {
    let date = date.map(|d| parse_date(Some(&d))).transpose()?;
    let records = app::runs::list(cfg, date.map(|d| d.to_string()).as_deref()).await?;
    println!(
        "{:<32} {:<10} {:<9} {:>4} {:<25} {:>8}  error",
        "run id", "date", "status", "exit", "started", "seconds"
    );
    for r in records {
        let seconds = chrono::DateTime::parse_from_rfc3339(&r.ended_at)
            .ok()
            .zip(chrono::DateTime::parse_from_rfc3339(&r.started_at).ok())
            .map(|(e, s)| (e - s).num_milliseconds() as f64 / 1000.0)
            .unwrap_or(f64::NAN);
        let error = r.error.unwrap_or_default();
        let error: String = error
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(100)
            .collect();
        println!(
            "{:<32} {:<10} {:<9} {:>4} {:<25} {:>8.2}  {}",
            r.run_id,
            r.run_date,
            r.status,
            r.exit_code.map_or("-".to_string(), |c| c.to_string()),
            r.started_at,
            seconds,
            error
        );
    }
    Ok(())
}

async fn generate(
    cfg: &Config,
    customers: usize,
    seed: u64,
    as_of: Option<String>,
    out: &str,
) -> Result<()> {
    let as_of = parse_date(as_of.as_deref())?;
    let started = std::time::Instant::now();
    let s = app::generate::generate(cfg, out, customers, seed, as_of).await?;
    println!(
        "wrote {} customers, {} visits, {} NPS answers, {} referral events to {out} in {:.1} s (as of {as_of})",
        s.customers,
        s.visits,
        s.nps_responses,
        s.referral_events,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn print_checks(checks: &[flywheel_pipelines::steps::ingest::InputCheck]) {
    for c in checks {
        println!(
            "{:<16} {:>10} rows  {:>7} rejected ({:.3}%)  {:>10} before as_of",
            c.input,
            c.rows,
            c.rejected,
            c.reject_share * 100.0,
            c.used
        );
        for (reason, n) in &c.top_reasons {
            println!("    {n:>7}× {reason}");
        }
    }
}

async fn run(cfg: &Config, date: NaiveDate) -> Result<()> {
    let report = app::run::run(cfg, date).await?;
    let colour = std::io::stdout().is_terminal();
    print!(
        "{}",
        summary::render(
            &report.manifest,
            &report.manifest_path,
            &report.tables,
            colour
        )
    );
    Ok(())
}

async fn train(cfg: &Config, settings: &app::train::TrainSettings) -> Result<()> {
    for t in app::train::train(cfg, settings).await? {
        let f = &t.trained.file;
        let m = &f.holdout_metrics;
        println!(
            "{}: {} in {:.1} s; out of time: fit on {}, holdout {}: ROC AUC {:.4}, PR AUC {:.4}, Brier {:.4}, log loss {:.4}, lift@10% {:.2}; final fit on {} rows, converged {}",
            t.target.name(),
            f.version,
            t.seconds,
            f.train_snapshot,
            f.holdout_snapshot,
            m.roc_auc,
            m.pr_auc,
            m.brier,
            m.log_loss,
            m.lift_top_decile,
            f.train_rows,
            f.model.convergence.converged
        );
        let r = &t.trained;
        if r.promoted {
            println!("  champion ({})", r.reason);
        } else {
            println!("  {}", r.reason);
        }
    }
    Ok(())
}

async fn models(cfg: &Config, action: ModelsAction) -> Result<()> {
    match action {
        ModelsAction::List => {
            for l in app::models::list(cfg).await? {
                let f = &l.file;
                println!(
                    "{} {:<6} {}  as_of {}  holdout ROC AUC {:.4}  Brier {:.4}  rows {}",
                    if l.champion { "*" } else { " " },
                    l.target.name(),
                    l.version,
                    f.as_of,
                    f.holdout_metrics.roc_auc,
                    f.holdout_metrics.brier,
                    f.train_rows
                );
            }
        }
        ModelsAction::Show { target, version } => {
            let t = one_target(&target)?;
            let f = app::models::show(cfg, t, version).await?;
            let json = serde_json::to_string_pretty(&f).map_err(FlywheelError::internal)?;
            println!("{json}");
            // The last drift figures, for people: on stderr, so stdout stays the model's JSON.
            match app::models::last_drift(cfg, t).await? {
                Some((date, rows)) => {
                    eprintln!("last drift figures of {target} (run date {date}; PSI against the training snapshot):");
                    for (variable, kind, psi, reading, version) in rows {
                        eprintln!("  {variable:<28} {kind:<8} {psi:>8.4}  {reading:<8} {version}");
                    }
                }
                None => eprintln!(
                    "no drift figures for {target} in the run manifests at {}",
                    cfg.output
                ),
            }
        }
        ModelsAction::Promote { target, version } => {
            app::models::promote(cfg, one_target(&target)?, &version).await?;
            println!("{version} is now the {target} champion");
        }
        ModelsAction::Rollback { target } => {
            let v = app::models::rollback(cfg, one_target(&target)?).await?;
            println!("rolled {target} back to {v}");
        }
    }
    Ok(())
}
