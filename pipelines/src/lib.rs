//! # flywheel pipelines
//!
//! The nightly batch that turns a car-service network's CRM, visit, NPS and referral exports into
//! referral attribution, customer features, scores, CRM lists and KPI tables. README.md's
//! "Architecture" section is the map; this is its short form.
//!
//! Layers, from the top; a module imports only from layers below it (checked by
//! `tests/architecture.rs`):
//!
//! 1. the command line: `main.rs` and `cli.rs`, modules of the binary (flags → settings →
//!    a call into `app`);
//! 2. [`app`]: the applications (the nightly run, training, the registry commands, the demo,
//!    validate, generate), peers that nothing imports;
//! 3. [`steps`]: presenting → publishing → scoring → ingest, demo_data (a step may use those
//!    after it in this list);
//! 4. [`engine`]: query session, run date, tables, the catalog of SQL jobs, the job runner, stage
//!    timings, encodings;
//! 5. [`contracts`], then [`storage`], [`config`], [`parallel`], [`error`].
//!
//! ```text
//!  object store (input root)                                    object store (output root)
//!  crm_customers/ visits/ nps_responses/ referral_events/
//!        │ storage::Root (file:// or s3://)
//!        ▼
//!  steps::ingest ── read + convert (contracts' types) → row rules → accepted rows │ rejects
//!        ▼
//!  engine::runner ── sql/int_*.sql, sql/<table>.sql not reading the scores (DataFusion)
//!        ▼
//!  steps::scoring::score ── champions from the registry (models/<target>/) → customer_scores
//!        ▼
//!  steps::publishing::earlier ── lists of earlier run dates (cooldowns)
//!        ▼
//!  engine::runner ── sql/ambassador_candidates.sql, sql/churn_alerts.sql
//!        ▼
//!  steps::publishing ── whole output contracts → staging (+ steps::presenting::report, the
//!        │                manifest) → commit journal → moved over <table>/dt=D/
//!        ▼
//!  _runs/dt=D/_SUCCESS (the completion marker, written last)
//! ```
//!
//! Invariants (each kept by a test in `tests/architecture.rs`): only `storage` names
//! `object_store`; SQL lives in `sql/` (the row-rule SQL generated from the contracts aside);
//! the `models` crate names no query engine, storage or SQL; no module imports a layer above
//! it; every published table passes its whole output contract before it is published.

pub mod app;
pub mod config;
pub mod contracts;
pub mod engine;
pub mod error;
pub mod parallel;
pub mod steps;
pub mod storage;

pub use error::{FlywheelError, Result};
