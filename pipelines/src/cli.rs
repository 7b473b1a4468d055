//! The command line: raw flags (clap) first, then validated settings, then the library call.

use chrono::{NaiveDate, Utc};
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::error::{FlywheelError, Result};
use crate::storage::Root;
use crate::{generate, run, summary};

#[derive(Parser, Debug)]
#[command(name = "flywheel", version, about = "Nightly referral and lifecycle pipeline for a car-service network")]
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
    /// Generate demo data into ./data if absent, run, print a summary.
    Demo {
        #[arg(long, default_value_t = 20_000)]
        customers: usize,
        #[arg(long)]
        date: Option<String>,
    },
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
        Command::Generate { customers, seed, as_of, out } => {
            let as_of = parse_date(as_of.as_deref())?;
            if customers == 0 {
                return Err(FlywheelError::Config("--customers must be at least 1".into()));
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
            if let Some(i) = input {
                cfg.input = i;
            }
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
        Command::Run { date, input, output } => {
            if let Some(i) = input {
                cfg.input = i;
            }
            if let Some(o) = output {
                cfg.output = o;
            }
            let date = parse_date(date.as_deref())?;
            let report = run::run(&cfg, date).await?;
            summary::print(&report);
        }
        Command::Demo { customers, date } => {
            let date = parse_date(date.as_deref())?;
            let root = Root::parse(&cfg.input)?;
            if root.list("crm_customers").await?.is_empty() {
                println!("no demo data at {}: generating {customers} customers as of {date} ...", root.url);
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
