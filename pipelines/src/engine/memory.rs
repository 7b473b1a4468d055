//! The query engine's memory budget (`memory_limit_mb`).
//!
//! Sorts, aggregates and joins reserve memory from a [`FairSpillPool`] of the budget's size and
//! spill to disk (or fail with exit code 6) beyond it. `RepartitionExec` is the one exception:
//! in DataFusion 55 a repartition that cannot reserve memory writes its batch to a spill pool, and
//! with two input tasks spilling at once its reader can wait forever
//! (apache/datafusion#24883: every thread parked, no error). [`BudgetPool`] therefore grants a
//! repartition's reservations without taking them from the budget, so a repartition never
//! spills and that path is never taken. Its buffers stay small anyway: DataFusion's distribution
//! channels stop the senders once every output channel holds a batch, so a repartition holds
//! about one batch per output partition (`target_partitions` × 8192 rows), which the budget's
//! headroom covers. The granted bytes are still counted, in [`BudgetPool::reserved`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use datafusion::common::Result as DfResult;
use datafusion::execution::memory_pool::{
    FairSpillPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};

/// A [`FairSpillPool`] of the budget that does not charge `RepartitionExec` (see the module docs).
#[derive(Debug)]
pub struct BudgetPool {
    inner: FairSpillPool,
    limit: usize,
    repartition: AtomicUsize,
    /// The most the budgeted operators held at once.
    peak: AtomicUsize,
}

impl BudgetPool {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            inner: FairSpillPool::new(limit),
            limit,
            repartition: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        })
    }

    /// The most the budgeted operators (all but repartitions) held at once, in bytes.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    fn note_peak(&self) {
        self.peak
            .fetch_max(self.inner.reserved(), Ordering::Relaxed);
    }
}

/// Log how much of the budget a session's operators used at most (nothing without a budget).
pub fn log_peak(ctx: &datafusion::prelude::SessionContext) {
    let pool = ctx.runtime_env().memory_pool.clone();
    if let Some(pool) = pool.downcast_ref::<BudgetPool>() {
        tracing::info!(
            budget_mib = pool.limit / (1024 * 1024),
            peak_reserved_mib = pool.peak() as f64 / (1024.0 * 1024.0),
            "query engine memory: the most its budgeted operators held at once"
        );
    }
}

/// Whether a consumer is granted without charging the budget: a repartition's output channel
/// (`RepartitionExec[<partition>]`, see the module docs) or a recursive query's work table
/// (`RecursiveQuery`). DataFusion 55 charges each batch a recursive query buffers by
/// `get_array_memory_size`, which counts the whole buffers a sliced batch shares with its
/// input: for `int_referral_generations` at 10M customers it asked for 10.8 GB while the whole
/// process held 2.7 GB, and it cannot spill, so under a budget it failed a run that fits.
fn uncharged(consumer: &MemoryConsumer) -> bool {
    consumer.name().starts_with("RepartitionExec") || consumer.name() == "RecursiveQuery"
}

impl std::fmt::Display for BudgetPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "flywheel budget pool ({} bytes)", self.limit)
    }
}

impl MemoryPool for BudgetPool {
    fn name(&self) -> &str {
        "flywheel_budget"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        if !uncharged(consumer) {
            self.inner.register(consumer);
        }
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        if !uncharged(consumer) {
            self.inner.unregister(consumer);
        }
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        if uncharged(reservation.consumer()) {
            self.repartition.fetch_add(additional, Ordering::Relaxed);
        } else {
            self.inner.grow(reservation, additional);
            self.note_peak();
        }
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        if uncharged(reservation.consumer()) {
            self.repartition.fetch_sub(shrink, Ordering::Relaxed);
        } else {
            self.inner.shrink(reservation, shrink);
        }
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> DfResult<()> {
        if uncharged(reservation.consumer()) {
            self.repartition.fetch_add(additional, Ordering::Relaxed);
            Ok(())
        } else {
            self.inner.try_grow(reservation, additional)?;
            self.note_peak();
            Ok(())
        }
    }

    fn reserved(&self) -> usize {
        self.inner.reserved() + self.repartition.load(Ordering::Relaxed)
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repartitions_are_granted_and_others_are_held_to_the_budget() {
        let pool: Arc<dyn MemoryPool> = BudgetPool::new(1000);
        let sort = MemoryConsumer::new("ExternalSorter[0]")
            .with_can_spill(true)
            .register(&pool);
        let repartition = MemoryConsumer::new("RepartitionExec[1]")
            .with_can_spill(true)
            .register(&pool);
        // Alone among spilling consumers, the sort may use the whole budget and not more.
        assert!(sort.try_grow(1000).is_ok());
        assert!(sort.try_grow(1).is_err());
        // A repartition is never refused (so it never spills), and it is counted.
        assert!(repartition.try_grow(5000).is_ok());
        assert_eq!(pool.reserved(), 6000);
        repartition.shrink(5000);
        sort.shrink(1000);
        assert_eq!(pool.reserved(), 0);
        assert!(sort.try_grow(600).is_ok());
        let budget = pool.downcast_ref::<BudgetPool>().unwrap();
        assert_eq!(budget.peak(), 1000, "repartitions are not in the peak");
        assert!(matches!(pool.memory_limit(), MemoryLimit::Finite(1000)));
    }
}
