//! The query engine: one DataFusion session per run, with a fixed partition count (results do
//! not depend on the machine), the shared rules of `udf` registered and, when configured, a
//! memory budget.

use std::sync::Arc;

use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use tracing::warn;

use crate::config::Config;
use crate::error::Result;

/// Query engine with a fixed partition count (results do not depend on the machine) and, when
/// configured, a memory budget beyond which sorts and aggregates spill.
pub fn session(cfg: &Config) -> Result<SessionContext> {
    let mut runtime = RuntimeEnvBuilder::new();
    if cfg.memory_limit_mb > 0 {
        // Opt-in only: under a budget, DataFusion 55's RepartitionExec can deadlock while it
        // spills (apache/datafusion#24883, fixed upstream after 55); seen here at 1M customers.
        warn!(
            memory_limit_mb = cfg.memory_limit_mb,
            "a query-engine memory budget is set: large runs may spill, and DataFusion 55 can stall while a repartition spills"
        );
        runtime = runtime.with_memory_pool(Arc::new(FairSpillPool::new(
            cfg.memory_limit_mb as usize * 1024 * 1024,
        )));
    }
    let runtime = runtime.build_arc()?;
    let mut config = SessionConfig::new()
        .with_target_partitions(cfg.target_partitions)
        .with_batch_size(8192)
        .with_information_schema(false);
    // Published strings are plain Utf8, which every reader understands.
    config.options_mut().sql_parser.map_string_types_to_utf8view = false;
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    super::udf::register(&ctx);
    Ok(ctx)
}
