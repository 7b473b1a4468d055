//! CPU work over a slice on a fixed number of threads, with results in input order (so outputs
//! never depend on timing): scoring, design matrices, Parquet encoding.

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

#[cfg(test)]
mod tests {
    use super::*;

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
