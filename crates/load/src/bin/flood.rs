//! `callsight-flood`: does one room's flood stall the others? `--flooders` sockets, in
//! rooms of two, each send maximum-size `signal`s to their partner at `--rate` per
//! second (the server's rate limit) and read what they get; meanwhile a fresh client
//! connects and joins a fresh room every `--probe-every-ms`, and the time from opening
//! its socket to its `joined` is recorded. Prints one markdown table row.

use anyhow::{bail, Context};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Parser, Debug, Clone)]
#[command(name = "callsight-flood", about = "Join latency of a fresh client while other rooms flood the server")]
struct Args {
    /// Server address, e.g. 127.0.0.1:8080.
    #[arg(long, default_value = "127.0.0.1:8080")]
    server: String,
    /// Flooding sockets (two per room); 0 measures the quiet server.
    #[arg(long, default_value_t = 200)]
    flooders: usize,
    /// Messages per second per flooding socket (the server's `--rate-per-sec`).
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Size of each flood message, in bytes (the server's `--max-message-bytes`).
    #[arg(long, default_value_t = 65_536)]
    bytes: usize,
    /// Fresh joins to measure.
    #[arg(long, default_value_t = 40)]
    probes: usize,
    /// Pause between fresh joins, in milliseconds.
    #[arg(long, default_value_t = 250)]
    probe_every_ms: u64,
    /// Name printed in the table's first column.
    #[arg(long, default_value = "server")]
    label: String,
    /// Print the table header.
    #[arg(long)]
    header: bool,
}

/// A limit for any single step, so a stuck server fails the run instead of hanging it.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

async fn next_json(ws: &mut Ws) -> anyhow::Result<Value> {
    loop {
        match tokio::time::timeout(STEP_TIMEOUT, ws.next()).await.context("reply timeout")? {
            None => bail!("socket closed"),
            Some(Err(e)) => bail!("socket error: {e}"),
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(t.as_str())?),
            Some(Ok(_)) => continue,
        }
    }
}

async fn join(server: &str, room: &str) -> anyhow::Result<(Ws, Value)> {
    let (mut ws, _) = connect_async(format!("ws://{server}/ws")).await.context("connect")?;
    ws.send(Message::Text(json!({"type":"join","room":room}).to_string().into())).await?;
    let v = next_json(&mut ws).await?;
    if v["type"] != "joined" {
        bail!("join refused: {v}");
    }
    Ok((ws, v))
}

/// One flooding socket: sends to `partner` at `rate`, counts bytes received.
async fn flood(mut ws: Ws, partner: String, args: Args, received: Arc<AtomicU64>, stop: Arc<tokio::sync::Notify>) {
    let overhead = json!({"type":"signal","to":partner,"data":{"pad":""}}).to_string().len();
    let msg = json!({"type":"signal","to":partner,"data":{"pad":"x".repeat(args.bytes.saturating_sub(overhead))}})
        .to_string();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.notified() => return,
            _ = tick.tick() => {
                if ws.send(Message::Text(msg.clone().into())).await.is_err() {
                    return;
                }
            }
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(t))) => { received.fetch_add(t.len() as u64, Relaxed); }
                Some(Ok(_)) => {}
                _ => return,
            },
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.flooders % 2 == 0, "--flooders must be even");
    let run = std::process::id();
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::new();
    for r in 0..args.flooders / 2 {
        let room = format!("flood-{run}-{r:05}");
        let (a, ja) = join(&args.server, &room).await.with_context(|| format!("flooder in {room}"))?;
        let (b, jb) = join(&args.server, &room).await.with_context(|| format!("flooder in {room}"))?;
        let (a_id, b_id) =
            (ja["id"].as_str().unwrap_or_default().to_owned(), jb["id"].as_str().unwrap_or_default().to_owned());
        tasks.push(tokio::spawn(flood(a, b_id, args.clone(), received.clone(), stop.clone())));
        tasks.push(tokio::spawn(flood(b, a_id, args.clone(), received.clone(), stop.clone())));
    }
    // Let the flood reach its pace before measuring.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (t0, bytes0) = (Instant::now(), received.load(Relaxed));
    let mut latencies = Vec::with_capacity(args.probes);
    let mut failures = 0;
    for i in 0..args.probes {
        let start = Instant::now();
        match join(&args.server, &format!("probe-{run}-{i:05}")).await {
            Ok((ws, _)) => {
                latencies.push(start.elapsed().as_secs_f64() * 1000.0);
                drop(ws);
            }
            Err(e) => {
                failures += 1;
                eprintln!("probe {i}: {e:#}");
            }
        }
        tokio::time::sleep(Duration::from_millis(args.probe_every_ms)).await;
    }
    let relayed_mb_s = (received.load(Relaxed) - bytes0) as f64 / t0.elapsed().as_secs_f64() / 1e6;
    stop.notify_waiters();
    for t in tasks {
        t.abort();
    }
    latencies.sort_by(f64::total_cmp);
    let pct =
        |p: f64| latencies.get(((latencies.len().max(1) - 1) as f64 * p).round() as usize).copied().unwrap_or(f64::NAN);
    if args.header {
        println!(
            "| server | flooders | offered MB/s | relayed MB/s | fresh join p50 ms | p95 ms | max ms | failed joins |"
        );
        println!("|---|---|---|---|---|---|---|---|");
    }
    println!(
        "| {} | {} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {} |",
        args.label,
        args.flooders,
        args.flooders as f64 * args.rate * args.bytes as f64 / 1e6,
        relayed_mb_s,
        pct(0.5),
        pct(0.95),
        pct(1.0),
        failures
    );
    Ok(())
}
