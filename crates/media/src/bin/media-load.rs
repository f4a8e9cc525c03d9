//! Load bench of the media leg: an in-process `MediaHub` with the real detector, K str0m
//! clients each publishing a synthetic 640×480@30 H.264 stream (real photos, slight pan)
//! over UDP on 127.0.0.1. For each K it reports decoded and detected fps per stream,
//! frame-sent → result-received latency (p50/p95), process CPU and RSS.
//!
//! cargo run --release -p callsight-media --bin media-load -- --ks 1,2,4,8 --seconds 10

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use callsight_media::client::{Client, PendingClient};
use callsight_media::synth::{encode_loop, load_test_photo, EncodedFrame};
use callsight_media::{MediaConfig, MediaHub, ParticipantKey};
use callsight_vision::args::DetectorArgs;
use callsight_vision::Detector;
use clap::Parser;

#[path = "common/bench_util.rs"]
mod bench_util;
use bench_util::StreamArgs;
use callsight_measure::percentile;
use callsight_measure::proc::{cpu_seconds, mib, peak_rss_kib, rss_kib, Process};

#[derive(Parser, Debug)]
#[command(about = "Publish K synthetic H.264 streams into a MediaHub and measure detection")]
struct Args {
    /// Stream counts to run, one after the other.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    ks: Vec<usize>,
    /// Measured seconds per K (after a warm-up).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Warm-up seconds per K (connect, first keyframes, caches).
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    #[command(flatten)]
    stream: StreamArgs,
    /// Detections per second per stream at most (MediaConfig::max_detect_fps; 0 = no cap).
    #[arg(long, default_value_t = 15.0)]
    max_detect_fps: f32,
    /// Detection workers, and detector sessions (0 = auto: Detector::recommended_workers).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Nice value of the detection threads (MediaConfig::detect_nice).
    #[arg(long, default_value_t = 5)]
    detect_nice: i32,
    /// The detector (the server's own flags: model, backend, threads, detect size, …);
    /// `--workers` above is its sessions.
    #[command(flatten)]
    detector: DetectorArgs,
    /// Junk datagrams per second sent to the media port from a stranger's socket while
    /// measuring (0 = none): shows whether real streams keep flowing under a flood.
    #[arg(long, default_value_t = 0)]
    junk_pps: u64,
    /// Share of the streams (0..1, rounded down) that show a still picture (no pan).
    #[arg(long, default_value_t = 0.0)]
    still: f64,
    /// Detect every frame the scheduler can take (no motion gate).
    #[arg(long)]
    no_motion_gate: bool,
    /// Send raw detections (no tracker).
    #[arg(long)]
    no_tracking: bool,
    /// Publish each stream in three simulcast layers (¼, ½ and full size, rids q/h/f)
    /// instead of one: the detector decodes the smallest layer at least as wide as its
    /// input (MediaConfig::simulcast_detect_width).
    #[arg(long)]
    simulcast: bool,
    /// Photos (in the test data folder) the streams cycle through.
    #[arg(long, value_delimiter = ',', default_value = "bus.jpg,zidane.jpg")]
    photos: Vec<String>,
}

/// One loop of frames per layer (one layer without simulcast), smallest first.
type Layered = Vec<Vec<EncodedFrame>>;

/// Simulcast rids, smallest layer first.
const RIDS: [&str; 3] = ["q", "h", "f"];

/// Per stream: RTP timestamp → when it was handed to the client.
type SendLog = Arc<Mutex<HashMap<u32, Instant>>>;

struct Row {
    k: usize,
    still: usize,
    /// Mean detected fps of the moving and of the still streams (NaN when there are none).
    moving_fps: f64,
    still_fps: f64,
    gated_fps: f64,
    received_fps: f64,
    decoded_fps: f64,
    detected_fps_min: f64,
    detected_fps_mean: f64,
    p50: f64,
    p95: f64,
    cpu_pct: f64,
    rss: f64,
    dropped: u64,
    inference_ms: f64,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,callsight_vision=info".into()),
        )
        .init();
    let args = Args::parse();

    // One onnxruntime session per detection worker, so workers never wait on each other.
    let dcfg = args.detector.config(args.workers);
    let detector = Arc::new(Detector::load(&dcfg).context("loading the detector")?);
    let info = detector.info();

    // Per photo: (panning, still) 2-second loops starting with an IDR: replayed, they
    // stay valid streams.
    // With --simulcast, one loop per layer (smallest first).
    let layers: &[(u32, u32)] =
        if args.simulcast { &[(4, 150_000), (2, 500_000), (1, 1_500_000)] } else { &[(1, 1_500_000)] };
    let mut sources: Vec<(Layered, Layered)> = Vec::new();
    for name in &args.photos {
        let photo = load_test_photo(name)?;
        let n = (args.stream.fps * 2.0) as usize;
        let (mut moving, mut still) = (Vec::new(), Vec::new());
        for &(down, bps) in layers {
            let (w, h) = (args.stream.width / down, args.stream.height / down);
            moving.push(encode_loop(&photo, w, h, n, 8.0 / f64::from(down), bps)?);
            still.push(encode_loop(&photo, w, h, n, 0.0, bps)?);
        }
        sources.push((moving, still));
    }
    if sources.is_empty() {
        bail!("no photos given");
    }

    let config = MediaConfig {
        udp_bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        max_detect_fps: args.max_detect_fps,
        workers: args.workers,
        detect_nice: args.detect_nice,
        max_sessions: 64,
        ..MediaConfig::default()
    };
    let config = MediaConfig {
        motion: if args.no_motion_gate { None } else { config.motion },
        tracking: if args.no_tracking { None } else { config.tracking },
        ..config
    };
    let hub = MediaHub::start(config, detector.clone()).await?;
    let workers = hub.stats().workers;
    eprintln!(
        "detector: {} {} threads={} model={} input={:?}; workers={workers}; {}x{}@{} per stream{}; max_detect_fps={}; \
         motion gate {}, tracking {}, still share {}",
        info.backend,
        info.version,
        info.threads,
        info.model,
        info.input_size,
        args.stream.width,
        args.stream.height,
        args.stream.fps,
        if args.simulcast { " in simulcast layers q/h/f (¼, ½, full)" } else { "" },
        args.max_detect_fps,
        if args.no_motion_gate { "off" } else { "on" },
        if args.no_tracking { "off" } else { "on" },
        args.still
    );

    let mut rows = Vec::new();
    for (round, &k) in args.ks.iter().enumerate() {
        rows.push(run_k(&hub, &args, &sources, k, round).await?);
    }

    println!();
    println!(
        "| K | still | junk pkts/s | received fps/stream | decoded fps/stream | detected fps/stream (min / mean) | moving / still streams: detected fps | gated fps/stream | latency p50 ms | latency p95 ms | inference p50 ms | CPU % (of 1 core) | RSS MiB | dropped |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} | {:.0} | {:.0} | {:.1} | {:.0} | {:.0} | {} |",
            r.k,
            r.still,
            args.junk_pps,
            r.received_fps,
            r.decoded_fps,
            r.detected_fps_min,
            r.detected_fps_mean,
            r.moving_fps,
            r.still_fps,
            r.gated_fps,
            r.p50,
            r.p95,
            r.inference_ms,
            r.cpu_pct,
            r.rss,
            r.dropped
        );
    }
    let peak = mib(peak_rss_kib(Process::Current));
    println!(
        "\nbackend {} {} (threads {}), model {}, input {:?}, workers {workers}, peak RSS {peak:.0} MiB",
        info.backend, info.version, info.threads, info.model, info.input_size
    );
    Ok(())
}

async fn run_k(hub: &MediaHub, args: &Args, sources: &[(Layered, Layered)], k: usize, round: usize) -> Result<Row> {
    // Streams 0..still show a still picture.
    let still = ((k as f64 * args.still.clamp(0.0, 1.0)).floor() as usize).min(k);
    let mut events = hub.events();
    let mut publishers: Vec<Arc<Client>> = Vec::new();
    let mut keys = Vec::new();
    for i in 0..k {
        let key = ParticipantKey { room: format!("load-{round}"), participant: format!("p{i}") };
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let pending =
            if args.simulcast { PendingClient::simulcast(ip, &RIDS).await? } else { PendingClient::new(ip).await? };
        let answer = hub.publish(key.clone(), pending.offer()).await?;
        publishers.push(Arc::new(pending.connect(&answer, Duration::from_secs(10)).await?));
        keys.push(key);
    }

    // Senders: one task per stream, paced by a tokio interval.
    let logs: Vec<SendLog> = (0..k).map(|_| SendLog::default()).collect();
    let period = Duration::from_secs_f64(1.0 / args.stream.fps);
    let mut tasks = Vec::new();
    for (i, p) in publishers.iter().enumerate() {
        let (moving, standing) = &sources[i % sources.len()];
        let frames = if i < still { standing.clone() } else { moving.clone() };
        let log = logs[i].clone();
        let p = p.clone();
        let ticks = (90_000.0 / args.stream.fps) as u32;
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let ts0 = 1_000_000u32.wrapping_mul(i as u32 + 1);
            for n in 0u32.. {
                tick.tick().await;
                let ts = ts0.wrapping_add(n.wrapping_mul(ticks));
                let stamp = (n % 30 == 0).then(SystemTime::now);
                {
                    let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
                    l.insert(ts, Instant::now());
                    // Keep the log small: a few seconds of frames.
                    if l.len() > 600 {
                        let min = ts.wrapping_sub(300 * ticks);
                        l.retain(|t, _| t.wrapping_sub(min) < 600 * ticks);
                    }
                }
                if frames.len() == 1 {
                    p.send_frame(frames[0][n as usize % frames[0].len()].data.clone(), ts, stamp);
                    continue;
                }
                // Each layer its own RTP clock, as browsers send them; the first (q) is
                // the timeline the server maps them onto, so `ts` keys the results.
                for (layer, (rid, frames)) in RIDS.iter().zip(&frames).enumerate() {
                    let offset = (layer as u32).wrapping_mul(1_234_567_891);
                    p.send_layer(rid, frames[n as usize % frames.len()].data.clone(), ts.wrapping_add(offset));
                }
            }
        }));
    }

    // Warm-up, then measure.
    let warm_end = Instant::now() + Duration::from_secs_f64(args.warmup);
    while let Ok(r) = tokio::time::timeout_at(warm_end.into(), events.recv()).await {
        if let Err(tokio::sync::broadcast::error::RecvError::Closed) = r {
            bail!("event channel closed");
        }
    }
    let flood = (args.junk_pps > 0).then(|| Flood::start(hub.local_addrs()[0], args.junk_pps));
    let s0 = hub.stats();
    let c0 = cpu_seconds().unwrap_or(f64::NAN);
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(args.seconds);
    let mut per_stream = vec![0u64; k];
    let mut lat = Vec::new();
    let mut inference = Vec::new();
    let room = format!("load-{round}");
    loop {
        let ev = match tokio::time::timeout_at(end.into(), events.recv()).await {
            Err(_) => break,
            Ok(Ok(ev)) => ev,
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => {
                eprintln!("warning: bench lagged {n} events");
                continue;
            }
            Ok(Err(_)) => bail!("event channel closed"),
        };
        let now = Instant::now();
        if ev.room != room {
            continue;
        }
        let Some(i) = ev.result.participant.strip_prefix('p').and_then(|s| s.parse::<usize>().ok()) else {
            continue;
        };
        if i >= k {
            continue;
        }
        per_stream[i] += 1;
        inference.push(ev.result.inference_ms as f64);
        let sent = logs[i].lock().unwrap_or_else(|e| e.into_inner()).get(&ev.result.rtp_timestamp).copied();
        if let Some(sent) = sent {
            lat.push(now.duration_since(sent).as_secs_f64() * 1000.0);
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let c1 = cpu_seconds().unwrap_or(f64::NAN);
    let s1 = hub.stats();
    if let Some(flood) = flood {
        let sent = flood.stop();
        eprintln!(
            "junk: {:.0} pkts/s sent, {} counted as garbage, {} dropped from full queues",
            sent as f64 / secs,
            s1.garbage_packets - s0.garbage_packets,
            s1.datagrams_dropped - s0.datagrams_dropped
        );
    }
    let rss = mib(rss_kib(Process::Current));

    for t in tasks {
        t.abort();
    }
    for key in &keys {
        hub.unpublish(key);
    }
    drop(publishers);
    let mut life = hub.lifecycle();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while hub.stats().sessions > 0 || hub.stats().decoders > 0 {
        if tokio::time::timeout_at(deadline, life.changed()).await.is_err() {
            eprintln!("warning: sessions not freed after K={k}: {:?}", hub.stats());
            break;
        }
    }

    let fps: Vec<f64> = per_stream.iter().map(|&n| n as f64 / secs).collect();
    let mean = |v: &[f64]| if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 };
    let row = Row {
        k,
        still,
        still_fps: mean(&fps[..still]),
        moving_fps: mean(&fps[still..]),
        gated_fps: (s1.frames_gated - s0.frames_gated) as f64 / secs / k as f64,
        received_fps: (s1.frames_received - s0.frames_received) as f64 / secs / k as f64,
        decoded_fps: (s1.frames_decoded - s0.frames_decoded) as f64 / secs / k as f64,
        detected_fps_min: fps.iter().copied().fold(f64::INFINITY, f64::min),
        detected_fps_mean: fps.iter().sum::<f64>() / k as f64,
        p50: percentile(&mut lat, 50.0).unwrap_or(f64::NAN),
        p95: percentile(&mut lat, 95.0).unwrap_or(f64::NAN),
        cpu_pct: (c1 - c0) / secs * 100.0,
        rss,
        dropped: s1.frames_dropped - s0.frames_dropped,
        inference_ms: percentile(&mut inference, 50.0).unwrap_or(f64::NAN),
    };
    eprintln!(
        "K={k}: decoded {:.1} fps/stream, detected {:.1}..{:.1} fps/stream, latency p50 {:.0} ms p95 {:.0} ms, CPU {:.0}%, RSS {:.0} MiB",
        row.decoded_fps,
        row.detected_fps_min,
        fps.iter().copied().fold(0.0, f64::max),
        row.p50,
        row.p95,
        row.cpu_pct,
        row.rss
    );
    Ok(row)
}

/// A stranger flooding the media port with junk from its own thread (paced per ms).
struct Flood {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl Flood {
    fn start(to: SocketAddr, pps: u64) -> Flood {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let Ok(sock) = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)) else { return 0 };
            let mut seed = 0x2545_f491_4f6c_dd1du64;
            let mut sent = 0u64;
            let start = Instant::now();
            let mut packet = [0u8; 200];
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                // Catch up to the schedule, then sleep a little.
                let due = (start.elapsed().as_secs_f64() * pps as f64) as u64;
                while sent < due {
                    for b in packet.iter_mut() {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        *b = seed as u8;
                    }
                    let len = 20 + (seed % 180) as usize;
                    let _ = sock.send_to(&packet[..len], to);
                    sent += 1;
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            sent
        });
        Flood { stop, thread }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}
