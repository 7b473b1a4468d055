//! The `flywheel` binary: parse flags, set up logging, run, map errors (and panics) to exit codes.

mod cli;

use clap::Parser;
use cli::{Cli, LogFormat};
use flywheel_pipelines::error::PANIC_EXIT_CODE;

/// mimalloc instead of glibc malloc: the query engine allocates and frees many large Arrow
/// buffers, and glibc spent a quarter of a 1M-customer run in malloc, free and page clearing.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (libmimalloc-sys 0.1.49 does not name it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// `mi_option_allow_thp` in the same enum.
const MI_OPTION_ALLOW_THP: libmimalloc_sys::mi_option_t = 43;

/// The allocator's settings, before anything allocates much: each one gives way to its
/// environment variable.
fn tune_allocator() {
    // Hand freed memory back to the kernel only once it has stayed free for a second (mimalloc's
    // default is 10 ms): the jobs free and reallocate gigabytes within a job, and re-faulting
    // pages returned after 10 ms cost 8-17 s of system time per 1M-customer run; never
    // returning them (tried before) kept every thread's high-water mark for the whole run, 7 GiB
    // at 10M customers against 4.3 GiB held at most. Measured at 1M: -1 (never) 45.2 s and
    // 1.48 GiB peak, 1000 ms 44.6 s and 1.21 GiB, 100 ms 49.4 s and 1.09 GiB.
    // MIMALLOC_PURGE_DELAY in the environment still wins.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option of the allocator; the index is mimalloc v3's (pinned).
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 1000) };
    }
    // No transparent huge pages. mimalloc v3 asks for them on its arenas (madvise), and each
    // first touch of a 2 MiB region, fresh or purged, made the kernel clear all of it: that was
    // 30% of a 1M-customer run's samples (`clear_page_erms` under `do_huge_pmd_anonymous_page`)
    // and 28 s of its 30 s of system time. Without them: 11 s of system time, the run 8-13 s
    // shorter, the same peak. The process-wide switch is needed because mimalloc decides at its
    // own start-up, before main. MIMALLOC_ALLOW_THP in the environment still wins.
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: one integer option of the allocator (index pinned as above), and a prctl that
        // only sets a flag of this process; its result is ignored (an old kernel keeps THP).
        unsafe {
            libmimalloc_sys::mi_option_set(MI_OPTION_ALLOW_THP, 0);
            libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
        }
    }
}

fn main() {
    tune_allocator();
    // A panic anywhere is a bug: one line on stderr and the internal-error exit code, never
    // Rust's 101 and a backtrace a scheduler cannot route.
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        eprintln!("error: internal error (please file a report with the log): {what}{at}");
        std::process::exit(PANIC_EXIT_CODE);
    }));
    if std::env::var_os("FLYWHEEL_TEST_PANIC").is_some() {
        // For the end-to-end test of the panic path only.
        panic!("FLYWHEEL_TEST_PANIC is set");
    }
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLYWHEEL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        // One JSON object per line with the message at the top level (as log collectors
        // expect) and the run's span (run_id, run_date) on every line of a run.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(PANIC_EXIT_CODE);
        }
    };
    if let Err(e) = runtime.block_on(cli::execute(cli)) {
        tracing::error!(exit_code = e.exit_code(), "{e}");
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
}
