//! Typed errors of the pipeline, sorted by who has to act: the caller (usage/config), the owner of
//! an export (input), the platform (storage, resources), the data scientist (model), or us
//! (internal). Each variant carries what a person needs: which file, which column, what to do.
//! The CLI maps each to a documented exit code so a scheduler can route on it.

use thiserror::Error;

pub type Result<T, E = FlywheelError> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum FlywheelError {
    /// Bad flags, config file or environment: the caller must fix the invocation.
    #[error("configuration error: {0}")]
    Config(String),

    /// An input export breaks its data contract (missing, unreadable, a missing column, an
    /// incompatible type): its owner must re-export it.
    #[error("contract violation: input {input}{}: {problem}; {fix}", file.as_ref().map(|f| format!(", file {f}")).unwrap_or_default())]
    Input {
        input: String,
        /// The file, as a URL below the input root, when one file is at fault.
        file: Option<String>,
        problem: String,
        fix: String,
    },

    /// Too many rows of some inputs broke the row rules (one line per input).
    #[error("contract violation: {}. Nothing was published; fix the export or raise max_reject_share.", .0.join("\n"))]
    TooManyRejects(Vec<String>),

    /// Object storage could not be reached, listed, read or written.
    #[error("storage error at {location}: {message}")]
    Storage { location: String, message: String },

    /// A file flywheel itself published on an earlier date cannot be read back (e.g. a list the
    /// cooldown needs): the output store, not an export owner, is at fault.
    #[error("earlier output {path} is unreadable: {problem}; restore it, or delete it and rerun that date")]
    EarlierOutput { path: String, problem: String },

    /// Another run of the same date holds the date's lock.
    #[error("locked: another run of {date} is going on: {holder} holds {lock}; wait for it, or if it died run again with --break-lock (a lock older than lock_stale_after_minutes is taken over by itself)")]
    Locked {
        date: String,
        lock: String,
        holder: String,
    },

    /// The query engine ran out of its memory budget.
    #[error("out of memory budget: {0}; raise memory_limit_mb (flywheel.toml or FLYWHEEL_MEMORY_LIMIT_MB) or run on a larger machine")]
    Resources(String),

    /// A target has no champion model and the run may not go on without it.
    #[error("model error: {target} has no champion model in {registry}; train one first with `flywheel train --target {target}` (or run with --allow-missing-models to publish null scores)")]
    MissingModel { target: String, registry: String },

    /// A model file is corrupt, of another format, or does not fit the features.
    #[error("model error: {0}")]
    Model(String),

    /// A bug in flywheel itself (a SQL job that does not plan, an output that breaks its
    /// contract, a panic).
    #[error("internal error (please file a report with the log): {0}")]
    Internal(String),
}

impl FlywheelError {
    /// Exit codes documented in the README.
    pub fn exit_code(&self) -> i32 {
        match self {
            FlywheelError::Config(_) => 2,
            FlywheelError::Input { .. } | FlywheelError::TooManyRejects(_) => 3,
            FlywheelError::Storage { .. } | FlywheelError::EarlierOutput { .. } => 4,
            FlywheelError::MissingModel { .. } | FlywheelError::Model(_) => 5,
            FlywheelError::Resources(_) => 6,
            FlywheelError::Locked { .. } => 7,
            FlywheelError::Internal(_) => 70,
        }
    }

    pub fn storage(location: impl Into<String>, err: impl std::fmt::Display) -> Self {
        FlywheelError::Storage {
            location: location.into(),
            message: err.to_string(),
        }
    }

    pub fn internal(err: impl std::fmt::Display) -> Self {
        FlywheelError::Internal(err.to_string())
    }

    /// An input export at fault; `file`: the file's URL when one file is.
    pub fn input(
        input: &str,
        file: Option<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        FlywheelError::Input {
            input: input.to_string(),
            file,
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

/// The exit code of a panic: an internal error (never Rust's 101).
pub const PANIC_EXIT_CODE: i32 = 70;

impl From<flywheel_models::ModelError> for FlywheelError {
    fn from(e: flywheel_models::ModelError) -> Self {
        FlywheelError::Model(e.to_string())
    }
}

/// DataFusion errors raised while running our own SQL over validated tables are our bugs, except
/// object-store and IO failures, which are the platform's, and an exhausted memory budget.
impl From<datafusion::error::DataFusionError> for FlywheelError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        use datafusion::error::DataFusionError as D;
        match e.find_root() {
            D::ObjectStore(os) => FlywheelError::storage("object store", os),
            D::IoError(io) => FlywheelError::storage("io", io),
            D::ResourcesExhausted(m) => FlywheelError::Resources(m.clone()),
            _ => FlywheelError::Internal(e.to_string()),
        }
    }
}

impl From<arrow::error::ArrowError> for FlywheelError {
    fn from(e: arrow::error::ArrowError) -> Self {
        FlywheelError::Internal(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_error_goes_to_who_acts() {
        let input = FlywheelError::input(
            "visits",
            Some("s3://b/visits/part-0.parquet".into()),
            "has no column revenue",
            "add it",
        );
        assert_eq!(input.exit_code(), 3);
        assert_eq!(
            input.to_string(),
            "contract violation: input visits, file s3://b/visits/part-0.parquet: has no column revenue; add it"
        );
        let earlier = FlywheelError::EarlierOutput {
            path: "out/lists/churn_alerts/dt=2026-01-01/part-00000.parquet".into(),
            problem: "not Parquet".into(),
        };
        assert_eq!(earlier.exit_code(), 4, "not the export owner's");
        let budget: FlywheelError =
            datafusion::error::DataFusionError::ResourcesExhausted("hash join".into()).into();
        assert_eq!(budget.exit_code(), 6);
        assert!(budget.to_string().contains("raise memory_limit_mb"));
        assert!(!budget.to_string().contains("internal"));
        let missing = FlywheelError::MissingModel {
            target: "refer".into(),
            registry: "out/models".into(),
        };
        assert_eq!(missing.exit_code(), 5);
        assert!(missing
            .to_string()
            .contains("flywheel train --target refer"));
    }
}
