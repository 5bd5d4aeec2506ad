//! The `pas` binary: parse the command line, set up logging, run.

use clap::Parser;

fn main() {
    let cli = pas::cli::Cli::parse();
    let default = match cli.command {
        pas::cli::Command::Serve { .. } | pas::cli::Command::Bench(_) => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PAS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    std::process::exit(pas::run(cli));
}
