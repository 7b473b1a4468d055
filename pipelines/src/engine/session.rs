//! The query engine: one DataFusion session per run, with a fixed partition count (results do
//! not depend on the machine), the shared rules of `udf` and the aggregates of `pick` registered
//! and a memory budget.

use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::config::Config;
use crate::error::Result;

/// Query engine with a fixed partition count (results do not depend on the machine) and, unless
/// `memory_limit_mb` is 0, a memory budget beyond which sorts, aggregates and joins spill to the
/// operating system's temporary directory (`engine::memory`).
pub fn session(cfg: &Config) -> Result<SessionContext> {
    let mut runtime = RuntimeEnvBuilder::new();
    if cfg.memory_limit_mb > 0 {
        let budget = cfg.memory_limit_mb as usize * 1024 * 1024;
        runtime = runtime.with_memory_pool(super::memory::BudgetPool::new(budget));
    }
    let runtime = runtime.build_arc()?;
    let mut config = SessionConfig::new()
        .with_target_partitions(cfg.target_partitions)
        .with_batch_size(8192)
        .with_information_schema(false);
    // Published strings are plain Utf8, which every reader understands.
    config.options_mut().sql_parser.map_string_types_to_utf8view = false;
    // Scratch files are read as written (plain Utf8, not the view types DataFusion prefers).
    config
        .options_mut()
        .execution
        .parquet
        .schema_force_view_types = false;
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    super::udf::register(&ctx);
    super::pick::register(&ctx);
    Ok(ctx)
}

/// Bytes a valid input row is taken to need when it sits in a hash join's build side (the
/// row, the hash table's share and DataFusion's accounting; measured: the joins of
/// `int_referral_signups` held ~2 GB at 17M input rows and 8 GB of the process at 170M).
const JOIN_BYTES_PER_INPUT_ROW: u64 = 128;

/// Choose the join algorithm for the inputs' size: DataFusion 55's hash joins cannot spill, so
/// when the valid input rows (× [`JOIN_BYTES_PER_INPUT_ROW`]) would take more than half the
/// memory budget, the session plans sort-merge joins, whose sorts spill to disk within the
/// budget. Same tables either way (tests/end_to_end.rs, the small-budget test runs both);
/// hash joins are faster. Returns whether sort-merge joins were chosen.
pub fn choose_joins(ctx: &SessionContext, cfg: &Config, input_rows: u64) -> bool {
    let budget = cfg.memory_limit_mb.saturating_mul(1024 * 1024);
    let sort_merge = budget > 0 && input_rows.saturating_mul(JOIN_BYTES_PER_INPUT_ROW) > budget / 2;
    let state = ctx.state_ref();
    let mut state = state.write();
    state.config_mut().options_mut().optimizer.prefer_hash_join = !sort_merge;
    sort_merge
}

/// Give `to` the join choice of `from` (a session of its own over the same inputs, e.g. a
/// training snapshot).
pub fn same_joins(from: &SessionContext, to: &SessionContext) {
    let hash = from.state().config().options().optimizer.prefer_hash_join;
    let state = to.state_ref();
    let mut state = state.write();
    state.config_mut().options_mut().optimizer.prefer_hash_join = hash;
}
