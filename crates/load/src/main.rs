//! `callsight-load`: opens N WebSocket peers in M rooms against a signaling server and
//! relays signals between them, then prints messages/s, relay latency and the server's
//! memory per connection.
//!
//! Two wire protocols, so one client measures both servers the same way:
//! - `callsight`: this project's protocol (`docs/protocol.md`).
//! - `socketio`: the classic tutorial's socket.io events (`join room`, `sending signal`,
//!   `returning signal`) against `bench/baseline/server.js`.
//!
//! In each room the newcomer sends `--rate` signals per second to the first peer, which
//! answers each one, as in the classic offer/answer exchange. Every payload carries its
//! send time, so each relay's one-way latency is measured on one clock.

mod peer;

use anyhow::Context;
use callsight_measure::percentile;
use callsight_measure::proc::{rss_kib, Process};
use clap::{Parser, ValueEnum};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Protocol {
    Callsight,
    Socketio,
}

#[derive(Parser, Debug, Clone)]
#[command(name = "callsight-load", about = "Signaling load test: N peers in M rooms relaying signals")]
pub struct Args {
    /// Server address, e.g. 127.0.0.1:8080; several, comma-separated (nodes sharing rooms
    /// through Redis): each room's two peers are on two different ones.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub server: String,
    #[arg(long, value_enum, default_value = "callsight")]
    pub protocol: Protocol,
    /// Peers in total (two per room).
    #[arg(long, default_value_t = 200)]
    pub peers: usize,
    /// Signals per second each calling peer sends (each is answered).
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Seconds of relaying.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Size of each signal's padding, like an SDP fragment or ICE candidate.
    #[arg(long, default_value_t = 200)]
    pub payload_bytes: usize,
    /// The server's process id, to read its resident memory from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Name printed in the table's first column.
    #[arg(long, default_value = "server")]
    pub label: String,
    /// Print the table header.
    #[arg(long)]
    pub header: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.peers >= 2 && args.peers % 2 == 0, "--peers must be an even number ≥ 2");
    let rooms = args.peers / 2;
    let rss_before = args.server_pid.and_then(|pid| rss_kib(Process::Pid(pid)));
    let clock = Instant::now();

    // Connect and join every room first, so the memory reading sees all connections.
    let mut pairs = Vec::with_capacity(rooms);
    for r in 0..rooms {
        let room = format!("load-{:06}-{}", r, std::process::id());
        pairs.push(peer::Pair::connect(&args, &room, r).await.with_context(|| format!("room {room}"))?);
    }
    let rss_after = args.server_pid.and_then(|pid| rss_kib(Process::Pid(pid)));

    let deadline = clock.elapsed() + Duration::from_secs_f64(args.duration);
    let tasks: Vec<_> = pairs.into_iter().map(|p| tokio::spawn(p.run(args.clone(), clock, deadline))).collect();
    let mut latencies_us = Vec::new();
    let mut errors = 0usize;
    for t in tasks {
        match t.await {
            Ok(Ok(mut l)) => latencies_us.append(&mut l),
            Ok(Err(e)) => {
                errors += 1;
                eprintln!("peer pair failed: {e:#}");
            }
            Err(e) => {
                errors += 1;
                eprintln!("peer task panicked: {e}");
            }
        }
    }
    let msgs_per_sec = latencies_us.len() as f64 / args.duration;
    let per_conn = match (rss_before, rss_after) {
        (Some(b), Some(a)) => format!("{:.1}", a.saturating_sub(b) as f64 / args.peers as f64),
        _ => "n/a".into(),
    };
    if args.header {
        println!("| server | peers | offered msg/s | relayed msg/s | p50 ms | p99 ms | RSS KiB/conn | failed rooms |");
        println!("|---|---|---|---|---|---|---|---|");
    }
    println!(
        "| {} | {} | {:.0} | {:.0} | {:.2} | {:.2} | {} | {} |",
        args.label,
        args.peers,
        rooms as f64 * args.rate * 2.0,
        msgs_per_sec,
        ms(percentile(&mut latencies_us, 50.0)),
        ms(percentile(&mut latencies_us, 99.0)),
        per_conn,
        errors
    );
    Ok(())
}

/// Microseconds as milliseconds, NaN when there were no samples.
fn ms(us: Option<u64>) -> f64 {
    us.map_or(f64::NAN, |us| us as f64 / 1000.0)
}
