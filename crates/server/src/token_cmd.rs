//! `callsight token`: mint a room access token and print it with a join link. The token
//! rides in the link's fragment (`/r/ROOM#token=…`), which browsers never send to a
//! server, so it stays out of request lines, access logs and `Referer`s.

use crate::config::parse_duration;
use crate::token;
use anyhow::Context;
use callsight_signal::RoomId;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

#[derive(clap::Args, Debug, Clone)]
pub struct TokenArgs {
    /// The room the token admits to.
    #[arg(long)]
    pub room: String,
    /// The participant's identity (also its display name unless --name is given).
    #[arg(long)]
    pub identity: String,
    /// Display name shown to the others.
    #[arg(long)]
    pub name: Option<String>,
    /// How long the token stays valid (e.g. 3600, 90s, 30m, 1h, 1d).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub ttl: Duration,
    /// Withhold the right to publish to the server's media leg (detection).
    #[arg(long)]
    pub no_publish: bool,
    /// Withhold the right to receive detections of others' video.
    #[arg(long)]
    pub no_subscribe: bool,
    /// Where the server is reached, for the join link (e.g. https://call.example.org).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub base_url: String,
    /// File holding the token secret; or set CALLSIGHT_TOKEN_SECRET.
    #[arg(long, env = "CALLSIGHT_TOKEN_SECRET_FILE")]
    pub token_secret_file: Option<PathBuf>,
}

/// Prints the token, then the join link.
pub fn run(args: TokenArgs) -> anyhow::Result<ExitCode> {
    let room = RoomId::parse(&args.room).context("a room id is 8-64 characters of A-Z a-z 0-9 _ -")?;
    let secret = crate::secrets::load("the token secret", token::SECRET_ENV, args.token_secret_file.as_deref())?
        .context("set CALLSIGHT_TOKEN_SECRET or --token-secret-file (the server's secret)")?;
    let mut claims = token::claims(room.as_str(), &args.identity, args.name.as_deref(), args.ttl, SystemTime::now());
    claims.video.can_publish = !args.no_publish;
    claims.video.can_subscribe = !args.no_subscribe;
    let token = token::mint(&secret, &claims)?;
    println!("{token}");
    println!("{}/r/{}#token={token}", args.base_url.trim_end_matches('/'), room.as_str());
    Ok(ExitCode::SUCCESS)
}
