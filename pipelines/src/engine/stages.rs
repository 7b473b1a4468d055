//! Stage timings of a run: wall time, CPU time and peak resident memory per stage, for the log
//! and the manifest.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::info;

#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    pub stage: String,
    pub seconds: f64,
    /// CPU time of the process during the stage (user + system, Linux), seconds: above
    /// `seconds` when the stage used more than one core.
    pub cpu_seconds: Option<f64>,
    /// Peak resident memory of the process during the stage (Linux), MiB: sampled every 20 ms
    /// by a thread of our own, so a spike shorter than that can be missed. The kernel's own
    /// peak counter (VmHWM) is never reset, so outside tools see the run's true peak.
    pub peak_rss_mib: Option<u64>,
}

/// When a stage started: wall clock and process CPU time.
#[derive(Clone, Copy)]
pub struct StageStart {
    wall: Instant,
    cpu: Option<f64>,
}

/// Stage timer: wall time, CPU time and peak RSS per stage.
#[derive(Default)]
pub struct Stages(pub Vec<Stage>);

impl Stages {
    pub fn start(&self) -> StageStart {
        start_sampler();
        STAGE_PEAK_KIB.store(rss_kib().unwrap_or(0), Ordering::Relaxed);
        StageStart {
            wall: Instant::now(),
            cpu: cpu_seconds(),
        }
    }
    pub fn done(&mut self, name: &str, started: StageStart) {
        let millis = |s: f64| (s * 1000.0).round() / 1000.0;
        let seconds = millis(started.wall.elapsed().as_secs_f64());
        let cpu_seconds = cpu_seconds()
            .zip(started.cpu)
            .map(|(now, then)| millis(now - then));
        let peak =
            rss_kib().map(|now| STAGE_PEAK_KIB.fetch_max(now, Ordering::Relaxed).max(now) / 1024);
        info!(
            stage = name,
            seconds,
            cpu_seconds,
            peak_rss_mib = peak,
            "stage done"
        );
        self.0.push(Stage {
            stage: name.to_string(),
            seconds,
            cpu_seconds,
            peak_rss_mib: peak,
        });
    }
}

/// User + system CPU time of this process so far (Linux /proc, clock ticks of 1/100 s).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// The largest resident set seen since the current stage started, KiB.
static STAGE_PEAK_KIB: AtomicU64 = AtomicU64::new(0);

/// One sampling thread per process: the resident set every 20 ms, kept as the stage's peak.
fn start_sampler() {
    static STARTED: Once = Once::new();
    STARTED.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("rss-sampler".into())
            .spawn(|| loop {
                if let Some(kib) = rss_kib() {
                    STAGE_PEAK_KIB.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no memory sampling thread: stage peaks are end-of-stage values");
        }
    });
}

/// The process's resident set now (Linux), KiB.
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
