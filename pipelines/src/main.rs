//! The `flywheel` binary: parse flags, set up logging, run, map errors to exit codes.

use clap::Parser;
use flywheel_pipelines::cli::{self, Cli, LogFormat};

/// mimalloc instead of glibc malloc: the query engine allocates and frees many large Arrow
/// buffers, and glibc spent a quarter of a 1M-customer run in malloc, free and page clearing.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLYWHEEL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
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
            std::process::exit(70);
        }
    };
    if let Err(e) = runtime.block_on(cli::execute(cli)) {
        tracing::error!(exit_code = e.exit_code(), "{e}");
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
}
