//! `callsight-soak`: a long run against one server with real callers and a hostile mix,
//! sampling the server's memory and the callers' health (`bench/soak.sh`).
//!
//! - `callers`: `--rooms` rooms of two WebSocket participants relaying signals at
//!   `--rate`, each from its own loopback source address (127.0.1.x), for the whole run.
//! - `hostile`: attackers from other loopback addresses (127.0.2.x) — half-open HTTP
//!   requests, WebSockets that never join, garbage and oversized frames, identity
//!   hijacks (`resume` with an overheard participant id), join/leave churn, junk UDP to
//!   the STUN port.
//!
//! Every `--sample` seconds a row: elapsed time, server RSS, relayed messages and p99
//! relay latency of the callers in that interval, caller errors so far, hostile
//! connections opened, hijacks that got the victim's id. Exit status 1 when a caller
//! failed or a hijack succeeded.

mod callers;
mod hostile;

use callsight_measure::percentile;
use callsight_measure::proc::{rss_kib, Process};
use clap::Parser;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser, Debug, Clone)]
#[command(name = "callsight-soak", about = "Soak run: callers plus a hostile mix, memory sampled")]
pub struct Args {
    /// Server address (HTTP and WebSocket).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub server: SocketAddr,
    /// The server's STUN port for junk UDP (0 = none).
    #[arg(long, default_value_t = 0)]
    pub stun_port: u16,
    /// Rooms of two callers each.
    #[arg(long, default_value_t = 50)]
    pub rooms: usize,
    /// Signals per second each caller pair exchanges.
    #[arg(long, default_value_t = 2.0)]
    pub rate: f64,
    /// Concurrent attackers of each kind.
    #[arg(long, default_value_t = 10)]
    pub hostile: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 1800)]
    pub duration: u64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 60)]
    pub sample: u64,
    /// The server's process id, to read its resident memory from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
}

/// Counters shared by every task.
#[derive(Default)]
pub struct Tally {
    pub relayed: AtomicU64,
    pub caller_errors: AtomicU64,
    pub hostile_conns: AtomicU64,
    pub hijacks: AtomicU64,
    pub latencies_us: Mutex<Vec<u64>>,
}

impl Tally {
    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }
}

/// A loopback source address: 127.`net`.(i / 250).(i % 250 + 1).
pub fn source_ip(net: u8, i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, net, (i / 250 % 256) as u8, (i % 250 + 1) as u8))
}

fn p99_ms(mut v: Vec<u64>) -> String {
    percentile(&mut v, 99.0).map_or("-".into(), |us| format!("{:.1}", us as f64 / 1000.0))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tally = Arc::new(Tally::default());
    let start = Instant::now();
    let end = start + Duration::from_secs(args.duration);

    callers::start(&args, tally.clone(), end);
    hostile::start(&args, tally.clone(), end);

    println!("| t (s) | server RSS MiB | relayed msg/s | p99 ms | caller errors | hostile conns | hijacks |");
    println!("|---|---|---|---|---|---|---|");
    let mut last_relayed = 0;
    let mut last = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(args.sample.max(1)));
    tick.tick().await;
    while Instant::now() < end {
        tick.tick().await;
        let relayed = tally.relayed.load(Relaxed);
        let lat = std::mem::take(&mut *tally.latencies_us.lock().unwrap_or_else(|e| e.into_inner()));
        let rss = args
            .server_pid
            .and_then(|pid| rss_kib(Process::Pid(pid)))
            .map_or("n/a".into(), |k| format!("{:.1}", k as f64 / 1024.0));
        println!(
            "| {} | {} | {:.0} | {} | {} | {} | {} |",
            start.elapsed().as_secs(),
            rss,
            (relayed - last_relayed) as f64 / last.elapsed().as_secs_f64(),
            p99_ms(lat),
            tally.caller_errors.load(Relaxed),
            tally.hostile_conns.load(Relaxed),
            tally.hijacks.load(Relaxed),
        );
        last_relayed = relayed;
        last = Instant::now();
    }
    let failed = tally.caller_errors.load(Relaxed) > 0 || tally.hijacks.load(Relaxed) > 0;
    std::process::exit(i32::from(failed));
}
