//! `vision-detect`: the `callsight detect` subcommand as a stand-alone binary, built from
//! the same source (crates/server/src/detect_cmd.rs), so the CLI can be tested within this
//! crate.

// detect_cmd.rs may share the server's detector flags (`crate::detector_args`).
#[path = "../../../server/src/detect_cmd.rs"]
mod detect_cmd;
#[allow(dead_code, unused_imports)]
#[path = "../../../server/src/detector_args.rs"]
mod detector_args;

use clap::Parser;

#[derive(Parser)]
#[command(name = "vision-detect", about = "Detect objects in images and y4m video (JSON lines)")]
struct Cli {
    #[command(flatten)]
    args: detect_cmd::DetectArgs,
}

fn main() -> anyhow::Result<std::process::ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    detect_cmd::run(Cli::parse().args)
}
