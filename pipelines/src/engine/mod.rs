//! The engine: what every application and step runs on. The query session, the run date, the
//! materialised tables, the catalog of SQL jobs and the runner that executes them, stage timings,
//! table encodings and ordered parallel work. It knows nothing of business rules beyond the
//! parameters it binds; those live in `sql/` and the contracts.

pub mod catalog;
pub mod encode;
pub mod memory;
pub mod pick;
pub mod run_date;
pub mod runner;
pub mod scratch;
pub mod session;
pub mod stages;
pub mod stored;
pub mod table;
pub mod udf;

pub use catalog::Job;
pub use run_date::RunDate;
pub use runner::{params, run_jobs, Release, Tables};
pub use scratch::Scratch;
pub use session::session;
pub use stages::Stages;
pub use stored::{Stored, StoredWriter};
pub use table::Table;
