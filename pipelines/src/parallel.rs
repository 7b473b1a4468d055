//! CPU work over a slice on a fixed number of threads, with results in input order (so outputs
//! never depend on timing): scoring, design matrices, Parquet encoding; and asynchronous jobs
//! (streamed staging of stored tables) on the runtime's workers, a few at a time, likewise.

use crate::error::{FlywheelError, Result};

/// `f` over `items` on `workers` threads (worker k takes items k, k + workers, ...); the results
/// come back in the order of `items`. The first error (in item order per worker) is returned.
pub fn map_ordered<T: Sync, R: Send>(
    items: &[T],
    workers: usize,
    f: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let workers = workers.max(1);
    let f = &f;
    let mut done: Vec<(usize, R)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|k| {
                scope.spawn(move || -> Result<Vec<(usize, R)>> {
                    items
                        .iter()
                        .enumerate()
                        .skip(k)
                        .step_by(workers)
                        .map(|(i, item)| Ok((i, f(item)?)))
                        .collect()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(items.len());
        for h in handles {
            all.extend(
                h.join()
                    .map_err(|_| FlywheelError::internal("a worker thread panicked"))??,
            );
        }
        Ok::<_, FlywheelError>(all)
    })?;
    done.sort_by_key(|(i, _)| *i);
    Ok(done.into_iter().map(|(_, r)| r).collect())
}

/// Run `jobs` as tasks on the runtime's worker threads, at most `at_once` at a time, started in
/// order; the results come back in the order of `jobs`. On the first error the tasks still
/// running are cancelled (the set aborts them when dropped) and the error is returned.
pub async fn spawn_ordered<R: Send + 'static>(
    jobs: Vec<futures::future::BoxFuture<'static, Result<R>>>,
    at_once: usize,
) -> Result<Vec<R>> {
    let mut waiting = jobs.into_iter().enumerate();
    let mut running = tokio::task::JoinSet::new();
    let start =
        |set: &mut tokio::task::JoinSet<_>,
         (i, job): (usize, futures::future::BoxFuture<'static, Result<R>>)| {
            set.spawn(async move { (i, job.await) });
        };
    for job in waiting.by_ref().take(at_once.max(1)) {
        start(&mut running, job);
    }
    let mut done = Vec::new();
    while let Some(finished) = running.join_next().await {
        let (i, r) =
            finished.map_err(|e| FlywheelError::internal(format!("a task failed: {e}")))?;
        done.push((i, r?));
        if let Some(job) = waiting.next() {
            start(&mut running, job);
        }
    }
    done.sort_by_key(|(i, _)| *i);
    Ok(done.into_iter().map(|(_, r)| r).collect())
}

/// A fixed number of jobs run at once as [`spawn_ordered`] runs them: their results in their
/// order, as an array.
pub async fn spawn_each<R: Send + 'static, const N: usize>(
    jobs: [futures::future::BoxFuture<'static, Result<R>>; N],
) -> Result<[R; N]> {
    spawn_ordered(Vec::from(jobs), N)
        .await?
        .try_into()
        .map_err(|_| FlywheelError::internal("a task gave no result"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Later jobs finish first, the results still come in job order; an error cancels the rest.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spawned_results_keep_the_job_order() {
        use futures::FutureExt;
        let job = |v: u64| {
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(40 - v * 10)).await;
                Ok(v)
            }
            .boxed()
        };
        let out = spawn_ordered((0..4).map(job).collect(), 2).await.unwrap();
        assert_eq!(out, vec![0, 1, 2, 3]);
        let failing: Vec<futures::future::BoxFuture<'static, Result<u64>>> = vec![
            job(0),
            async { Err(FlywheelError::internal("second")) }.boxed(),
            job(2),
        ];
        let err = spawn_ordered(failing, 2).await.unwrap_err();
        assert!(err.to_string().contains("second"));
    }

    #[test]
    fn results_keep_the_input_order() {
        let items: Vec<u32> = (0..101).collect();
        let out = map_ordered(&items, 3, |v| Ok(v * 2)).unwrap();
        assert_eq!(out, items.iter().map(|v| v * 2).collect::<Vec<_>>());
        let err = map_ordered(&items, 2, |v| {
            if *v == 50 {
                Err(FlywheelError::internal("fifty"))
            } else {
                Ok(*v)
            }
        });
        assert!(err.unwrap_err().to_string().contains("fifty"));
    }
}
