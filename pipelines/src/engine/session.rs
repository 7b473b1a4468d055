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
    let optimizer = &mut config.options_mut().optimizer;
    optimizer.hash_join_single_partition_threshold = COLLECT_LEFT_BYTES;
    optimizer.hash_join_single_partition_threshold_rows = COLLECT_LEFT_ROWS;
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    super::udf::register(&ctx);
    super::pick::register(&ctx);
    Ok(ctx)
}

/// A session over the same engine as `ctx` (its settings, the join choice included, its
/// functions and its memory budget: shared, not a second one) that sees `ctx`'s tables `shared`
/// and otherwise tables of its own: for jobs that read the same inputs under the same names
/// but other tables or dates (a training snapshot, a label job running beside another).
pub async fn sibling(ctx: &SessionContext, shared: &[&str]) -> Result<SessionContext> {
    let s = SessionContext::new_with_config_rt(ctx.copied_config(), ctx.runtime_env());
    super::udf::register(&s);
    super::pick::register(&s);
    for name in shared {
        s.register_table(*name, ctx.table_provider(*name).await?)?;
    }
    Ok(s)
}

/// A hash join whose build side the planner estimates under both limits is built once and
/// shared by the probe side's partitions, which are then not shuffled by the join key
/// (DataFusion's `CollectLeft`; its defaults are 1 MiB and 131,072 rows). Absolute limits: the
/// few-hundred-thousand-row build sides of a 1M network qualify, a large network's million-row
/// ones stay partitioned (at 2,000,000 rows the 10M run was slower: README, Performance, the
/// eighth stop). Same tables either way.
const COLLECT_LEFT_BYTES: usize = 64 * 1024 * 1024;
const COLLECT_LEFT_ROWS: usize = 300_000;

/// Bytes a valid input row is taken to need when the run plans hash joins: measured, the whole
/// process peaked at 5.18 GiB with hash joins and no budget at 169M input rows (10M customers;
/// `int_signup_facts` and `customer_features` are the largest jobs), 33 bytes a row, and at
/// 1.0 GiB at 17M rows (1M customers). The joins are given half the budget, so this leaves the
/// other half for everything else.
const JOIN_BYTES_PER_INPUT_ROW: u64 = 32;

/// Choose the join algorithm for the inputs' size: DataFusion 55's hash joins cannot spill, so
/// when the valid input rows (× [`JOIN_BYTES_PER_INPUT_ROW`]) would take more than half the
/// memory budget, the session plans sort-merge joins, whose sorts spill to disk within the
/// budget. `FLYWHEEL_JOINS=hash` or `FLYWHEEL_JOINS=sort_merge` overrides the choice (an
/// operator's escape hatch, and how the small-budget test runs both). Same tables either way;
/// hash joins are faster. A job whose hash joins outgrow the budget anyway runs again with
/// sort-merge joins (`engine::runner::run_jobs`). Returns whether sort-merge joins were chosen.
pub fn choose_joins(ctx: &SessionContext, cfg: &Config, input_rows: u64) -> bool {
    let budget = cfg.memory_limit_mb.saturating_mul(1024 * 1024);
    let sort_merge = match std::env::var("FLYWHEEL_JOINS").as_deref() {
        Ok("sort_merge") => true,
        Ok("hash") => false,
        _ => budget > 0 && input_rows.saturating_mul(JOIN_BYTES_PER_INPUT_ROW) > budget / 2,
    };
    set_hash_joins(ctx, !sort_merge);
    sort_merge
}

/// Whether the session plans hash joins.
pub fn hash_joins(ctx: &SessionContext) -> bool {
    ctx.state_ref()
        .read()
        .config()
        .options()
        .optimizer
        .prefer_hash_join
}

/// Plan hash joins (true) or sort-merge joins (false) from now on.
pub fn set_hash_joins(ctx: &SessionContext, hash: bool) {
    let state = ctx.state_ref();
    let mut state = state.write();
    state.config_mut().options_mut().optimizer.prefer_hash_join = hash;
}
