//! One run of a date at a time: a lock object per output root and run date,
//! `_locks/dt=D.json`, created with object storage's conditional create (it fails when the
//! object exists, on the local filesystem and on S3 alike). It holds the run id, host, process
//! and start time. A lock whose holder is gone is taken over: on the same host, at once when the
//! holder's process no longer exists; from any host, once older than `lock_stale_after_minutes`.
//! `--break-lock` takes it over whatever its age. Runs of different dates do not meet.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::error::{FlywheelError, Result};
use crate::storage::Root;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Holder {
    pub run_id: String,
    pub host: String,
    pub pid: u32,
    pub started_at: DateTime<Utc>,
}

/// A held lock; `release` removes it (a run that ends, well or not, releases its lock).
pub struct Lock {
    output: Root,
    path: String,
    /// The holder whose lock was taken over (it died, or --break-lock), if any.
    pub taken_over: Option<Holder>,
}

pub const FOLDER: &str = "_locks";

/// Where the lock of `date` (YYYY-MM-DD) lives below the output root.
pub fn path(date: &str) -> String {
    format!("{FOLDER}/dt={date}.json")
}

/// Take the lock of `date` for run `run_id`, or fail with [`FlywheelError::Locked`] naming the
/// holder. `stale_after_minutes`: a lock at least this old is taken over; `force` takes it over
/// whatever its age.
pub async fn acquire(
    output: &Root,
    date: &str,
    run_id: &str,
    stale_after_minutes: i64,
    force: bool,
) -> Result<Lock> {
    let path = path(date);
    let me = Holder {
        run_id: run_id.to_string(),
        host: hostname(),
        pid: std::process::id(),
        started_at: Utc::now(),
    };
    let body = serde_json::to_vec_pretty(&me).map_err(FlywheelError::internal)?;
    // Two attempts: the second after removing a stale (or forcibly broken) lock.
    let mut taken_over = None;
    for attempt in 0..2 {
        if output.create(&path, body.clone().into()).await? {
            return Ok(Lock {
                output: output.clone(),
                path,
                taken_over,
            });
        }
        let holder = read_holder(output, &path).await?;
        let stale = holder.as_ref().is_none_or(|h| gone(h, stale_after_minutes));
        if attempt == 0 && (force || stale) {
            warn!(
                lock = %output.display(&path),
                holder = ?holder,
                "taking over the lock of the date ({})",
                if force { "--break-lock" } else { "stale: its holder is gone" }
            );
            output.delete(&path).await?;
            taken_over = holder;
            continue;
        }
        let who = match &holder {
            Some(h) => format!(
                "run {} on host {} (pid {}), started {}",
                h.run_id,
                h.host,
                h.pid,
                h.started_at.to_rfc3339()
            ),
            None => "another run".to_string(),
        };
        return Err(FlywheelError::Locked {
            date: date.to_string(),
            lock: output.display(&path),
            holder: who,
        });
    }
    Err(FlywheelError::Locked {
        date: date.to_string(),
        lock: output.display(&path),
        holder: "another run that took it over at the same moment".into(),
    })
}

impl Lock {
    /// Remove the lock (bounded in time: a store that does not answer leaves it to be taken
    /// over as stale).
    pub async fn release(self) {
        let removal = self.output.delete(&self.path);
        match tokio::time::timeout(crate::storage::CLEANUP_DEADLINE, removal).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                warn!(error = %e, "could not remove the lock of the run; the next run of the date takes it over once its holder is gone")
            }
            Err(_) => {
                warn!(lock = %self.output.display(&self.path), "the store did not answer while removing the lock of the run; the next run of the date takes it over once its holder is gone")
            }
        }
    }
}

/// Whether the holder of a lock is gone: its process no longer exists on this host, or the lock
/// is at least `stale_after_minutes` old. (A process id reused by another program keeps a dead
/// run's lock alive until it is stale.)
fn gone(h: &Holder, stale_after_minutes: i64) -> bool {
    let old = (Utc::now() - h.started_at).num_minutes() >= stale_after_minutes;
    // Not a data path: the kernel's process table, only when this host has one.
    let proc = std::path::Path::new("/proc");
    let dead_here = h.host == hostname()
        && proc.join("self").exists()
        && !proc.join(h.pid.to_string()).exists();
    old || dead_here
}

/// Every date with a lock below the output root (held or left by a dead run).
pub async fn dates(output: &Root) -> Result<Vec<String>> {
    Ok(output
        .list(&format!("{FOLDER}/"))
        .await?
        .into_iter()
        .filter_map(|l| {
            let name = l.path.rsplit('/').next()?;
            Some(name.strip_prefix("dt=")?.strip_suffix(".json")?.to_string())
        })
        .collect())
}

/// The holder written in the lock; None when it is unreadable (treated as stale).
async fn read_holder(output: &Root, path: &str) -> Result<Option<Holder>> {
    Ok(output
        .get(path)
        .await?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            // Not a data path: the kernel's host name.
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}
