//! `callsight`: serve calls (default) or run the detector on files.

use anyhow::Context;
use callsight_server::{detect_cmd, token_cmd, ServeArgs};
use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "callsight", version, about = "Video calls in the browser, watched by an object detector")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

// Parsed once at start-up: the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Serve the web client, signaling, STUN and media (the default).
    Serve(Box<ServeArgs>),
    /// Detect objects in images and y4m videos; one JSON line per image or frame.
    Detect(detect_cmd::DetectArgs),
    /// Mint a room access token (for --require-token) and print it with a join link.
    Token(token_cmd::TokenArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,str0m=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Detect(args)) => detect_cmd::run(args),
        Some(Command::Token(args)) => token_cmd::run(args),
        Some(Command::Serve(args)) => serve(*args),
        None => serve(cli.serve),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let running = callsight_server::start(args).await?;
        let scheme = if running.tls { "https" } else { "http" };
        tracing::info!("listening on {scheme}://{}", running.http_addr);
        tokio::select! {
            result = running.task => result.context("server task")??,
            _ = tokio::signal::ctrl_c() => tracing::info!("shutting down"),
        }
        Ok(ExitCode::SUCCESS)
    })
}
