//! Forwarding bench (SFU): rooms of N str0m participants, each publishing one synthetic
//! 640×480@30 H.264 stream (real photos, slight pan) and subscribing to everyone else on
//! the same connection, through an in-process `MediaHub` over UDP on 127.0.0.1. The hub
//! runs on its own thread (a current-thread runtime), so that thread's CPU time is the
//! cost of forwarding (ICE/DTLS/SRTP, depacketise, packetise, RTCP); decoding and
//! detection, when on, run on their own threads and count in the server CPU below.
//!
//! With `--simulcast` every participant publishes two layers (h at half size, f at full
//! size, as the web client sends a 640×480 camera), subscribers say their tile size
//! (`--tile`) and the detector decodes the layer `--simulcast-detect-width` picks. The
//! *server CPU* column sums the threads that are the server's (the hub, the decoders
//! `h264-*`, the detection workers `detect-*`), apart from the clients in this process.
//!
//! Per room size it reports forwarded tracks, frames/s and packets/s out of the hub,
//! hub-thread CPU per forwarded track, delay from the publisher handing a frame to its
//! str0m client to a subscriber's client having it whole (p50/p99), and frame loss.
//!
//! cargo run --release -p callsight-media --features testing --bin sfu-load -- --rooms 2,4,8,16

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use callsight_media::client::{Client, PendingClient};
use callsight_media::{MediaConfig, MediaHub, ParticipantKey};
use callsight_vision::{Detector, DetectorConfig};
use clap::Parser;
use str0m::media::MediaKind;

#[path = "common/bench_util.rs"]
mod bench_util;
#[path = "common/room_load.rs"]
mod room_load;
use callsight_measure::percentile;
use callsight_measure::proc::{cpu_seconds, cpu_seconds_between, mib, named_threads_cpu_seconds, rss_kib, Process};
use room_load::{base, encode_layered_sources, encode_sources, last_sent, start_publishing, RoomArgs, Source};

#[derive(Parser, Debug)]
#[command(about = "Rooms of N publishing + subscribing str0m participants through a MediaHub")]
struct Args {
    #[command(flatten)]
    room: RoomArgs,
    /// Also decode and detect every camera (at --max-detect-fps).
    #[arg(long)]
    detect: bool,
    #[arg(long, default_value_t = 2.0)]
    max_detect_fps: f32,
    /// The hub's downlink estimate per subscriber starts here (kbit/s; 0 = off). Off by
    /// default: these synthetic publishers keep their bitrate whatever REMB says, so a
    /// paced subscriber leg would only queue (browsers adapt to the REMB instead).
    #[arg(long, default_value_t = 0)]
    downlink_bwe_start_kbps: u64,
    /// Publish two simulcast layers (h: half size, f: full size) instead of one stream.
    #[arg(long)]
    simulcast: bool,
    /// With --simulcast: the tile every subscriber shows each video in, WIDTHxHEIGHT
    /// (device pixels; sent as track-settings), e.g. 320x240 for a 16-person grid.
    /// Unset: the subscribers say nothing and get the largest layer.
    #[arg(long, value_parser = parse_tile)]
    tile: Option<(u32, u32)>,
    /// The detector decodes the smallest layer at least this wide
    /// (MediaConfig::simulcast_detect_width; 0 = the network input's width).
    #[arg(long, default_value_t = 0)]
    simulcast_detect_width: u32,
}

fn parse_tile(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s.split_once('x').ok_or("expected WIDTHxHEIGHT")?;
    Ok((w.parse().map_err(|e| format!("{e}"))?, h.parse().map_err(|e| format!("{e}"))?))
}

/// The hub's thread: its CPU is the forwarding cost.
const HUB_THREAD: &str = "sfu-hub";

fn hub_thread(name: &str) -> bool {
    name == HUB_THREAD
}

/// Threads of the server side in this process (see the module doc).
fn server_thread(name: &str) -> bool {
    hub_thread(name) || name.starts_with("h264-") || name.starts_with("detect-")
}

type Clients = Arc<Mutex<HashMap<ParticipantKey, Arc<Client>>>>;

struct Row {
    n: usize,
    tracks: usize,
    frames_out: f64,
    packets_out: f64,
    hub_cpu_pct: f64,
    server_cpu_pct: f64,
    results_per_camera: f64,
    us_per_track: f64,
    process_cpu_pct: f64,
    p50: f64,
    p99: f64,
    loss_pct: f64,
    rss: f64,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let args = Args::parse();
    let detector = Arc::new(Detector::load(&DetectorConfig::default()).context("loading the detector")?);
    let sources: Vec<Source> = if args.simulcast {
        encode_layered_sources(&args.room)?
    } else {
        encode_sources(&args.room)?.into_iter().map(Source::Single).collect()
    };
    let config = MediaConfig {
        udp_bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        max_detect_fps: args.max_detect_fps,
        max_sessions: 64,
        media_queue: 8192,
        downlink_bwe_start_kbps: args.downlink_bwe_start_kbps,
        simulcast_detect_width: args.simulcast_detect_width,
        ..MediaConfig::default()
    };
    // The hub on its own thread: its CPU time is the forwarding cost.
    let (hub_tx, hub_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new().name(HUB_THREAD.into()).spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("hub runtime");
        rt.block_on(async move {
            let _ = hub_tx.send(MediaHub::start(config, detector).await);
            std::future::pending::<()>().await;
        });
    })?;
    let hub = hub_rx.recv()??;

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    // Server offers → the participant's client → its answer back to the hub.
    let clients: Clients = Arc::default();
    let mut offers = hub.offers().context("offers taken")?;
    let (h, c) = (hub.clone(), clients.clone());
    rt.spawn(async move {
        while let Some(offer) = offers.recv().await {
            // One task per offer: a stale one (its room is over) must not hold up the rest.
            let (h, c) = (h.clone(), c.clone());
            tokio::spawn(async move {
                // The session may be up before `connect` returned and the client was listed.
                let mut client = None;
                for _ in 0..500 {
                    client = c.lock().unwrap().get(&offer.key).cloned();
                    if client.is_some() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                let Some(client) = client else { return };
                match client.accept_offer(&offer.sdp).await {
                    Ok(answer) => {
                        let _ = h.answer(offer.key.clone(), &answer).await;
                    }
                    Err(e) => eprintln!("offer refused: {e}"),
                }
            });
        }
    });
    let mut rows = Vec::new();
    for (round, &n) in args.room.rooms.iter().enumerate() {
        rows.push(rt.block_on(run_room(&hub, &args, &sources, &clients, n, round))?);
    }
    println!();
    println!(
        "| N | publish | detection | forwarded video tracks | frames/s out | packets/s out | hub thread CPU % | hub CPU µs per forwarded frame | results/s per camera | server CPU % (hub + decoders + detection) | process CPU % | delay p50 ms | delay p99 ms | loss % | RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let publish = match (args.simulcast, args.tile) {
        (false, _) => "one stream".to_string(),
        (true, None) => "simulcast h+f, no tile".to_string(),
        (true, Some((w, h))) => format!("simulcast h+f, tiles {w}×{h}"),
    };
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {:.0} | {:.0} | {:.1} | {:.1} | {:.2} | {:.0} |",
            r.n,
            publish,
            if args.detect { format!("on ({} fps)", args.max_detect_fps) } else { "off".into() },
            r.tracks,
            r.frames_out,
            r.packets_out,
            r.hub_cpu_pct,
            r.us_per_track,
            r.results_per_camera,
            r.server_cpu_pct,
            r.process_cpu_pct,
            r.p50,
            r.p99,
            r.loss_pct,
            r.rss
        );
    }
    Ok(())
}

async fn run_room(
    hub: &MediaHub,
    args: &Args,
    sources: &[Source],
    clients: &Clients,
    n: usize,
    round: usize,
) -> Result<Row> {
    let room = format!("bench-{round}");
    let key = |i: usize| ParticipantKey { room: room.clone(), participant: format!("p{i}") };
    let mut people = Vec::new();
    for i in 0..n {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let pending = if args.simulcast {
            PendingClient::simulcast(ip, &["h", "f"]).await?
        } else {
            PendingClient::with_tracks(ip, 1, false).await?
        };
        let answer = hub.publish_and_subscribe(key(i), pending.offer(), args.detect).await?;
        let client = Arc::new(pending.connect(&answer, Duration::from_secs(20)).await?);
        clients.lock().unwrap().insert(key(i), client.clone());
        people.push(client);
    }
    // Every publisher at --fps; the send instant of each frame is kept.
    let (sent, streams) = start_publishing(&people, sources, args.room.stream.fps);
    if let Some((w, h)) = args.tile {
        // Every subscriber's tiles, once its connection carries all the others' videos.
        let until = Instant::now() + Duration::from_secs_f64(args.room.warmup.max(10.0));
        for (i, c) in people.iter().enumerate() {
            loop {
                let videos: Vec<_> =
                    c.receiving().await.into_iter().filter(|(_, kind)| *kind == MediaKind::Video).collect();
                if videos.len() >= n - 1 || Instant::now() > until {
                    for (mid, _) in videos {
                        hub.track_settings(key(i), &mid.to_string(), w, h);
                    }
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    tokio::time::sleep(Duration::from_secs_f64(args.room.warmup)).await;
    for c in &people {
        c.take_received();
    }
    let mut events = hub.events();
    let mut results = 0usize;
    let (hub0, server0) = (named_threads_cpu_seconds(hub_thread), named_threads_cpu_seconds(server_thread));
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let first_k = last_sent(&sent);
    let stats0 = hub.stats();
    let mut delays = Vec::new();
    let mut received = 0usize;
    let mut bytes = 0usize;
    let deadline = t0 + Duration::from_secs_f64(args.room.seconds);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        collect(&people, &sent, n, &mut delays, &mut received, &mut bytes);
        loop {
            match events.try_recv() {
                Ok(ev) if ev.room == room => results += 1,
                Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {}
                Err(_) => break,
            }
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu1 = cpu_seconds();
    let hub_cpu = cpu_seconds_between(&hub0, &named_threads_cpu_seconds(hub_thread));
    let server = cpu_seconds_between(&server0, &named_threads_cpu_seconds(server_thread));
    let last_k = last_sent(&sent);
    for s in &streams {
        s.abort();
    }
    // Frames sent in the window, each expected at every other participant.
    let expected = (last_k.saturating_sub(first_k) as usize) * n * (n - 1);
    let tracks = n * (n - 1);
    let frames_out = received as f64 / elapsed;
    // RTP packets of ≤1200 payload bytes per frame (str0m's H.264 packetiser, FU-A).
    let packets_out = (bytes as f64 / 1150.0).max(received as f64) / elapsed;
    let row = Row {
        n,
        tracks,
        frames_out,
        packets_out,
        hub_cpu_pct: 100.0 * hub_cpu / elapsed,
        server_cpu_pct: 100.0 * server / elapsed,
        results_per_camera: results as f64 / elapsed / n as f64,
        us_per_track: 1e6 * hub_cpu / received.max(1) as f64,
        process_cpu_pct: 100.0 * cpu1.zip(cpu0).map_or(f64::NAN, |(b, a)| b - a) / elapsed,
        p50: percentile(&mut delays, 50.0).unwrap_or(f64::NAN),
        p99: percentile(&mut delays, 99.0).unwrap_or(f64::NAN),
        loss_pct: if expected > 0 { 100.0 * (1.0 - received as f64 / expected as f64).max(0.0) } else { f64::NAN },
        rss: mib(rss_kib(Process::Current)),
    };
    let stats1 = hub.stats();
    eprintln!(
        "N={n}: {} frames received of ~{expected} expected; hub dropped {} datagrams in, {} out (send buffer full); keyframe requests {}",
        received,
        stats1.datagrams_dropped - stats0.datagrams_dropped,
        stats1.datagrams_send_dropped - stats0.datagrams_send_dropped,
        stats1.keyframe_requests - stats0.keyframe_requests
    );
    for i in 0..n {
        hub.unpublish(&key(i));
    }
    clients.lock().unwrap().clear();
    drop(people);
    Ok(row)
}

/// Drains every client's received frames into delays (ms) and counts.
fn collect(
    people: &[Arc<Client>],
    sent: &Mutex<HashMap<(usize, u32), Instant>>,
    n: usize,
    delays: &mut Vec<f64>,
    received: &mut usize,
    bytes: &mut usize,
) {
    let sent = sent.lock().unwrap();
    for c in people {
        for f in c.take_received() {
            if f.kind != MediaKind::Video {
                continue;
            }
            *received += 1;
            *bytes += f.data.len();
            let Some(i) = (0..n).find(|&i| f.rtp_timestamp.wrapping_sub(base(i)) < 150_000_000) else { continue };
            let k = f.rtp_timestamp.wrapping_sub(base(i)) / 3000;
            if let Some(at) = sent.get(&(i, k)) {
                delays.push(f.at.saturating_duration_since(*at).as_secs_f64() * 1000.0);
            }
        }
    }
}
