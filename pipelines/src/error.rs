//! Typed errors of the pipeline, sorted by who has to act: the caller (usage/config), the data
//! owner (contract), the platform (storage), the data scientist (model), or us (internal).
//! The CLI maps each category to a documented exit code so a scheduler can route on it.

use thiserror::Error;

pub type Result<T, E = FlywheelError> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum FlywheelError {
    /// Bad flags, config file or environment: the caller must fix the invocation.
    #[error("configuration error: {0}")]
    Config(String),

    /// An input or output broke its data contract (schema, unreadable file, too many rejects).
    #[error("contract violation: {0}")]
    Contract(String),

    /// Object storage could not be reached, listed, read or written.
    #[error("storage error at {location}: {message}")]
    Storage { location: String, message: String },

    /// A model file is missing, corrupt or does not fit the features.
    #[error("model error: {0}")]
    Model(String),

    /// A bug in flywheel itself (a SQL job that does not plan, an unexpected engine error).
    #[error("internal error (please file a report): {0}")]
    Internal(String),
}

impl FlywheelError {
    /// Exit codes documented in the README.
    pub fn exit_code(&self) -> i32 {
        match self {
            FlywheelError::Config(_) => 2,
            FlywheelError::Contract(_) => 3,
            FlywheelError::Storage { .. } => 4,
            FlywheelError::Model(_) => 5,
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
}

impl From<flywheel_models::ModelError> for FlywheelError {
    fn from(e: flywheel_models::ModelError) -> Self {
        FlywheelError::Model(e.to_string())
    }
}

/// DataFusion errors raised while running our own SQL over validated tables are our bugs, except
/// object-store and IO failures, which are the platform's.
impl From<datafusion::error::DataFusionError> for FlywheelError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        use datafusion::error::DataFusionError as D;
        match e.find_root() {
            D::ObjectStore(os) => FlywheelError::storage("object store", os),
            D::IoError(io) => FlywheelError::storage("io", io),
            D::ResourcesExhausted(m) => FlywheelError::Internal(format!(
                "out of memory budget: {m}; raise memory_limit_mb in flywheel.toml"
            )),
            _ => FlywheelError::Internal(e.to_string()),
        }
    }
}

impl From<arrow::error::ArrowError> for FlywheelError {
    fn from(e: arrow::error::ArrowError) -> Self {
        FlywheelError::Internal(e.to_string())
    }
}
