//! Staging the large stored tables while the run computes the rest. A published table that
//! streams into the scratch area (`customer_features`, `referral_attribution`, the scores, ...)
//! no longer changes once its job is done, so its staged files (checked against its contract's
//! columns as they are written, as [`super::stage`] would) are written then, on a task of their
//! own, while the later jobs run: encoding them is a fifth of a run's CPU time, and the jobs leave
//! a core idle for part of their time. One table at a time while the jobs run (the jobs keep
//! their memory); when the run reaches [`super::stage`], as many at once as the session has
//! partitions. The files land in the run's staging folder under names of their own
//! (`early-<table>.parquet`, `early-<table>.csv`) and [`super::stage`] records them in output
//! order, so the manifest and the commit are those of one table after another.
//!
//! A run that fails before its commit aborts the tasks and removes its staging folder
//! ([`EarlyStaging::abort`]); a killed run's staging folder is removed by the next run on the
//! output (`commit::recover`).

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::{commit, write_stored};
use crate::contracts::{self, Contract, Role};
use crate::engine::Stored;
use crate::error::{FlywheelError, Result};
use crate::storage::Root;

/// One staged file of a table written early: where it is staged, its rows and its bytes.
#[derive(Debug)]
pub struct Written {
    pub staged: String,
    pub rows: u64,
    pub bytes: u64,
}

/// The stored published tables of one run, staged as they are computed.
pub struct EarlyStaging {
    root: Root,
    run_id: String,
    /// The published tables of one folder each (not the rejects), by name.
    published: BTreeMap<String, (Contract, bool)>,
    started: BTreeMap<String, JoinHandle<Result<Vec<Written>>>>,
    at_once: Arc<Semaphore>,
    /// How many tables may be staged at once once the jobs are done.
    partitions: usize,
    opened: bool,
}

impl EarlyStaging {
    /// Staging into the run `run_id`'s staging folder below the output `root`.
    pub fn new(root: Root, run_id: &str, partitions: usize) -> Result<EarlyStaging> {
        let published = contracts::published()?
            .into_iter()
            .filter_map(|c| match &c.role {
                Role::Published(p) if !p.folder.contains("{input}") => {
                    let csv = p.crm_csv;
                    Some((c.table.clone(), (c, csv)))
                }
                _ => None,
            })
            .collect();
        Ok(EarlyStaging {
            root,
            run_id: run_id.to_string(),
            published,
            started: BTreeMap::new(),
            at_once: Arc::new(Semaphore::new(1)),
            partitions: partitions.max(1),
            opened: false,
        })
    }

    /// Start staging every published table of `stored` not started yet.
    pub fn offer<'a>(&mut self, stored: impl IntoIterator<Item = (&'a String, &'a Stored)>) {
        for (name, table) in stored {
            if !self.started.contains_key(name) {
                if let Some((contract, csv)) = self.published.get(name) {
                    let task = self.spawn(contract.clone(), *csv, table.clone());
                    self.started.insert(name.clone(), task);
                }
            }
        }
    }

    /// From now on stage as many tables at once as the session has partitions (the jobs are
    /// done: publishing is all that is left).
    pub fn open_up(&mut self) {
        if !self.opened {
            self.at_once.add_permits(self.partitions - 1);
            self.opened = true;
        }
    }

    /// The staged files of `table` (its Parquet file, then its CRM file when it has one), once
    /// written; an error when it was not offered (or is not a published stored table).
    pub async fn take(&mut self, table: &str) -> Result<Vec<Written>> {
        let task = self.started.remove(table).ok_or_else(|| {
            FlywheelError::internal(format!(
                "{table} was not staged: not a published stored table"
            ))
        })?;
        task.await
            .map_err(|e| FlywheelError::internal(format!("staging {table} failed: {e}")))?
    }

    /// `result`, after stopping every task and removing the run's staging folder when it is an
    /// error (a run that fails before its commit publishes nothing).
    pub async fn unless_failed<T>(&mut self, result: Result<T>) -> Result<T> {
        if result.is_err() {
            self.abort().await;
        }
        result
    }

    /// Stop every task and remove the run's staging folder
    /// ([`super::publisher::remove_staging`]).
    pub async fn abort(&mut self) {
        let tasks = std::mem::take(&mut self.started);
        for task in tasks.values() {
            task.abort();
        }
        for (_, task) in tasks {
            let _ = task.await;
        }
        super::publisher::remove_staging(&self.root, &self.run_id).await;
    }

    fn spawn(
        &self,
        contract: Contract,
        csv: bool,
        table: Stored,
    ) -> JoinHandle<Result<Vec<Written>>> {
        let (root, at_once) = (self.root.clone(), self.at_once.clone());
        let staging = commit::staging(&self.run_id);
        let name = contract.table.clone();
        let parquet = format!("{staging}/early-{name}.parquet");
        let csv = csv.then(|| format!("{staging}/early-{name}.csv"));
        let task = async move {
            let _turn = at_once
                .acquire_owned()
                .await
                .map_err(FlywheelError::internal)?;
            let started = std::time::Instant::now();
            let partition = match &contract.role {
                Role::Published(p) => p.partition.clone(),
                _ => String::new(),
            };
            let written = write_stored(
                &root,
                &contract,
                &table,
                &partition,
                &parquet,
                csv.as_deref(),
            )
            .await?;
            tracing::info!(table = %name, seconds = started.elapsed().as_secs_f64(), "staged");
            let staged = std::iter::once(parquet).chain(csv);
            Ok(staged
                .zip(written)
                .map(|(staged, (rows, bytes))| Written {
                    staged,
                    rows,
                    bytes,
                })
                .collect())
        };
        // In the run's span, so that its log lines carry the run id.
        tokio::spawn(tracing::Instrument::in_current_span(task))
    }
}

impl Drop for EarlyStaging {
    /// A run that returns early (an error, a panic) stops its staging tasks.
    fn drop(&mut self) {
        for task in self.started.values() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::engine::{encode, Scratch, StoredWriter};
    use arrow::array::{new_null_array, RecordBatch};

    /// A stored table with the contract's columns: no rows, or one row of nulls (which breaks
    /// the contract's required columns).
    async fn stored(scratch: &Scratch, table: &str, rows: usize) -> (Contract, Stored) {
        let contract = contracts::contract(table).unwrap();
        let schema = contract.schema();
        let schema = if rows == 0 {
            schema
        } else {
            let nullable = schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true));
            Arc::new(arrow::datatypes::Schema::new(nullable.collect::<Vec<_>>()))
        };
        let mut writer =
            StoredWriter::create(scratch, &format!("{table}.parquet"), schema.clone()).unwrap();
        let columns = schema
            .fields()
            .iter()
            .map(|f| new_null_array(f.data_type(), rows))
            .collect();
        let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
        writer.write(&batch).await.unwrap();
        (contract, writer.finish().await.unwrap())
    }

    /// A table offered while the jobs run is staged under its early name with the bytes
    /// staging gives it at the end; a table that breaks its contract fails when taken; aborting
    /// removes the run's staging folder, files staged early included.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn early_staging_writes_the_staged_bytes_reports_broken_tables_and_aborts_clean() {
        let dir = std::env::temp_dir().join(format!("flywheel-early-{}", std::process::id()));
        let cfg = Config {
            scratch: Some(dir.join("scratch").display().to_string()),
            ..Config::default()
        };
        let scratch = Scratch::open(&cfg, "t").unwrap();
        let output = Root::parse(dir.join("out").to_str().unwrap()).unwrap();
        let (contract, empty) = stored(&scratch, "referred_vs_other", 0).await;
        let (_, broken) = stored(&scratch, "referrer_rewards", 1).await;

        let mut early = EarlyStaging::new(output.clone(), "run-1", 2).unwrap();
        let (fine, breaking) = (
            "referred_vs_other".to_string(),
            "referrer_rewards".to_string(),
        );
        early.offer([(&fine, &empty), (&breaking, &broken)]);
        // Not a published table of its own folder: never staged early.
        early.offer(&BTreeMap::from([("int_referrals".to_string(), empty)]));
        early.open_up();
        let written = early.take("referred_vs_other").await.unwrap();
        assert_eq!(written.len(), 1);
        let file = &written[0];
        assert_eq!(
            file.staged,
            "_staging/run-1/early-referred_vs_other.parquet"
        );
        assert_eq!(file.rows, 0);
        let Role::Published(p) = &contract.role else {
            panic!("referred_vs_other is published")
        };
        let layout = super::super::FileLayout::of(&contract.schema(), &p.partition);
        let expected = encode::parquet_bytes(&layout.schema, &[]).unwrap();
        let staged = output.get(&file.staged).await.unwrap().unwrap();
        assert_eq!(staged, expected);
        assert_eq!(file.bytes, expected.len() as u64);

        let err = early.take("referrer_rewards").await.unwrap_err();
        assert!(err.to_string().contains("referrer_rewards"), "{err}");
        assert!(early.take("int_referrals").await.is_err());

        early.abort().await;
        assert!(output.list("_staging").await.unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
