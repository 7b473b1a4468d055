//! Run configuration: every default of domain.md, read from `flywheel.toml` (when present),
//! then `FLYWHEEL_*` environment variables, then command-line flags, each overriding the last.

use serde::{Deserialize, Serialize};

use crate::error::{FlywheelError, Result};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Root of the input exports (local path, file:// or s3:// URL).
    pub input: String,
    /// Root of the published outputs.
    pub output: String,
    /// Root of the model registry; defaults to `<output>/models`.
    pub models: Option<String>,
    /// Root of the scratch area (local path, file:// or s3:// URL) where each run streams its
    /// validated inputs once as Parquet, in a folder of its own removed at the end; defaults to
    /// `<the operating system's temporary directory>/flywheel-scratch`.
    pub scratch: Option<String>,
    pub attribution_window_days: i64,
    pub max_signups_per_referrer_per_day: i64,
    pub refer_horizon_days: i64,
    pub churn_horizon_days: i64,
    pub churn_alert_threshold: f64,
    pub ambassador_top_share: f64,
    pub candidate_cooldown_days: i64,
    pub alert_cooldown_days: i64,
    pub max_reject_share: f64,
    /// Memory budget of the query engine in MiB: sorts, aggregates and joins spill beyond it (or
    /// fail with exit code 6); 0 means no budget. Default: half of the memory the process may use
    /// ([`default_budget_mb`]). See `engine::memory` for how it avoids DataFusion 55's stall.
    pub memory_limit_mb: u64,
    /// Partitions the engine plans with; fixed so results do not depend on the machine.
    pub target_partitions: usize,
    /// L2 strength (alpha) of the logistic models, per training row (see README).
    pub l2: f64,
    pub max_iterations: u64,
    /// The most rows a model is fitted on: a larger training snapshot is fitted on a
    /// deterministic sample of this many customers (the smallest hashes of customer_id), while
    /// evaluation uses the whole holdout. 0: fit on every row. See README, Models.
    pub train_sample_rows: u64,
    /// Let the nightly run go on when a target has no champion model: its scores are null and
    /// the lists' model paths are skipped (said in the log and the manifest). Off by default:
    /// a missing champion stops the run with exit code 5.
    pub allow_missing_models: bool,
    /// A run's lock of its date older than this is taken to belong to a run that died, and is
    /// taken over (longer than any run lasts).
    pub lock_stale_after_minutes: i64,
    /// Take over the date's lock whatever its age (`flywheel run --break-lock`); not a file key.
    #[serde(skip)]
    pub break_lock: bool,
    /// Write the run's Prometheus metrics here at its end (`--metrics-file`); not a file key.
    #[serde(skip)]
    pub metrics_file: Option<String>,
    /// Write the run's OpenLineage events here, JSON lines (`--lineage-file`); not a file key.
    #[serde(skip)]
    pub lineage_file: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            input: "./data".into(),
            output: "./out".into(),
            models: None,
            scratch: None,
            attribution_window_days: 90,
            max_signups_per_referrer_per_day: 5,
            refer_horizon_days: 90,
            churn_horizon_days: 180,
            churn_alert_threshold: 0.5,
            ambassador_top_share: 0.05,
            candidate_cooldown_days: 30,
            alert_cooldown_days: 30,
            max_reject_share: 0.01,
            memory_limit_mb: default_budget_mb().unwrap_or(0),
            target_partitions: 2,
            l2: 1.0,
            max_iterations: 200,
            train_sample_rows: 250_000,
            allow_missing_models: false,
            lock_stale_after_minutes: 360,
            break_lock: false,
            metrics_file: None,
            lineage_file: None,
        }
    }
}

impl Config {
    /// Load from an explicit file (must exist), else `./flywheel.toml` when present, then apply
    /// `FLYWHEEL_<KEY>` environment variables.
    pub fn load(path: Option<&str>) -> Result<Config> {
        let mut cfg = match path {
            Some(p) => Self::from_file(p, true)?,
            None => Self::from_file("flywheel.toml", false)?,
        };
        cfg.apply_env()?;
        cfg.check()?;
        Ok(cfg)
    }

    // The config file is not a data path: it is read from the local filesystem.
    fn from_file(path: &str, must_exist: bool) -> Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
                return Ok(Config::default())
            }
            Err(e) => {
                return Err(FlywheelError::Config(format!(
                    "cannot read config file {path}: {e}"
                )))
            }
        };
        toml::from_str(&text).map_err(|e| {
            FlywheelError::Config(format!(
                "config file {path} is not valid: {e}; see README, Configuration"
            ))
        })
    }

    fn apply_env(&mut self) -> Result<()> {
        // Round-trip through a TOML table so each key is parsed with its own type.
        let mut table = toml::Table::try_from(&*self).map_err(FlywheelError::internal)?;
        let keys: Vec<String> = table.keys().cloned().collect();
        let mut changed = false;
        for key in keys
            .into_iter()
            .chain(["models".to_string(), "scratch".to_string()])
        {
            let var = format!("FLYWHEEL_{}", key.to_ascii_uppercase());
            let Ok(raw) = std::env::var(&var) else {
                continue;
            };
            let value = match table.get(&key) {
                Some(toml::Value::Integer(_)) => raw.parse::<i64>().map(toml::Value::Integer).ok(),
                Some(toml::Value::Float(_)) => raw.parse::<f64>().map(toml::Value::Float).ok(),
                Some(toml::Value::Boolean(_)) => raw.parse::<bool>().map(toml::Value::Boolean).ok(),
                _ => Some(toml::Value::String(raw.clone())),
            };
            let value = value.ok_or_else(|| {
                FlywheelError::Config(format!("{var}={raw:?} is not a number (or true/false)"))
            })?;
            table.insert(key, value);
            changed = true;
        }
        if changed {
            *self = table
                .try_into()
                .map_err(|e| FlywheelError::Config(format!("environment: {e}")))?;
        }
        Ok(())
    }

    pub fn check(&self) -> Result<()> {
        let bad = |m: &str| Err(FlywheelError::Config(m.to_string()));
        if self.attribution_window_days < 0
            || self.refer_horizon_days <= 0
            || self.churn_horizon_days <= 0
        {
            return bad("attribution_window_days must be >= 0 and the horizons > 0");
        }
        if self.max_signups_per_referrer_per_day < 0
            || self.candidate_cooldown_days < 0
            || self.alert_cooldown_days < 0
        {
            return bad("max_signups_per_referrer_per_day and the cooldowns must be >= 0");
        }
        if !(0.0..=1.0).contains(&self.churn_alert_threshold)
            || !(0.0..=1.0).contains(&self.ambassador_top_share)
            || !(0.0..=1.0).contains(&self.max_reject_share)
        {
            return bad("churn_alert_threshold, ambassador_top_share and max_reject_share must be in [0, 1]");
        }
        if self.target_partitions == 0 || (self.memory_limit_mb != 0 && self.memory_limit_mb < 64) {
            return bad(
                "target_partitions must be >= 1 and memory_limit_mb 0 (no budget) or >= 64",
            );
        }
        if self.l2 < 0.0 || self.max_iterations == 0 {
            return bad("l2 must be >= 0 and max_iterations >= 1");
        }
        Ok(())
    }

    /// Apply the `--input` / `--output` flags, which override the file and the environment.
    pub fn with_roots(mut self, input: Option<String>, output: Option<String>) -> Config {
        if let Some(i) = input {
            self.input = i;
        }
        if let Some(o) = output {
            self.output = o;
        }
        self
    }

    /// An integer setting by its key (e.g. a list's cooldown, named by its contract).
    pub fn integer(&self, key: &str) -> Result<i64> {
        let table = toml::Table::try_from(self).map_err(FlywheelError::internal)?;
        table
            .get(key)
            .and_then(|v| v.as_integer())
            .ok_or_else(|| FlywheelError::internal(format!("no integer setting {key}")))
    }

    pub fn models_root(&self) -> String {
        self.models
            .clone()
            .unwrap_or_else(|| format!("{}/models", self.output.trim_end_matches('/')))
    }
}

/// The budget when the configuration does not give one: half of the memory the process may use
/// (the cgroup's limit in a container, else the machine's memory), in MiB; the other half is
/// for the inputs and tables the run holds and the allocator. None when neither can be read.
pub fn default_budget_mb() -> Option<u64> {
    let cgroup = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .filter_map(|p| std::fs::read_to_string(p).ok())
    .filter_map(|s| s.trim().parse::<u64>().ok())
    .next();
    let machine = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib * 1024)
    });
    let bytes = match (cgroup, machine) {
        (Some(c), Some(m)) => Some(c.min(m)),
        (c, m) => c.or(m),
    }?;
    Some((bytes / 2 / (1024 * 1024)).max(64))
}
