//! The `cutover` command line: thin wrapper over the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cutover::app::App;
use cutover::config;

/// cutover: split HTTP traffic between versions of a service (canary,
/// blue/green) by weight, header or sticky hash.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve traffic with a config file.
    Run {
        /// Path to the YAML config.
        #[arg(short, long, default_value = "config/cutover.yaml")]
        config: PathBuf,
        /// Worker threads (default: one per CPU). 1 runs a single-threaded
        /// runtime, the cheapest per request.
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Validate config files and print every error with its field path.
    Check {
        /// Config files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Start demo upstreams (stable, canary) and the proxy in front of them.
    Demo {
        /// Where the demo proxy listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
}

fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    match cli.command {
        Command::Check { files } => check(&files),
        Command::Run { config, workers } => serve(workers, run(config)),
        Command::Demo { listen } => serve(Some(1), async move {
            cutover::demo::run(listen).await.map_err(|e| e.to_string())
        }),
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn check(files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for file in files {
        let result = config::load_file(file).and_then(|cfg| {
            let registry = cutover::upstream::EndpointRegistry::default();
            config::compile::compile(&cfg, &registry, 1).map(|t| {
                let rules = t.rules.len();
                (t.listeners.len(), cfg.routes.len(), rules, t.groups.len())
            })
        });
        match result {
            Ok((l, r, rules, g)) => println!(
                "{}: ok ({l} listeners, {r} routes, {rules} rules, {g} groups)",
                file.display()
            ),
            Err(errors) => {
                failed = true;
                eprintln!("{}: {} error(s)", file.display(), errors.0.len());
                for e in &errors.0 {
                    eprintln!("  {e}");
                }
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

async fn run(path: PathBuf) -> Result<(), String> {
    let cfg = config::load_file(&path)
        .map_err(|e| format!("{}: invalid config:\n{e}", path.display()))?;
    let app = App::bind(&cfg).await.map_err(|e| e.to_string())?;
    app.serve(shutdown_signal()).await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Builds the runtime and runs `main` on it.
fn serve(
    workers: Option<usize>,
    main: impl std::future::Future<Output = Result<(), String>>,
) -> ExitCode {
    let runtime = match workers {
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n.max(1))
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cutover: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cutover: {e}");
            ExitCode::FAILURE
        }
    }
}
