//! `flywheel generate`: demo exports for N customers, written to a storage root.

use chrono::NaiveDate;

use crate::config::Config;
use crate::engine::RunDate;
use crate::error::{FlywheelError, Result};
use crate::steps::demo_data::{self, Summary};
use crate::storage::Root;

/// Write the four input exports for `customers` customers as of `as_of` to `out`.
pub async fn generate(
    cfg: &Config,
    out: &str,
    customers: usize,
    seed: u64,
    as_of: NaiveDate,
) -> Result<Summary> {
    if customers == 0 {
        return Err(FlywheelError::Config(
            "--customers must be at least 1".into(),
        ));
    }
    let as_of = RunDate::new(as_of, cfg)?;
    demo_data::generate(&Root::parse(out)?, customers, seed, &as_of).await
}
