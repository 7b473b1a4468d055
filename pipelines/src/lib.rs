//! # flywheel pipelines
//!
//! The nightly batch that turns a car-service network's CRM, visit, NPS and referral exports into
//! referral attribution, customer features, scores, CRM lists and KPI tables.
//!
//! ```text
//!  object store (input root)                        object store (output root)
//!  crm_customers/ visits/ nps_responses/ referral_events/
//!        │  storage::Root (file:// or s3://)
//!        ▼
//!  inputs::load_input ── schema check vs data-contracts/*.odcs.yaml, type conversion
//!        ▼
//!  validate::validate_input ── row rules (keys::) → accepted tables │ rejects/<input>/dt=D/
//!        ▼
//!  jobs (sql/*.sql, ordered by the tables each reads) ── DataFusion
//!        ▼
//!  contracts::check_output ── publish::Publisher (staging → commit) → <table>/dt=D/
//!        ▼
//!  report::html ── reports/dt=D/index.html (self-contained morning report)
//!        ▼
//!  _runs/dt=D/manifest.json (written last)
//! ```
//!
//! Invariants: only `storage` touches object storage; SQL lives in `sql/`, never in Rust strings
//! (the validation SQL is generated from the contracts); every published table is checked
//! against its contract first.

pub mod cli;
pub mod config;
pub mod contracts;
pub mod error;
pub mod generate;
pub mod inputs;
pub mod jobs;
pub mod keys;
pub mod models;
pub mod parallel;
pub mod publish;
pub mod report;
pub mod run;
pub mod storage;
pub mod summary;
pub mod validate;

pub use error::{FlywheelError, Result};
