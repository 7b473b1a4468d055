//! The command line: raw flags (clap) first, then validated settings, then the library call.

use chrono::{NaiveDate, Utc};
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::error::{FlywheelError, Result};
use crate::storage::Root;
use crate::{generate, models, run, summary};

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
    /// The nightly run: validate, attribute, build features, publish.
    Run {
        /// Run date D (as_of = D 00:00 UTC; default: today, UTC).
        #[arg(long)]
        date: Option<String>,
        #[arg(long)]
        input: Option<String>,
        #[arg(long)]
        output: Option<String>,
    },
    /// Train a challenger model per target and promote it when it beats the champion.
    Train {
        /// refer, churn or all
        #[arg(long, default_value = "all")]
        target: String,
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
    /// The model registry: list, show, promote, rollback.
    Models {
        #[command(subcommand)]
        action: ModelsAction,
    },
    /// Generate demo data into ./data if absent, run, print a summary.
    Demo {
        #[arg(long, default_value_t = 20_000)]
        customers: usize,
        #[arg(long)]
        date: Option<String>,
    },
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

fn one_target(s: &str) -> Result<models::Target> {
    match models::Target::parse(s)?.as_slice() {
        [t] => Ok(*t),
        _ => Err(FlywheelError::Config(
            "name one target: refer or churn".into(),
        )),
    }
}

pub fn parse_date(s: Option<&str>) -> Result<NaiveDate> {
    match s {
        None => Ok(Utc::now().date_naive()),
        Some(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map_err(|_| FlywheelError::Config(format!("date {s:?} is not YYYY-MM-DD"))),
    }
}

pub async fn execute(cli: Cli) -> Result<()> {
    let mut cfg = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Generate {
            customers,
            seed,
            as_of,
            out,
        } => {
            let as_of = parse_date(as_of.as_deref())?;
            if customers == 0 {
                return Err(FlywheelError::Config(
                    "--customers must be at least 1".into(),
                ));
            }
            let root = Root::parse(&out)?;
            let started = std::time::Instant::now();
            let s = generate::generate(&root, customers, seed, as_of).await?;
            println!(
                "wrote {} customers, {} visits, {} NPS answers, {} referral events to {} in {:.1} s (as of {as_of})",
                s.customers,
                s.visits,
                s.nps_responses,
                s.referral_events,
                root.url,
                started.elapsed().as_secs_f64()
            );
        }
        Command::Validate { input, date } => {
            cfg = cfg.with_roots(input, None);
            let date = parse_date(date.as_deref())?;
            let ctx = run::session(&cfg)?;
            let root = Root::parse(&cfg.input)?;
            let v = run::load_inputs(&ctx, &cfg, &root, date).await?;
            for c in &v.checks {
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
            run::enforce_reject_share(&v.checks, cfg.max_reject_share)?;
            println!("inputs at {} meet their contracts", root.url);
        }
        Command::Run {
            date,
            input,
            output,
        } => {
            cfg = cfg.with_roots(input, output);
            let date = parse_date(date.as_deref())?;
            let report = run::run(&cfg, date).await?;
            summary::print(&report);
        }
        Command::Train {
            target,
            as_of,
            input,
            output,
            export_design,
        } => {
            cfg = cfg.with_roots(input, output);
            let as_of = parse_date(as_of.as_deref())?;
            let targets = models::Target::parse(&target)?;
            let ctx = run::session(&cfg)?;
            let root = Root::parse(&cfg.input)?;
            let v = run::load_inputs(&ctx, &cfg, &root, as_of).await?;
            run::enforce_reject_share(&v.checks, cfg.max_reject_share)?;
            let jobs: Vec<_> = crate::jobs::all_jobs(&crate::contracts::INPUTS)?
                .into_iter()
                .filter(|j| matches!(j.name.as_str(), "referral_generations" | "referral_signups"))
                .collect();
            run::run_jobs(
                &ctx,
                &jobs,
                &run::params(&cfg, as_of),
                &mut run::Stages::default(),
                &mut std::collections::BTreeMap::new(),
                &run::Release::none(),
            )
            .await?;
            let registry = models::Registry::open(&cfg)?;
            let fingerprint = models::fingerprint(&v.files);
            let mut snapshots = models::Snapshots::new();
            for t in targets {
                let started = std::time::Instant::now();
                let export = export_design.as_deref().map(Root::parse).transpose()?;
                let r = models::train(
                    &ctx,
                    &cfg,
                    &registry,
                    t,
                    as_of,
                    &fingerprint,
                    export.as_ref(),
                    &mut snapshots,
                )
                .await?;
                let m = &r.file.holdout_metrics;
                println!(
                    "{}: {} in {:.1} s; out of time: fit on {}, holdout {}: ROC AUC {:.4}, PR AUC {:.4}, Brier {:.4}, log loss {:.4}, lift@10% {:.2}; final fit on {} rows, converged {}",
                    t.name(),
                    r.file.version,
                    started.elapsed().as_secs_f64(),
                    r.file.train_snapshot,
                    r.file.holdout_snapshot,
                    m.roc_auc,
                    m.pr_auc,
                    m.brier,
                    m.log_loss,
                    m.lift_top_decile,
                    r.file.train_rows,
                    r.file.model.convergence.converged
                );
                println!(
                    "  {}",
                    if r.promoted {
                        format!("champion ({})", r.reason)
                    } else {
                        r.reason.clone()
                    }
                );
            }
        }
        Command::Models { action } => {
            let registry = models::Registry::open(&cfg)?;
            match action {
                ModelsAction::List => {
                    for t in models::Target::ALL {
                        let champion = registry.champion(t).await?.version;
                        for v in registry.versions(t).await? {
                            let f = registry.load(t, &v).await?;
                            let mark = if champion.as_deref() == Some(v.as_str()) {
                                "*"
                            } else {
                                " "
                            };
                            println!(
                                "{mark} {:<6} {v}  as_of {}  holdout ROC AUC {:.4}  Brier {:.4}  rows {}",
                                t.name(),
                                f.as_of,
                                f.holdout_metrics.roc_auc,
                                f.holdout_metrics.brier,
                                f.train_rows
                            );
                        }
                    }
                }
                ModelsAction::Show { target, version } => {
                    let t = one_target(&target)?;
                    let v = match version {
                        Some(v) => v,
                        None => registry.champion(t).await?.version.ok_or_else(|| {
                            FlywheelError::Model(format!(
                                "{target} has no champion; run `flywheel train`"
                            ))
                        })?,
                    };
                    let f = registry.load(t, &v).await?;
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&f).map_err(FlywheelError::internal)?
                    );
                }
                ModelsAction::Promote { target, version } => {
                    let t = one_target(&target)?;
                    registry.promote(t, &version).await?;
                    println!("{version} is now the {target} champion");
                }
                ModelsAction::Rollback { target } => {
                    let t = one_target(&target)?;
                    let v = registry.rollback(t).await?;
                    println!("rolled {target} back to {v}");
                }
            }
        }
        Command::Demo { customers, date } => {
            let date = parse_date(date.as_deref())?;
            let root = Root::parse(&cfg.input)?;
            if root.list("crm_customers").await?.is_empty() {
                println!(
                    "no demo data at {}: generating {customers} customers as of {date} ...",
                    root.url
                );
                generate::generate(&root, customers, 42, date).await?;
            } else {
                println!("using the data already at {}", root.url);
            }
            let report = run::run(&cfg, date).await?;
            summary::print(&report);
        }
    }
    Ok(())
}
