//! The SFU bench's anchor: the load of `sfu-load` (rooms of N str0m participants, each
//! publishing one synthetic 640×480@30 H.264 stream and receiving everyone else's)
//! through Janus's VideoRoom plugin (Debian package `janus`), which this bin starts on
//! loopback with a generated configuration and stops after.
//!
//! It prints the same columns as `sfu-load`, with the whole Janus process's CPU where
//! `sfu-load` has the hub thread's (both exclude the clients). Janus gives each
//! participant two PeerConnections (one to publish, one multistream subscription).
//!
//! cargo build --workspace --features callsight-media/testing --bin janus-load
//! $CARGO_TARGET_DIR/debug/janus-load --rooms 2,4,8,16 --seconds 8

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use callsight_measure::percentile;
use callsight_measure::proc::{cpu_seconds, mib, process_cpu_seconds, rss_kib, Process};
use callsight_media::client::{AnsweringClient, Client, PendingClient};
use callsight_media::synth::EncodedFrame;
use clap::Parser;
use serde_json::json;
use str0m::media::MediaKind;

#[path = "../common/bench_util.rs"]
mod bench_util;
mod janus;
#[path = "../common/room_load.rs"]
mod room_load;
use janus::JanusProcess;
use room_load::{encode_sources, last_sent, start_publishing, RoomArgs, Source};

#[derive(Parser, Debug)]
#[command(about = "Rooms of N publishing + subscribing str0m participants through Janus's VideoRoom")]
struct Args {
    #[command(flatten)]
    room: RoomArgs,
    /// The Janus binary.
    #[arg(long, default_value = "/usr/bin/janus")]
    janus: PathBuf,
    /// Address of the clients and of Janus's ICE candidates (libnice does not gather on
    /// loopback); default: this machine's address on its default route.
    #[arg(long)]
    ip: Option<IpAddr>,
}

/// The source address of this machine's default route (no packet is sent).
fn default_route_ip() -> Result<IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
    socket.connect("192.0.2.1:9").context("no default route: give --ip")?;
    Ok(socket.local_addr()?.ip())
}

struct Row {
    n: usize,
    frames_out: f64,
    packets_out: f64,
    janus_cpu_pct: f64,
    us_per_frame: f64,
    clients_cpu_pct: f64,
    p50: f64,
    p99: f64,
    loss_pct: f64,
    rss: f64,
}

/// A subscription: its client and, per mid, the publisher it carries.
struct Subscriber {
    client: Client,
    feeds: HashMap<String, usize>,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let args = Args::parse();
    let sources = encode_sources(&args.room)?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let rows = rt.block_on(async {
        let ip = match args.ip {
            Some(ip) => ip,
            None => default_route_ip()?,
        };
        let janus = JanusProcess::start(&args.janus, ip).await?;
        let mut rows = Vec::new();
        for (round, &n) in args.room.rooms.iter().enumerate() {
            let row = run_room(&janus, ip, &args, &sources, n, round).await;
            rows.push(row.with_context(|| format!("room of {n}; janus's log: {}", janus.log_path().display()))?);
        }
        anyhow::Ok(rows)
    })?;
    println!();
    println!("| N | forwarded video tracks | frames/s out | packets/s out | Janus CPU % | Janus CPU µs per forwarded frame | clients CPU % | delay p50 ms | delay p99 ms | loss % | Janus RSS MiB |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} | {:.2} | {:.0} |",
            r.n,
            r.n * (r.n - 1),
            r.frames_out,
            r.packets_out,
            r.janus_cpu_pct,
            r.us_per_frame,
            r.clients_cpu_pct,
            r.p50,
            r.p99,
            r.loss_pct,
            r.rss
        );
    }
    Ok(())
}

async fn run_room(
    janus: &JanusProcess,
    ip: IpAddr,
    args: &Args,
    sources: &[Arc<Vec<EncodedFrame>>],
    n: usize,
    round: usize,
) -> Result<Row> {
    let api = &janus.api;
    let room = 1000 + round as u64;
    let admin = api.videoroom().await?;
    let created = api
        .message(
            admin,
            json!({ "request": "create", "room": room, "publishers": n, "videocodec": "h264", "audiocodec": "opus", "bitrate": 0 }),
            None,
        )
        .await?;
    if created["plugindata"]["data"]["videoroom"] != "created" {
        bail!("janus did not create the room: {created}");
    }
    let mut sessions = vec![admin.0];
    // Publishers first (their feed ids), then one multistream subscription each.
    let mut publishers = Vec::new();
    let mut feeds = Vec::new();
    for i in 0..n {
        let pending = PendingClient::with_tracks(ip, 1, false).await?;
        let handle = api.videoroom().await?;
        sessions.push(handle.0);
        let join =
            json!({ "request": "joinandconfigure", "room": room, "ptype": "publisher", "display": format!("p{i}") });
        api.message(handle, join, Some(json!({ "type": "offer", "sdp": pending.offer() }))).await?;
        api.candidates_done(handle).await?;
        let event = api.jsep_event(handle.0, Duration::from_secs(20)).await?;
        let answer = event["jsep"]["sdp"].as_str().context("publisher answer")?;
        tracing::debug!("publisher offer:\n{}\njanus answer:\n{answer}", pending.offer());
        feeds.push(event["plugindata"]["data"]["id"].as_u64().context("publisher feed id")?);
        publishers.push(Arc::new(pending.connect(answer, Duration::from_secs(20)).await?));
        // Janus offers a feed to subscribers only once its PeerConnection is up on its side.
        api.event(handle.0, Duration::from_secs(20), |e| e["janus"] == "webrtcup").await?;
    }
    let mut subscribers = Vec::new();
    for i in 0..n {
        let streams: Vec<_> = (0..n).filter(|&j| j != i).map(|j| json!({ "feed": feeds[j] })).collect();
        let handle = api.videoroom().await?;
        sessions.push(handle.0);
        api.message(
            handle,
            json!({ "request": "join", "room": room, "ptype": "subscriber", "streams": streams }),
            None,
        )
        .await?;
        let event = api.jsep_event(handle.0, Duration::from_secs(20)).await?;
        let offer = event["jsep"]["sdp"].as_str().context("subscriber offer")?;
        let mut by_mid = HashMap::new();
        for s in event["plugindata"]["data"]["streams"].as_array().into_iter().flatten() {
            let (Some(mid), Some(feed)) = (s["mid"].as_str(), s["feed_id"].as_u64()) else { continue };
            if let Some(j) = feeds.iter().position(|f| *f == feed) {
                by_mid.insert(mid.to_owned(), j);
            }
        }
        let answering = AnsweringClient::new(ip, offer).await?;
        api.message(
            handle,
            json!({ "request": "start" }),
            Some(json!({ "type": "answer", "sdp": answering.answer() })),
        )
        .await?;
        api.candidates_done(handle).await?;
        subscribers.push(Subscriber { client: answering.connected(Duration::from_secs(20)).await?, feeds: by_mid });
    }

    let loops: Vec<HashMap<FrameKey, u32>> = sources
        .iter()
        .map(|frames| frames.iter().enumerate().map(|(k, f)| (frame_key(&f.data), k as u32)).collect())
        .collect();
    let single: Vec<Source> = sources.iter().map(|s| Source::Single(s.clone())).collect();
    let (sent, streams) = start_publishing(&publishers, &single, args.room.stream.fps);
    tokio::time::sleep(Duration::from_secs_f64(args.room.warmup)).await;
    for s in &subscribers {
        s.client.take_received();
    }
    let pid = Process::Pid(janus.pid());
    let (janus0, own0, t0) = (process_cpu_seconds(pid), cpu_seconds(), Instant::now());
    let first_k = last_sent(&sent);
    let (mut delays, mut received, mut bytes, mut unmatched) = (Vec::new(), 0usize, 0usize, 0usize);
    let deadline = t0 + Duration::from_secs_f64(args.room.seconds);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let sent = sent.lock().unwrap();
        let mut newest = vec![0u32; n];
        for &(i, k) in sent.keys() {
            newest[i] = newest[i].max(k);
        }
        for s in &subscribers {
            for f in s.client.take_received() {
                if f.kind != MediaKind::Video {
                    continue;
                }
                received += 1;
                bytes += f.data.len();
                let Some(&i) = s.feeds.get(&f.mid.to_string()) else { continue };
                // Janus rebases RTP timestamps per subscription: the frame is found by its
                // bytes (its place in the publisher's loop), then the newest send of it.
                let Some(&idx) = loops[i % loops.len()].get(&frame_key(&f.data)) else {
                    unmatched += 1;
                    continue;
                };
                match sent_at(&sent, newest[i], i, idx, sources[i % sources.len()].len(), f.at) {
                    Some(at) => delays.push(f.at.saturating_duration_since(at).as_secs_f64() * 1000.0),
                    None => unmatched += 1,
                }
            }
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let (janus1, own1) = (process_cpu_seconds(pid), cpu_seconds());
    let last_k = last_sent(&sent);
    for s in &streams {
        s.abort();
    }
    if unmatched > 0 {
        eprintln!("N={n}: {unmatched} frames not matched to a sent frame (no delay for them)");
    }
    let expected = (last_k.saturating_sub(first_k) as usize) * n * (n - 1);
    eprintln!("N={n}: {received} frames received of ~{expected} expected");
    let janus_cpu = janus1.zip(janus0).map_or(f64::NAN, |(b, a)| b - a);
    let row = Row {
        n,
        frames_out: received as f64 / elapsed,
        packets_out: (bytes as f64 / 1150.0).max(received as f64) / elapsed,
        janus_cpu_pct: 100.0 * janus_cpu / elapsed,
        us_per_frame: 1e6 * janus_cpu / received.max(1) as f64,
        clients_cpu_pct: 100.0 * own1.zip(own0).map_or(f64::NAN, |(b, a)| b - a) / elapsed,
        p50: percentile(&mut delays, 50.0).unwrap_or(f64::NAN),
        p99: percentile(&mut delays, 99.0).unwrap_or(f64::NAN),
        loss_pct: if expected > 0 { 100.0 * (1.0 - received as f64 / expected as f64).max(0.0) } else { f64::NAN },
        rss: mib(rss_kib(pid)),
    };
    for session in sessions {
        api.destroy(session).await;
    }
    Ok(row)
}

/// A frame's length and last bytes: unique within a publisher's encoded loop.
type FrameKey = (usize, [u8; 16]);

fn frame_key(data: &[u8]) -> FrameKey {
    let mut tail = [0u8; 16];
    let n = data.len().min(16);
    tail[..n].copy_from_slice(&data[data.len() - n..]);
    (data.len(), tail)
}

/// When publisher `i` last sent loop frame `idx` (of a loop of `len`) before `arrival`.
fn sent_at(
    sent: &HashMap<(usize, u32), Instant>,
    newest: u32,
    i: usize,
    idx: u32,
    len: usize,
    arrival: Instant,
) -> Option<Instant> {
    let len = len as u32;
    let mut k = newest.checked_sub((newest % len + len - idx % len) % len)?;
    loop {
        match sent.get(&(i, k)) {
            Some(at) if *at <= arrival => return Some(*at),
            Some(_) => k = k.checked_sub(len)?,
            None => return None,
        }
    }
}
